package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulkassign/bulkassign/internal/jobstest"
	"github.com/bulkassign/bulkassign/internal/redistest"
	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/simulator"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// pair is one assign call the CRM received.
type pair struct{ contact, member string }

// env is a handler under test: real Redis, the simulator behind an HTTP
// server, the real client.
type env struct {
	ctx     context.Context
	ns      string
	rdb     *redis.Client
	conn    asynq.RedisConnOpt
	store   *jobs.Store
	sim     *simulator.Simulator
	handler *Handler
	client  *Client
	queue   *asynq.Client
	insp    *asynq.Inspector
	tasks   jobs.Tasks

	mu   sync.Mutex
	seen []pair
}

type envOptions struct {
	sim         simulator.Options
	apiKey      string
	maxAttempts int
	pausedRetry time.Duration
	timeout     time.Duration // of one call; default 10s
	claimTTL    time.Duration // default the store's
	retryAfter  time.Duration // MaxRetryAfter; default the handler's
	crm         http.Handler  // in front of the simulator, if set
	concurrency int           // contacts applied at once; default the handler's
}

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	url := redistest.URL(t)
	e := &env{ctx: t.Context(), ns: redistest.Namespace(t, url), sim: simulator.New(o.sim)}
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	e.rdb = redis.NewClient(opt)
	t.Cleanup(func() { _ = e.rdb.Close() })
	if e.conn, err = asynq.ParseRedisURI(url); err != nil {
		t.Fatal(err)
	}
	e.queue = asynq.NewClient(e.conn)
	t.Cleanup(func() { _ = e.queue.Close() })
	e.insp = asynq.NewInspector(e.conn)
	t.Cleanup(func() { _ = e.insp.Close() })
	e.store = jobs.NewStore(e.rdb, jobs.StoreOptions{Namespace: e.ns, ClaimTTL: o.claimTTL})
	e.tasks = jobs.Tasks{Store: e.store, Client: e.queue, Inspector: e.insp, Queue: e.ns}

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if parts := strings.Split(r.URL.Path, "/"); len(parts) == 7 && parts[5] == "assign-team-member" {
			e.mu.Lock()
			e.seen = append(e.seen, pair{parts[4], parts[6]})
			e.mu.Unlock()
		}
		if o.crm != nil {
			o.crm.ServeHTTP(w, r)
			return
		}
		e.sim.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	key := o.apiKey
	if key == "" {
		key = o.sim.APIKey
	}
	if o.timeout == 0 {
		o.timeout = 10 * time.Second
	}
	if e.client, err = NewClient(ClientOptions{BaseURL: srv.URL, APIKey: key, Timeout: o.timeout}); err != nil {
		t.Fatal(err)
	}
	e.handler = NewHandler(e.store, e.client, NewLocalLimiter(0, 1), HandlerOptions{
		MaxAttempts:   o.maxAttempts,
		PausedRetry:   o.pausedRetry,
		MaxRetryAfter: o.retryAfter,
		WatchEvery:    50 * time.Millisecond,
		Concurrency:   o.concurrency,
		Tasks:         &e.tasks,
		RetryBase:     10 * time.Millisecond,
		RetryMax:      50 * time.Millisecond,
		Logger:        slog.New(slog.DiscardHandler),
	})
	return e
}

// sweep runs a sweeper of the test's namespace until the test ends.
func (e *env) sweep(t *testing.T, stall time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	s := NewSweeper(e.rdb, e.ns, e.tasks, SweeperOptions{Every: 100 * time.Millisecond, Stall: stall, Logger: slog.New(slog.DiscardHandler)})
	go func() {
		defer close(done)
		s.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// run starts an asynq server on the test's queue until the test ends.
func (e *env) run(t *testing.T) {
	t.Helper()
	srv, mux := NewServer(e.conn, e.handler, ServerOptions{
		Queue:           e.ns,
		Concurrency:     8,
		RetryBase:       10 * time.Millisecond,
		RetryMax:        50 * time.Millisecond,
		PollInterval:    50 * time.Millisecond,
		ShutdownTimeout: 5 * time.Second,
		Logger:          slog.New(slog.DiscardHandler),
	})
	if err := srv.Start(mux); err != nil {
		t.Fatalf("start asynq server: %v", err)
	}
	t.Cleanup(srv.Shutdown)
}

func (e *env) sent() []pair {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.seen)
}

// row is a valid input row: line, contact, member, replace.
func row(line int, contact, member string, replace bool) jobs.Row {
	return jobs.Row{Line: line, ContactID: contact, MemberID: member, Replace: replace}
}

// oneEach returns n rows from line 2 on, one contact each, all to member.
func oneEach(n int, member string) []jobs.Row {
	rows := make([]jobs.Row, n)
	for i := range rows {
		rows[i] = row(i+2, fmt.Sprintf("c%03d", i), member, false)
	}
	return rows
}

// load writes a running batch of rows, one op per row, and returns its
// tasks' payloads, not queued.
func (e *env) load(t *testing.T, id string, rows []jobs.Row) []jobs.AssignPayload {
	t.Helper()
	return e.loadPlan(t, id, rows, jobstest.Plan(rows))
}

// loadPlan writes a running batch of rows with the given plan.
func (e *env) loadPlan(t *testing.T, id string, rows []jobs.Row, cs []jobs.Contact) []jobs.AssignPayload {
	t.Helper()
	if err := e.store.Create(e.ctx, id, id, "test"); err != nil {
		t.Fatal(err)
	}
	if err := e.store.AddRows(e.ctx, id, rows); err != nil {
		t.Fatal(err)
	}
	if err := e.store.AddContacts(e.ctx, id, cs); err != nil {
		t.Fatal(err)
	}
	if err := e.store.Start(e.ctx, id, len(rows), len(cs), nil); err != nil {
		t.Fatal(err)
	}
	ps := make([]jobs.AssignPayload, len(cs))
	for i, c := range cs {
		ps[i] = jobs.AssignPayload{Batch: id, Contact: c.ID}
	}
	return ps
}

func (e *env) task(t *testing.T, p jobs.AssignPayload) *asynq.Task {
	t.Helper()
	task, err := jobs.NewAssignTask(p, asynq.Queue(e.ns), asynq.MaxRetry(1000000))
	if err != nil {
		t.Fatal(err)
	}
	return task
}

func (e *env) enqueue(t *testing.T, ps []jobs.AssignPayload) {
	t.Helper()
	for _, p := range ps {
		if _, err := e.queue.EnqueueContext(e.ctx, e.task(t, p)); err != nil {
			t.Fatalf("enqueue %s: %v", p.Contact, err)
		}
	}
}

func (e *env) batch(t *testing.T, id string) jobs.Batch {
	t.Helper()
	b, err := e.store.Get(e.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (e *env) waitDone(t *testing.T, id string) jobs.Batch {
	t.Helper()
	var b jobs.Batch
	eventually(t, 90*time.Second, "batch "+id+" done", func() bool {
		b = e.batch(t, id)
		return b.Status == jobs.BatchDone
	})
	return b
}

// results returns the ledger by line.
func (e *env) results(t *testing.T, id string) map[int]jobs.Result {
	t.Helper()
	out := map[int]jobs.Result{}
	for en, err := range e.store.Entries(e.ctx, id) {
		if err != nil {
			t.Fatal(err)
		}
		out[en.Row.Line] = en.Result
	}
	return out
}

func (e *env) queueInfo(t *testing.T) *asynq.QueueInfo {
	t.Helper()
	qi, err := e.insp.GetQueueInfo(e.ns)
	if err != nil {
		t.Fatalf("queue info: %v", err)
	}
	return qi
}

func (e *env) archived(t *testing.T) []*asynq.TaskInfo {
	t.Helper()
	ts, err := e.insp.ListArchivedTasks(e.ns, asynq.PageSize(1000))
	if err != nil {
		t.Fatalf("list archived: %v", err)
	}
	return ts
}

// checkCalls asserts that the batch counted every request the CRM got.
func (e *env) checkCalls(t *testing.T, b jobs.Batch) {
	t.Helper()
	if got := e.sim.Stats().Requests; b.APICalls != got {
		t.Errorf("batch counted %d API calls, the CRM got %d", b.APICalls, got)
	}
}

// faulty reports which rows' pairs a simulator with opts fails on the first
// call, asking a twin simulator (faults are a deterministic function of
// the pair and the options).
func faulty(opts simulator.Options, rows []jobs.Row) map[int]bool {
	twin := simulator.New(opts)
	out := map[int]bool{}
	for _, r := range rows {
		req := httptest.NewRequest(http.MethodPost, "/api/public/contact/"+r.ContactID+"/assign-team-member/"+r.MemberID, nil)
		rec := httptest.NewRecorder()
		twin.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			out[r.Line] = true
		}
	}
	return out
}

func TestHandlerAppliesContactRowsInOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	rows := []jobs.Row{
		row(2, "alice", "a", false),
		row(3, "bob", "x", false),
		row(4, "alice", "b", true),
		row(5, "alice", "c", false),
		row(6, "bob", "y", false),
		row(7, "bob", "x", true),
		row(8, "bob", "z", false),
	}
	rows = append(rows, oneEach(30, "m1")...)
	for i := 7; i < len(rows); i++ {
		rows[i].Line = i + 2
	}
	e.enqueue(t, e.load(t, "b", rows))
	e.run(t)
	b := e.waitDone(t, "b")

	if got := e.sim.Agents("alice"); !slices.Equal(got, []string{"b", "c"}) {
		t.Errorf("alice's agents = %v, want [b c]", got)
	}
	if got := e.sim.Agents("bob"); !slices.Equal(got, []string{"x", "z"}) {
		t.Errorf("bob's agents = %v, want [x z]", got)
	}
	if b.Succeeded != int64(len(rows)) || b.Failed != 0 || b.Retries != 0 || b.RateLimited != 0 {
		t.Errorf("batch = %+v", b)
	}
	e.checkCalls(t, b)
	for line, r := range e.results(t, "b") {
		if r.Status != jobs.StatusSucceeded || r.HTTPStatus != 200 || r.Attempts != 1 {
			t.Errorf("line %d: %+v", line, r)
		}
	}
}

func TestHandlerRetriesTransientFaults(t *testing.T) {
	t.Parallel()
	simOpts := simulator.Options{Transient: 0.3, TransientAttempts: 2}
	e := newEnv(t, envOptions{sim: simOpts, maxAttempts: 5})
	rows := oneEach(40, "m1")
	// A contact with several rows, some faulty, still ends in file order.
	rows = append(rows, row(50, "multi", "p1", false), row(51, "multi", "p2", true), row(52, "multi", "p3", false),
		row(53, "multi", "p4", false), row(54, "multi", "p5", false))
	faults := faulty(simOpts, rows)
	if len(faults) == 0 || len(faults) == len(rows) {
		t.Fatalf("%d of %d rows faulty: the test needs both kinds", len(faults), len(rows))
	}
	e.enqueue(t, e.load(t, "b", rows))
	e.run(t)
	b := e.waitDone(t, "b")

	if b.Succeeded != int64(len(rows)) || b.Failed != 0 {
		t.Errorf("succeeded %d failed %d, want %d and 0", b.Succeeded, b.Failed, len(rows))
	}
	if want := int64(2 * len(faults)); b.Retries != want {
		t.Errorf("retries = %d, want %d", b.Retries, want)
	}
	e.checkCalls(t, b)
	for line, r := range e.results(t, "b") {
		want := 1
		if faults[line] {
			want = 3
		}
		if r.Status != jobs.StatusSucceeded || r.Attempts != want {
			t.Errorf("line %d (faulty %v): %+v, want succeeded after %d attempts", line, faults[line], r, want)
		}
	}
	if got := e.sim.Agents("multi"); !slices.Equal(got, []string{"p2", "p3", "p4", "p5"}) {
		t.Errorf("multi's agents = %v", got)
	}
	if a := e.archived(t); len(a) != 0 {
		t.Errorf("%d tasks archived", len(a))
	}
}

func TestHandlerRetriesTimeouts(t *testing.T) {
	t.Parallel()
	// Every pair's first call hangs longer than the request timeout.
	e := newEnv(t, envOptions{sim: simulator.Options{Hang: 1, HangFor: time.Minute}, timeout: 200 * time.Millisecond, maxAttempts: 3})
	rows := oneEach(5, "m1")
	e.enqueue(t, e.load(t, "b", rows))
	e.run(t)
	b := e.waitDone(t, "b")
	if b.Succeeded != int64(len(rows)) || b.Retries != int64(len(rows)) {
		t.Errorf("succeeded %d retries %d, want %d each", b.Succeeded, b.Retries, len(rows))
	}
	e.checkCalls(t, b)
	for line, r := range e.results(t, "b") {
		if r.Status != jobs.StatusSucceeded || r.Attempts != 2 {
			t.Errorf("line %d: %+v, want succeeded on the second attempt", line, r)
		}
	}
}

func TestHandlerDeadLettersAndBlocksLaterRows(t *testing.T) {
	t.Parallel()
	simOpts := simulator.Options{Transient: 1, TransientAttempts: 3}
	e := newEnv(t, envOptions{sim: simOpts, maxAttempts: 2})
	rows := []jobs.Row{
		row(2, "d1", "m1", false),
		row(3, "d1", "m2", true),
		row(4, "d2", "m1", false),
		row(5, "d1", "m3", false),
	}
	e.enqueue(t, e.load(t, "b", rows))
	e.run(t)
	b := e.waitDone(t, "b")

	if b.Failed != 4 || b.Succeeded != 0 {
		t.Errorf("failed %d succeeded %d, want 4 and 0", b.Failed, b.Succeeded)
	}
	if b.Errors["blocked"] != 2 || b.Retries != 2 {
		t.Errorf("errors %v retries %d", b.Errors, b.Retries)
	}
	e.checkCalls(t, b)
	res := e.results(t, "b")
	for _, line := range []int{2, 4} {
		r := res[line]
		if r.Status != jobs.StatusFailed || r.Attempts != 2 || r.HTTPStatus < 500 || r.Reason != fmt.Sprint("http_", r.HTTPStatus) ||
			!strings.Contains(r.Error, "gave up after 2 attempts") {
			t.Errorf("line %d: %+v, want failed after 2 attempts with a 5xx", line, r)
		}
	}
	for _, line := range []int{3, 5} {
		r := res[line]
		if r.Status != jobs.StatusFailed || r.Reason != "blocked" || r.Attempts != 0 || !strings.Contains(r.Error, "line 2") {
			t.Errorf("line %d: %+v, want failed as blocked by line 2", line, r)
		}
	}
	for _, p := range e.sent() {
		if p.contact == "d1" && p.member != "m1" {
			t.Errorf("blocked row sent: %+v", p)
		}
	}
	if got := e.sim.Agents("d1"); got != nil {
		t.Errorf("d1's agents = %v", got)
	}
	var ids []string
	eventually(t, 30*time.Second, "both tasks archived", func() bool {
		ids = ids[:0]
		for _, ti := range e.archived(t) {
			ids = append(ids, ti.ID)
		}
		return len(ids) == 2
	})
	slices.Sort(ids)
	if want := []string{jobs.TaskID("b", "d1"), jobs.TaskID("b", "d2")}; !slices.Equal(ids, want) {
		t.Errorf("archived %v, want %v", ids, want)
	}
}

func TestHandlerPermanentFailures(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{sim: simulator.Options{Members: []simulator.Member{
		{ID: "m1", Active: true},
		{ID: "m2", Active: false},
		{ID: "m3", Active: true},
	}}})
	rows := []jobs.Row{
		row(2, "p1", "m1", false),
		row(3, "p1", "ghost", true),   // unknown member: 404
		row(4, "p1", "m3", false),     // blocked: the replace before it failed
		row(5, "p2", "m2", false),     // inactive member: 404
		row(6, "p2", "m1", true),      // blocked
		row(7, "bad.id", "m1", false), // malformed for the CRM: 400
		row(8, "p3", "m1", false),
	}
	e.enqueue(t, e.load(t, "b", rows))
	e.run(t)
	b := e.waitDone(t, "b")

	if b.Failed != 5 || b.Succeeded != 2 || b.Retries != 0 {
		t.Errorf("batch = %+v", b)
	}
	if b.Errors["http_404"] != 2 || b.Errors["http_400"] != 1 || b.Errors["blocked"] != 2 {
		t.Errorf("errors = %v", b.Errors)
	}
	e.checkCalls(t, b)
	res := e.results(t, "b")
	for line, status := range map[int]int{3: 404, 5: 404, 7: 400} {
		r := res[line]
		if r.Status != jobs.StatusFailed || r.HTTPStatus != status || r.Attempts != 1 || r.Error == "" {
			t.Errorf("line %d: %+v, want failed with HTTP %d after 1 attempt", line, r, status)
		}
	}
	for line, by := range map[int]string{4: "line 3", 6: "line 5"} {
		if r := res[line]; r.Reason != jobs.ReasonBlocked || !strings.Contains(r.Error, by) {
			t.Errorf("line %d: %+v, want blocked by %s", line, r, by)
		}
	}
	// A refused row stops its contact: what follows it is never sent, so
	// failed.csv, fixed and fed back, gives the state the file describes.
	for c, want := range map[string][]string{"p1": {"m1"}, "p2": nil, "p3": {"m1"}} {
		if got := e.sim.Agents(c); !slices.Equal(got, want) {
			t.Errorf("%s's agents = %v, want %v", c, got, want)
		}
	}
	if n := e.sim.Stats().Requests; n != 5 {
		t.Errorf("the CRM got %d calls, want 5 (no retry of a 4xx, no blocked row sent)", n)
	}
	if a := e.archived(t); len(a) != 0 {
		t.Errorf("%d tasks archived for permanent failures", len(a))
	}
}

func TestHandlerUnauthorizedPausesBatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{sim: simulator.Options{APIKey: "the-right-key"}, apiKey: secretKey})
	rows := oneEach(50, "m1")
	e.enqueue(t, e.load(t, "b", rows))
	e.run(t)
	// Every task parks its contact and ends: nothing churns while paused.
	eventually(t, 60*time.Second, "every contact parked", func() bool {
		qi := e.queueInfo(t)
		return qi.Size == 0 && qi.Active == 0 && e.rdb.SCard(e.ctx, e.ns+":batch:{b}:parked").Val() == int64(len(rows))
	})
	b := e.batch(t, "b")
	if b.Status != jobs.BatchPaused || b.PauseCode != jobs.PauseUnauthorized || b.PauseReason == "" {
		t.Errorf("batch status %q code %q reason %q, want paused for the key", b.Status, b.PauseCode, b.PauseReason)
	}
	if n := e.sim.Stats().Requests; n > 2 || n < 1 {
		t.Errorf("the CRM got %d calls with a wrong key, want 1 or 2", n)
	}
	if b.Done() != 0 {
		t.Errorf("rows counted with a wrong key: succeeded %d failed %d", b.Succeeded, b.Failed)
	}
	e.checkCalls(t, b)
	qi := e.queueInfo(t)
	if qi.Archived != 0 || qi.Failed != 0 {
		t.Errorf("archived %d failed %d, want none", qi.Archived, qi.Failed)
	}
	// The key is nowhere in Redis: not in the batch, not in asynq's task
	// records and their error messages.
	for _, pattern := range []string{e.ns + "*", "asynq:{" + e.ns + "}*"} {
		keys, err := e.rdb.Keys(e.ctx, pattern).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if v := dumpKey(t, e.rdb, k); strings.Contains(v, secretKey) {
				t.Errorf("key %s holds the API key", k)
			}
		}
	}
}

// TestHandlerResumeAfterRefusedKey: a process whose key was refused (serve
// with in-process workers lives on) calls the CRM again once the batch is
// resumed, and a new batch tries the key too: one call each while it is
// still refused, all rows once it is accepted.
func TestHandlerResumeAfterRefusedKey(t *testing.T) {
	t.Parallel()
	var accept atomic.Bool
	var e *env
	e = newEnv(t, envOptions{crm: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !accept.Load() {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		e.sim.ServeHTTP(w, r)
	})})
	rows := oneEach(20, "m1")
	e.enqueue(t, e.load(t, "b", rows))
	e.run(t)
	calls := func() int {
		e.mu.Lock()
		defer e.mu.Unlock()
		return len(e.seen)
	}
	eventually(t, 30*time.Second, "batch paused for the key", func() bool {
		return e.batch(t, "b").PauseCode == jobs.PauseUnauthorized && e.queueInfo(t).Size == 0
	})
	// A new batch while the key is still refused: one call, paused too.
	e.enqueue(t, e.load(t, "b2", oneEach(5, "m2")))
	eventually(t, 30*time.Second, "second batch paused for the key", func() bool {
		return e.batch(t, "b2").PauseCode == jobs.PauseUnauthorized && e.queueInfo(t).Size == 0
	})
	if n := calls(); n > 4 {
		t.Errorf("%d calls with a refused key for two batches, want 1 or 2 each", n)
	}
	// The key is fixed (in the CRM); the operator resumes both.
	accept.Store(true)
	for _, id := range []string{"b", "b2"} {
		if _, err := e.tasks.Resume(e.ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	for id, n := range map[string]int64{"b": 20, "b2": 5} {
		if b := e.waitDone(t, id); b.Succeeded != n {
			t.Errorf("batch %s after resume: %+v", id, b)
		}
	}
}

// dumpKey returns the contents of a Redis key as text.
func dumpKey(t *testing.T, rdb *redis.Client, key string) string {
	t.Helper()
	ctx := t.Context()
	typ, err := rdb.Type(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	var v any
	switch typ {
	case "string":
		v, err = rdb.Get(ctx, key).Result()
	case "hash":
		v, err = rdb.HGetAll(ctx, key).Result()
	case "list":
		v, err = rdb.LRange(ctx, key, 0, -1).Result()
	case "set":
		v, err = rdb.SMembers(ctx, key).Result()
	case "zset":
		v, err = rdb.ZRange(ctx, key, 0, -1).Result()
	case "none":
		return ""
	default:
		t.Fatalf("key %s of type %s", key, typ)
	}
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(v)
}

func TestHandlerRateLimited(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{sim: simulator.Options{Rate: 50, Burst: 10}, maxAttempts: 1})
	rows := oneEach(40, "m1")
	e.enqueue(t, e.load(t, "b", rows))
	e.run(t)
	b := e.waitDone(t, "b")

	if b.Succeeded != int64(len(rows)) || b.Failed != 0 {
		t.Errorf("succeeded %d failed %d, want all %d succeeded", b.Succeeded, b.Failed, len(rows))
	}
	got429 := e.sim.Stats().ByStatus[http.StatusTooManyRequests]
	if got429 == 0 {
		t.Fatal("the CRM never answered 429: the test does not test rate limiting")
	}
	if b.RateLimited != got429 {
		t.Errorf("rateLimited = %d, the CRM answered 429 %d times", b.RateLimited, got429)
	}
	if b.Retries != 0 {
		t.Errorf("retries = %d: a 429 is not a retry", b.Retries)
	}
	e.checkCalls(t, b)
	for line, r := range e.results(t, "b") {
		if r.Status != jobs.StatusSucceeded || r.Attempts != 1 {
			t.Errorf("line %d: %+v", line, r)
		}
	}
	if a := e.archived(t); len(a) != 0 {
		t.Errorf("%d tasks archived", len(a))
	}
}

func TestHandlerDuplicateDelivery(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	rows := []jobs.Row{row(2, "dup", "m1", false), row(3, "dup", "m1", false), row(4, "dup", "m2", true), row(5, "other", "m1", false)}
	// Lines 2 and 3 are exact duplicates travelling as one call.
	ps := e.loadPlan(t, "b", rows, []jobs.Contact{
		{ID: "dup", Ops: []jobs.Op{{MemberID: "m1", Lines: []int{2, 3}}, {MemberID: "m2", Replace: true, Lines: []int{4}}}},
		{ID: "other", Ops: []jobs.Op{{MemberID: "m1", Lines: []int{5}}}},
	})
	task := e.task(t, ps[0])
	for i := range 3 {
		if err := e.handler.ProcessTask(e.ctx, task); err != nil {
			t.Fatalf("delivery %d: %v", i+1, err)
		}
		b := e.batch(t, "b")
		if b.Succeeded != 3 || b.APICalls != 2 || b.Status != jobs.BatchRunning {
			t.Fatalf("after delivery %d: %+v", i+1, b)
		}
		if n := e.sim.Stats().Requests; n != 2 {
			t.Fatalf("after delivery %d the CRM got %d calls, want 2", i+1, n)
		}
	}
	other := e.task(t, ps[1])
	for range 2 {
		if err := e.handler.ProcessTask(e.ctx, other); err != nil {
			t.Fatal(err)
		}
	}
	b := e.batch(t, "b")
	if b.Status != jobs.BatchDone || b.Succeeded != 4 || b.APICalls != 3 {
		t.Errorf("batch = %+v", b)
	}
	e.checkCalls(t, b)
	if got := e.sim.Agents("dup"); !slices.Equal(got, []string{"m2"}) {
		t.Errorf("dup's agents = %v", got)
	}
}

func TestHandlerBatchStates(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{pausedRetry: 3 * time.Second})
	p := jobs.AssignPayload{Batch: "b", Contact: "c1"}
	task := e.task(t, p)

	// No batch: the task is dropped.
	if err := e.handler.ProcessTask(e.ctx, task); err != nil {
		t.Errorf("task of an unknown batch: %v", err)
	}
	// Importing: deferred without using up an attempt.
	if err := e.store.Create(e.ctx, "b", "", ""); err != nil {
		t.Fatal(err)
	}
	rows := []jobs.Row{row(2, "c1", "m1", false)}
	if err := e.store.AddRows(e.ctx, "b", rows); err != nil {
		t.Fatal(err)
	}
	if err := e.store.AddContacts(e.ctx, "b", jobstest.Plan(rows)); err != nil {
		t.Fatal(err)
	}
	err := e.handler.ProcessTask(e.ctx, task)
	var de *DeferError
	if !errors.As(err, &de) || de.RetryIn != 3*time.Second || IsFailure(err) {
		t.Errorf("task of an importing batch: %v, want a deferral of 3s", err)
	}
	if err := e.store.Start(e.ctx, "b", 1, 1, nil); err != nil {
		t.Fatal(err)
	}
	// Paused: the contact is parked, the task ends.
	if _, err := e.store.SetStatus(e.ctx, "b", jobs.BatchPaused, "manual", "operator"); err != nil {
		t.Fatal(err)
	}
	if err := e.handler.ProcessTask(e.ctx, task); err != nil {
		t.Errorf("task of a paused batch: %v, want it parked", err)
	}
	if got := e.rdb.SMembers(e.ctx, e.ns+":batch:{b}:parked").Val(); !slices.Equal(got, []string{"c1"}) {
		t.Errorf("parked = %v, want [c1]", got)
	}
	if n := e.sim.Stats().Requests; n != 0 {
		t.Errorf("the CRM got %d calls before the batch ran", n)
	}
	// A bad payload is not retried.
	bad := asynq.NewTask(jobs.TypeAssign, []byte("{not json"))
	if err := e.handler.ProcessTask(e.ctx, bad); !errors.Is(err, asynq.SkipRetry) {
		t.Errorf("bad payload: %v, want SkipRetry", err)
	}
	// Deleted while queued: dropped, and the batch stays gone.
	if err := e.store.Delete(e.ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if err := e.handler.ProcessTask(e.ctx, task); err != nil {
		t.Errorf("task of a deleted batch: %v", err)
	}
	if _, err := e.store.Get(e.ctx, "b"); !errors.Is(err, jobs.ErrNotFound) {
		t.Errorf("deleted batch: Get = %v, want ErrNotFound", err)
	}
}

// TestHandlerPausedBatchWaitsForResume: a paused batch's tasks park their
// contacts as they come up and end, so the pause costs Redis nothing while
// it holds; resume queues them again from the ledger.
func TestHandlerPausedBatchWaitsForResume(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	rows := oneEach(200, "m1")
	ps := e.load(t, "b", rows)
	if _, err := e.store.SetStatus(e.ctx, "b", jobs.BatchPaused, "manual", "held by the operator"); err != nil {
		t.Fatal(err)
	}
	e.enqueue(t, ps)
	e.run(t)
	eventually(t, 60*time.Second, "every contact parked", func() bool {
		qi := e.queueInfo(t)
		return qi.Size == 0 && qi.Active == 0 && e.rdb.SCard(e.ctx, e.ns+":batch:{b}:parked").Val() == int64(len(rows))
	})
	qi := e.queueInfo(t)
	if qi.Failed != 0 || qi.Archived != 0 || qi.Retry != 0 || qi.Scheduled != 0 {
		t.Errorf("paused batch: queue %+v, want nothing held in asynq", qi)
	}
	if n := e.sim.Stats().Requests; n != 0 {
		t.Errorf("the CRM got %d calls for a paused batch", n)
	}
	if b := e.batch(t, "b"); b.Done() != 0 || b.Status != jobs.BatchPaused {
		t.Errorf("paused batch: %+v", b)
	}
	if changed, err := e.tasks.Resume(e.ctx, "b"); err != nil || !changed {
		t.Fatalf("Resume = %v, %v", changed, err)
	}
	b := e.waitDone(t, "b")
	if b.Succeeded != int64(len(rows)) {
		t.Errorf("succeeded %d, want %d", b.Succeeded, len(rows))
	}
	e.checkCalls(t, b)
	if a := e.archived(t); len(a) != 0 {
		t.Errorf("%d tasks archived", len(a))
	}
}

func TestRetryPolicy(t *testing.T) {
	t.Parallel()
	delay := RetryDelay(time.Second, 8*time.Second)
	task := asynq.NewTask(jobs.TypeAssign, nil)
	tests := []struct {
		name     string
		err      error
		min, max time.Duration
		failure  bool
	}{
		{"deferral", &DeferError{RetryIn: 42 * time.Second}, 42 * time.Second, 42 * time.Second, false},
		{"wrapped deferral", fmt.Errorf("x: %w", &DeferError{RetryIn: time.Second}), time.Second, time.Second, false},
		{"attempt 1", &TransientError{Attempt: 1, Err: errors.New("503")}, 500 * time.Millisecond, time.Second, true},
		{"attempt 3", &TransientError{Attempt: 3, Err: errors.New("503")}, 2 * time.Second, 4 * time.Second, true},
		{"attempt 20 capped", &TransientError{Attempt: 20, Err: errors.New("503")}, 4 * time.Second, 8 * time.Second, true},
		{"retry after wins", &TransientError{Attempt: 1, RetryAfter: 30 * time.Second, Err: errors.New("503")}, 30 * time.Second, 31 * time.Second, true},
		{"other error", errors.New("redis down"), 500 * time.Millisecond, time.Second, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := IsFailure(tt.err); got != tt.failure {
				t.Errorf("IsFailure = %v, want %v", got, tt.failure)
			}
			for range 100 {
				if d := delay(0, tt.err, task); d < tt.min || d > tt.max {
					t.Fatalf("delay = %v, want in [%v, %v]", d, tt.min, tt.max)
				}
			}
		})
	}
}

// TestHandlerLongRetryAfterWaitsInTheQueue: a Retry-After of a day (or
// one that overflows) holds no worker slot: the task goes back to the
// queue for the capped wait, without using up an attempt.
func TestHandlerLongRetryAfterWaitsInTheQueue(t *testing.T) {
	t.Parallel()
	for _, header := range []string{"86400", "99999999999", "9223372037"} {
		t.Run(header, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{retryAfter: 90 * time.Second, crm: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Retry-After", header)
				w.WriteHeader(http.StatusTooManyRequests)
			})})
			ps := e.load(t, "b", oneEach(1, "m1"))
			start := time.Now()
			err := e.handler.ProcessTask(e.ctx, e.task(t, ps[0]))
			var de *DeferError
			if !errors.As(err, &de) || de.RetryIn != 90*time.Second || IsFailure(err) {
				t.Fatalf("ProcessTask = %v, want a deferral of the 90s cap", err)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("the task held its slot for %v", took)
			}
			b := e.batch(t, "b")
			if b.Done() != 0 || b.RateLimited != 1 || b.APICalls != 1 {
				t.Errorf("batch = %+v, want the row pending, 1 call rate-limited", b)
			}
			if x := e.begin(t, "b", "c000"); x.Attempts[0] != 0 {
				t.Errorf("a 429 used up %d attempts", x.Attempts[0])
			}
		})
	}
}

// begin starts an execution of the contact directly and wants it to run.
func (e *env) begin(t *testing.T, id, contact string) *jobs.Execution {
	t.Helper()
	got, err := e.store.Begin(e.ctx, id, contact, 5)
	if err != nil || got.Verdict != jobs.Run {
		t.Fatalf("Begin %s = %+v, %v; want Run", contact, got, err)
	}
	return got.Exec
}
