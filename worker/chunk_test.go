package worker

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/simulator"
	"github.com/hibiken/asynq"
)

// chunkTask is the task of a chunk of the given payloads' contacts.
func (e *env) chunkTask(t *testing.T, id string, ps []jobs.AssignPayload) *asynq.Task {
	t.Helper()
	cs := make([]string, len(ps))
	for i, p := range ps {
		cs[i] = p.Contact
	}
	task, err := jobs.NewChunkTask(ps[0].Batch, cs, id, asynq.Queue(e.ns), asynq.MaxRetry(jobs.TaskRetries))
	if err != nil {
		t.Fatal(err)
	}
	return task
}

// checkExact asserts that every row succeeded once, counters included,
// and that the CRM got each call once.
func (e *env) checkExact(t *testing.T, b jobs.Batch, rows []jobs.Row) {
	t.Helper()
	if b.Succeeded != int64(len(rows)) || b.Done() != int64(len(rows)) {
		t.Errorf("batch %+v, want all %d rows succeeded", b, len(rows))
	}
	e.checkCalls(t, b)
	want := map[string][]string{}
	for _, r := range rows {
		want[r.ContactID] = append(want[r.ContactID], r.MemberID)
	}
	for c, agents := range want {
		if got := e.sim.Agents(c); !slices.Equal(got, agents) {
			t.Errorf("contact %s has %v, want %v", c, got, agents)
		}
	}
}

// TestChunkHandsTransientContactsToTheirOwnTasks: a contact of a chunk
// that fails transiently does not hold the chunk back: the chunk ends with
// every other contact applied and the failed ones queued on their own,
// with backoff, where they are retried to success.
func TestChunkHandsTransientContactsToTheirOwnTasks(t *testing.T) {
	t.Parallel()
	sim := simulator.Options{Transient: 0.3, TransientAttempts: 1}
	e := newEnv(t, envOptions{sim: sim})
	rows := oneEach(60, "m1")
	flaky := faulty(sim, rows)
	if len(flaky) == 0 || len(flaky) == len(rows) {
		t.Fatalf("%d of %d rows flaky: the test needs some of each", len(flaky), len(rows))
	}
	ps := e.load(t, "b", rows)
	if err := e.handler.ProcessTask(e.ctx, e.chunkTask(t, "b:chunk:0", ps)); err != nil {
		t.Fatalf("chunk: %v", err)
	}
	res := e.results(t, "b")
	for _, r := range rows {
		own, err := e.insp.GetTaskInfo(e.ns, jobs.TaskID("b", r.ContactID))
		switch {
		case flaky[r.Line]:
			if res[r.Line].Status != "" || err != nil || own.State != asynq.TaskStateScheduled {
				t.Errorf("flaky line %d after the chunk: result %+v, own task %v (%v), want no result and a scheduled task", r.Line, res[r.Line], own, err)
			}
		case res[r.Line].Status != jobs.StatusSucceeded || !errors.Is(err, asynq.ErrTaskNotFound):
			t.Errorf("line %d after the chunk: %+v, own task %v, want succeeded with no task of its own", r.Line, res[r.Line], err)
		}
	}
	noted := func() (n int) {
		for page, err := range e.store.NotedTasks(e.ctx, "b") {
			if err != nil {
				t.Fatal(err)
			}
			n += len(page)
		}
		return n
	}
	if n := noted(); n != len(flaky) {
		t.Errorf("the batch notes %d tasks of its own, want the %d flaky contacts' (delete finds them there)", n, len(flaky))
	}
	e.run(t)
	b := e.waitDone(t, "b")
	e.checkExact(t, b, rows)
	for line, r := range e.results(t, "b") {
		if want := map[bool]int{true: 2, false: 1}[flaky[line]]; r.Attempts != want {
			t.Errorf("line %d: %d attempts, want %d", line, r.Attempts, want)
		}
	}
	// Done, the contacts' tasks are forgotten: the set holds only tasks
	// that may still be queued.
	deadline := time.Now().Add(10 * time.Second)
	for noted() != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := noted(); n != 0 {
		t.Errorf("the batch still notes %d finished tasks", n)
	}
}

// TestChunkCrashPoints kills the handler (a panic from the test hook)
// right after each of its writes to the ledger in turn while it applies a
// chunk, one contact at a time; asynq then brings the chunk back. Whatever
// the point, every row ends once, in order, and the CRM is exact.
func TestChunkCrashPoints(t *testing.T) {
	t.Parallel()
	rows := []jobs.Row{
		row(2, "c1", "a", false), row(3, "c2", "x", false), row(4, "c1", "b", true),
		row(5, "c3", "y", false), row(6, "c1", "c", false), row(7, "c4", "z", false),
	}
	for crashAt := 1; crashAt <= 10; crashAt++ {
		t.Run(fmt.Sprintf("write %d", crashAt), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{claimTTL: 150 * time.Millisecond, concurrency: 1})
			ps := e.load(t, "b", rows)
			task := e.chunkTask(t, "b:chunk:0", ps)
			var (
				mu     sync.Mutex
				writes int
			)
			e.handler.after = func(point string) {
				mu.Lock()
				defer mu.Unlock()
				if writes++; writes == crashAt {
					panic(crash{point})
				}
			}
			if err := e.handler.ProcessTask(e.ctx, task); err == nil {
				t.Fatalf("the chunk crashed at write %d and returned no error", crashAt)
			}
			e.handler.after = func(string) {}
			// asynq brings the chunk back; contacts handed to their own
			// tasks run there.
			if _, err := e.queue.EnqueueContext(e.ctx, task); err != nil {
				t.Fatal(err)
			}
			e.run(t)
			b := e.waitDone(t, "b")
			want := map[string][]string{"c1": {"b", "c"}, "c2": {"x"}, "c3": {"y"}, "c4": {"z"}}
			for c, agents := range want {
				if got := e.sim.Agents(c); !slices.Equal(got, agents) {
					t.Errorf("contact %s has %v, want %v", c, got, agents)
				}
			}
			if b.Succeeded != int64(len(rows)) || b.Done() != int64(len(rows)) {
				t.Errorf("batch %+v, want all %d rows succeeded once", b, len(rows))
			}
			if got := e.sim.Stats().ByStatus[http.StatusOK]; got < b.Succeeded {
				t.Errorf("%d rows succeeded, the CRM answered 200 only %d times", b.Succeeded, got)
			}
		})
	}
}

// TestChunkPausedParksTheRest: a chunk whose batch is paused part-way
// stops calling; its contacts not yet applied wait in the ledger, and
// resume applies exactly those.
func TestChunkPausedParksTheRest(t *testing.T) {
	t.Parallel()
	var e *env
	e = envAtCall(t, 1, 5, func() {
		if _, err := e.store.SetStatus(e.ctx, "b", jobs.BatchPaused, "manual", "held by the operator"); err != nil {
			t.Error(err)
		}
	})
	rows := oneEach(40, "m1")
	ps := e.load(t, "b", rows)
	if err := e.handler.ProcessTask(e.ctx, e.chunkTask(t, "b:chunk:0", ps)); err != nil {
		t.Fatalf("chunk: %v", err)
	}
	b := e.batch(t, "b")
	parked := e.rdb.SCard(e.ctx, e.ns+":batch:{b}:parked").Val()
	if b.Status != jobs.BatchPaused || b.Done() == int64(len(rows)) || b.Done()+parked != int64(len(rows)) {
		t.Fatalf("paused chunk: %d done, %d parked of %d (%s): want every contact done or parked", b.Done(), parked, len(rows), b.Status)
	}
	if qi, err := e.insp.GetQueueInfo(e.ns); err == nil && qi.Size != 0 { // no queue: nothing was ever queued
		t.Errorf("paused chunk left %+v in the queue, want nothing", qi)
	}
	if _, err := e.tasks.Resume(e.ctx, "b"); err != nil {
		t.Fatal(err)
	}
	e.run(t)
	e.checkExact(t, e.waitDone(t, "b"), rows)
}

// TestChunksNeverShareAContact: two chunks naming the same contacts (a
// chunk queued again while the first still runs) apply each contact once:
// the second finds it settled or held, and hands a held one to the
// contact's own task, which finds it settled.
func TestChunksNeverShareAContact(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{sim: simulator.Options{Latency: 5 * time.Millisecond}, concurrency: 4})
	rows := oneEach(40, "m1")
	rows = append(rows, row(50, "c000", "m2", false), row(51, "c001", "m3", true))
	ps := e.load(t, "b", rows)
	for _, id := range []string{"b:chunk:0", "b:again:1"} {
		if _, err := e.queue.EnqueueContext(e.ctx, e.chunkTask(t, id, ps)); err != nil {
			t.Fatal(err)
		}
	}
	e.run(t)
	b := e.waitDone(t, "b")
	if got := e.sim.Stats().Requests; got != int64(len(rows)) {
		t.Errorf("the CRM got %d calls for %d rows: a contact was applied twice", got, len(rows))
	}
	if got := e.sim.Agents("c000"); !slices.Equal(got, []string{"m1", "m2"}) {
		t.Errorf("c000 has %v, want [m1 m2]", got)
	}
	if got := e.sim.Agents("c001"); !slices.Equal(got, []string{"m3"}) {
		t.Errorf("c001 has %v, want [m3]", got)
	}
	if b.Succeeded != int64(len(rows)) {
		t.Errorf("batch %+v, want all rows succeeded", b)
	}
	if m := e.sim.Stats().MaxInFlight; m > 4 {
		t.Errorf("%d calls in flight at once, want at most 4 (the handler's concurrency)", m)
	}
}

// TestChunkDrains: a worker shutting down lets the calls in flight of a
// chunk finish and record, starts no contact more, and sends the chunk
// back to the queue without using up an attempt; the rest is applied
// later, each row once.
func TestChunkDrains(t *testing.T) {
	t.Parallel()
	var e *env
	e = envAtCall(t, 2, 6, func() { e.handler.Drain() })
	rows := oneEach(40, "m1")
	ps := e.load(t, "b", rows)
	task := e.chunkTask(t, "b:chunk:0", ps)
	err := e.handler.ProcessTask(e.ctx, task)
	var de *DeferError
	if !errors.As(err, &de) || IsFailure(err) {
		t.Fatalf("draining chunk returned %v, want a deferral", err)
	}
	b := e.batch(t, "b")
	if got := e.sim.Stats().Requests; b.Done() != got || b.Done() == 0 || b.Done() == int64(len(rows)) {
		t.Fatalf("drained: %d rows recorded, the CRM got %d calls: want every call made recorded, and some rows left", b.Done(), got)
	}
	if n := e.rdb.HLen(e.ctx, e.ns+":batch:{b}:claims").Val(); n != 0 {
		t.Errorf("%d claims left after the drain, want none", n)
	}
	e.handler = NewHandler(e.store, e.client, NewLocalLimiter(0, 1), HandlerOptions{Tasks: &e.tasks, WatchEvery: 50 * time.Millisecond})
	if _, err := e.queue.EnqueueContext(e.ctx, task); err != nil {
		t.Fatal(err)
	}
	e.run(t)
	e.checkExact(t, e.waitDone(t, "b"), rows)
}

// envAtCall is an env of a handler applying concurrency contacts at once,
// whose CRM runs at before it answers the nth call.
func envAtCall(t *testing.T, concurrency, n int, at func()) *env {
	var (
		mu    sync.Mutex
		calls int
	)
	sim := simulator.New(simulator.Options{})
	e := newEnv(t, envOptions{concurrency: concurrency, crm: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		now := calls
		mu.Unlock()
		if now == n {
			at()
		}
		sim.ServeHTTP(w, r)
	})})
	e.sim = sim
	return e
}

// TestChunkUnreadableContact: a contact whose plan entry cannot be read
// fails alone, and its claim is given up at once. The contacts that began
// in the same ledger call are not held: when the chunk runs again (it
// failed), each of them is applied with one attempt, instead of waiting
// for a claim nobody holds to expire and counting that as a worker lost.
func TestChunkUnreadableContact(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	rows := oneEach(40, "m1")
	ps := e.load(t, "b", rows)
	bad := rows[len(rows)-1] // last: every other contact starts before it fails the chunk
	// A member index the batch does not have: the script reads the entry,
	// the worker cannot.
	entry := fmt.Sprintf("0/#999:0:%d", bad.Line)
	if err := e.rdb.HSet(e.ctx, e.ns+":batch:{b}:plan", bad.ContactID, entry).Err(); err != nil {
		t.Fatal(err)
	}
	task := e.chunkTask(t, "b:chunk:0", ps)
	for run := 1; run <= 2; run++ {
		if err := e.handler.ProcessTask(e.ctx, task); err == nil {
			t.Fatalf("run %d of a chunk with an unreadable contact: no error", run)
		}
		if n, err := e.rdb.HExists(e.ctx, e.ns+":batch:{b}:claims", bad.ContactID).Result(); err != nil || n {
			t.Errorf("run %d: the unreadable contact is still claimed (%v)", run, err)
		}
	}
	res := e.results(t, "b")
	for _, r := range rows {
		if r.ContactID != bad.ContactID && (res[r.Line].Status != jobs.StatusSucceeded || res[r.Line].Attempts != 1) {
			t.Errorf("line %d (%s) after the chunk ran twice: %+v, want succeeded with 1 attempt", r.Line, r.ContactID, res[r.Line])
		}
	}
}
