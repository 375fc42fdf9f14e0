package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/bulkassign/bulkassign/internal/redistest"
	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/simulator"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// Chaos tests: Redis restarted or wiped under a running batch, and worker
// processes killed mid-update. Each is bounded (loopback only, a Redis of
// its own where the test restarts it) and asserts what an operator checks:
// exit code, message, report files, ledger counts and the CRM's state.

// chaosRows is n contacts in file order; every fifth contact has three rows
// (add, replace, add), so order within a contact matters to the end state.
// Its ids are short, of the older form: the commands that read it take
// --id-format any.
func chaosRows(prefix string, n int) []assignment {
	var rows []assignment
	for i := range n {
		c := fmt.Sprintf("%s-%05d", prefix, i+1)
		rows = append(rows, assignment{contact: c, member: fmt.Sprintf("m-%d", i%7+1)})
		if i%5 == 0 {
			rows = append(rows,
				assignment{contact: c, member: "m-8", replace: true},
				assignment{contact: c, member: "m-9"})
		}
	}
	return rows
}

// chaosRedis is a redis-server of the test's own, which the test may stop,
// kill and restart, with a namespace on it and a store to watch batches.
type chaosRedis struct {
	srv    *redistest.Server
	target redisTarget
	rdb    redis.UniversalClient
	store  *jobs.Store
}

func newChaosRedis(t *testing.T, opts redistest.Options) *chaosRedis {
	t.Helper()
	srv := redistest.Start(t, opts)
	c := &chaosRedis{srv: srv, target: redisTarget{url: srv.URL(), ns: "chaos"}}
	c.rdb = c.target.client(t)
	c.store = jobs.NewStore(c.rdb, jobs.StoreOptions{Namespace: c.target.ns})
	return c
}

// waitBatch polls the batch until cond holds; Redis errors fail the test.
func (c *chaosRedis) waitBatch(t *testing.T, id string, timeout time.Duration, what string, cond func(jobs.Batch) bool) jobs.Batch {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		b, err := c.store.Get(context.Background(), id)
		if err != nil {
			t.Fatalf("batch %s: %v", id, err)
		}
		if cond(b) {
			return b
		}
		if time.Now().After(deadline) {
			c.dumpQueue(t)
			t.Fatalf("batch %s: not within %s: %s (status %s, %d/%d done)", id, timeout, what, b.Status, b.Done(), b.Rows)
		}
		<-tick.C
	}
}

// dumpQueue logs the asynq queue's state, to explain a stalled batch.
func (c *chaosRedis) dumpQueue(t *testing.T) {
	t.Helper()
	insp := asynq.NewInspector(asynq.RedisClientOpt{Addr: c.srv.Addr(), DB: 9})
	defer insp.Close()
	qi, err := insp.GetQueueInfo(c.target.ns)
	if err != nil {
		t.Logf("queue info: %v", err)
		return
	}
	t.Logf("queue %s: %d pending, %d active, %d scheduled, %d retry, %d archived, %d completed",
		qi.Queue, qi.Pending, qi.Active, qi.Scheduled, qi.Retry, qi.Archived, qi.Completed)
	active, _ := insp.ListActiveTasks(c.target.ns)
	for i, ti := range active {
		if i == 5 {
			break
		}
		t.Logf("active: %s retried %d last error %q", ti.ID, ti.Retried, ti.LastErr)
	}
	lease, _ := c.rdb.ZRangeWithScores(context.Background(), "asynq:{"+c.target.ns+"}:lease", 0, 5).Result()
	t.Logf("leases: %v (now %d)", lease, time.Now().Unix())
}

// waitAnyBatch waits until the namespace has a batch and returns its id.
func (c *chaosRedis) waitAnyBatch(t *testing.T, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ids, err := c.store.IDs(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(ids) > 0 {
			return ids[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no batch within %s", timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// bgRun is a `bulkassign` command running in this process in the
// background.
type bgRun struct {
	stdout, stderr syncBuffer
	done           chan cliResult
}

// startRun runs the CLI with args in a goroutine, bounded by timeout.
func startRun(t *testing.T, timeout time.Duration, args ...string) *bgRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	r := &bgRun{done: make(chan cliResult, 1)}
	go func() {
		defer cancel()
		err := run(ctx, args, strings.NewReader(""), &r.stdout, &r.stderr)
		r.done <- cliResult{code: exitCode(err, io.Discard), err: err, stdout: r.stdout.String(), stderr: r.stderr.String()}
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(time.Minute):
			t.Errorf("%v did not return within a minute of its cancel", args[0])
		}
		if t.Failed() {
			t.Logf("stderr of %v:\n%s", args[0], tail(r.stderr.String(), 6000))
		}
	})
	return r
}

// failIfEnded fails the test at once if the command has returned.
func (r *bgRun) failIfEnded(t *testing.T) {
	t.Helper()
	select {
	case res := <-r.done:
		r.done <- res
		t.Fatalf("the command ended early: exit %d (%s)\n%s", res.code, res.errText(), tail(res.stderr, 3000))
	default:
	}
}

// wait returns the command's result, failing the test if it takes longer
// than timeout.
func (r *bgRun) wait(t *testing.T, timeout time.Duration) cliResult {
	t.Helper()
	select {
	case res := <-r.done:
		r.done <- res // for the cleanup
		return res
	case <-time.After(timeout):
		t.Fatalf("command still running after %s; stderr:\n%s", timeout, tail(r.stderr.String(), 3000))
		return cliResult{}
	}
}

// TestChaosRedisRestartPersistent restarts a persistent Redis twice under a
// running `run --redis`: once as an operator would (SIGTERM) and once as a
// crash (SIGKILL; the append-only file is fsynced per write). The command
// rides out both outages and the batch finishes exactly: every row once in
// the report, the CRM in the state the file describes.
func TestChaosRedisRestartPersistent(t *testing.T) {
	t.Parallel()
	r := newChaosRedis(t, redistest.Options{AppendOnly: true})
	sim, api := startSim(t, simulator.Options{APIKey: "k-chaos", Latency: 15 * time.Millisecond})
	rows := chaosRows("p", 500)
	file := writeAssignments(t, t.TempDir(), "restart.csv", rows)
	out := t.TempDir()
	args := append([]string{"run", "--api-url", api, "--api-key", "k-chaos", "--concurrency", "8", "--out", out, "--id-format", "any"}, r.target.flags()...)
	args = append(append(args, fastFlags()...), file)
	run := startRun(t, 90*time.Second, args...)

	id := r.waitAnyBatch(t, 30*time.Second)
	for _, step := range []struct {
		at    float64 // percent done
		crash bool
	}{{20, false}, {55, true}} {
		b := r.waitBatch(t, id, 30*time.Second, fmt.Sprintf("more than %.0f%% done", step.at), func(b jobs.Batch) bool {
			run.failIfEnded(t)
			return b.Status == jobs.BatchRunning && b.Percent() > step.at
		})
		if b.Done() >= b.Rows {
			t.Fatalf("batch finished before the restart")
		}
		if step.crash {
			r.srv.Kill()
		} else {
			r.srv.Stop()
		}
		// Down for longer than the Redis client's own retries last.
		time.Sleep(3 * time.Second)
		r.srv.Restart(t)
		t.Logf("Redis restarted (crash %v) at %d/%d rows", step.crash, b.Done(), b.Rows)
	}

	// A restart can strand a task in asynq's active list (its result was
	// being written when Redis went) and leave its contact claimed (the
	// claim was written, the answer lost). The workers' sweep queues such
	// a contact again once its claim expires (30s) and the batch has
	// stalled (--stall 5s): before asynq's recoverer, which takes a task
	// back a minute or two after its lease ran out.
	r.waitBatch(t, id, 50*time.Second, "done", func(b jobs.Batch) bool { return b.Status == jobs.BatchDone })
	res := run.wait(t, 60*time.Second)
	if res.code != exitOK {
		t.Fatalf("run: exit %d (%s)\n%s", res.code, res.errText(), tail(res.stderr, 3000))
	}
	l := readLedger(t, reportDir(t, out))
	l.checkExact(t, len(rows))
	if s := l.summary; s.Status != jobs.BatchDone || s.Succeeded != int64(len(rows)) {
		t.Errorf("summary %+v: want done, all %d rows succeeded", s, len(rows))
	}
	checkState(t, sim.State(), wantState(rows))
}

// TestChaosRedisWipedUnderRun kills a Redis without persistence under a
// running `run --redis` and starts it again empty: the batch record, the
// ledger and the queue are gone. The command must not wait for ever: it
// exits 1 saying the batch was lost in Redis and how far it had got.
func TestChaosRedisWipedUnderRun(t *testing.T) {
	t.Parallel()
	r := newChaosRedis(t, redistest.Options{})
	_, api := startSim(t, simulator.Options{APIKey: "k-chaos", Latency: 15 * time.Millisecond})
	rows := chaosRows("w", 400)
	file := writeAssignments(t, t.TempDir(), "wiped.csv", rows)
	out := t.TempDir()
	args := append([]string{"run", "--api-url", api, "--api-key", "k-chaos", "--concurrency", "8", "--out", out, "--id-format", "any"}, r.target.flags()...)
	args = append(append(args, fastFlags()...), file)
	run := startRun(t, 90*time.Second, args...)

	id := r.waitAnyBatch(t, 30*time.Second)
	b := r.waitBatch(t, id, 30*time.Second, "more than 20% done",
		func(b jobs.Batch) bool { return b.Status == jobs.BatchRunning && b.Percent() > 20 })
	if b.Done() >= b.Rows {
		t.Fatalf("batch finished before Redis was killed")
	}
	r.srv.Kill()
	time.Sleep(time.Duration(1000+rand.IntN(1000)) * time.Millisecond) // down for a moment: the command sees errors, then an empty Redis
	r.srv.Restart(t)

	res := run.wait(t, 30*time.Second)
	msg := res.errText()
	t.Logf("run: exit %d: %s", res.code, msg)
	if res.code != exitFatal {
		t.Fatalf("run after Redis lost the batch: exit %d (%s), want %d\n%s", res.code, msg, exitFatal, tail(res.stderr, 3000))
	}
	for _, want := range []string{id, "lost", "Redis", "without persistence", fmt.Sprintf("of %d rows", len(rows))} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not say %q", msg, want)
		}
	}
}

// expireLeases moves the lease of every task in the namespace's active list
// into the past, as if a minute had gone by: asynq's recoverer, which runs
// when a worker starts and then every minute, hands tasks whose lease
// expired more than 30s ago back to the queue. Call it only while no worker
// runs, so every lease belongs to a dead worker.
func expireLeases(t *testing.T, rdb redis.UniversalClient, ns string) int {
	t.Helper()
	ctx := context.Background()
	key := "asynq:{" + ns + "}:lease"
	ids, err := rdb.ZRange(ctx, key, 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	past := float64(time.Now().Add(-time.Hour).Unix())
	for _, id := range ids {
		if err := rdb.ZAddXX(ctx, key, redis.Z{Score: past, Member: id}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	return len(ids)
}

// TestChaosWorkerKilledMidUpdate kills worker processes with SIGKILL at
// random moments of a batch whose calls take a few milliseconds, so the
// workers spend much of their time recording results: a kill lands between a call and its
// ledger update, or between the update and asynq's acknowledgement. Each
// time a new worker takes over the dead one's tasks. At the end every row
// is in the report exactly once, counted once, and the CRM is in the state
// the file describes.
//
// asynq reclaims a dead worker's tasks only a minute after their lease
// expired; the test moves the leases into the past instead of waiting
// (TestProcessWorkerKilled waits the real minute).
func TestChaosWorkerKilledMidUpdate(t *testing.T) {
	t.Parallel()
	d := newDist(t, simulator.Options{Latency: 5 * time.Millisecond, Transient: 0.1, TransientAttempts: 1})
	rows := chaosRows("k", 4000)
	id := d.importRows(t, "kill.csv", rows)
	args := d.workerArgs("--concurrency", "16", "--retry-base", "20ms", "--retry-max", "100ms")

	for kill := 1; kill <= 5; kill++ {
		w := startProc(t, d.key, args...)
		from := d.batch(t, id).Done()
		d.waitBatch(t, id, time.Minute, "the new worker records rows", func(b jobs.Batch) bool { return b.Done() > from+50 })
		time.Sleep(time.Duration(rand.IntN(150)) * time.Millisecond)
		w.kill(t)
		b := d.batch(t, id)
		if b.Done() >= b.Rows {
			t.Fatalf("the batch finished before kill %d", kill)
		}
		n := expireLeases(t, d.rdb, d.target.ns)
		t.Logf("kill %d at %d/%d rows: %d tasks were in flight", kill, b.Done(), b.Rows, n)
	}
	startProc(t, d.key, args...)

	r, dir := d.reportWaitFor(t, id, time.Minute)
	if r.code != exitOK {
		t.Fatalf("report --wait: exit %d (%s)\n%s", r.code, r.errText(), tail(r.stderr, 2000))
	}
	l := readLedger(t, dir)
	l.checkExact(t, len(rows))
	if s := l.summary; s.Status != jobs.BatchDone || s.Succeeded != int64(len(rows)) || s.Failed != 0 {
		t.Errorf("summary %+v: want done, all %d rows succeeded", s, len(rows))
	}
	checkState(t, d.sim.State(), wantState(rows))
	if archived, err := d.insp.ListArchivedTasks(d.target.ns); err != nil || len(archived) != 0 {
		t.Errorf("archived tasks: %d (%v), want none", len(archived), err)
	}
}
