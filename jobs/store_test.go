package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulkassign/bulkassign/internal/jobstest"
	"github.com/bulkassign/bulkassign/internal/redistest"
	"github.com/bulkassign/bulkassign/jobs"
	"github.com/redis/go-redis/v9"
)

// bundle is what a store test works with.
type bundle struct {
	ctx   context.Context
	rdb   redis.UniversalClient
	ns    string
	store *jobs.Store
	now   time.Time
}

// onTopologies runs a store test on a single Redis, through Sentinel and
// on a Redis Cluster, in parallel, each with a bundle of its own.
func onTopologies(t *testing.T, test func(*testing.T, *bundle)) {
	t.Helper()
	t.Parallel()
	for _, tp := range redistest.Topologies() {
		t.Run(string(tp), func(t *testing.T) {
			t.Parallel()
			test(t, setup(t, tp))
		})
	}
}

func setup(t *testing.T, tp redistest.Topology) *bundle {
	t.Helper()
	r := redistest.Shared(t, tp)
	ns := r.Namespace(t)
	rdb := r.Client(t)
	now := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	return &bundle{
		ctx:   t.Context(),
		rdb:   rdb,
		ns:    ns,
		store: jobs.NewStore(rdb, jobs.StoreOptions{Namespace: ns, Now: func() time.Time { return now }}),
		now:   now,
	}
}

// validRows returns n valid rows on lines 2..n+1, one contact each.
func validRows(n int) []jobs.Row {
	rows := make([]jobs.Row, n)
	for i := range rows {
		rows[i] = jobs.Row{Line: i + 2, ContactID: fmt.Sprintf("c%d", i), MemberID: "m1"}
	}
	return rows
}

func lines(rows []jobs.Row) []int {
	ls := make([]int, len(rows))
	for i, r := range rows {
		ls[i] = r.Line
	}
	return ls
}

// started creates a running batch of rows, with its plan.
func (b *bundle) started(t *testing.T, id string, rows []jobs.Row) {
	t.Helper()
	if err := b.store.Create(b.ctx, id, "name-"+id, "src.csv"); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if err := b.store.AddRows(b.ctx, id, rows); err != nil {
		t.Fatalf("AddRows: %v", err)
	}
	plan := jobstest.Plan(rows)
	if err := b.store.AddContacts(b.ctx, id, plan); err != nil {
		t.Fatalf("AddContacts: %v", err)
	}
	if err := b.store.Start(b.ctx, id, len(rows), len(plan), nil); err != nil {
		t.Fatalf("Start: %v", err)
	}
}

func (b *bundle) get(t *testing.T, id string) jobs.Batch {
	t.Helper()
	batch, err := b.store.Get(b.ctx, id)
	if err != nil {
		t.Fatalf("Get %s: %v", id, err)
	}
	return batch
}

func (b *bundle) entries(t *testing.T, id string) []jobs.Entry {
	t.Helper()
	var out []jobs.Entry
	for e, err := range b.store.Entries(b.ctx, id) {
		if err != nil {
			t.Fatalf("Entries: %v", err)
		}
		out = append(out, e)
	}
	return out
}

// begin starts an execution of the contact's task and wants it to run.
func (b *bundle) begin(t *testing.T, id, contact string) *jobs.Execution {
	t.Helper()
	got, err := b.store.Begin(b.ctx, id, contact, 5)
	if err != nil {
		t.Fatalf("Begin %s: %v", contact, err)
	}
	if got.Verdict != jobs.Run {
		t.Fatalf("Begin %s: verdict %v (%s), want Run", contact, got.Verdict, got.Status)
	}
	return got.Exec
}

// settle begins an execution of the contact and settles its first op.
func (b *bundle) settle(t *testing.T, id, contact string, res jobs.Result, st jobs.Stats) jobs.SettleResult {
	t.Helper()
	x := b.begin(t, id, contact)
	r, err := b.store.Settle(b.ctx, x, 0, res, false, true, st)
	if err != nil {
		t.Fatalf("Settle %s: %v", contact, err)
	}
	return r
}

var ok = jobs.Result{Status: jobs.StatusSucceeded, HTTPStatus: 200, Attempts: 1}

func TestCreateAddRowsStartGet(t *testing.T) { onTopologies(t, testCreateAddRowsStartGet) }

func testCreateAddRowsStartGet(t *testing.T, b *bundle) {
	const id = "b1"
	if err := b.store.Create(b.ctx, id, "nightly", "owners.csv"); err != nil {
		t.Fatal(err)
	}
	got := b.get(t, id)
	if got.Status != jobs.BatchImporting || got.Name != "nightly" || got.Source != "owners.csv" || !got.CreatedAt.Equal(b.now) {
		t.Fatalf("after Create: %+v", got)
	}
	if err := b.store.Create(b.ctx, id, "again", "x.csv"); err == nil {
		t.Fatal("Create of an existing id: want an error")
	}
	rows := []jobs.Row{
		{Line: 2, ContactID: "c1", MemberID: "m1", Extra: []string{"north", "=1+1"}},
		{Line: 3, ContactID: "bad id", MemberID: "m1", Extra: []string{"south", ""}, Reason: "invalid_contact_id", Error: "malformed"},
		{Line: 4, ContactID: "c2", MemberID: "m2", Replace: true, Extra: []string{"east", "x"}},
		{Line: 5, ContactID: "c3", MemberID: "", ReplaceText: "maybe", Reason: "invalid_replace", Error: "unknown boolean"},
		{Line: 6, ContactID: "c3", MemberID: "m1", BlockedBy: 5},
	}
	if err := b.store.AddRows(b.ctx, id, rows); err != nil {
		t.Fatal(err)
	}
	if err := b.store.AddRows(b.ctx, id, nil); err != nil {
		t.Fatalf("AddRows(nil): %v", err)
	}
	got = b.get(t, id)
	if got.Status != jobs.BatchImporting || got.Invalid != 2 || got.Failed != 1 {
		t.Fatalf("after AddRows: status %q invalid %d failed %d, want importing, 2 and 1", got.Status, got.Invalid, got.Failed)
	}
	if err := b.store.Start(b.ctx, id, len(rows), 2, []string{"region", "note"}); err != nil {
		t.Fatal(err)
	}
	var te *jobs.TransitionError
	if err := b.store.Start(b.ctx, id, len(rows), 2, nil); !errors.As(err, &te) || te.From != jobs.BatchRunning {
		t.Fatalf("second Start: %v, want a TransitionError from running", err)
	}
	got = b.get(t, id)
	want := jobs.Batch{
		ID: id, Name: "nightly", Source: "owners.csv", Status: jobs.BatchRunning,
		Rows: 5, Failed: 1, Invalid: 2, Contacts: 2, Extras: []string{"region", "note"},
		CreatedAt: b.now, StartedAt: b.now,
		Errors: map[string]int64{"invalid_contact_id": 1, "invalid_replace": 1, "blocked": 1},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after Start:\n got %+v\nwant %+v", got, want)
	}
	status, _, err := b.store.Status(b.ctx, id)
	if err != nil || status != jobs.BatchRunning {
		t.Fatalf("Status = %q, %v; want running", status, err)
	}
	ids, err := b.store.IDs(b.ctx)
	if err != nil || !slices.Equal(ids, []string{id}) {
		t.Fatalf("IDs = %v, %v", ids, err)
	}

	es := b.entries(t, id)
	if len(es) != 5 {
		t.Fatalf("Entries: %d, want 5", len(es))
	}
	for i, e := range es {
		if !slices.Equal(e.Row.Extra, rows[i].Extra) || e.Row.Line != rows[i].Line || e.Row.ReplaceText != rows[i].ReplaceText || e.Row.Replace != rows[i].Replace {
			t.Errorf("entry %d row = %+v, want %+v", i, e.Row, rows[i])
		}
	}
	if es[0].Result.Status != "" || es[2].Result.Status != "" {
		t.Errorf("valid rows have a result before any call: %+v %+v", es[0].Result, es[2].Result)
	}
	if r := es[1].Result; r.Status != jobs.StatusInvalid || r.Reason != "invalid_contact_id" || r.Error != "malformed" {
		t.Errorf("invalid row result = %+v", r)
	}
	if r := es[4].Result; r.Status != jobs.StatusFailed || r.Reason != jobs.ReasonBlocked || !strings.Contains(r.Error, "line 5") {
		t.Errorf("blocked row result = %+v, want failed, blocked by line 5", r)
	}
}

func TestUnknownBatch(t *testing.T) { onTopologies(t, testUnknownBatch) }

func testUnknownBatch(t *testing.T, b *bundle) {
	if _, err := b.store.Get(b.ctx, "nope"); !errors.Is(err, jobs.ErrNotFound) {
		t.Errorf("Get: err = %v, want ErrNotFound", err)
	}
	if _, _, err := b.store.Status(b.ctx, "nope"); !errors.Is(err, jobs.ErrNotFound) {
		t.Errorf("Status: err = %v, want ErrNotFound", err)
	}
	if _, err := b.store.SetStatus(b.ctx, "nope", jobs.BatchPaused, "", ""); !errors.Is(err, jobs.ErrNotFound) {
		t.Errorf("SetStatus: %v, want ErrNotFound", err)
	}
	if err := b.store.Start(b.ctx, "nope", 1, 1, nil); err == nil {
		t.Error("Start: want an error")
	}
	if got, err := b.store.Begin(b.ctx, "nope", "c1", 5); err != nil || got.Verdict != jobs.Gone {
		t.Errorf("Begin = %+v, %v; want Gone", got, err)
	}
}

func TestAllInvalidIsDoneAtStart(t *testing.T) { onTopologies(t, testAllInvalidIsDoneAtStart) }

func testAllInvalidIsDoneAtStart(t *testing.T, b *bundle) {
	rows := validRows(3)
	for i := range rows {
		rows[i].Reason, rows[i].Error = "invalid_member_id", "malformed"
	}
	b.started(t, "b", rows)
	got := b.get(t, "b")
	if got.Status != jobs.BatchDone || got.Invalid != 3 || !got.FinishedAt.Equal(b.now) {
		t.Fatalf("all-invalid batch after Start: %+v", got)
	}
	if got.Errors["invalid_member_id"] != 3 {
		t.Errorf("Errors = %v", got.Errors)
	}
}

func TestEmptyBatchIsDoneAtStart(t *testing.T) { onTopologies(t, testEmptyBatchIsDoneAtStart) }

func testEmptyBatchIsDoneAtStart(t *testing.T, b *bundle) {
	b.started(t, "b", nil)
	if got := b.get(t, "b"); got.Status != jobs.BatchDone {
		t.Fatalf("status %q, want done", got.Status)
	}
}

func TestSettleCompletesBatch(t *testing.T) { onTopologies(t, testSettleCompletesBatch) }

func testSettleCompletesBatch(t *testing.T, b *bundle) {
	rows := validRows(3)
	rows = append(rows, jobs.Row{Line: 9, ContactID: "x", Reason: "invalid_member_id"})
	b.started(t, "b", rows)

	for _, c := range []string{"c0", "c1"} {
		if r := b.settle(t, "b", c, ok, jobs.Stats{Calls: 1}); r.Completed || r.Stale || r.Gone {
			t.Fatalf("settle %s = %+v; want not complete", c, r)
		}
	}
	fail := jobs.Result{Status: jobs.StatusFailed, HTTPStatus: 404, Attempts: 1, Reason: "http_404", Error: "HTTP 404: not found"}
	if r := b.settle(t, "b", "c2", fail, jobs.Stats{Calls: 2, Retries: 1, RateLimited: 1}); !r.Completed {
		t.Fatalf("settle of the last row = %+v; want complete", r)
	}
	got := b.get(t, "b")
	if got.Status != jobs.BatchDone || got.Succeeded != 2 || got.Failed != 1 || got.Invalid != 1 || got.Done() != got.Rows {
		t.Errorf("batch = %+v", got)
	}
	if got.APICalls != 4 || got.Retries != 1 || got.RateLimited != 1 {
		t.Errorf("counters calls %d retries %d rateLimited %d, want 4 1 1", got.APICalls, got.Retries, got.RateLimited)
	}
	if got.Errors["http_404"] != 1 || !got.FinishedAt.Equal(b.now) {
		t.Errorf("errors %v finishedAt %v", got.Errors, got.FinishedAt)
	}
	es := b.entries(t, "b")
	if es[2].Result != fail || es[0].Result != ok {
		t.Errorf("results: %+v", es)
	}
	// Once done, nothing runs.
	if got, err := b.store.Begin(b.ctx, "b", "c2", 5); err != nil || got.Verdict != jobs.Over {
		t.Errorf("Begin on a done batch = %+v, %v; want Over", got, err)
	}
}

// TestFailureBlocksTheContact: a contact's first row that does not succeed
// stops it: its later rows are failed as blocked in the same write, and no
// later execution sends anything for it.
func TestFailureBlocksTheContact(t *testing.T) { onTopologies(t, testFailureBlocksTheContact) }

func testFailureBlocksTheContact(t *testing.T, b *bundle) {
	rows := []jobs.Row{
		{Line: 2, ContactID: "c1", MemberID: "m1"},
		{Line: 3, ContactID: "c1", MemberID: "m9", Replace: true},
		{Line: 4, ContactID: "c1", MemberID: "m2"},
		{Line: 5, ContactID: "c1", MemberID: "m3"},
	}
	b.started(t, "b", rows)
	x := b.begin(t, "b", "c1")
	if r, err := b.store.Settle(b.ctx, x, 0, ok, false, false, jobs.Stats{Calls: 1}); err != nil || r.Stale {
		t.Fatalf("settle line 2 = %+v, %v", r, err)
	}
	fail := jobs.Result{Status: jobs.StatusFailed, HTTPStatus: 404, Attempts: 1, Reason: "http_404", Error: "HTTP 404"}
	r, err := b.store.Settle(b.ctx, x, 1, fail, false, false, jobs.Stats{Calls: 1})
	if err != nil || !r.Completed {
		t.Fatalf("settle line 3 = %+v, %v; want the batch complete", r, err)
	}
	es := b.entries(t, "b")
	for _, e := range es[2:] {
		if e.Result.Status != jobs.StatusFailed || e.Result.Reason != jobs.ReasonBlocked || !strings.Contains(e.Result.Error, "line 3") {
			t.Errorf("line %d: %+v, want blocked by line 3", e.Row.Line, e.Result)
		}
	}
	got := b.get(t, "b")
	if got.Succeeded != 1 || got.Failed != 3 || got.Errors["blocked"] != 2 || got.Errors["http_404"] != 1 {
		t.Errorf("batch = %+v", got)
	}
	// The failure released the contact; a redelivery finds nothing to do.
	if got, err := b.store.Begin(b.ctx, "b", "c1", 5); err != nil || got.Verdict != jobs.Over {
		t.Errorf("Begin after the failure = %+v, %v; want Over", got, err)
	}
}

// TestClaims: while an execution holds a contact, another is Busy; once
// its claim expires (its worker died) the next one takes over, the dead
// one's call costs its row an attempt, and the stale execution's writes
// are refused, except a success, which is the truth of a call made.
func TestClaims(t *testing.T) { onTopologies(t, testClaims) }

func testClaims(t *testing.T, b *bundle) {
	b.store = jobs.NewStore(b.rdb, jobs.StoreOptions{Namespace: b.ns, ClaimTTL: 200 * time.Millisecond})
	rows := []jobs.Row{
		{Line: 2, ContactID: "c1", MemberID: "m1"},
		{Line: 3, ContactID: "c1", MemberID: "m2"},
		{Line: 4, ContactID: "c1", MemberID: "m3"},
	}
	b.started(t, "b", rows)
	first := b.begin(t, "b", "c1")
	if got, _ := b.store.Begin(b.ctx, "b", "c1", 5); got.Verdict != jobs.Busy {
		t.Fatalf("second execution while the first holds the contact: %v, want Busy", got.Verdict)
	}
	// Watch renews the claim past its TTL.
	time.Sleep(120 * time.Millisecond)
	if _, err := b.store.Watch(b.ctx, "b", []*jobs.Execution{first}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(120 * time.Millisecond)
	if got, _ := b.store.Begin(b.ctx, "b", "c1", 5); got.Verdict != jobs.Busy {
		t.Fatalf("after a renewal: %v, want Busy", got.Verdict)
	}
	time.Sleep(250 * time.Millisecond)
	second := b.begin(t, "b", "c1")
	if second.Attempts[0] != 1 {
		t.Errorf("attempts of line 2 after a lost execution: %d, want 1", second.Attempts[0])
	}
	// The stale execution's failure is refused; its success is kept.
	fail := jobs.Result{Status: jobs.StatusFailed, HTTPStatus: 404, Reason: "http_404"}
	if r, err := b.store.Settle(b.ctx, first, 0, fail, false, false, jobs.Stats{Calls: 1}); err != nil || !r.Stale {
		t.Fatalf("stale failure = %+v, %v; want Stale", r, err)
	}
	if r, err := b.store.Settle(b.ctx, first, 1, ok, false, false, jobs.Stats{Calls: 1}); err != nil || !r.Stale {
		t.Fatalf("stale success = %+v, %v; want Stale", r, err)
	}
	es := b.entries(t, "b")
	if es[0].Result.Status != "" || es[1].Result != ok || es[2].Result.Status != "" {
		t.Fatalf("after the stale writes: %+v", es)
	}
	// The holder gives line 2 up; the stale execution's success on it
	// (its call went through) moves it to succeeded, counters with it.
	dead := jobs.Result{Status: jobs.StatusFailed, Attempts: 5, Reason: "http_503", Error: "gave up"}
	if _, err := b.store.Settle(b.ctx, second, 0, dead, true, true, jobs.Stats{}); err != nil {
		t.Fatal(err)
	}
	if r, err := b.store.Settle(b.ctx, first, 0, ok, false, false, jobs.Stats{}); err != nil || !r.Stale {
		t.Fatalf("stale success on a failed row = %+v, %v", r, err)
	}
	got := b.get(t, "b")
	if got.Succeeded != 2 || got.Failed != 1 || got.Errors["http_503"] != 0 || got.Errors["blocked"] != 1 || got.APICalls != 2 {
		t.Errorf("batch = %+v, errors %v", got, got.Errors)
	}
	if es := b.entries(t, "b"); es[0].Result != ok || es[2].Result.Reason != jobs.ReasonBlocked {
		t.Errorf("ledger = %+v", es)
	}
}

// TestLostExecutionsUseUpAttempts: a task whose worker dies in the middle
// of every call ends as a dead letter after max attempts, not in a loop.
func TestLostExecutionsUseUpAttempts(t *testing.T) { onTopologies(t, testLostExecutionsUseUpAttempts) }

func testLostExecutionsUseUpAttempts(t *testing.T, b *bundle) {
	b.store = jobs.NewStore(b.rdb, jobs.StoreOptions{Namespace: b.ns, ClaimTTL: 50 * time.Millisecond})
	b.started(t, "b", []jobs.Row{{Line: 2, ContactID: "c1", MemberID: "m1"}, {Line: 3, ContactID: "c1", MemberID: "m2"}})
	for n := range 3 {
		x := b.begin(t, "b", "c1") // ... and dies
		if x.Attempts[0] != n {
			t.Fatalf("execution %d sees %d attempts, want %d", n, x.Attempts[0], n)
		}
		time.Sleep(80 * time.Millisecond)
	}
	got, err := b.store.Begin(b.ctx, "b", "c1", 3)
	if err != nil || got.Verdict != jobs.Settled || !got.Completed {
		t.Fatalf("fourth execution = %+v, %v; want Settled, batch complete", got, err)
	}
	es := b.entries(t, "b")
	if r := es[0].Result; r.Status != jobs.StatusFailed || r.Reason != "worker_lost" || r.Attempts != 3 {
		t.Errorf("line 2 = %+v", r)
	}
	if r := es[1].Result; r.Reason != jobs.ReasonBlocked {
		t.Errorf("line 3 = %+v, want blocked", r)
	}
	if dead, err := b.store.Dead(b.ctx, "b"); err != nil || len(dead) != 1 || dead[0].ID != "c1" {
		t.Errorf("Dead = %+v, %v", dead, err)
	}
}

func TestConcurrentExecutionsExactCounters(t *testing.T) {
	onTopologies(t, testConcurrentExecutionsExactCounters)
}

func testConcurrentExecutionsExactCounters(t *testing.T, b *bundle) {
	const n = 300
	rows := validRows(n)
	b.started(t, "b", rows)

	// 30 goroutines; every contact is run by three of them at once, as
	// duplicate deliveries would: one holds it, the others are Busy or
	// find it settled.
	const workers = 30
	var calls, completions atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 7))
			var mine []int
			for i := range rows {
				if i%workers == w || (i+7)%workers == w || (i+19)%workers == w {
					mine = append(mine, i)
				}
			}
			r.Shuffle(len(mine), func(i, j int) { mine[i], mine[j] = mine[j], mine[i] })
			for _, i := range mine {
				got, err := b.store.Begin(b.ctx, "b", rows[i].ContactID, 5)
				if err != nil {
					t.Error(err)
					return
				}
				if got.Verdict != jobs.Run {
					continue
				}
				res := jobs.Result{Status: jobs.StatusFailed, Reason: "http_500"}
				if i%2 == 0 {
					res = ok
				}
				sr, err := b.store.Settle(b.ctx, got.Exec, 0, res, false, true, jobs.Stats{Calls: 1})
				if err != nil {
					t.Error(err)
					return
				}
				calls.Add(1)
				if sr.Completed {
					completions.Add(1)
				}
			}
		})
	}
	wg.Wait()
	got := b.get(t, "b")
	if got.Succeeded+got.Failed != n || got.Status != jobs.BatchDone {
		t.Errorf("succeeded %d + failed %d, status %s; want %d rows, done", got.Succeeded, got.Failed, got.Status, n)
	}
	if got.Errors["http_500"] != got.Failed {
		t.Errorf("errors %v, failed %d", got.Errors, got.Failed)
	}
	if got.APICalls != calls.Load() || calls.Load() != n {
		t.Errorf("apiCalls %d, settles %d, want %d", got.APICalls, calls.Load(), n)
	}
	if c := completions.Load(); c != 1 {
		t.Errorf("completion reported %d times, want 1", c)
	}
	var s, f int64
	for _, e := range b.entries(t, "b") {
		switch e.Result.Status {
		case jobs.StatusSucceeded:
			s++
		case jobs.StatusFailed:
			f++
		default:
			t.Errorf("line %d has no final result", e.Row.Line)
		}
	}
	if s != got.Succeeded || f != got.Failed {
		t.Errorf("ledger has %d succeeded %d failed, counters %d %d", s, f, got.Succeeded, got.Failed)
	}
}

// batchKeys lists the Redis keys holding anything of batch id.
func (b *bundle) batchKeys(t *testing.T, id string) []string {
	t.Helper()
	keys, err := redistest.Keys(b.ctx, b.rdb, b.ns+"*"+id+"*")
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

func TestDelete(t *testing.T) { onTopologies(t, testDelete) }

func testDelete(t *testing.T, b *bundle) {
	b.started(t, "gone", validRows(3))
	b.started(t, "kept", validRows(1))
	x := b.begin(t, "gone", "c0")
	if _, _, err := b.store.Release(b.ctx, x, 0, false, jobs.Stats{Calls: 1}); err != nil {
		t.Fatal(err)
	}
	b.settle(t, "gone", "c1", jobs.Result{Status: jobs.StatusFailed, Reason: "http_400"}, jobs.Stats{})
	held := b.begin(t, "gone", "c2")
	if err := b.store.Delete(b.ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if keys := b.batchKeys(t, "gone"); len(keys) != 0 {
		t.Errorf("keys left after Delete: %v", keys)
	}
	if ids, _ := b.store.IDs(b.ctx); !slices.Equal(ids, []string{"kept"}) {
		t.Errorf("IDs = %v, want [kept]", ids)
	}

	// Workers still holding tasks of the deleted batch must not bring it back.
	if r, err := b.store.Settle(b.ctx, held, 0, ok, false, true, jobs.Stats{Calls: 2}); err != nil || !r.Gone {
		t.Errorf("Settle on a deleted batch = %+v, %v", r, err)
	}
	if st, _, err := b.store.Release(b.ctx, x, 0, true, jobs.Stats{Calls: 1, Retries: 1}); err != nil || st != "" {
		t.Errorf("Release on a deleted batch = %q, %v", st, err)
	}
	if err := b.store.AddStats(b.ctx, "gone", jobs.Stats{Calls: 1, RateLimited: 1}); err != nil {
		t.Errorf("AddStats on a deleted batch: %v", err)
	}
	if _, err := b.store.Watch(b.ctx, "gone", []*jobs.Execution{held}); err != nil {
		t.Errorf("Watch on a deleted batch: %v", err)
	}
	if _, err := b.store.Get(b.ctx, "gone"); !errors.Is(err, jobs.ErrNotFound) {
		t.Errorf("Get after Delete: err = %v, want ErrNotFound", err)
	}
	if keys := b.batchKeys(t, "gone"); len(keys) != 0 {
		t.Errorf("deleted batch resurrected: keys %v", keys)
	}
	if got := b.get(t, "kept"); got.Rows != 1 {
		t.Errorf("other batch touched: %+v", got)
	}
}

func TestEntriesLineOrderAcrossChunks(t *testing.T) {
	onTopologies(t, testEntriesLineOrderAcrossChunks)
}

func testEntriesLineOrderAcrossChunks(t *testing.T, b *bundle) {
	const n = 2600 // more than two chunks of 1000
	rows := make([]jobs.Row, n)
	for i := range rows {
		line := 2 + i*3 // gaps, as after header and blank lines
		rows[i] = jobs.Row{Line: line, ContactID: fmt.Sprintf("c%d", i), MemberID: "m" + fmt.Sprint(i%5),
			Replace: i%4 == 0, Extra: []string{fmt.Sprint("x", line), ""}}
	}
	// Added in shuffled, uneven parts.
	shuffled := slices.Clone(rows)
	rand.New(rand.NewPCG(1, 2)).Shuffle(n, func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	if err := b.store.Create(b.ctx, "b", "", ""); err != nil {
		t.Fatal(err)
	}
	for len(shuffled) > 0 {
		k := min(len(shuffled), 777)
		if err := b.store.AddRows(b.ctx, "b", shuffled[:k]); err != nil {
			t.Fatal(err)
		}
		shuffled = shuffled[k:]
	}
	if err := b.store.AddContacts(b.ctx, "b", jobstest.Plan(rows)); err != nil {
		t.Fatal(err)
	}
	if err := b.store.Start(b.ctx, "b", n, n, []string{"note", "empty"}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i += 10 {
		b.settle(t, "b", rows[i].ContactID, jobs.Result{Status: jobs.StatusSucceeded, Attempts: i}, jobs.Stats{})
	}
	es := b.entries(t, "b")
	if len(es) != n {
		t.Fatalf("Entries yielded %d, want %d", len(es), n)
	}
	for i, e := range es {
		if fmt.Sprint(e.Row) != fmt.Sprint(rows[i]) {
			t.Fatalf("entry %d: row %+v, want %+v", i, e.Row, rows[i])
		}
		if i%10 == 0 {
			if e.Result.Status != jobs.StatusSucceeded || e.Result.Attempts != i {
				t.Fatalf("entry %d: result %+v", i, e.Result)
			}
		} else if e.Result.Status != "" {
			t.Fatalf("entry %d: unexpected result %+v", i, e.Result)
		}
	}
	// Stopping early is allowed.
	seen := 0
	for _, err := range b.store.Entries(b.ctx, "b") {
		if err != nil {
			t.Fatal(err)
		}
		if seen++; seen == 1500 {
			break
		}
	}
	// An unknown batch has no entries.
	for e, err := range b.store.Entries(b.ctx, "nope") {
		t.Errorf("unknown batch yielded %+v, %v", e, err)
	}
	// Contacts pages through the plan; pending leaves out the settled.
	all, pending := 0, 0
	for page, err := range b.store.Contacts(b.ctx, "b", false) {
		if err != nil {
			t.Fatal(err)
		}
		all += len(page)
	}
	for page, err := range b.store.Contacts(b.ctx, "b", true) {
		if err != nil {
			t.Fatal(err)
		}
		pending += len(page)
	}
	if all != n || pending != n-n/10 {
		t.Errorf("Contacts: %d, pending %d; want %d and %d", all, pending, n, n-n/10)
	}
}

// TestTransitions: the scripts refuse the moves the state machine does not
// have, whoever asks.
func TestTransitions(t *testing.T) { onTopologies(t, testTransitions) }

func testTransitions(t *testing.T, b *bundle) {
	if err := b.store.Create(b.ctx, "imp", "", ""); err != nil {
		t.Fatal(err)
	}
	b.started(t, "run", validRows(1))
	b.started(t, "done", []jobs.Row{{Line: 2, Reason: "invalid_contact_id"}})
	b.started(t, "cancelled", validRows(1))
	if _, err := b.store.SetStatus(b.ctx, "cancelled", jobs.BatchCancelled, "", ""); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		id, to string
		from   string // of the TransitionError; "" means allowed
	}{
		{"imp", jobs.BatchRunning, jobs.BatchImporting},
		{"imp", jobs.BatchPaused, jobs.BatchImporting},
		{"imp", jobs.BatchCancelled, jobs.BatchImporting},
		{"done", jobs.BatchRunning, jobs.BatchDone},
		{"done", jobs.BatchPaused, jobs.BatchDone},
		{"cancelled", jobs.BatchRunning, jobs.BatchCancelled},
		{"run", jobs.BatchDone, jobs.BatchRunning},
		{"run", jobs.BatchPaused, ""},
		{"run", jobs.BatchRunning, ""},
		{"run", jobs.BatchCancelled, ""},
		{"run", jobs.BatchRunning, jobs.BatchCancelled},
	}
	for _, tt := range tests {
		_, err := b.store.SetStatus(b.ctx, tt.id, tt.to, "", "")
		var te *jobs.TransitionError
		switch {
		case tt.from == "" && err != nil:
			t.Errorf("%s -> %s: %v, want allowed", tt.id, tt.to, err)
		case tt.from != "" && (!errors.As(err, &te) || te.From != tt.from):
			t.Errorf("%s -> %s: %v, want refused from %s", tt.id, tt.to, err, tt.from)
		}
	}
	if got := b.get(t, "imp"); got.Status != jobs.BatchImporting {
		t.Errorf("importing batch moved to %s", got.Status)
	}
	if _, err := b.store.SetStatus(b.ctx, "imp", jobs.BatchRunning, "", ""); err == nil || !strings.Contains(err.Error(), "delete") {
		t.Errorf("resume of an importing batch: %v, want a hint at delete", err)
	}
}

func TestPauseResume(t *testing.T) { onTopologies(t, testPauseResume) }

func testPauseResume(t *testing.T, b *bundle) {
	b.started(t, "b", validRows(2))
	changed, err := b.store.SetStatus(b.ctx, "b", jobs.BatchPaused, jobs.PauseUnauthorized, "key refused")
	if err != nil || !changed {
		t.Fatalf("pause = %v, %v", changed, err)
	}
	if changed, err := b.store.SetStatus(b.ctx, "b", jobs.BatchPaused, "manual", "again"); err != nil || changed {
		t.Fatalf("second pause = %v, %v; want no change", changed, err)
	}
	got := b.get(t, "b")
	if got.Status != jobs.BatchPaused || got.PauseCode != jobs.PauseUnauthorized || got.PauseReason != "key refused" {
		t.Fatalf("paused batch: %+v", got)
	}
	// A paused batch's task parks its contact and sends nothing.
	if got, err := b.store.Begin(b.ctx, "b", "c0", 5); err != nil || got.Verdict != jobs.Parked {
		t.Fatalf("Begin while paused = %+v, %v; want Parked", got, err)
	}
	if _, err := b.store.SetStatus(b.ctx, "b", jobs.BatchRunning, "", ""); err != nil {
		t.Fatal(err)
	}
	got = b.get(t, "b")
	if got.Status != jobs.BatchRunning || got.PauseCode != "" || got.PauseReason != "" {
		t.Fatalf("resumed batch: %+v", got)
	}
	parked, err := b.store.TakeParked(b.ctx, "b", 10)
	if err != nil || !slices.Equal(parked, []string{"c0"}) {
		t.Fatalf("parked = %v, %v; want [c0]", parked, err)
	}
	// A call in flight when the batch was paused still lands, and can
	// complete it.
	x := b.begin(t, "b", "c1")
	b.settle(t, "b", "c0", ok, jobs.Stats{})
	if _, err := b.store.SetStatus(b.ctx, "b", jobs.BatchPaused, "manual", "operator"); err != nil {
		t.Fatal(err)
	}
	if r, err := b.store.Settle(b.ctx, x, 0, ok, false, true, jobs.Stats{}); err != nil || !r.Completed {
		t.Fatalf("Settle while paused = %+v, %v", r, err)
	}
	if got := b.get(t, "b"); got.Status != jobs.BatchDone {
		t.Fatalf("status %q", got.Status)
	}
}

// TestReopenKeepsPause: retrying dead letters of a batch paused by a
// refused key leaves it paused; of a done batch, runs it again.
func TestReopenKeepsPause(t *testing.T) { onTopologies(t, testReopenKeepsPause) }

func testReopenKeepsPause(t *testing.T, b *bundle) {
	b.started(t, "b", append(validRows(2), jobs.Row{Line: 9, ContactID: "c0", MemberID: "m2"}))
	dead := jobs.Result{Status: jobs.StatusFailed, Attempts: 5, Reason: "http_503", Error: "gave up"}
	x := b.begin(t, "b", "c0")
	if _, err := b.store.Settle(b.ctx, x, 0, dead, true, true, jobs.Stats{}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.store.SetStatus(b.ctx, "b", jobs.BatchPaused, jobs.PauseUnauthorized, "key refused"); err != nil {
		t.Fatal(err)
	}
	n, contacts, err := b.store.Reopen(b.ctx, "b", []string{"c0", "c1"})
	if err != nil || n != 2 || !slices.Equal(contacts, []string{"c0"}) {
		t.Fatalf("Reopen = %d %v %v; want 2 rows of c0", n, contacts, err)
	}
	got := b.get(t, "b")
	if got.Status != jobs.BatchPaused || got.PauseCode != jobs.PauseUnauthorized || got.Failed != 0 || got.Errors["blocked"] != 0 {
		t.Fatalf("after Reopen: %+v", got)
	}
	if _, err := b.store.SetStatus(b.ctx, "b", jobs.BatchRunning, "", ""); err != nil {
		t.Fatal(err)
	}
	x = b.begin(t, "b", "c0")
	if x.Attempts[0] != 0 || x.Done[0] || x.Done[1] {
		t.Fatalf("reopened contact: %+v", x)
	}
	b.settle(t, "b", "c1", ok, jobs.Stats{})
	if _, err := b.store.Settle(b.ctx, x, 0, dead, true, true, jobs.Stats{}); err != nil {
		t.Fatal(err)
	}
	if got := b.get(t, "b"); got.Status != jobs.BatchDone {
		t.Fatalf("status %q, want done", got.Status)
	}
	if n, _, err := b.store.Reopen(b.ctx, "b", []string{"c0"}); err != nil || n != 2 {
		t.Fatalf("Reopen of a done batch = %d, %v", n, err)
	}
	if got := b.get(t, "b"); got.Status != jobs.BatchRunning || !got.FinishedAt.IsZero() {
		t.Fatalf("done batch after Reopen: %+v", got)
	}
}

// TestFinishedBatchExpires: a batch that ends, by its last row, all rows
// invalid at Start, or a cancel, keeps its keys for the retention; one
// still running keeps them forever; and a write that comes after the end
// (a call in flight) gives no key a life of its own.
func TestFinishedBatchExpires(t *testing.T) { onTopologies(t, testFinishedBatchExpires) }

func testFinishedBatchExpires(t *testing.T, b *bundle) {
	inRetention := func(d time.Duration) bool { return d > jobs.DefaultRetention-time.Minute && d <= jobs.DefaultRetention }
	b.started(t, "last-row", validRows(3))
	if ttl := b.rdb.TTL(b.ctx, b.ns+":batch:{last-row}").Val(); ttl != -1 {
		t.Errorf("running batch: TTL %v, want none", ttl)
	}
	b.settle(t, "last-row", "c0", ok, jobs.Stats{})
	b.settle(t, "last-row", "c1", jobs.Result{Status: jobs.StatusFailed, Reason: "http_400"}, jobs.Stats{})
	b.settle(t, "last-row", "c2", ok, jobs.Stats{})
	b.started(t, "all-invalid", []jobs.Row{{Line: 2, Reason: "invalid_contact_id", Error: "bad"}})
	b.started(t, "cancelled", validRows(2))
	late := []*jobs.Execution{b.begin(t, "cancelled", "c0"), b.begin(t, "cancelled", "c1")}
	if _, err := b.store.SetStatus(b.ctx, "cancelled", jobs.BatchCancelled, "", ""); err != nil {
		t.Fatal(err)
	}
	// Calls in flight when the batch ended land afterwards, and create
	// keys the batch did not have: errors, attempts.
	if _, err := b.store.Settle(b.ctx, late[0], 0, jobs.Result{Status: jobs.StatusFailed, Reason: "http_404"}, false, true, jobs.Stats{Calls: 1}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.store.Release(b.ctx, late[1], 0, true, jobs.Stats{Calls: 1}); err != nil {
		t.Fatal(err)
	}
	if keys := b.batchKeys(t, "cancelled"); !slices.Contains(keys, b.ns+":batch:{cancelled}:errors") || !slices.Contains(keys, b.ns+":batch:{cancelled}:attempts") {
		t.Errorf("late writes left no errors or attempts key: %v", keys)
	}
	for _, id := range []string{"last-row", "all-invalid", "cancelled"} {
		for _, k := range b.batchKeys(t, id) {
			if ttl := b.rdb.TTL(b.ctx, k).Val(); !inRetention(ttl) {
				t.Errorf("%s: key %s has TTL %v; want the retention (%v)", id, k, ttl, jobs.DefaultRetention)
			}
		}
	}
	if got := b.get(t, "cancelled"); got.Failed != 1 {
		t.Errorf("cancelled batch: the late result is lost: %+v", got)
	}
}

// TestIndexDropsExpiredBatches: a batch whose keys expired leaves the
// index when the index is read.
func TestIndexDropsExpiredBatches(t *testing.T) { onTopologies(t, testIndexDropsExpiredBatches) }

func testIndexDropsExpiredBatches(t *testing.T, b *bundle) {
	// b1 was created two minutes ago and has expired since; b2 is live;
	// b3 is being created right now: its index entry comes just before
	// its record, and must not be dropped in between.
	earlier := *b
	earlier.store = jobs.NewStore(b.rdb, jobs.StoreOptions{Namespace: b.ns, Now: func() time.Time { return b.now.Add(-2 * time.Minute) }})
	earlier.started(t, "b1", validRows(1))
	b.started(t, "b2", validRows(1))
	if err := b.rdb.Del(b.ctx, b.ns+":batch:{b1}").Err(); err != nil { // as its expiry does
		t.Fatal(err)
	}
	if err := b.rdb.ZAdd(b.ctx, b.ns+":batches", redis.Z{Score: float64(b.now.UnixMilli()), Member: "b3"}).Err(); err != nil {
		t.Fatal(err)
	}
	if ids, err := b.store.IDs(b.ctx); err != nil || !slices.Equal(ids, []string{"b2"}) {
		t.Fatalf("IDs = %v, %v", ids, err)
	}
	if got := b.rdb.ZRange(b.ctx, b.ns+":batches", 0, -1).Val(); !slices.Equal(got, []string{"b2", "b3"}) {
		t.Errorf("index holds %v, want [b2 b3]: b1 dropped, b3 kept while it is created", got)
	}
}

// TestLease: an import whose process stops renewing its lease is
// abandoned; a live one is not, and Start refuses an abandoned batch.
func TestLease(t *testing.T) { onTopologies(t, testLease) }

func testLease(t *testing.T, b *bundle) {
	b.store = jobs.NewStore(b.rdb, jobs.StoreOptions{Namespace: b.ns, LeaseTTL: 150 * time.Millisecond})
	for _, id := range []string{"live", "dead"} {
		if err := b.store.Create(b.ctx, id, "", ""); err != nil {
			t.Fatal(err)
		}
		if err := b.store.AddRows(b.ctx, id, validRows(2)); err != nil {
			t.Fatal(err)
		}
	}
	for range 4 {
		time.Sleep(60 * time.Millisecond)
		if ok, err := b.store.RenewLease(b.ctx, "live"); err != nil || !ok {
			t.Fatalf("RenewLease = %v, %v", ok, err)
		}
	}
	if got := b.get(t, "dead"); got.Status != jobs.BatchAbandoned {
		t.Errorf("unrenewed import shows as %s, want abandoned", got.Status)
	}
	if sw, err := b.store.Sweep(b.ctx, "dead", 1000); err != nil || sw.Status != jobs.BatchAbandoned {
		t.Errorf("Sweep = %+v, %v; want abandoned", sw, err)
	}
	if ok, err := b.store.RenewLease(b.ctx, "dead"); err != nil || ok {
		t.Errorf("RenewLease of an abandoned import = %v, %v; want false", ok, err)
	}
	var te *jobs.TransitionError
	if err := b.store.Start(b.ctx, "dead", 2, 2, nil); !errors.As(err, &te) || te.From != jobs.BatchAbandoned {
		t.Errorf("Start of an abandoned import: %v", err)
	}
	if got := b.get(t, "live"); got.Status != jobs.BatchImporting {
		t.Errorf("live import shows as %s", got.Status)
	}
	if ttl := b.rdb.TTL(b.ctx, b.ns+":batch:{dead}:rows").Val(); ttl <= 0 {
		t.Errorf("abandoned import's rows never expire (TTL %v)", ttl)
	}
}

func TestOpsRoundTrip(t *testing.T) {
	t.Parallel()
	ops := []jobs.Op{{MemberID: "m-1", Lines: []int{2, 9}}, {MemberID: "b_2", Replace: true, Lines: []int{3}}}
	got, err := jobs.DecodeOps(jobs.EncodeOps(ops))
	if err != nil || fmt.Sprint(got) != fmt.Sprint(ops) {
		t.Fatalf("round trip = %v, %v; want %v", got, err, ops)
	}
	for _, bad := range []string{"", "m", "m:2:3", "m:1:", "m:1:x", "m:0:2;"} {
		if _, err := jobs.DecodeOps(bad); err == nil {
			t.Errorf("DecodeOps(%q): want an error", bad)
		}
	}
}

// TestSlowHolderKeepsItsClaim: an execution whose claim ran out because
// its process was slow to renew it, with no other execution taking over,
// still holds the contact: its results count.
func TestSlowHolderKeepsItsClaim(t *testing.T) {
	onTopologies(t, func(t *testing.T, b *bundle) {
		b.store = jobs.NewStore(b.rdb, jobs.StoreOptions{Namespace: b.ns, ClaimTTL: 100 * time.Millisecond})
		b.started(t, "b", []jobs.Row{{Line: 2, ContactID: "c1", MemberID: "m1"}, {Line: 3, ContactID: "c1", MemberID: "m2"}})
		x := b.begin(t, "b", "c1")
		time.Sleep(150 * time.Millisecond)
		fail := jobs.Result{Status: jobs.StatusFailed, HTTPStatus: 404, Attempts: 1, Reason: "http_404"}
		r, err := b.store.Settle(b.ctx, x, 0, fail, false, false, jobs.Stats{Calls: 1})
		if err != nil || r.Stale || !r.Completed {
			t.Fatalf("Settle after the claim ran out = %+v, %v; want it kept, the batch complete", r, err)
		}
		if es := b.entries(t, "b"); es[0].Result.Reason != "http_404" || es[1].Result.Reason != jobs.ReasonBlocked {
			t.Errorf("ledger = %+v", es)
		}
	})
}

// TestResumeWhileParking: a batch paused and resumed while an execution
// was in a call runs again before the execution ends; the resume found
// nothing parked, so the execution parks its contact for the sweep.
func TestResumeWhileParking(t *testing.T) {
	onTopologies(t, func(t *testing.T, b *bundle) {
		b.started(t, "b", []jobs.Row{{Line: 2, ContactID: "c1", MemberID: "m1"}, {Line: 3, ContactID: "c1", MemberID: "m2"}})
		x := b.begin(t, "b", "c1")
		for _, st := range []string{jobs.BatchPaused, jobs.BatchRunning} {
			if _, err := b.store.SetStatus(b.ctx, "b", st, "", ""); err != nil {
				t.Fatal(err)
			}
		}
		if st, _, err := b.store.Release(b.ctx, x, -1, true, jobs.Stats{}); err != nil || st != jobs.BatchRunning {
			t.Fatalf("Release = %q, %v", st, err)
		}
		if sw, err := b.store.Sweep(b.ctx, "b", 60_000); err != nil || sw.Parked != 1 {
			t.Errorf("Sweep = %+v, %v; want the contact parked for it", sw, err)
		}
	})
}
