package jobs_test

import (
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/bulkassign/bulkassign/jobs"
	"github.com/redis/go-redis/v9"
)

// TestLedgerOnMiniredis runs a batch through the ledger on miniredis, the
// in-process queue `run --embedded memory` falls back to: its Lua
// interpreter formats numbers and returns values differently from
// Redis's, and the scripts must give the same answers on both.
func TestLedgerOnMiniredis(t *testing.T) {
	t.Parallel()
	m := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	b := &bundle{ctx: t.Context(), rdb: rdb, ns: "mini", store: jobs.NewStore(rdb, jobs.StoreOptions{Namespace: "mini"})}
	rows := validRows(3)
	b.started(t, "b", rows)
	x := b.begin(t, "b", "c0")
	if got, err := b.store.Begin(b.ctx, "b", "c0", 5); err != nil || got.Verdict != jobs.Busy {
		t.Fatalf("second execution = %+v, %v; want Busy", got, err)
	}
	if st, err := b.store.Watch(b.ctx, "b", []*jobs.Execution{x}); err != nil || st.Status != jobs.BatchRunning || st.Epoch != 1 {
		t.Fatalf("Watch = %+v, %v", st, err)
	}
	if r, err := b.store.Settle(b.ctx, x, 0, ok, false, true, jobs.Stats{Calls: 1}); err != nil || r.Stale || r.Gone {
		t.Fatalf("Settle = %+v, %v", r, err)
	}
	b.settle(t, "b", "c1", ok, jobs.Stats{Calls: 1})
	if sw, err := b.store.Sweep(b.ctx, "b", 60_000); err != nil || sw.Status != jobs.BatchRunning || sw.Requeue {
		t.Fatalf("Sweep = %+v, %v", sw, err)
	}
	if r := b.settle(t, "b", "c2", ok, jobs.Stats{Calls: 1}); !r.Completed {
		t.Fatalf("last settle = %+v, want the batch complete", r)
	}
	if got := b.get(t, "b"); got.Status != jobs.BatchDone || got.Succeeded != 3 || got.APICalls != 3 {
		t.Errorf("batch = %+v", got)
	}
}
