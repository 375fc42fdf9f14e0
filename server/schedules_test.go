package server_test

import (
	"context"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulkassign/bulkassign/schedule"
	"github.com/bulkassign/bulkassign/server"
)

// TestSchedules: the entries of a running scheduler, with their cron,
// next run and the newest batch one of their ticks queued.
func TestSchedules(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	dir, _ := filepath.Abs("../examples")
	cfg, err := schedule.Load(strings.NewReader(`schedules:
  - name: nightly-rebalance
    cron: "0 2 * * *"
    timezone: America/Santiago
    contacts: contacts.csv
    rules: territories.yaml
  - name: hourly
    cron: "@every 1h"
    contacts: contacts.csv
    rules: territories.yaml
    notify: https://hooks.example.com/services/T0/B0/s3cret
    notifyFormat: slack
`), "schedule.yaml", dir)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := schedule.NewScheduler(b.opt, b.rdb, cfg, schedule.SchedulerOptions{Namespace: b.ns, Logger: b.log, HeartbeatInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sc.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	// A batch of the nightly schedule, as its tick names it.
	res, body := b.do(t, "POST", "/api/v1/batches?format=csv&name="+url.QueryEscape("nightly-rebalance 2026-01-02T02:00:00-03:00"), token, strings.NewReader(sample), nil)
	wantStatus(t, res, body, http.StatusCreated)
	batch := decode[server.UploadResult](t, body).BatchID

	var got []server.ScheduleEntry
	waitFor(t, "the scheduler's entries", func() bool {
		res, body := b.do(t, "GET", "/api/v1/schedules", token, nil, nil)
		wantStatus(t, res, body, http.StatusOK)
		got = decode[struct{ Schedules []server.ScheduleEntry }](t, body).Schedules
		return len(got) == 2
	})
	h, n := got[0], got[1]
	if h.Name != "hourly" || h.Cron != "@every 1h" || h.Next == nil || h.LastBatch != nil || h.Notify != "https://hooks.example.com/… (slack)" {
		t.Errorf("hourly: %+v", h)
	}
	if n.Notify != "" {
		t.Errorf("nightly-rebalance notifies %q, want nowhere", n.Notify)
	}
	// The monitor shows the ticks' payloads: the URL's path, a Slack
	// webhook's key, is left out there too.
	res, body = b.do(t, "GET", "/monitor/api/scheduler_entries", token, nil, nil)
	wantStatus(t, res, body, http.StatusOK)
	if !strings.Contains(string(body), "hooks.example.com") || strings.Contains(string(body), "s3cret") {
		t.Errorf("the monitor's scheduler entries: %s, want the notify URL without its path", body)
	}
	if n.Name != "nightly-rebalance" || n.Cron != "0 2 * * *" || n.Timezone != "America/Santiago" || n.Next == nil ||
		n.LastBatch == nil || n.LastBatch.ID != batch || !strings.HasSuffix(n.Contacts, "contacts.csv") {
		t.Errorf("nightly-rebalance: %+v", n)
	}
	res, body = b.do(t, "GET", "/schedules", token, nil, nil)
	wantStatus(t, res, body, http.StatusOK)
	for _, want := range []string{"nightly-rebalance", "0 2 * * *", "#batch=" + batch, "running: 0 succeeded", "notifies https://hooks.example.com/… (slack)"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("the schedules page lacks %q", want)
		}
	}
}
