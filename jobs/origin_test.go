package jobs_test

import (
	"errors"
	"testing"

	"github.com/bulkassign/bulkassign/jobs"
)

func TestOrigin(t *testing.T) {
	onTopologies(t, func(t *testing.T, b *bundle) {
		if err := b.store.Create(b.ctx, "o1", "", "a.csv"); err != nil {
			t.Fatal(err)
		}
		got, err := b.store.Get(b.ctx, "o1")
		if err != nil || !got.Origin.IsZero() {
			t.Fatalf("a batch without an origin has %+v (%v)", got.Origin, err)
		}
		o := jobs.Origin{Via: "run", By: "alice@laptop", Settings: &jobs.Settings{Rate: 20, Burst: 1, Concurrency: 16, MaxAttempts: 5}}
		if err := b.store.SetOrigin(b.ctx, "o1", o); err != nil {
			t.Fatal(err)
		}
		got, err = b.store.Get(b.ctx, "o1")
		if err != nil {
			t.Fatal(err)
		}
		if got.Origin.Via != o.Via || got.Origin.By != o.By || got.Origin.Settings == nil || *got.Origin.Settings != *o.Settings {
			t.Errorf("Get gives origin %+v, want %+v", got.Origin, o)
		}
		if err := b.store.SetOrigin(b.ctx, "nosuch", o); !errors.Is(err, jobs.ErrNotFound) {
			t.Errorf("origin of a batch that does not exist: %v, want ErrNotFound", err)
		}
		if n, _ := b.rdb.Exists(b.ctx, b.ns+":batch:{nosuch}").Result(); n != 0 {
			t.Error("SetOrigin of a missing batch created its record")
		}
	})
}

func TestOriginString(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		o    jobs.Origin
		want string
	}{
		{jobs.Origin{}, ""},
		{jobs.Origin{Via: "import", By: "bob@ci"}, "bob@ci (import)"},
		{jobs.Origin{Via: "run", By: "alice@laptop", Settings: &jobs.Settings{Rate: 20, Concurrency: 16, MaxAttempts: 5}},
			"alice@laptop (run; rate 20/s, concurrency 16, 5 attempts)"},
		{jobs.Origin{Via: "serve", By: "supervisors", Client: "10.0.0.7", Settings: &jobs.Settings{Concurrency: 4, MaxAttempts: 3}},
			"supervisors (serve; from 10.0.0.7; no rate limit, concurrency 4, 3 attempts)"},
		{jobs.Origin{Via: "schedule", By: "nightly-rebalance"}, "nightly-rebalance (schedule)"},
	} {
		if got := tc.o.String(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.o, got, tc.want)
		}
	}
}
