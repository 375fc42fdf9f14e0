package schedule

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/bulkassign/bulkassign/internal/redistest"
)

// TestRecordedListsTheSchedulesWithRecords runs on every topology: a
// tick's record and the name of its schedule are on different Redis
// Cluster slots. The names are found without the schedule file, those of
// schedules whose newest record is past the records' retention are not,
// and the names key expires with the records.
func TestRecordedListsTheSchedulesWithRecords(t *testing.T) {
	t.Parallel()
	for _, tp := range redistest.Topologies() {
		t.Run(string(tp), func(t *testing.T) {
			t.Parallel()
			s := newSetupOn(t, tp)
			ctx := context.Background()
			if names, err := Recorded(ctx, s.rdb, s.ns); err != nil || len(names) != 0 {
				t.Fatalf("Recorded before any tick: %q, %v; want none", names, err)
			}
			if out, err := s.runner.RunTick(ctx, s.p, tick0, "task-1", true); err != nil || out.BatchID == "" {
				t.Fatalf("RunTick: %+v, %v", out, err)
			}
			// Another schedule, recorded long before: its records are past
			// their retention once this one records.
			old := Run{Schedule: "old-one", Tick: tick0, At: time.Now().Add(-2 * tickKeyTTL), Outcome: RunFailed, Reason: "x"}
			if err := record(ctx, s.rdb, s.ns, old); err != nil {
				t.Fatal(err)
			}
			early := Run{Schedule: "early", Tick: tick0, At: time.Now(), Outcome: RunSkipped, Code: SkipNothing, Reason: "nothing to change"}
			if err := record(ctx, s.rdb, s.ns, early); err != nil {
				t.Fatal(err)
			}
			names, err := Recorded(ctx, s.rdb, s.ns)
			if err != nil || !slices.Equal(names, []string{"early", "rebalance"}) {
				t.Errorf("Recorded: %q, %v; want [early rebalance]", names, err)
			}
			ttl, err := s.rdb.PTTL(ctx, namesKey(s.ns)).Result()
			if err != nil || ttl <= 0 || ttl > tickKeyTTL {
				t.Errorf("the names key expires in %s (%v), want within %s", ttl, err, tickKeyTTL)
			}
			runs, err := Runs(ctx, s.rdb, s.ns, "rebalance", 5)
			if err != nil || len(runs) != 1 || runs[0].Outcome != RunQueued || runs[0].Stalled() {
				t.Errorf("Runs: %+v, %v; want the queued tick", runs, err)
			}
		})
	}
}

// TestRunsByTick: a tick recorded late (retried, or planned slowly) is
// listed by its tick time, not where its record went in.
func TestRunsByTick(t *testing.T) {
	t.Parallel()
	s := newSetupOn(t, redistest.Single)
	ctx := context.Background()
	for _, m := range []int{0, 2, 1, 3} { // the tick of minute 1 recorded after minute 2's
		rec := Run{Schedule: "s", Tick: tick0.Add(time.Duration(m) * time.Minute), At: time.Now(), Outcome: RunSkipped, Code: SkipNothing}
		if err := record(ctx, s.rdb, s.ns, rec); err != nil {
			t.Fatal(err)
		}
	}
	runs, err := Runs(ctx, s.rdb, s.ns, "s", 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for _, r := range runs {
		got = append(got, int(r.Tick.Sub(tick0)/time.Minute))
	}
	if !slices.Equal(got, []int{3, 2, 1, 0}) {
		t.Errorf("ticks listed at minutes %v, want [3 2 1 0]", got)
	}
}
