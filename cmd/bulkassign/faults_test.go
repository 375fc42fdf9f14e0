package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/simulator"
	"github.com/hibiken/asynq"
)

// callLog is a CRM in front of a simulator that records when each assign
// call arrived.
type callLog struct {
	sim *simulator.Simulator
	mu  sync.Mutex
	at  []time.Time
}

func newCallLog(t *testing.T, opts simulator.Options) (*callLog, string) {
	t.Helper()
	c := &callLog{sim: simulator.New(opts)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/assign-team-member/") {
			c.mu.Lock()
			c.at = append(c.at, time.Now())
			c.mu.Unlock()
		}
		c.sim.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return c, srv.URL
}

// after counts the calls that arrived after t.
func (c *callLog) after(t time.Time) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, at := range c.at {
		if at.After(t) {
			n++
		}
	}
	return n
}

// manyRowsEach is contacts × rows assignments: every contact's task
// makes rows calls, so a task runs long under a rate limit.
func manyRowsEach(prefix string, contacts, rows int) []assignment {
	var out []assignment
	for r := range rows {
		for c := range contacts {
			out = append(out, assignment{contact: prefix + "-" + string(rune('a'+c%26)) + strings.Repeat("x", c/26), member: "m-" + string(rune('1'+r%9)), replace: r == 0})
		}
	}
	return out
}

// TestDistributedPauseAndCancelStopCallsAtOnce: a pause or a cancel stops
// every worker process before its next call, a call waiting for a rate
// slot included, within 2s, even in the middle of a contact with many rows.
func TestDistributedPauseAndCancelStopCallsAtOnce(t *testing.T) {
	t.Parallel()
	d := newDist(t, simulator.Options{})
	crm, url := newCallLog(t, simulator.Options{Latency: 10 * time.Millisecond})
	d.api = url
	rows := manyRowsEach("p", 30, 30)
	id := d.importRows(t, "many.csv", rows)
	for range 2 {
		d.startWorker(t, "--concurrency", "8", "--rate", "40", "--burst", "1", "--retry-base", "10ms", "--retry-max", "50ms")
	}
	for _, step := range []string{"pause", "cancel"} {
		d.waitBatch(t, id, 30*time.Second, "calls going", func(b jobs.Batch) bool { return b.Status == jobs.BatchRunning && b.APICalls > 0 })
		if r := d.cli(t, step, id); r.code != exitOK {
			t.Fatalf("%s: exit %d (%s)", step, r.code, r.errText())
		}
		at := time.Now()
		time.Sleep(4 * time.Second)
		if n := crm.after(at.Add(2 * time.Second)); n != 0 {
			t.Errorf("%s: the CRM got %d calls more than 2s after it", step, n)
		}
		held := d.waitSteady(t, id)
		if got := crm.sim.Stats().Assigned; got != held.Succeeded {
			t.Errorf("%s: the CRM applied %d calls, the ledger has %d succeeded", step, got, held.Succeeded)
		}
		if held.Done() >= held.Rows {
			t.Fatalf("%s: the batch finished before the test could stop it", step)
		}
		if step == "pause" {
			if r := d.cli(t, "resume", id); r.code != exitOK {
				t.Fatalf("resume: exit %d (%s)", r.code, r.errText())
			}
		}
	}
	r, dir := d.reportWait(t, id)
	if r.code != exitPartial {
		t.Fatalf("report of the cancelled batch: exit %d (%s)", r.code, r.errText())
	}
	readLedger(t, dir).checkExact(t, len(rows))
}

// TestDistributedLostTasksAreQueuedAgain: a running batch whose queued
// tasks vanished (deleted by hand, lost with a Redis that failed over
// without persistence) is found by the workers' sweep and its rows are
// queued again from the ledger, so `report --wait` ends.
func TestDistributedLostTasksAreQueuedAgain(t *testing.T) {
	t.Parallel()
	d := newDist(t, simulator.Options{})
	rows := oneEach("lost", 200)
	id := d.importRows(t, "lost.csv", rows)
	n, err := d.insp.DeleteAllPendingTasks(d.target.ns)
	if err != nil || n != 1 {
		t.Fatalf("deleted %d pending tasks (%v), want 1 (a chunk of %d rows)", n, err, len(rows))
	}
	d.startWorker(t, "--retry-base", "10ms", "--retry-max", "50ms", "--stall", "1s")
	r, dir := d.reportWait(t, id)
	if r.code != exitOK {
		t.Fatalf("report --wait: exit %d (%s)", r.code, r.errText())
	}
	readLedger(t, dir).checkExact(t, len(rows))
	checkState(t, d.sim.State(), wantState(rows))
}

// TestDistributedDelete: `delete` removes a batch in any state with its
// queued tasks, those queued since its import included (a chunk queued
// again, a contact's own retry); workers find nothing of it.
func TestDistributedDelete(t *testing.T) {
	t.Parallel()
	d := newDist(t, simulator.Options{})
	kept := d.importRows(t, "kept.csv", oneEach("k", 5))
	gone := d.importRows(t, "gone.csv", oneEach("g", 50))
	// An import that died part-way: importing, some of its tasks queued.
	if err := d.store.Create(t.Context(), "dead-import", "", "dead.csv"); err != nil {
		t.Fatal(err)
	}
	if err := d.store.AddContacts(t.Context(), "dead-import", []jobs.Contact{{ID: "x1", Ops: []jobs.Op{{MemberID: "m1", Lines: []int{2}}}}}); err != nil {
		t.Fatal(err)
	}
	client := asynq.NewClientFromRedisClient(d.rdb) // closed with d.rdb
	tasks := jobs.Tasks{Store: d.store, Client: client, Queue: d.target.ns}
	if err := tasks.EnqueueChunk(t.Context(), "dead-import", 0, []string{"x1"}); err != nil {
		t.Fatal(err)
	}
	// Queued since the import: what resume, dlq retry and the sweep queue,
	// and a contact's retry on its own.
	if err := tasks.Enqueue(t.Context(), gone, []string{"g-00001", "g-00002"}); err != nil {
		t.Fatal(err)
	}
	if err := tasks.Later(t.Context(), gone, "g-00003", time.Hour); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{gone, "dead-import"} {
		r := d.cli(t, "delete", id)
		if r.code != exitOK || !strings.Contains(r.stdout, "deleted") {
			t.Fatalf("delete %s: exit %d (%s): %s", id, r.code, r.errText(), r.stdout)
		}
	}
	if keys := d.target.keys(t); len(keys) == 0 || containsAny(keys, gone, "dead-import") {
		t.Errorf("keys after delete: %v", keys)
	}
	qi, err := d.insp.GetQueueInfo(d.target.ns)
	if err != nil || qi.Pending != 1 || qi.Scheduled != 0 {
		t.Errorf("queue after delete: %+v (%v), want the one task (a chunk of 5 contacts) of the kept batch", qi, err)
	}
	if r := d.cli(t, "batches"); !strings.Contains(r.stdout, kept) || strings.Contains(r.stdout, gone) || strings.Contains(r.stdout, "dead-import") {
		t.Errorf("batches after delete:\n%s", r.stdout)
	}
	if r := d.cli(t, "delete", gone); r.code != exitFatal || !strings.Contains(r.errText(), "not found") {
		t.Errorf("delete of a deleted batch: exit %d (%s), want 1, not found", r.code, r.errText())
	}
}

func containsAny(keys []string, ids ...string) bool {
	for _, k := range keys {
		for _, id := range ids {
			if strings.Contains(k, "{"+id+"}") {
				return true
			}
		}
	}
	return false
}
