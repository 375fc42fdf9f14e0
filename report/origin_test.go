package report_test

import (
	"testing"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/report"
)

// TestWriteBatchOrigin: summary.json says who started the batch, how, and
// with which settings, and so does a notice's summary; a batch without an origin has no "origin" key.
func TestWriteBatchOrigin(t *testing.T) {
	t.Parallel()
	rows := []jobs.Row{vrow(2, "c1", "m1", false)}
	b := newLedgerBatch(t, false, rows)
	if _, _, raw := b.report(t); raw["origin"] != nil {
		t.Errorf("summary.json of a batch without an origin has origin %v", raw["origin"])
	}
	o := jobs.Origin{Via: "run", By: "alice@laptop", Settings: &jobs.Settings{Rate: 20, Burst: 1, Concurrency: 16, MaxAttempts: 5}}
	if err := b.store.SetOrigin(b.ctx, b.id, o); err != nil {
		t.Fatal(err)
	}
	_, s, raw := b.report(t)
	if s.Origin == nil || s.Origin.String() != o.String() {
		t.Errorf("summary origin %v, want %v", s.Origin, o)
	}
	if n, err := report.Summarize(b.ctx, b.store, b.id); err != nil || n.Origin == nil || n.Origin.String() != o.String() {
		t.Errorf("the notice's summary has origin %v (%v), want %v", n.Origin, err, o)
	}
	got, _ := raw["origin"].(map[string]any)
	settings, _ := got["settings"].(map[string]any)
	if got["via"] != "run" || got["by"] != "alice@laptop" || settings["rate"] != 20.0 || settings["concurrency"] != 16.0 || settings["maxAttempts"] != 5.0 {
		t.Errorf("summary.json origin = %v", raw["origin"])
	}
}
