package jobs_test

// Benchmarks of the ledger writes every contact makes: Store.Begin (claim
// the contact, read what is left) and Store.Settle (give a row its result),
// each one Lua script call on a real redis-server. Run with
//
//	go test ./jobs -run '^$' -bench BenchmarkExecution -benchmem

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/bulkassign/bulkassign/internal/redistest"
	"github.com/bulkassign/bulkassign/jobs"
	"github.com/redis/go-redis/v9"
)

// benchContacts is how many one-row contacts the bench batch plans: more
// than a benchmark settles, so the batch never completes.
const benchContacts = 200_000

// benchStore is a store on the test Redis with one running batch of
// benchContacts one-row contacts.
func benchStore(b *testing.B) (*jobs.Store, string) {
	b.Helper()
	url := redistest.URL(b)
	ns := redistest.Namespace(b, url)
	opt, err := redis.ParseURL(url)
	if err != nil {
		b.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	b.Cleanup(func() { _ = rdb.Close() })
	store := jobs.NewStore(rdb, jobs.StoreOptions{Namespace: ns})
	ctx := context.Background()
	const id = "bench"
	if err := store.Create(ctx, id, "", "bench.csv"); err != nil {
		b.Fatal(err)
	}
	plan := make([]jobs.Contact, 0, 5000)
	for i := range benchContacts {
		plan = append(plan, jobs.Contact{ID: contactN(i), Ops: []jobs.Op{{MemberID: "m1", Lines: []int{i + 2}}}})
		if len(plan) == cap(plan) || i == benchContacts-1 {
			if err := store.AddContacts(ctx, id, plan); err != nil {
				b.Fatal(err)
			}
			plan = plan[:0]
		}
	}
	if err := store.Start(ctx, id, 1<<40, benchContacts, nil); err != nil {
		b.Fatal(err)
	}
	return store, id
}

func contactN(i int) string { return fmt.Sprintf("c%07d", i) }

// BenchmarkExecution runs a one-row contact's ledger writes: "success"
// begins and settles it (the normal path), "failed" settles it with a
// reason code (the error counter too), "redelivered" begins a contact
// that is settled already (a duplicate delivery: nothing is written), and
// "parallel-16" is the first path from 16 goroutines at once, as a
// worker's concurrency makes it.
func BenchmarkExecution(b *testing.B) {
	ok := jobs.Result{Status: jobs.StatusSucceeded, HTTPStatus: 200, Attempts: 1}
	failed := jobs.Result{Status: jobs.StatusFailed, HTTPStatus: 404, Attempts: 1, Reason: "http_404", Error: "HTTP 404: Contact not found"}
	st := jobs.Stats{Calls: 1}
	ctx := context.Background()
	run := func(b *testing.B, store *jobs.Store, id string, i int, res jobs.Result) {
		got, err := store.Begin(ctx, id, contactN(i%benchContacts), 5)
		if err != nil {
			b.Fatal(err)
		}
		if got.Verdict != jobs.Run {
			return
		}
		if _, err := store.Settle(ctx, got.Exec, 0, res, false, true, st); err != nil {
			b.Fatal(err)
		}
	}
	for _, bc := range []struct {
		name string
		res  jobs.Result
	}{{"success", ok}, {"failed", failed}} {
		b.Run(bc.name, func(b *testing.B) {
			store, id := benchStore(b)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				run(b, store, id, i, bc.res)
				i++
			}
		})
	}
	b.Run("redelivered", func(b *testing.B) {
		store, id := benchStore(b)
		run(b, store, id, 0, ok)
		b.ReportAllocs()
		for b.Loop() {
			run(b, store, id, 0, ok)
		}
	})
	b.Run("parallel-16", func(b *testing.B) {
		store, id := benchStore(b)
		var next atomic.Int64
		b.ReportAllocs()
		b.SetParallelism(max(16/runtime.GOMAXPROCS(0), 1)) // about 16 goroutines
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				run(b, store, id, int(next.Add(1)), ok)
			}
		})
	})
}
