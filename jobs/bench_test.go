package jobs_test

// Benchmarks of the ledger update every finished row makes: Store.Record,
// one Lua script call on a real redis-server. Run with
//
//	go test ./jobs -run '^$' -bench BenchmarkRecord -benchmem

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/bulkassign/bulkassign/internal/redistest"
	"github.com/bulkassign/bulkassign/jobs"
	"github.com/redis/go-redis/v9"
)

// benchStore is a store on the test Redis with one running batch that
// never completes (its row count is far above what a benchmark records).
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
	if err := store.Start(ctx, id, 1<<40, 1<<40, nil); err != nil {
		b.Fatal(err)
	}
	return store, id
}

// BenchmarkRecord records results: "first" gives a new line its result
// (the normal path), "failed" does so with a reason code (the error
// counter too), "duplicate" repeats a line that has one (a redelivered
// task: nothing is counted), and "parallel-16" is the first path from 16
// goroutines at once, as a worker's concurrency makes it.
func BenchmarkRecord(b *testing.B) {
	ok := jobs.Result{Status: jobs.StatusSucceeded, HTTPStatus: 200, Attempts: 1}
	failed := jobs.Result{Status: jobs.StatusFailed, HTTPStatus: 404, Attempts: 1, Reason: "http_404", Error: "HTTP 404: Contact not found"}
	st := jobs.Stats{Calls: 1}
	ctx := context.Background()

	b.Run("first", func(b *testing.B) {
		store, id := benchStore(b)
		b.ReportAllocs()
		line := 1
		for b.Loop() {
			line++
			if _, err := store.Record(ctx, id, []int{line}, ok, st); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("failed", func(b *testing.B) {
		store, id := benchStore(b)
		b.ReportAllocs()
		line := 1
		for b.Loop() {
			line++
			if _, err := store.Record(ctx, id, []int{line}, failed, st); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("duplicate", func(b *testing.B) {
		store, id := benchStore(b)
		if _, err := store.Record(ctx, id, []int{2}, ok, st); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := store.Record(ctx, id, []int{2}, ok, jobs.Stats{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel-16", func(b *testing.B) {
		store, id := benchStore(b)
		var next atomic.Int64
		b.ReportAllocs()
		b.SetParallelism(max(16/runtime.GOMAXPROCS(0), 1)) // about 16 goroutines
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := store.Record(ctx, id, []int{int(next.Add(1)) + 1}, ok, st); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
