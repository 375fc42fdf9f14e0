package main

import (
	"os"
	"strings"
	"testing"

	"github.com/bulkassign/bulkassign/simulator"
)

// TestScheduleLiveTicksDoNotRepeat: finding 1. A live schedule whose
// first batch was applied queues nothing at the next tick, though its
// contacts file was never updated; with recordPrevious its batch's report
// has a rollback.csv (finding 3).
func TestScheduleLiveTicksDoNotRepeat(t *testing.T) {
	t.Parallel()
	s := newScheduleSetup(t, simulator.Options{}, 200, "0 2 * * *")
	_, owners := planContacts(7, 200)
	seedSim(t, s.api, owners) // the CRM as the file has it
	s.config = writePlanInput(t, s.dir, "schedule.yaml", []byte(
		"schedules:\n  - {name: rebalance, cron: \"0 2 * * *\", contacts: contacts.csv, rules: rules.yaml, live: true, recordPrevious: true}\n"))
	s.startWorker(t, fastFlags()[:4]...)
	r := s.once(t)
	if r.code != exitOK {
		t.Fatalf("first tick: exit %d: %s\n%s", r.code, r.errText(), r.stderr)
	}
	id := strings.TrimSpace(r.stdout)
	if rep, dir := s.reportWait(t, id); rep.code != exitOK {
		t.Fatalf("report: exit %d: %s", rep.code, rep.errText())
	} else if _, err := os.Stat(dir + "/rollback.csv"); err != nil {
		t.Errorf("recordPrevious: no rollback.csv: %v", err)
	}
	calls := s.sim.Stats().Assigned
	nextSecond()
	r = s.once(t)
	if r.code != exitFatal || r.stdout != "" || !strings.Contains(r.errText(), "no batch queued: nothing to change") {
		t.Errorf("second tick: exit %d, stdout %q, %s; want 1 and nothing to change", r.code, r.stdout, r.errText())
	}
	if n := len(s.batches(t)); n != 1 {
		t.Errorf("%d batches, want 1", n)
	}
	if n := s.sim.Stats().Assigned - calls; n != 0 {
		t.Errorf("the second tick made %d assignments, want none", n)
	}
}

// TestScheduleRuns: finding 5. Skipped and failed ticks leave records
// with their reasons, which --runs lists; --once exits 1 saying why it
// queued nothing.
func TestScheduleRuns(t *testing.T) {
	t.Parallel()
	s := newScheduleSetup(t, simulator.Options{}, 30, "0 2 * * *")
	id := s.pausedTick(t)
	nextSecond()
	r := s.once(t)
	if r.code != exitFatal || !strings.Contains(r.errText(), "batch "+id+", is paused") || !strings.Contains(r.errText(), "bulkassign resume "+id) {
		t.Errorf("tick while paused: exit %d: %s", r.code, r.errText())
	}
	if r := s.cli(t, "cancel", id); r.code != exitOK {
		t.Fatalf("cancel: %s", r.errText())
	}
	if err := os.Remove(s.contacts); err != nil {
		t.Fatal(err)
	}
	nextSecond()
	r = s.once(t)
	if r.code != exitFatal || !strings.Contains(r.errText(), "contacts.csv") {
		t.Errorf("tick without its contacts file: exit %d: %s", r.code, r.errText())
	}
	r = s.cli(t, "schedule", "--config", s.config, "--runs", "10")
	if r.code != exitOK {
		t.Fatalf("--runs: exit %d: %s", r.code, r.errText())
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 4 {
		t.Fatalf("--runs:\n%s\nwant a header and 3 ticks", r.stdout)
	}
	for i, w := range []string{"failed", "skipped", "queued"} {
		if f := strings.Fields(lines[i+1]); len(f) < 3 || f[0] != "rebalance" || f[2] != w {
			t.Errorf("--runs line %d: %q, want rebalance <tick> %s", i+1, lines[i+1], w)
		}
	}
	for _, w := range []string{"no such file", "is paused", id} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("--runs does not show %q:\n%s", w, r.stdout)
		}
	}
}
