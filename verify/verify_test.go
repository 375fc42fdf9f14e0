package verify_test

import (
	"slices"
	"testing"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/verify"
)

func TestExpectAndCompare(t *testing.T) {
	add := func(m string) jobs.Op { return jobs.Op{MemberID: m} }
	repl := func(m string) jobs.Op { return jobs.Op{MemberID: m, Replace: true} }
	for _, tc := range []struct {
		name                string
		ops                 []jobs.Op
		actual              []string
		exact, drift        bool
		missing, unexpected []string
	}{
		{name: "adds, contained", ops: []jobs.Op{add("a"), add("b")}, actual: []string{"x", "b", "a"}},
		{name: "adds, one lost", ops: []jobs.Op{add("a"), add("b")}, actual: []string{"b"}, drift: true, missing: []string{"a"}},
		{name: "add, replace, add: exact", ops: []jobs.Op{add("a"), repl("b"), add("c")}, actual: []string{"c", "b"}, exact: true},
		{name: "replace, extra agent", ops: []jobs.Op{repl("b")}, actual: []string{"b", "x"}, exact: true, drift: true, unexpected: []string{"x"}},
		{name: "replace, emptied", ops: []jobs.Op{repl("b")}, exact: true, drift: true, missing: []string{"b"}},
		{name: "repeat add", ops: []jobs.Op{add("a"), add("a")}, actual: []string{"a"}},
	} {
		e := verify.Expect("c1", tc.ops)
		if e.Exact != tc.exact {
			t.Errorf("%s: exact %v, want %v", tc.name, e.Exact, tc.exact)
		}
		d, drift := verify.Compare(e, tc.actual)
		if drift != tc.drift || !slices.Equal(d.Missing, tc.missing) || !slices.Equal(d.Unexpected, tc.unexpected) {
			t.Errorf("%s: drift %v missing %v unexpected %v, want %v %v %v", tc.name, drift, d.Missing, d.Unexpected, tc.drift, tc.missing, tc.unexpected)
		}
	}
}
