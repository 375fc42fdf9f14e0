package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulkassign/bulkassign/internal/redistest"
	"github.com/bulkassign/bulkassign/jobs"
	"github.com/redis/go-redis/v9"
)

// bundle is what a store test works with.
type bundle struct {
	ctx   context.Context
	rdb   *redis.Client
	ns    string
	store *jobs.Store
	now   time.Time
}

func setup(t *testing.T) *bundle {
	t.Helper()
	url := redistest.URL(t)
	ns := redistest.Namespace(t, url)
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { _ = rdb.Close() })
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

// started creates a running batch of rows.
func (b *bundle) started(t *testing.T, id string, rows []jobs.Row) {
	t.Helper()
	if err := b.store.Create(b.ctx, id, "name-"+id, "src.csv"); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if err := b.store.AddRows(b.ctx, id, rows); err != nil {
		t.Fatalf("AddRows: %v", err)
	}
	if err := b.store.Start(b.ctx, id, len(rows), len(rows), nil); err != nil {
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

var ok = jobs.Result{Status: jobs.StatusSucceeded, HTTPStatus: 200, Attempts: 1}

func TestCreateAddRowsStartGet(t *testing.T) {
	t.Parallel()
	b := setup(t)
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
	}
	if err := b.store.AddRows(b.ctx, id, rows); err != nil {
		t.Fatal(err)
	}
	if err := b.store.AddRows(b.ctx, id, nil); err != nil {
		t.Fatalf("AddRows(nil): %v", err)
	}
	got = b.get(t, id)
	if got.Status != jobs.BatchImporting || got.Invalid != 2 {
		t.Fatalf("after AddRows: status %q invalid %d, want importing and 2", got.Status, got.Invalid)
	}
	if err := b.store.Start(b.ctx, id, len(rows), 2, []string{"region", "note"}); err != nil {
		t.Fatal(err)
	}
	if err := b.store.Start(b.ctx, id, len(rows), 2, nil); err == nil {
		t.Fatal("second Start: want an error")
	}
	got = b.get(t, id)
	want := jobs.Batch{
		ID: id, Name: "nightly", Source: "owners.csv", Status: jobs.BatchRunning,
		Rows: 4, Invalid: 2, Contacts: 2, Extras: []string{"region", "note"},
		CreatedAt: b.now, StartedAt: b.now,
		Errors: map[string]int64{"invalid_contact_id": 1, "invalid_replace": 1},
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
	if len(es) != 4 {
		t.Fatalf("Entries: %d, want 4", len(es))
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
}

func TestUnknownBatch(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if _, err := b.store.Get(b.ctx, "nope"); !errors.Is(err, jobs.ErrNotFound) {
		t.Errorf("Get: err = %v, want ErrNotFound", err)
	}
	if _, _, err := b.store.Status(b.ctx, "nope"); !errors.Is(err, jobs.ErrNotFound) {
		t.Errorf("Status: err = %v, want ErrNotFound", err)
	}
	if err := b.store.SetStatus(b.ctx, "nope", jobs.BatchPaused, "", ""); err == nil {
		t.Error("SetStatus: want an error")
	}
	if err := b.store.Start(b.ctx, "nope", 1, 1, nil); err == nil {
		t.Error("Start: want an error")
	}
}

func TestAllInvalidIsDoneAtStart(t *testing.T) {
	t.Parallel()
	b := setup(t)
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

func TestEmptyBatchIsDoneAtStart(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.started(t, "b", nil)
	if got := b.get(t, "b"); got.Status != jobs.BatchDone {
		t.Fatalf("status %q, want done", got.Status)
	}
}

func TestRecordCompletesBatch(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rows := validRows(3)
	rows = append(rows, jobs.Row{Line: 9, ContactID: "x", Reason: "invalid_member_id"})
	b.started(t, "b", rows)

	done, err := b.store.Record(b.ctx, "b", []int{2, 3}, ok, jobs.Stats{Calls: 1})
	if err != nil || done {
		t.Fatalf("Record 2,3 = %v, %v; want not complete", done, err)
	}
	fail := jobs.Result{Status: jobs.StatusFailed, HTTPStatus: 404, Attempts: 1, Reason: "http_404", Error: "HTTP 404: not found"}
	done, err = b.store.Record(b.ctx, "b", []int{4}, fail, jobs.Stats{Calls: 2, Retries: 1, RateLimited: 1})
	if err != nil || !done {
		t.Fatalf("Record last line = %v, %v; want complete", done, err)
	}
	got := b.get(t, "b")
	if got.Status != jobs.BatchDone || got.Succeeded != 2 || got.Failed != 1 || got.Invalid != 1 || got.Done() != got.Rows {
		t.Errorf("batch = %+v", got)
	}
	if got.APICalls != 3 || got.Retries != 1 || got.RateLimited != 1 {
		t.Errorf("counters calls %d retries %d rateLimited %d, want 3 1 1", got.APICalls, got.Retries, got.RateLimited)
	}
	if got.Errors["http_404"] != 1 || !got.FinishedAt.Equal(b.now) {
		t.Errorf("errors %v finishedAt %v", got.Errors, got.FinishedAt)
	}
	es := b.entries(t, "b")
	if es[2].Result != fail || es[0].Result != ok {
		t.Errorf("results: %+v", es)
	}
	// Once done, Record never reports completion again.
	done, err = b.store.Record(b.ctx, "b", []int{4}, ok, jobs.Stats{})
	if err != nil || done {
		t.Errorf("Record on a done batch = %v, %v", done, err)
	}
}

func TestRecordIsIdempotent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.started(t, "b", validRows(2))
	if _, err := b.store.Record(b.ctx, "b", []int{2}, ok, jobs.Stats{}); err != nil {
		t.Fatal(err)
	}
	fail := jobs.Result{Status: jobs.StatusFailed, Reason: "http_500", Error: "boom"}
	if done, err := b.store.Record(b.ctx, "b", []int{2}, fail, jobs.Stats{}); err != nil || done {
		t.Fatalf("second Record = %v, %v", done, err)
	}
	got := b.get(t, "b")
	if got.Succeeded != 1 || got.Failed != 0 || len(got.Errors) != 0 || got.Status != jobs.BatchRunning {
		t.Errorf("after recording line 2 twice: %+v", got)
	}
	if es := b.entries(t, "b"); es[0].Result != ok {
		t.Errorf("line 2 result = %+v, want the first one %+v", es[0].Result, ok)
	}
}

func TestRecordConcurrentExactCounters(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const n = 400
	rows := validRows(n)
	b.started(t, "b", rows)

	// 50 goroutines; every line is recorded by three of them, as a success
	// by one and a failure by the others, in random order.
	const workers = 50
	var calls, completions atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 7))
			mine := []int{}
			for i, l := range lines(rows) {
				if i%workers == w || (i+7)%workers == w || (i+19)%workers == w {
					mine = append(mine, l)
				}
			}
			r.Shuffle(len(mine), func(i, j int) { mine[i], mine[j] = mine[j], mine[i] })
			for len(mine) > 0 {
				k := min(len(mine), 1+r.IntN(3))
				part := mine[:k]
				mine = mine[k:]
				res := jobs.Result{Status: jobs.StatusFailed, Reason: "http_500"}
				if part[0]%2 == 0 {
					res = ok
				}
				done, err := b.store.Record(b.ctx, "b", part, res, jobs.Stats{Calls: 1})
				if err != nil {
					t.Error(err)
					return
				}
				calls.Add(1)
				if done {
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
	if got.APICalls != calls.Load() {
		t.Errorf("apiCalls %d, want %d", got.APICalls, calls.Load())
	}
	if c := completions.Load(); c != 1 {
		t.Errorf("completion reported %d times, want 1", c)
	}
	// The counters agree with the ledger.
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

func TestCompletionReportedOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for round := range 10 {
		id := fmt.Sprintf("b%d", round)
		rows := validRows(60)
		b.started(t, id, rows)
		// All but the last 5 rows are in; 50 goroutines race on the rest.
		if _, err := b.store.Record(b.ctx, id, lines(rows[:55]), ok, jobs.Stats{}); err != nil {
			t.Fatal(err)
		}
		last := lines(rows[55:])
		var completions atomic.Int64
		var wg sync.WaitGroup
		start := make(chan struct{})
		for w := range 50 {
			wg.Go(func() {
				<-start
				ls := []int{last[w%len(last)]}
				if w%3 == 0 {
					ls = last
				}
				done, err := b.store.Record(b.ctx, id, ls, ok, jobs.Stats{})
				if err != nil {
					t.Error(err)
				}
				if done {
					completions.Add(1)
				}
			})
		}
		close(start)
		wg.Wait()
		if c := completions.Load(); c != 1 {
			t.Fatalf("round %d: completion reported %d times, want 1", round, c)
		}
		if got := b.get(t, id); got.Succeeded != 60 || got.Status != jobs.BatchDone {
			t.Fatalf("round %d: %+v", round, got)
		}
	}
}

func TestRecordBeforeStartDoesNotComplete(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rows := validRows(2)
	if err := b.store.Create(b.ctx, "b", "", ""); err != nil {
		t.Fatal(err)
	}
	if err := b.store.AddRows(b.ctx, "b", rows); err != nil {
		t.Fatal(err)
	}
	// Rows recorded while the batch is importing (rows count still 0).
	if done, err := b.store.Record(b.ctx, "b", []int{2, 3}, ok, jobs.Stats{}); err != nil || done {
		t.Fatalf("Record while importing = %v, %v", done, err)
	}
	if got := b.get(t, "b"); got.Status != jobs.BatchImporting {
		t.Fatalf("status %q, want importing", got.Status)
	}
	if err := b.store.Start(b.ctx, "b", 2, 2, nil); err != nil {
		t.Fatal(err)
	}
	if got := b.get(t, "b"); got.Status != jobs.BatchDone {
		t.Fatalf("status %q after Start, want done", got.Status)
	}
}

// batchKeys lists the Redis keys holding anything of batch id.
func (b *bundle) batchKeys(t *testing.T, id string) []string {
	t.Helper()
	keys, err := b.rdb.Keys(b.ctx, b.ns+"*"+id+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

func TestDelete(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.started(t, "gone", validRows(3))
	b.started(t, "kept", validRows(1))
	if err := b.store.NoteAttempt(b.ctx, "gone", 2, jobs.Stats{Calls: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.store.Record(b.ctx, "gone", []int{3}, jobs.Result{Status: jobs.StatusFailed, Reason: "http_400"}, jobs.Stats{}); err != nil {
		t.Fatal(err)
	}
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
	done, err := b.store.Record(b.ctx, "gone", []int{2, 4}, ok, jobs.Stats{Calls: 2})
	if err != nil || done {
		t.Errorf("Record on a deleted batch = %v, %v", done, err)
	}
	if err := b.store.NoteAttempt(b.ctx, "gone", 2, jobs.Stats{Calls: 1, Retries: 1}); err != nil {
		t.Errorf("NoteAttempt on a deleted batch: %v", err)
	}
	if err := b.store.AddStats(b.ctx, "gone", jobs.Stats{Calls: 1, RateLimited: 1}); err != nil {
		t.Errorf("AddStats on a deleted batch: %v", err)
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
	t.Parallel()
	b := setup(t)
	const n = 2600 // more than two chunks of 1000
	rows := make([]jobs.Row, n)
	for i := range rows {
		line := 2 + i*3 // gaps, as after header and blank lines
		rows[i] = jobs.Row{Line: line, ContactID: fmt.Sprintf("c%d", i%97), MemberID: "m" + fmt.Sprint(i%5),
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
	if err := b.store.Start(b.ctx, "b", n, 97, []string{"note", "empty"}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i += 10 {
		if _, err := b.store.Record(b.ctx, "b", []int{rows[i].Line}, jobs.Result{Status: jobs.StatusSucceeded, Attempts: i}, jobs.Stats{}); err != nil {
			t.Fatal(err)
		}
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
}

func TestSetStatus(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.started(t, "b", validRows(1))
	if err := b.store.SetStatus(b.ctx, "b", jobs.BatchPaused, jobs.PauseUnauthorized, "key refused"); err != nil {
		t.Fatal(err)
	}
	got := b.get(t, "b")
	if got.Status != jobs.BatchPaused || got.PauseCode != jobs.PauseUnauthorized || got.PauseReason != "key refused" {
		t.Fatalf("paused batch: %+v", got)
	}
	if st, reason, err := b.store.Status(b.ctx, "b"); st != jobs.BatchPaused || reason != "key refused" || err != nil {
		t.Fatalf("Status = %q %q %v", st, reason, err)
	}
	if err := b.store.SetStatus(b.ctx, "b", jobs.BatchRunning, "", ""); err != nil {
		t.Fatal(err)
	}
	got = b.get(t, "b")
	if got.Status != jobs.BatchRunning || got.PauseCode != "" || got.PauseReason != "" {
		t.Fatalf("resumed batch: %+v", got)
	}
	if done, err := b.store.Record(b.ctx, "b", []int{2}, ok, jobs.Stats{}); err != nil || !done {
		t.Fatalf("Record = %v, %v", done, err)
	}
	for _, st := range []string{jobs.BatchPaused, jobs.BatchRunning} {
		if err := b.store.SetStatus(b.ctx, "b", st, "x", "y"); err != nil {
			t.Fatal(err)
		}
		if got := b.get(t, "b"); got.Status != jobs.BatchDone || got.PauseCode != "" {
			t.Fatalf("SetStatus(%s) on a done batch: %+v", st, got)
		}
	}
}

func TestPausedBatchCompletes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.started(t, "b", validRows(1))
	if err := b.store.SetStatus(b.ctx, "b", jobs.BatchPaused, "manual", "operator"); err != nil {
		t.Fatal(err)
	}
	// A call in flight when the batch was paused still lands.
	if done, err := b.store.Record(b.ctx, "b", []int{2}, ok, jobs.Stats{}); err != nil || !done {
		t.Fatalf("Record = %v, %v", done, err)
	}
	if got := b.get(t, "b"); got.Status != jobs.BatchDone {
		t.Fatalf("status %q", got.Status)
	}
}

func TestProgressNoteAttemptAddStats(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.started(t, "b", validRows(4))
	for range 2 {
		if err := b.store.NoteAttempt(b.ctx, "b", 3, jobs.Stats{Calls: 1, Retries: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.store.NoteAttempt(b.ctx, "b", 4, jobs.Stats{Calls: 3, Retries: 1, RateLimited: 2}); err != nil {
		t.Fatal(err)
	}
	if err := b.store.AddStats(b.ctx, "b", jobs.Stats{Calls: 5, RateLimited: 5}); err != nil {
		t.Fatal(err)
	}
	if err := b.store.AddStats(b.ctx, "b", jobs.Stats{}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.store.Record(b.ctx, "b", []int{2}, ok, jobs.Stats{}); err != nil {
		t.Fatal(err)
	}
	p, err := b.store.Progress(b.ctx, "b", []int{2, 3, 4, 5, 99})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(p.Done) != "map[2:true]" || fmt.Sprint(p.Attempts) != "map[3:2 4:1]" {
		t.Errorf("Progress = %+v", p)
	}
	got := b.get(t, "b")
	if got.APICalls != 10 || got.Retries != 3 || got.RateLimited != 7 {
		t.Errorf("calls %d retries %d rateLimited %d, want 10 3 7", got.APICalls, got.Retries, got.RateLimited)
	}
	if p.Status != jobs.BatchRunning {
		t.Errorf("Progress status = %q, want %q", p.Status, jobs.BatchRunning)
	}
	if _, err := b.store.Progress(b.ctx, "nope", []int{2}); !errors.Is(err, jobs.ErrNotFound) {
		t.Errorf("Progress of unknown batch: %v, want ErrNotFound", err)
	}
}

// TestFinishedBatchExpires: a batch that ends, by its last row, all rows
// invalid at Start, or a cancel, keeps its keys for the retention; one
// still running keeps them forever.
func TestFinishedBatchExpires(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ttl := func(id string) (meta, results time.Duration) {
		t.Helper()
		prefix := b.ns + ":batch:" + id
		return b.rdb.TTL(b.ctx, prefix).Val(), b.rdb.TTL(b.ctx, prefix+":rows").Val()
	}
	inRetention := func(d time.Duration) bool { return d > jobs.DefaultRetention-time.Minute && d <= jobs.DefaultRetention }

	b.started(t, "last-row", validRows(2))
	if meta, _ := ttl("last-row"); meta != -1 {
		t.Errorf("running batch: TTL %v, want none", meta)
	}
	for _, l := range []int{2, 3} {
		if _, err := b.store.Record(b.ctx, "last-row", []int{l}, jobs.Result{Status: jobs.StatusSucceeded}, jobs.Stats{}); err != nil {
			t.Fatal(err)
		}
	}
	b.started(t, "all-invalid", []jobs.Row{{Line: 2, Reason: "invalid_contact_id", Error: "bad"}})
	b.started(t, "cancelled", validRows(2))
	if err := b.store.SetStatus(b.ctx, "cancelled", jobs.BatchCancelled, "", ""); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"last-row", "all-invalid", "cancelled"} {
		if meta, rows := ttl(id); !inRetention(meta) || !inRetention(rows) {
			t.Errorf("%s: TTL of record %v, of rows %v; want the retention (%v)", id, meta, rows, jobs.DefaultRetention)
		}
	}
}
