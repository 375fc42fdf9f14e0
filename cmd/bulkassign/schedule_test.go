package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkassign/bulkassign/config"
	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/schedule"
	"github.com/bulkassign/bulkassign/simulator"
	"github.com/hibiken/asynq"
)

// scheduleSetup is a dist with a contacts file, a rules file and a
// schedule file naming them.
type scheduleSetup struct {
	*dist
	contacts, rules, config string
	// want is the CRM state one applied run leaves: each planned contact
	// owned by its planned member.
	want map[string][]string
}

func newScheduleSetup(t *testing.T, opts simulator.Options, contacts int, spec string) *scheduleSetup {
	t.Helper()
	if opts.Members == nil {
		opts.Members = simulator.GenerateMembers(7) // planRules' members
	}
	s := &scheduleSetup{dist: newDist(t, opts)}
	data, _ := planContacts(7, contacts)
	s.contacts = writePlanInput(t, s.dir, "contacts.csv", data)
	s.rules = writePlanInput(t, s.dir, "rules.yaml", []byte(planRules))
	s.config = writePlanInput(t, s.dir, "schedule.yaml", fmt.Appendf(nil,
		"schedules:\n  - name: rebalance\n    cron: %q\n    contacts: contacts.csv\n    rules: rules.yaml\n", spec))
	s.want = map[string][]string{}
	for _, a := range computePlan(t, s.contacts, s.rules).Assignments {
		s.want[a.Contact] = []string{a.Member}
	}
	return s
}

// startScheduler runs `bulkassign schedule` until the test ends or stop
// is called; stop returns what it logged.
func (s *scheduleSetup) startScheduler(t *testing.T) (stop func() string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	args := append([]string{"schedule", "--config", s.config, "--heartbeat", "1s"}, s.target.flags()...)
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, strings.NewReader(""), &out, &out) }()
	var once sync.Once
	stop = func() string {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("schedule: %v\n%s", err, out.String())
				}
			case <-time.After(30 * time.Second):
				t.Errorf("schedule did not stop within 30s\n%s", out.String())
			}
		})
		return out.String()
	}
	t.Cleanup(func() { stop() })
	return stop
}

// batches returns the namespace's batches, oldest first.
func (s *scheduleSetup) batches(t *testing.T) []jobs.Batch {
	t.Helper()
	ids, err := s.store.IDs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var bs []jobs.Batch
	for _, id := range ids {
		bs = append(bs, s.batch(t, id))
	}
	slices.SortFunc(bs, func(a, b jobs.Batch) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return bs
}

// waitBatches waits until there are at least n batches.
func (s *scheduleSetup) waitBatches(t *testing.T, n int, timeout time.Duration) []jobs.Batch {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if bs := s.batches(t); len(bs) >= n {
			return bs
		}
		if time.Now().After(deadline) {
			t.Fatalf("not %d batches within %s", n, timeout)
		}
		<-tick.C
	}
}

// once runs `schedule --once rebalance`.
func (s *scheduleSetup) once(t *testing.T) cliResult {
	t.Helper()
	return s.cli(t, "schedule", "--config", s.config, "--once", "rebalance", "--api-url", s.api, "--api-key", s.key)
}

// pausedTick runs a tick, which queues its batch, pauses that batch and
// returns its id.
func (s *scheduleSetup) pausedTick(t *testing.T) string {
	t.Helper()
	r := s.once(t)
	if r.code != exitOK {
		t.Fatalf("tick: exit %d: %s\n%s", r.code, r.errText(), r.stderr)
	}
	id := strings.TrimSpace(r.stdout)
	if r := s.cli(t, "pause", id); r.code != exitOK {
		t.Fatalf("pause: %s", r.errText())
	}
	return id
}

// nextSecond waits for the wall clock to enter a new second: ticks are
// whole seconds, and two --once runs in one second are one tick.
func nextSecond() {
	now := time.Now()
	time.Sleep(time.Until(now.Truncate(time.Second).Add(time.Second)))
}

func TestScheduleFiresAndWorkerAppliesTheBatch(t *testing.T) {
	t.Parallel()
	s := newScheduleSetup(t, simulator.Options{}, 300, "@every 1s")
	s.startWorker(t, fastFlags()[:4]...)
	stopSched := s.startScheduler(t)

	first := s.waitBatches(t, 1, 30*time.Second)[0]
	if !strings.HasPrefix(first.Name, "rebalance ") {
		t.Errorf("batch name %q, want rebalance <tick>", first.Name)
	}
	if _, err := time.Parse(time.RFC3339, strings.TrimPrefix(first.Name, "rebalance ")); err != nil {
		t.Errorf("batch name %q: the tick is not a time: %v", first.Name, err)
	}
	res, dir := s.reportWait(t, first.ID)
	if res.code != exitOK {
		t.Fatalf("report --wait %s: exit %d: %s\n%s", first.ID, res.code, res.errText(), res.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "summary.json")); err != nil {
		t.Errorf("report: %v", err)
	}
	b := s.batch(t, first.ID)
	if b.Rows != int64(len(s.want)) || b.Succeeded != b.Rows {
		t.Errorf("batch %s: %d rows, %d succeeded; want %d, all succeeded", b.ID, b.Rows, b.Succeeded, len(s.want))
	}
	log := stopSched()
	checkState(t, s.sim.State(), s.want)
	if !strings.Contains(log, "tick queued") {
		t.Errorf("scheduler log has no queued tick:\n%s", tail(log, 2000))
	}
}

// Two schedulers on one Redis, firing every second, while each run takes
// seconds: every batch has its own tick, and no run starts before the
// previous one finished.
func TestScheduleTwoSchedulersNeverOverlap(t *testing.T) {
	t.Parallel()
	s := newScheduleSetup(t, simulator.Options{Latency: 20 * time.Millisecond}, 300, "@every 1s")
	s.startWorker(t, append(fastFlags()[:4], "--concurrency", "4")...)
	stop1, stop2 := s.startScheduler(t), s.startScheduler(t)

	bs := s.waitBatches(t, 2, time.Minute)
	log1, log2 := stop1(), stop2()
	for _, b := range s.batches(t) {
		s.waitBatch(t, b.ID, time.Minute, "finished", func(b jobs.Batch) bool { return jobs.Finished(b.Status) })
	}
	bs = s.batches(t)
	names := map[string]bool{}
	for i, b := range bs {
		if names[b.Name] {
			t.Errorf("two batches for one tick: %q", b.Name)
		}
		names[b.Name] = true
		if i > 0 && b.CreatedAt.Before(bs[i-1].FinishedAt) {
			t.Errorf("batch %s (%s) started at %s, before the previous run %s finished at %s",
				b.ID, b.Name, b.CreatedAt.Format(time.StampMilli), bs[i-1].ID, bs[i-1].FinishedAt.Format(time.StampMilli))
		}
	}
	// Each scheduler fired every second; a run takes about 1.5s.
	ticks := strings.Count(log1, "tick queued") + strings.Count(log1, "tick skipped") +
		strings.Count(log2, "tick queued") + strings.Count(log2, "tick skipped")
	if ticks <= len(bs) {
		t.Errorf("%d ticks fired for %d batches: the test did not overlap anything", ticks, len(bs))
	}
	checkState(t, s.sim.State(), s.want)
}

// The same tick queued twice, as two schedulers do: asynq's uniqueness
// drops the second copy; a copy that gets through anyway (a scheduler
// whose clock is late, after the first run finished) makes no batch.
func TestScheduleSameTickTwiceMakesOneBatch(t *testing.T) {
	t.Parallel()
	s := newScheduleSetup(t, simulator.Options{}, 100, "0 2 * * *")
	sc, err := schedule.LoadFile(s.config)
	if err != nil {
		t.Fatal(err)
	}
	q, err := openQueue(context.Background(), s.settings(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer q.close()
	sch, err := schedule.NewScheduler(q.opt, q.rdb, sc, schedule.SchedulerOptions{Namespace: s.target.ns})
	if err != nil {
		t.Fatal(err)
	}
	task, opts, err := sch.Task(sc.Entries[0])
	if err != nil {
		t.Fatal(err)
	}
	tick := time.Date(2030, 1, 2, 2, 0, 0, 0, time.UTC)
	enqueue := func(opts ...asynq.Option) (*asynq.TaskInfo, error) {
		info, err := q.client.Enqueue(task, opts...)
		if err == nil {
			err = sch.RecordTick(context.Background(), info.ID, tick)
		}
		return info, err
	}
	if _, err := enqueue(opts...); err != nil {
		t.Fatal(err)
	}
	if _, err := enqueue(opts...); !errors.Is(err, asynq.ErrDuplicateTask) {
		t.Fatalf("second enqueue of the tick: %v, want asynq.ErrDuplicateTask", err)
	}
	stop := s.startWorker(t, fastFlags()[:4]...)
	first := s.waitBatches(t, 1, 30*time.Second)[0]
	s.waitBatch(t, first.ID, time.Minute, "done", func(b jobs.Batch) bool { return b.Status == jobs.BatchDone })

	// A copy the uniqueness lock no longer stops: same tick, another task.
	late, err := enqueue(asynq.Queue(s.target.ns))
	if err != nil {
		t.Fatal(err)
	}
	waitTaskGone(t, s.insp, s.target.ns, late.ID)
	log := stop()
	if bs := s.batches(t); len(bs) != 1 {
		t.Errorf("%d batches for one tick, want 1", len(bs))
	}
	if want := "rebalance 2030-01-02T02:00:00Z"; first.Name != want {
		t.Errorf("batch name %q, want %q", first.Name, want)
	}
	if !strings.Contains(log, "this tick ran already") {
		t.Errorf("worker log does not say the late copy was skipped:\n%s", tail(log, 2000))
	}
	checkState(t, s.sim.State(), s.want)
}

// settings are the setup's settings as the commands read them.
func (s *scheduleSetup) settings() config.Config {
	c := config.Default()
	c.Redis, c.Namespace = s.target.url, s.target.ns
	return c
}

// waitTaskGone waits until the task has been processed (asynq deletes a
// task that succeeded).
func waitTaskGone(t *testing.T, insp *asynq.Inspector, queue, id string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		info, err := insp.GetTaskInfo(queue, id)
		if errors.Is(err, asynq.ErrTaskNotFound) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s still %s after 30s (last error %q)", id, info.State, info.LastErr)
		}
		<-tick.C
	}
}

func TestScheduleOnceSkipsWhileThePreviousRunIsGoing(t *testing.T) {
	t.Parallel()
	s := newScheduleSetup(t, simulator.Options{}, 50, "0 2 * * *")
	// No worker: the first run's batch stays running.
	r := s.once(t)
	if r.code != exitOK {
		t.Fatalf("--once: exit %d: %s\n%s", r.code, r.errText(), r.stderr)
	}
	first := strings.TrimSpace(r.stdout)
	if b := s.batch(t, first); b.Status != jobs.BatchRunning || !strings.HasPrefix(b.Name, "rebalance ") {
		t.Fatalf("batch %s: %s %q, want running, rebalance <tick>", first, b.Status, b.Name)
	}
	nextSecond()
	r = s.once(t)
	if r.code != exitFatal || r.stdout != "" || !strings.Contains(r.errText(), "no batch queued: the previous run, batch "+first+", is still running") {
		t.Errorf("--once while %s runs: exit %d, stdout %q, stderr %s", first, r.code, r.stdout, r.stderr)
	}
	if bs := s.batches(t); len(bs) != 1 {
		t.Errorf("%d batches, want 1", len(bs))
	}

	// Finished (here: cancelled), it no longer holds the schedule.
	if r := s.cli(t, "cancel", first); r.code != exitOK {
		t.Fatalf("cancel: %s", r.errText())
	}
	nextSecond()
	r = s.once(t)
	if r.code != exitOK || strings.TrimSpace(r.stdout) == "" {
		t.Fatalf("--once after the previous run finished: exit %d, stdout %q: %s\n%s", r.code, r.stdout, r.errText(), r.stderr)
	}
	if bs := s.batches(t); len(bs) != 2 {
		t.Errorf("%d batches, want 2", len(bs))
	}
}

// TestScheduleOnceIDFormat: a tick plans and imports by the scheduler's
// --id-format: files with the older ids are refused by default, and queue a
// batch with --id-format any.
func TestScheduleOnceIDFormat(t *testing.T) {
	t.Parallel()
	s := newScheduleSetup(t, simulator.Options{Members: []simulator.Member{{ID: "m-ana", Active: true}}}, 10, "0 2 * * *")
	writePlanInput(t, s.dir, "contacts.csv", []byte("contact,region,owner\nc-1,north,m-old\nc-2,north,\n"))
	writePlanInput(t, s.dir, "rules.yaml", []byte("rules:\n  - {name: north, match: {region: north}, pool: [{member: m-ana}]}\n"))
	r := s.once(t)
	if r.code != exitFatal || !strings.Contains(r.errText(), `member "m-ana" is not a valid id: want a UUID`) {
		t.Errorf("--once on older ids: exit %d (%s), want 1 naming the id", r.code, r.errText())
	}
	nextSecond()
	r = s.cli(t, "schedule", "--config", s.config, "--once", "rebalance", "--id-format", "any", "--api-url", s.api, "--api-key", s.key)
	if r.code != exitOK {
		t.Fatalf("--once --id-format any: exit %d: %s\n%s", r.code, r.errText(), r.stderr)
	}
	if b := s.batch(t, strings.TrimSpace(r.stdout)); b.Rows != 2 || b.Invalid != 0 {
		t.Errorf("batch %+v, want 2 rows, none invalid", b)
	}
}

func TestScheduleBadConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"bad cron", "schedules:\n  - name: nightly\n    cron: \"0 25 * * *\"\n    contacts: c.csv\n    rules: r.yaml\n",
			[]string{"line 2", `schedule 1 "nightly"`, `cron "0 25 * * *"`}},
		{"unknown field", "schedules:\n  - name: a\n    cron: \"@daily\"\n    contacts: c.csv\n    rules: r.yaml\n  - name: b\n    cron: \"@daily\"\n    contact: c.csv\n",
			[]string{"line 8", "schedule 2", "field contact not found"}},
		{"missing files", "schedules:\n  - name: a\n    cron: \"@daily\"\n",
			[]string{`schedule 1 "a"`, "no contacts file", "no rules file"}},
		{"bad timezone", "schedules:\n  - {name: a, cron: \"@daily\", contacts: c, rules: r, timezone: Nowhere/Town}\n",
			[]string{`schedule 1 "a"`, `timezone "Nowhere/Town"`}},
		{"duplicate name", "schedules:\n  - {name: a, cron: \"@daily\", contacts: c, rules: r}\n  - {name: a, cron: \"@hourly\", contacts: c, rules: r}\n",
			[]string{"line 3", `schedule 2 "a"`, "used by the entry on line 2"}},
		{"no schedules", "schedules: []\n", []string{"no schedules"}},
		{"not yaml", "schedules: [\n", []string{"schedule file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml")
			if err := os.WriteFile(file, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			// No Redis is needed to find out: the file is checked first.
			r := runCLI(t, nil, "schedule", "--redis", "redis://127.0.0.1:1/9", "--config", file)
			if r.code != exitFatal {
				t.Fatalf("exit %d, want %d", r.code, exitFatal)
			}
			for _, w := range append(tc.want, file) {
				if !strings.Contains(r.errText(), w) {
					t.Errorf("error %q does not say %q", r.errText(), w)
				}
			}
		})
	}
	r := runCLI(t, nil, "schedule", "--config", filepath.Join(dir, "missing.yaml"))
	if r.code != exitFatal || !strings.Contains(r.errText(), "missing.yaml") {
		t.Errorf("missing file: exit %d: %s", r.code, r.errText())
	}
}

func TestScheduleOnceUnknownName(t *testing.T) {
	t.Parallel()
	cfg := writePlanInput(t, t.TempDir(), "s.yaml", []byte("schedules:\n  - {name: nightly, cron: \"@daily\", contacts: c, rules: r}\n"))
	r := runCLI(t, nil, "schedule", "--redis", "redis://127.0.0.1:1/9", "--config", cfg, "--once", "weekly")
	if r.code != exitFatal || !strings.Contains(r.errText(), `"weekly"`) || !strings.Contains(r.errText(), "nightly") {
		t.Errorf("exit %d: %s", r.code, r.errText())
	}
}

func TestExampleScheduleLoads(t *testing.T) {
	t.Parallel()
	sc, err := schedule.LoadFile("../../examples/schedule.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range sc.Entries {
		for _, f := range []string{e.Contacts, e.Rules} {
			if _, err := os.Stat(f); err != nil {
				t.Errorf("schedule %s: %v", e.Name, err)
			}
		}
	}
}
