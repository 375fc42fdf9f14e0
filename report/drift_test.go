package report_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/bulkassign/bulkassign/report"
	"github.com/bulkassign/bulkassign/verify"
	"github.com/bulkassign/bulkassign/worker"
)

// TestDriftAndFix: drift.csv names each drifted contact with ;-joined
// agents, and the fix file restores exact contacts with a replace first,
// adds what contains contacts miss, and leaves out contacts gone or
// unread; cells a spreadsheet would run are neutralised.
func TestDriftAndFix(t *testing.T) {
	drifts := []verify.Drift{
		{Expectation: verify.Expectation{Contact: "c1", Agents: []string{"a", "b"}, Exact: true}, Actual: []string{"a", "x"}, Missing: []string{"b"}, Unexpected: []string{"x"}},
		{Expectation: verify.Expectation{Contact: "-c2", Agents: []string{"a", "b"}}, Actual: []string{"b"}, Missing: []string{"a"}},
		{Expectation: verify.Expectation{Contact: "c3", Agents: []string{"a"}}, Missing: []string{"a"}, Err: fmt.Errorf("read: %w", worker.ErrContactNotFound)},
		{Expectation: verify.Expectation{Contact: "c4", Agents: []string{"a"}}, Err: errors.New("HTTP 503")},
	}
	dir := t.TempDir()
	if err := report.WriteDrift(filepath.Join(dir, report.DriftFile), drifts); err != nil {
		t.Fatal(err)
	}
	n, err := report.WriteFix(filepath.Join(dir, "fix.csv"), drifts)
	if err != nil {
		t.Fatal(err)
	}
	if n != (report.FixCounts{Contacts: 2, Rows: 3, NotFound: 1, Unknown: 1}) {
		t.Errorf("fix counts %+v", n)
	}
	for name, want := range map[string]string{
		report.DriftFile: "aiContactId,expected,actual,missing,unexpected,match,error\n" +
			"c1,a;b,a;x,b,x,exact,\n'-c2,a;b,b,a,,contains,\nc3,a,,a,,contains,read: contact not found\nc4,a,,,,contains,HTTP 503\n",
		"fix.csv": "aiContactId,teamMemberId,removeExistingAgents\nc1,a,true\nc1,b,false\n'-c2,a,false\n",
	} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := string(b); got != want {
			t.Errorf("%s:\n%s\nwant:\n%s", name, got, want)
		}
	}
	if tmp, _ := filepath.Glob(filepath.Join(dir, ".*")); len(tmp) > 0 {
		t.Errorf("temporary files left: %v", tmp)
	}
}
