package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/simulator"
)

// batchesLine is the line of `batches` that starts with the batch id.
func batchesLine(t *testing.T, out, id string) []string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == id {
			return f
		}
	}
	t.Fatalf("batches does not list %s:\n%s", id, out)
	return nil
}

// TestBatchesShowsUnqueuedTicks: issue 13. `batches` lists, after its
// table, the schedule ticks that queued no batch with their reasons: one
// skipped because the previous batch is paused, one failed for a missing
// contacts file; nothing while every tick queued a batch. A batch no
// worker has touched says queued, and an operator's pause shows as plain
// paused, not "paused ()" (finding 8). `schedule --runs` finds the
// records without the schedule file.
func TestBatchesShowsUnqueuedTicks(t *testing.T) {
	t.Parallel()
	s := newScheduleSetup(t, simulator.Options{}, 30, "0 2 * * *")
	// No worker: the tick's batch stays untouched.
	r := s.once(t)
	if r.code != exitOK {
		t.Fatalf("first tick: exit %d: %s\n%s", r.code, r.errText(), r.stderr)
	}
	id := strings.TrimSpace(r.stdout)
	r = s.cli(t, "batches")
	if r.code != exitOK {
		t.Fatalf("batches: exit %d: %s", r.code, r.errText())
	}
	if f := batchesLine(t, r.stdout, id); len(f) < 5 || f[3] != "queued" || !strings.HasPrefix(f[4], "0/") {
		t.Errorf("batches: an untouched batch shows %q, want status queued, 0 done\n%s", f, r.stdout)
	}
	if strings.Contains(r.stdout, "Schedule ticks") {
		t.Errorf("batches shows ticks while every tick queued a batch:\n%s", r.stdout)
	}
	// --json keeps the status the API has: done and apiCalls say the rest.
	var listed []batchJSON
	if r := s.cli(t, "batches", "--json"); json.Unmarshal([]byte(r.stdout), &listed) != nil || len(listed) != 1 || listed[0].Status != jobs.BatchRunning {
		t.Errorf("batches --json:\n%s\nwant one batch, running", r.stdout)
	}

	if r := s.cli(t, "pause", id); r.code != exitOK {
		t.Fatalf("pause: %s", r.errText())
	}
	nextSecond()
	if r := s.once(t); r.code != exitFatal {
		t.Fatalf("tick while paused: exit %d, want 1", r.code)
	}
	if err := os.Remove(s.contacts); err != nil {
		t.Fatal(err)
	}
	if r := s.cli(t, "cancel", id); r.code != exitOK {
		t.Fatalf("cancel: %s", r.errText())
	}
	nextSecond()
	if r := s.once(t); r.code != exitFatal {
		t.Fatalf("tick without its contacts file: exit %d, want 1", r.code)
	}

	r = s.cli(t, "batches")
	if r.code != exitOK {
		t.Fatalf("batches: exit %d: %s", r.code, r.errText())
	}
	_, ticks, ok := strings.Cut(r.stdout, "\nSchedule ticks that queued no batch")
	if !ok {
		t.Fatalf("batches shows no tick that queued no batch:\n%s", r.stdout)
	}
	lines := strings.Split(strings.TrimSpace(ticks), "\n")
	if len(lines) != 4 || !strings.Contains(lines[0], "bulkassign schedule --runs") || !strings.HasPrefix(lines[1], "SCHEDULE") {
		t.Fatalf("batches' ticks:\n%s\nwant a title naming schedule --runs, a header and 2 ticks", ticks)
	}
	failed, skipped := lines[2], lines[3] // newest first
	if f := strings.Fields(failed); f[0] != "rebalance" || f[2] != "failed" || !strings.Contains(failed, "contacts.csv") || !strings.Contains(failed, "no such file") {
		t.Errorf("the failed tick: %q, want rebalance <tick> failed, naming the missing contacts.csv", failed)
	}
	if f := strings.Fields(skipped); f[0] != "rebalance" || f[2] != "skipped" || f[3] != "(previous-paused)" ||
		!strings.Contains(skipped, "batch "+id+", is paused") || !strings.Contains(skipped, "bulkassign resume "+id) {
		t.Errorf("the skipped tick: %q, want rebalance <tick> skipped (previous-paused), naming batch %s", skipped, id)
	}

	// The records without the schedule file.
	r = s.cli(t, "schedule", "--runs", "10")
	if r.code != exitOK {
		t.Fatalf("schedule --runs without --config: exit %d: %s", r.code, r.errText())
	}
	if n := strings.Count(r.stdout, "\nrebalance "); n != 3 || !strings.Contains(r.stdout, "is paused") {
		t.Errorf("schedule --runs without --config:\n%s\nwant the 3 ticks of rebalance", r.stdout)
	}
}

// TestBatchesOperatorPause: finding 8. A batch an operator paused shows
// as paused, not "paused ()".
func TestBatchesOperatorPause(t *testing.T) {
	t.Parallel()
	s := newScheduleSetup(t, simulator.Options{}, 10, "0 2 * * *")
	id := s.pausedTick(t)
	r := s.cli(t, "batches")
	if f := batchesLine(t, r.stdout, id); len(f) < 5 || f[3] != "paused" || !strings.HasPrefix(f[4], "0/") {
		t.Errorf("batches: a paused batch shows %q, want paused, 0 done\n%s", f, r.stdout)
	}
}

// TestBatchesQueuedWithInvalidRows: a batch no worker has touched says
// queued even when some of its rows were invalid (final at the import).
func TestBatchesQueuedWithInvalidRows(t *testing.T) {
	t.Parallel()
	d := newDist(t, simulator.Options{})
	file := filepath.Join(t.TempDir(), "in.csv")
	data := "aiContactId,teamMemberId\n" + simulator.ContactID(1) + "," + simulator.MemberID(1) + "\nnot an id," + simulator.MemberID(1) + "\n"
	if err := os.WriteFile(file, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	id := d.importFile(t, file, "--name", "untouched")
	r := d.cli(t, "batches")
	if f := batchesLine(t, r.stdout, id); len(f) < 4 || f[1] != "untouched" || f[2] != "queued" || f[3] != "1/2" {
		t.Errorf("batches: an untouched batch with an invalid row shows %q, want queued, 1/2 done\n%s", f, r.stdout)
	}
}
