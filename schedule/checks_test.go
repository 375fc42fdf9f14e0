package schedule

import (
	"context"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/simulator"
	"github.com/bulkassign/bulkassign/worker"
)

// applyPlan stands for the workers: it gives the setup's contacts the
// owners its plan gives them (c-1 to m-b, c-3 to the fallback m-f) and
// ends the batch.
func (s *setup) applyPlan(t *testing.T, batch string) {
	t.Helper()
	s.sim.SetAgents("c-1", "m-b")
	s.sim.SetAgents("c-3", "m-f")
	if _, err := s.store.SetStatus(context.Background(), batch, jobs.BatchCancelled, "", ""); err != nil {
		t.Fatal(err)
	}
}

// TestTickLiveMakesNoSecondBatch: finding 1. A schedule whose file is
// never updated queued the same rows at every tick, because it trusted
// the file's owners; with live: true a tick against a CRM that already
// has the plan applied queues nothing.
func TestTickLiveMakesNoSecondBatch(t *testing.T) {
	t.Parallel()
	for _, live := range []bool{false, true} {
		s := newSetup(t)
		ctx := context.Background()
		s.sim.SetAgents("c-2", "m-a") // the CRM as the file has it
		s.sim.SetAgents("c-3", "m-x")
		s.p.Live = live
		first, err := s.runner.Tick(ctx, s.p, tick0, "task-1")
		if err != nil || first.BatchID == "" || first.Summary.Rows != 2 {
			t.Fatalf("live %v: first tick %+v, %v; want a batch of 2 rows", live, first, err)
		}
		s.applyPlan(t, first.BatchID)
		second, err := s.runner.Tick(ctx, s.p, tick0.Add(time.Hour), "task-2")
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case live && (second.BatchID != "" || second.SkipCode != SkipNothing):
			t.Errorf("live: the second tick against the applied plan: %+v, want nothing to change", second)
		case !live && second.Summary.Rows != 2:
			// What a file nobody updates gives: the same rows again.
			t.Errorf("file owners: the second tick %+v, want the same 2 rows again", second)
		}
	}
}

// TestTickLiveReadsTheCRM: a contact changed in the CRM behind the file's
// back is planned from the CRM's state.
func TestTickLiveReadsTheCRM(t *testing.T) {
	t.Parallel()
	s := newSetup(t)
	s.sim.SetAgents("c-1", "m-b") // the file says none
	s.sim.SetAgents("c-2", "m-a")
	s.sim.SetAgents("c-3", "m-f") // the file says m-x
	s.p.Live = true
	out, err := s.runner.Tick(context.Background(), s.p, tick0, "task-1")
	if err != nil || out.BatchID != "" || out.SkipCode != SkipNothing {
		t.Errorf("tick: %+v, %v; want nothing to change: the CRM already has the plan", out, err)
	}
}

// TestTickChecksThePools: finding 2. A pool member the CRM does not have,
// or has inactive, fails the tick naming the rule's line, and queues
// nothing; members may be named by email.
func TestTickChecksThePools(t *testing.T) {
	t.Parallel()
	s := newSetup(t)
	ctx := context.Background()
	bad := s.p
	bad.Rules = filepath.Join(s.dir, "bad.yaml")
	rules := "rules:\n  - name: north\n    match: {region: north}\n    pool:\n      - {member: m-a}\n      - {member: m-nobody}\n      - {member: m-gone}\nfallback: m-f\n"
	if err := os.WriteFile(bad.Rules, []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := s.runner.RunTick(ctx, bad, tick0, "task-1", true)
	if err == nil || !permanent(err) || out.BatchID != "" {
		t.Fatalf("tick with bad pools: %+v, %v; want a file error and no batch", out, err)
	}
	for _, w := range []string{"bad.yaml: line 6: rule 1 \"north\": pool entry 2: member m-nobody is not among the CRM's 5 team members",
		"bad.yaml: line 7: rule 1 \"north\": pool entry 3: team member m-gone is inactive"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
	if ids := s.batchIDs(t); len(ids) != 0 || s.sim.Stats().Assigned != 0 {
		t.Errorf("%d batches, %d assignments; want none", len(ids), s.sim.Stats().Assigned)
	}
	runs, err := Runs(ctx, s.rdb, s.ns, bad.Name, 10)
	if err != nil || len(runs) != 1 || runs[0].Outcome != RunFailed || !strings.Contains(runs[0].Reason, "m-nobody") {
		t.Errorf("records %+v (%v), want one failed tick naming m-nobody", runs, err)
	}

	// By email: ben@example.com is m-b.
	byEmail := s.p
	byEmail.Rules = filepath.Join(s.dir, "email.yaml")
	rules = "rules:\n  - name: north\n    match: {region: north}\n    pool: [{member: ANA@example.com}, {member: ben@example.com}]\nfallback: m-f\n"
	if err := os.WriteFile(byEmail.Rules, []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = s.runner.Tick(ctx, byEmail, tick0.Add(time.Minute), "task-2")
	if err != nil || out.Summary.Rows != 2 {
		t.Fatalf("tick with members by email: %+v, %v", out, err)
	}
}

// TestTickRecordsPrevious: finding 3. recordPrevious: true gives the
// tick's batch its agents before, for a rollback.csv.
func TestTickRecordsPrevious(t *testing.T) {
	t.Parallel()
	s := newSetup(t)
	ctx := context.Background()
	s.p.RecordPrevious = true
	out, err := s.runner.Tick(ctx, s.p, tick0, "task-1")
	if err != nil || out.BatchID == "" {
		t.Fatalf("tick: %+v, %v", out, err)
	}
	if on, err := s.store.RecordsPrevious(ctx, out.BatchID); err != nil || !on {
		t.Errorf("the batch records previous agents: %v (%v), want true", on, err)
	}
}

// TestTickRecords: finding 5. Every tick leaves a record with its reason:
// queued, skipped while the previous batch runs, is paused or was paused
// for a refused key, failed for a missing file.
func TestTickRecords(t *testing.T) {
	t.Parallel()
	s := newSetup(t)
	ctx := context.Background()
	tick := func(at time.Duration, owner string) Outcome {
		t.Helper()
		out, _ := s.runner.RunTick(ctx, s.p, tick0.Add(at), owner, true)
		return out
	}
	first := tick(0, "task-1")
	if first.BatchID == "" {
		t.Fatalf("first tick %+v", first)
	}
	if out := tick(time.Minute, "task-2"); out.SkipCode != SkipRunning {
		t.Errorf("tick while the batch runs: %+v", out)
	}
	if _, err := s.store.SetStatus(ctx, first.BatchID, jobs.BatchPaused, "", "paused by hand"); err != nil {
		t.Fatal(err)
	}
	if out := tick(2*time.Minute, "task-3"); out.SkipCode != SkipPaused || !strings.Contains(out.Skipped, "is paused") {
		t.Errorf("tick while the batch is paused: %+v", out)
	}
	if _, err := s.store.SetStatus(ctx, first.BatchID, jobs.BatchRunning, "", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.store.SetStatus(ctx, first.BatchID, jobs.BatchPaused, jobs.PauseUnauthorized, "HTTP 401"); err != nil {
		t.Fatal(err)
	}
	if out := tick(3*time.Minute, "task-4"); out.SkipCode != SkipRefused || !strings.Contains(out.Skipped, "refused the API key") {
		t.Errorf("tick while the batch is paused for the key: %+v", out)
	}
	if _, err := s.store.SetStatus(ctx, first.BatchID, jobs.BatchCancelled, "", ""); err != nil {
		t.Fatal(err)
	}
	missing := s.p
	missing.Contacts = filepath.Join(s.dir, "gone.csv")
	if _, err := s.runner.RunTick(ctx, missing, tick0.Add(4*time.Minute), "task-5", true); !permanent(err) {
		t.Fatalf("tick with a missing file: %v", err)
	}
	runs, err := Runs(ctx, s.rdb, s.ns, s.p.Name, 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range runs {
		got = append(got, r.Outcome+" "+r.Code)
	}
	want := []string{"failed ", "skipped previous-refused", "skipped previous-paused", "skipped previous-running", "queued "}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Errorf("records, newest first: %q, want %q", got, want)
	}
	if len(runs) == 5 && (!strings.Contains(runs[0].Reason, "gone.csv") || runs[4].BatchID != first.BatchID || runs[4].Rows != 2) {
		t.Errorf("records %+v", runs)
	}
}

// TestLoadLiveAndRecordPrevious: the entry's options reach its ticks'
// payload.
func TestLoadLiveAndRecordPrevious(t *testing.T) {
	t.Parallel()
	cfg, err := Load(strings.NewReader("schedules:\n  - {name: n, cron: \"@daily\", contacts: c.csv, rules: r.yaml, live: true, recordPrevious: true}\n"+
		"  - {name: m, cron: \"@daily\", contacts: c.csv, rules: r.yaml}\n"), "s.yaml", "/srv")
	if err != nil {
		t.Fatal(err)
	}
	if p := cfg.Entries[0].Payload(jobs.IDAny); !p.Live || !p.RecordPrevious || p.IDFormat != jobs.IDAny {
		t.Errorf("payload %+v, want live and recordPrevious", p)
	}
	if p := cfg.Entries[1].Payload(""); p.Live || p.RecordPrevious {
		t.Errorf("payload %+v, want neither", p)
	}
}

// TestLoadNotify: an entry's notify target reaches its ticks' payload; a
// bad one is an error naming the line, with the URL redacted.
func TestLoadNotify(t *testing.T) {
	t.Parallel()
	cfg, err := Load(strings.NewReader("schedules:\n  - {name: n, cron: \"@daily\", contacts: c.csv, rules: r.yaml, notify: \"https://hooks.slack.com/services/T0/B0/s3cret\", notifyFormat: slack}\n"+
		"  - {name: m, cron: \"@daily\", contacts: c.csv, rules: r.yaml, notify: \"https://example.com/hook\"}\n"), "s.yaml", "/srv")
	if err != nil {
		t.Fatal(err)
	}
	if p := cfg.Entries[0].Payload(""); p.Notify != "https://hooks.slack.com/services/T0/B0/s3cret" || p.NotifyFormat != "slack" {
		t.Errorf("payload %+v, want the slack target", p)
	}
	if p := cfg.Entries[1].Payload(""); p.NotifyFormat != "json" {
		t.Errorf("payload %+v, want format json by default", p)
	}
	for _, tc := range []struct{ entry, want string }{
		{`notify: "ftp://example.com/s3cret"`, `s.yaml: line 2: schedule 1 "a": notify ftp://example.com/…: want an http:// or https:// URL`},
		{`notify: "https://example.com/s3cret", notifyFormat: xml`, `notifyFormat "xml": want json or slack`},
		{`notifyFormat: slack`, "notifyFormat without notify"},
	} {
		_, err := Load(strings.NewReader("schedules:\n  - {name: a, cron: '@daily', contacts: c, rules: r, "+tc.entry+"}\n"), "s.yaml", "/srv")
		var ce *ConfigError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: %v, want a *ConfigError saying %q, without the URL's path", tc.entry, err, tc.want)
		}
	}
}

// TestLiveNoneKnown: a CRM that knows none of the contacts is more likely
// the wrong one than right: the tick fails instead of planning nothing.
func TestLiveNoneKnown(t *testing.T) {
	t.Parallel()
	s := newSetup(t)
	sim := simulator.New(simulator.Options{Contacts: []string{}, Members: []simulator.Member{{ID: "m-a", Active: true}, {ID: "m-b", Active: true}, {ID: "m-f", Active: true}}})
	api := httptest.NewServer(sim)
	t.Cleanup(api.Close)
	c, err := worker.NewClient(worker.ClientOptions{BaseURL: api.URL, APIKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	r := NewRunner(s.rdb, s.store, s.runner.imp, &CRM{Client: c, Limiter: worker.NewLocalLimiter(0, 1)}, RunnerOptions{Namespace: s.ns})
	s.p.Live = true
	_, err = r.Tick(context.Background(), s.p, tick0, "task-1")
	if err == nil || !strings.Contains(err.Error(), "it has none of the 3 contacts") {
		t.Errorf("tick against a CRM without the contacts: %v", err)
	}
}

// TestTickDrained: a tick planning when its worker drains stops before
// it reads the CRM any further, queues nothing, leaves no record (it is
// retried) and frees the schedule, so that the same tick, run again by a
// worker that is up, queues its batch.
func TestTickDrained(t *testing.T) {
	t.Parallel()
	s := newSetup(t)
	ctx := context.Background()
	s.p.Live = true
	s.runner.Drain()
	out, err := s.runner.RunTick(ctx, s.p, tick0, "task-1", false)
	if !errors.Is(err, ErrDraining) || permanent(err) || out.BatchID != "" {
		t.Fatalf("tick while draining: %+v, %v; want ErrDraining, to be retried, and no batch", out, err)
	}
	if ids := s.batchIDs(t); len(ids) != 0 {
		t.Errorf("batches after a drained tick: %v", ids)
	}
	if runs, err := Runs(ctx, s.rdb, s.ns, s.p.Name, 10); err != nil || len(runs) != 0 {
		t.Errorf("records after a drained tick: %+v (%v); want none, it is retried", runs, err)
	}
	up := NewRunner(s.runner.rdb, s.runner.store, s.runner.imp, s.runner.crm, s.runner.opts)
	out, err = up.RunTick(ctx, s.p, tick0, "task-1", false)
	if err != nil || out.BatchID == "" {
		t.Errorf("the tick again on a worker that is up: %+v, %v; want its batch", out, err)
	}
}
