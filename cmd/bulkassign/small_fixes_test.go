package main

import (
	"strings"
	"testing"
)

// TestSimulatorBurstHelp: finding 8. The simulator's burst flag says the
// default it has: it showed 0 and said "(default 1)".
func TestSimulatorBurstHelp(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"simulate", "--help"}, {"run", "--help"}} {
		res := runCLI(t, nil, args...)
		for _, line := range strings.Split(res.stdout+res.stderr, "\n") {
			if strings.Contains(line, "burst") && strings.Contains(line, "simulator") &&
				(!strings.HasSuffix(strings.TrimSpace(line), "(default 1)") || strings.Count(line, "default") != 1) {
				t.Errorf("%v: %q, want the burst's help to end with its default, (default 1), once", args, strings.TrimSpace(line))
			}
		}
	}
	a := &app{}
	if f := a.simulateCommand().Flags().Lookup("burst"); f == nil || f.DefValue != "1" {
		t.Errorf("simulate --burst: %+v, want default 1", f)
	}
}

// TestRunRecordPreviousNothingToRollBack: finding 8. Against a fresh
// simulator no contact had an agent, so rollback.csv has no row: the
// summary says there is nothing to roll back instead of suggesting to run
// it.
func TestRunRecordPreviousNothingToRollBack(t *testing.T) {
	t.Parallel()
	args := append([]string{"run", "--simulate", "--record-previous", "--out", t.TempDir()}, fastFlags()...)
	res := runCLI(t, nil, args...)
	if res.code != exitPartial { // the sample has two invalid rows
		t.Fatalf("exit %d (%v)\n%s", res.code, res.err, res.stderr)
	}
	if !strings.Contains(res.stdout, "rollback: nothing to roll back") || strings.Contains(res.stdout, "restores the agents") {
		t.Errorf("summary:\n%s\nwant nothing to roll back", res.stdout)
	}
}
