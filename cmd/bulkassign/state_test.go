package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestStatePruned: opening a file's state removes the folders of other
// files whose batch ended more than the retention ago, and keeps those not
// ended (resumable), ended recently, or held by a run.
func TestStatePruned(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	fp := func(c string) string { return strings.Repeat(c, 64) }
	open := func(c string) *runState {
		t.Helper()
		s, err := openState(root, fp(c), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	ended := func(s *runState, ago time.Duration) {
		t.Helper()
		if err := s.finished(); err != nil {
			t.Fatal(err)
		}
		when := time.Now().Add(-ago)
		if err := os.Chtimes(filepath.Join(s.dir, stateFinished), when, when); err != nil {
			t.Fatal(err)
		}
	}
	old := open("a")
	ended(old, 2*time.Hour)
	old.close()
	recent := open("b")
	ended(recent, time.Minute)
	recent.close()
	unfinished := open("c")
	unfinished.close()
	held := open("d")
	ended(held, 2*time.Hour)
	defer held.close()

	open("e").close()
	for c, want := range map[string]bool{"a": false, "b": true, "c": true, "d": true, "e": true} {
		_, err := os.Stat(filepath.Join(root, fp(c)[:32]))
		if got := err == nil; got != want {
			t.Errorf("folder %s: there %v, want %v", c, got, want)
		}
	}
}
