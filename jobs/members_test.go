package jobs

import (
	"fmt"
	"testing"
)

// TestInternSurvivesTheCache: a process that imports a batch while it
// reads many others (a worker running schedule ticks, serve --workers)
// keeps handing out the indices it stored: reading other batches' tables
// must not make it give a stored index to another member.
func TestInternSurvivesTheCache(t *testing.T) {
	s := &Store{}
	a, _ := s.intern("import", "m-x")
	for i := range 2 * maxCachedTables {
		s.members.get(fmt.Sprint("other-", i), false)
	}
	b, isNew := s.intern("import", "m-y")
	if !isNew || b == a {
		t.Fatalf("after reading other batches, m-y got index %s (new %v), m-x has %s: want a new index", b, isNew, a)
	}
	if again, isNew := s.intern("import", "m-x"); isNew || again != a {
		t.Errorf("m-x is now %s (new %v), want %s as stored", again, isNew, a)
	}
}
