package schedule

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkassign/bulkassign/importer"
	"github.com/bulkassign/bulkassign/internal/redistest"
	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/simulator"
	"github.com/bulkassign/bulkassign/worker"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

func TestLoad(t *testing.T) {
	t.Parallel()
	cfg, err := Load(strings.NewReader(`schedules:
  - name: nightly-rebalance
    cron: "0 2 * * *"
    timezone: America/Santiago
    contacts: data/contacts.csv
    rules: /etc/bulkassign/rules.yaml
  - {name: hourly, cron: "@every 1h", contacts: c.csv, rules: r.yaml}
`), "s.yaml", "/srv")
	if err != nil {
		t.Fatal(err)
	}
	e, ok := cfg.Entry("nightly-rebalance")
	if !ok {
		t.Fatal("no entry nightly-rebalance")
	}
	want := Entry{Name: "nightly-rebalance", Cron: "0 2 * * *", Timezone: "America/Santiago",
		Contacts: "/srv/data/contacts.csv", Rules: "/etc/bulkassign/rules.yaml", Line: 2}
	if e != want {
		t.Errorf("entry %+v, want %+v", e, want)
	}
	if got := e.Spec(); got != "CRON_TZ=America/Santiago 0 2 * * *" {
		t.Errorf("spec %q", got)
	}
	if got := cfg.Names(); len(got) != 2 || got[1] != "hourly" || cfg.Entries[1].Line != 7 {
		t.Errorf("names %v, line %d", got, cfg.Entries[1].Line)
	}
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	for spec, want := range map[string]time.Duration{"0 2 * * *": 24 * time.Hour, "@every 1s": time.Second, "*/5 * * * *": 5 * time.Minute} {
		if got := interval(spec, now); got != want {
			t.Errorf("interval(%q) = %s, want %s", spec, got, want)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ yaml, want string }{
		{"", "empty file"},
		{"schedules:\n  - {name: a, cron: '@daily', contacts: '-', rules: r}\n", `s.yaml: line 2: schedule 1 "a": contacts: a schedule reads files, not stdin`},
		{"schedules:\n  - {name: 'a b', cron: '@daily', contacts: c, rules: r}\n", `name "a b"`},
		{"schedules:\n  - {name: a, cron: 'every day', contacts: c, rules: r}\n", `cron "every day"`},
		{"schedules:\n  - {name: a, cron: '@daily', contacts: c, rules: r}\n---\nschedules: []\n", "more than one YAML document"},
		{"schedule:\n  - {name: a}\n", "line 1: field schedule not found"},
	} {
		_, err := Load(strings.NewReader(tc.yaml), "s.yaml", "/srv")
		var ce *ConfigError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Load(%q) = %v, want a *ConfigError saying %q", tc.yaml, err, tc.want)
		}
	}
}

// setup is a Redis namespace, a batch store, an importer and a Runner,
// with a schedule whose files plan two changes (c-1 is new, c-3 goes to
// the fallback; c-2 keeps its owner).
type setup struct {
	rdb    redis.UniversalClient
	store  *jobs.Store
	runner *Runner
	p      jobs.PlanPayload
	ns     string
	sim    *simulator.Simulator // the CRM: members m-a, m-b, m-f and m-x
	dir    string
}

func newSetup(t *testing.T) *setup {
	t.Helper()
	return newSetupOn(t, redistest.Single)
}

// newSetupOn is newSetup on a Redis of topology tp.
func newSetupOn(t *testing.T, tp redistest.Topology) *setup {
	t.Helper()
	red := redistest.Shared(t, tp)
	ns := red.Namespace(t)
	rdb := red.Client(t)
	client := asynq.NewClientFromRedisClient(rdb)
	store := jobs.NewStore(rdb, jobs.StoreOptions{Namespace: ns})
	dir := t.TempDir()
	write := func(name, data string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	p := jobs.PlanPayload{
		Name:     "rebalance",
		Contacts: write("contacts.csv", "aiContactId,region,currentAgent\nc-1,north,\nc-2,north,m-a\nc-3,south,m-x\n"),
		Rules:    write("rules.yaml", "rules:\n  - {name: north, match: {region: north}, pool: [{member: m-a}, {member: m-b}]}\nfallback: m-f\n"),
		IDFormat: jobs.IDAny, // the files' ids are of the older form
	}
	sim := simulator.New(simulator.Options{Members: []simulator.Member{
		{ID: "m-a", Email: "ana@example.com", Active: true}, {ID: "m-b", Email: "ben@example.com", Active: true},
		{ID: "m-f", Active: true}, {ID: "m-x", Active: true}, {ID: "m-gone", Active: false},
	}})
	api := httptest.NewServer(sim)
	t.Cleanup(api.Close)
	c, err := worker.NewClient(worker.ClientOptions{BaseURL: api.URL, APIKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	crm := &CRM{Client: c, Limiter: worker.NewLocalLimiter(0, 1)}
	r := NewRunner(rdb, store, importer.New(store, client, ns), crm, RunnerOptions{Namespace: ns})
	return &setup{rdb: rdb, store: store, runner: r, p: p, ns: ns, sim: sim, dir: dir}
}

func (s *setup) batchIDs(t *testing.T) []string {
	t.Helper()
	ids, err := s.store.IDs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

var tick0 = time.Date(2030, 1, 2, 2, 0, 0, 0, time.UTC)

// TestTickQueuesABatchAndHoldsTheSchedule runs on every topology: a tick
// is claimed by one script over two keys of the schedule.
func TestTickQueuesABatchAndHoldsTheSchedule(t *testing.T) {
	t.Parallel()
	for _, tp := range redistest.Topologies() {
		t.Run(string(tp), func(t *testing.T) {
			t.Parallel()
			s := newSetupOn(t, tp)
			ctx := context.Background()
			out, err := s.runner.Tick(ctx, s.p, tick0.Add(300*time.Millisecond), "task-1")
			if err != nil || out.BatchID == "" {
				t.Fatalf("Tick: %+v, %v", out, err)
			}
			b, err := s.store.Get(ctx, out.BatchID)
			if err != nil {
				t.Fatal(err)
			}
			if b.Name != "rebalance 2030-01-02T02:00:00Z" || b.Rows != 2 || b.Status != jobs.BatchRunning {
				t.Errorf("batch %q, %d rows, %s", b.Name, b.Rows, b.Status)
			}
			held, err := s.rdb.Get(ctx, s.runner.runningKey("rebalance")).Result()
			if want := fmt.Sprintf("%d task-1 %s", tick0.Unix(), out.BatchID); err != nil || held != want {
				t.Errorf("running key %q (%v), want %q", held, err, want)
			}
			// asynq retrying the same task gets the same batch, not a second one.
			again, err := s.runner.Tick(ctx, s.p, tick0, "task-1")
			if err != nil || again.BatchID != out.BatchID {
				t.Errorf("retry: %+v, %v; want batch %s", again, err, out.BatchID)
			}
			// An older tick arriving late is stale.
			old, err := s.runner.Tick(ctx, s.p, tick0.Add(-time.Hour), "task-0")
			if err != nil || old.BatchID != "" || !strings.Contains(old.Skipped, "later tick") {
				t.Errorf("stale tick: %+v, %v", old, err)
			}
			// The next tick waits while the batch runs, and goes once it is done.
			next, err := s.runner.Tick(ctx, s.p, tick0.Add(time.Hour), "task-2")
			if err != nil || next.BatchID != "" || !strings.Contains(next.Skipped, "still running") {
				t.Errorf("tick while the batch runs: %+v, %v", next, err)
			}
			if _, err := s.store.SetStatus(ctx, out.BatchID, jobs.BatchCancelled, "", ""); err != nil {
				t.Fatal(err)
			}
			next, err = s.runner.Tick(ctx, s.p, tick0.Add(2*time.Hour), "task-3")
			if err != nil || next.BatchID == "" {
				t.Errorf("tick after the batch finished: %+v, %v", next, err)
			}
			if ids := s.batchIDs(t); len(ids) != 2 {
				t.Errorf("%d batches, want 2", len(ids))
			}
		})
	}
}

func TestTickManyAtOnceMakeOneBatch(t *testing.T) {
	t.Parallel()
	s := newSetup(t)
	var wg sync.WaitGroup
	outs := make([]Outcome, 8)
	errs := make([]error, 8)
	for i := range outs {
		wg.Go(func() {
			outs[i], errs[i] = s.runner.Tick(context.Background(), s.p, tick0, fmt.Sprintf("task-%d", i))
		})
	}
	wg.Wait()
	queued := 0
	for i, o := range outs {
		if errs[i] != nil {
			t.Errorf("tick %d: %v", i, errs[i])
		}
		if o.BatchID != "" {
			queued++
		}
	}
	if ids := s.batchIDs(t); queued != 1 || len(ids) != 1 {
		t.Errorf("%d ticks queued a batch, %d batches; want 1 and 1", queued, len(ids))
	}
}

func TestTickBadFilesFreeTheSchedule(t *testing.T) {
	t.Parallel()
	s := newSetup(t)
	ctx := context.Background()
	bad := s.p
	bad.Rules = filepath.Join(t.TempDir(), "missing.yaml")
	_, err := s.runner.Tick(ctx, bad, tick0, "task-1")
	if !errors.Is(err, fs.ErrNotExist) || !permanent(err) || !strings.Contains(err.Error(), "missing.yaml") {
		t.Fatalf("Tick with a missing rules file: %v", err)
	}
	if n, _ := s.rdb.Exists(ctx, s.runner.runningKey("rebalance")).Result(); n != 0 {
		t.Error("a failed tick still holds the schedule")
	}
	out, err := s.runner.Tick(ctx, s.p, tick0.Add(time.Minute), "task-2")
	if err != nil || out.BatchID == "" {
		t.Errorf("next tick: %+v, %v", out, err)
	}
}

// TestTickPlansByThePayloadsIDRule: a tick reads its files and imports its
// plan by the id rule its task carries; the default is UUIDs, under which
// the setup's older ids make the files unusable.
func TestTickPlansByThePayloadsIDRule(t *testing.T) {
	t.Parallel()
	s := newSetup(t)
	ctx := context.Background()
	out, err := s.runner.Tick(ctx, s.p, tick0, "task-1")
	if err != nil || out.Summary.Rows != 2 || out.Summary.Valid != 2 {
		t.Fatalf("a tick under any: %+v, %v; want 2 valid rows", out.Summary, err)
	}
	uuid := s.p
	uuid.Name, uuid.IDFormat = "rebalance-uuid", ""
	_, err = s.runner.Tick(ctx, uuid, tick0, "task-2")
	if !permanent(err) || !strings.Contains(err.Error(), `member "m-a" is not a valid id: want a UUID`) {
		t.Fatalf("a tick under the default rule: %v, want a file error about the ids", err)
	}
	if n, _ := s.rdb.Exists(ctx, s.runner.runningKey(uuid.Name)).Result(); n != 0 {
		t.Error("a tick refused for its ids still holds the schedule")
	}
	if ids := s.batchIDs(t); len(ids) != 1 {
		t.Errorf("%d batches, want only the first tick's", len(ids))
	}
}

// TestSchedulerTaskCarriesTheIDRule: the scheduler's IDFormat travels in
// each tick's task to the worker that runs it.
func TestSchedulerTaskCarriesTheIDRule(t *testing.T) {
	t.Parallel()
	cfg, err := Load(strings.NewReader("schedules:\n  - {name: hourly, cron: \"@every 1h\", contacts: c.csv, rules: r.yaml}\n"), "s.yaml", "/srv")
	if err != nil {
		t.Fatal(err)
	}
	url := redistest.URL(t)
	aopt, err := asynq.ParseRedisURI(url)
	if err != nil {
		t.Fatal(err)
	}
	ropt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(ropt)
	t.Cleanup(func() { rdb.Close() })
	for _, ids := range []jobs.IDFormat{jobs.IDAny, jobs.IDUUID} {
		s, err := NewScheduler(aopt, rdb, cfg, SchedulerOptions{Namespace: redistest.Namespace(t, url), IDFormat: ids})
		if err != nil {
			t.Fatal(err)
		}
		task, _, err := s.Task(cfg.Entries[0])
		if err != nil {
			t.Fatal(err)
		}
		p, err := jobs.ParsePlanPayload(task.Payload())
		if err != nil || p.IDFormat != ids {
			t.Errorf("SchedulerOptions.IDFormat %q: the task's payload %+v (%v)", ids, p, err)
		}
	}
}

func TestTickNothingToChange(t *testing.T) {
	t.Parallel()
	s := newSetup(t)
	dir := t.TempDir()
	s.p.Contacts = filepath.Join(dir, "c.csv")
	if err := os.WriteFile(s.p.Contacts, []byte("aiContactId,region,currentAgent\nc-1,north,m-a\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := s.runner.Tick(context.Background(), s.p, tick0, "task-1")
	if err != nil || out.BatchID != "" || !strings.Contains(out.Skipped, "nothing to change") {
		t.Errorf("%+v, %v", out, err)
	}
	if n, _ := s.rdb.Exists(context.Background(), s.runner.runningKey("rebalance")).Result(); n != 0 {
		t.Error("a tick with nothing to do still holds the schedule")
	}
}
