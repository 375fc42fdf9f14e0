package server_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulkassign/bulkassign/importer"
	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/schedule"
	"github.com/bulkassign/bulkassign/server"
	"github.com/bulkassign/bulkassign/simulator"
	"github.com/bulkassign/bulkassign/worker"
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
	if h.Name != "hourly" || !h.Registered || h.Cron != "@every 1h" || h.Next == nil || h.LastBatch != nil || h.Notify != "https://hooks.example.com/… (slack)" || h.Runs == nil {
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

// scheduleTicks is a schedule of the schedules API as this test reads it
// (registered and runs are the fields of issue 13).
type scheduleTicks struct {
	Name       string         `json:"name"`
	Registered bool           `json:"registered"`
	LastBatch  *server.Batch  `json:"lastBatch"`
	Runs       []schedule.Run `json:"runs"`
}

// TestScheduleTicks: issue 13. The schedules page and API show each
// schedule's recent ticks with their outcome and reason: one skipped
// because the previous batch is paused, one failed for a missing
// contacts file, highlighted; for a schedule no running scheduler has,
// by its records alone, and once a scheduler registers it, on its entry.
func TestScheduleTicks(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	ctx := context.Background()
	sim := httptest.NewServer(simulator.New(simulator.Options{APIKey: apiKey, Members: []simulator.Member{
		{ID: "m-a", Active: true}, {ID: "m-b", Active: true}, {ID: "m-f", Active: true}}}))
	t.Cleanup(sim.Close)
	c, err := worker.NewClient(worker.ClientOptions{BaseURL: sim.URL, APIKey: apiKey})
	if err != nil {
		t.Fatal(err)
	}
	runner := schedule.NewRunner(b.rdb, b.store, importer.New(b.store, b.client, b.ns),
		&schedule.CRM{Client: c, Limiter: worker.NewLocalLimiter(0, 1)}, schedule.RunnerOptions{Namespace: b.ns, Logger: b.log})
	dir := t.TempDir()
	p := jobs.PlanPayload{Name: "rebalance", Contacts: filepath.Join(dir, "contacts.csv"), Rules: filepath.Join(dir, "rules.yaml"), IDFormat: jobs.IDAny}
	if err := os.WriteFile(p.Contacts, []byte("aiContactId,region,currentAgent\nc-1,north,\nc-2,north,m-a\nc-3,south,m-x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.Rules, []byte("rules:\n  - {name: north, match: {region: north}, pool: [{member: m-a}, {member: m-b}]}\nfallback: m-f\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tick := time.Date(2030, 1, 2, 2, 0, 0, 0, time.UTC)
	first, err := runner.RunTick(ctx, p, tick, "task-1", true)
	if err != nil || first.BatchID == "" {
		t.Fatalf("first tick: %+v, %v", first, err)
	}
	control := func(action string) {
		t.Helper()
		res, body := b.do(t, "POST", "/api/v1/batches/"+first.BatchID+"/"+action, token, nil, nil)
		wantStatus(t, res, body, http.StatusOK)
	}
	control("pause")
	if out, err := runner.RunTick(ctx, p, tick.Add(time.Hour), "task-2", true); err != nil || out.SkipCode != schedule.SkipPaused {
		t.Fatalf("tick while paused: %+v, %v", out, err)
	}
	control("cancel")
	if err := os.Remove(p.Contacts); err != nil {
		t.Fatal(err)
	}
	if _, err := runner.RunTick(ctx, p, tick.Add(2*time.Hour), "task-3", true); err == nil {
		t.Fatal("tick without its contacts file: no error")
	}

	list := func() []scheduleTicks {
		t.Helper()
		res, body := b.do(t, "GET", "/api/v1/schedules", token, nil, nil)
		wantStatus(t, res, body, http.StatusOK)
		return decode[struct{ Schedules []scheduleTicks }](t, body).Schedules
	}
	check := func(got []scheduleTicks, registered bool) {
		t.Helper()
		if len(got) != 1 || got[0].Name != "rebalance" || got[0].Registered != registered || len(got[0].Runs) != 3 {
			t.Fatalf("schedules: %+v, want rebalance (registered %t) with 3 ticks", got, registered)
		}
		runs := got[0].Runs // newest first
		if r := runs[0]; r.Outcome != schedule.RunFailed || !strings.Contains(r.Reason, "contacts.csv: no such file") {
			t.Errorf("newest tick %+v, want failed for the missing contacts.csv", r)
		}
		if r := runs[1]; r.Outcome != schedule.RunSkipped || r.Code != schedule.SkipPaused || !strings.Contains(r.Reason, "batch "+first.BatchID+", is paused") {
			t.Errorf("second tick %+v, want skipped: batch %s is paused", r, first.BatchID)
		}
		if r := runs[2]; r.Outcome != schedule.RunQueued || r.BatchID != first.BatchID || r.Rows != 2 {
			t.Errorf("first tick %+v, want queued batch %s of 2 rows", r, first.BatchID)
		}
		if got[0].LastBatch == nil || got[0].LastBatch.ID != first.BatchID {
			t.Errorf("last batch %+v, want %s", got[0].LastBatch, first.BatchID)
		}
	}
	// No scheduler runs: the schedule is known by its records.
	check(list(), false)
	res, body := b.do(t, "GET", "/schedules", token, nil, nil)
	wantStatus(t, res, body, http.StatusOK)
	page := string(body)
	for _, want := range []string{`id="ticks-rebalance"`, "No running scheduler has this schedule", "<strong>failed</strong>", "contacts.csv: no such file or directory",
		"<strong>skipped (previous-paused)</strong>", "batch " + first.BatchID + ", is paused", "#batch=" + first.BatchID, "2 rows, 2 contacts"} {
		if !strings.Contains(page, want) {
			t.Errorf("the schedules page lacks %q", want)
		}
	}
	if n := strings.Count(page, `<tr class="bad">`); n != 2 {
		t.Errorf("the schedules page highlights %d ticks, want the failed and the skipped one", n)
	}

	// A scheduler registers it: one entry, with its records.
	cfg, err := schedule.Load(strings.NewReader("schedules:\n  - {name: rebalance, cron: \"0 2 * * *\", contacts: c.csv, rules: r.yaml}\n"), "schedule.yaml", dir)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := schedule.NewScheduler(b.opt, b.rdb, cfg, schedule.SchedulerOptions{Namespace: b.ns, Logger: b.log, HeartbeatInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- sc.Run(sctx) }()
	t.Cleanup(func() { cancel(); <-done })
	var got []scheduleTicks
	waitFor(t, "the scheduler's entry", func() bool {
		got = list()
		return len(got) == 1 && got[0].Registered
	})
	check(got, true)
}
