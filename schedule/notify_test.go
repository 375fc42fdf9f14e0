package schedule

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bulkassign/bulkassign/internal/notifytest"
	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/notify"
	"github.com/hibiken/asynq"
)

const secret = "notify-secret-for-tests"

// withNotices gives the setup's runner a Notifier, and starts a worker
// that delivers its notices, signed with secret.
func (s *setup) withNotices(t *testing.T) *notify.Notifier {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	client := asynq.NewClientFromRedisClient(s.rdb)
	n := notify.New(s.store, client, notify.Options{Queue: s.ns, Logger: log})
	s.runner = NewRunner(s.rdb, s.store, s.runner.imp, s.runner.crm, RunnerOptions{Namespace: s.ns, Notifier: n, Logger: log})
	srv := asynq.NewServerFromRedisClient(s.rdb, asynq.Config{Queues: map[string]int{s.ns: 1}, Concurrency: 2, Logger: discard{},
		RetryDelayFunc: func(int, error, *asynq.Task) time.Duration { return 50 * time.Millisecond }})
	mux := asynq.NewServeMux()
	mux.Handle(notify.TypeNotify, notify.NewSender(s.store, notify.SenderOptions{Secret: []byte(secret), Logger: log}))
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	return n
}

type discard struct{}

func (discard) Debug(...any) {}
func (discard) Info(...any)  {}
func (discard) Warn(...any)  {}
func (discard) Error(...any) {}
func (discard) Fatal(...any) {}

// TestTickNotifies: issue 13's "visible schedule runs" with issue 12's
// notify. A schedule entry's notify target is attached to the batch its
// tick queues (its end is announced there), the batch records that the
// schedule started it, and each tick a paused previous batch holds up is
// announced once, signed, saying why, however often the tick is retried.
func TestTickNotifies(t *testing.T) {
	t.Parallel()
	s := newSetup(t)
	ctx := context.Background()
	n := s.withNotices(t)
	r := notifytest.New(t, 0)
	s.p.Notify, s.p.NotifyFormat = r.URL+"/hooks/T0/s3cret-path", notify.FormatJSON

	first, err := s.runner.RunTick(ctx, s.p, tick0, "task-1", true)
	if err != nil || first.BatchID == "" {
		t.Fatalf("first tick: %+v, %v", first, err)
	}
	if want := r.URL + "/… (json)"; first.Notify != want || notifyWarning(first.Warnings) != "" {
		t.Errorf("first tick: notify %q, warnings %q; want %q and none about notify", first.Notify, first.Warnings, want)
	}
	b, err := s.store.Get(ctx, first.BatchID)
	if err != nil {
		t.Fatal(err)
	}
	if b.Origin != (jobs.Origin{Via: "schedule", By: "rebalance"}) {
		t.Errorf("origin of the tick's batch: %+v, want via schedule, by rebalance", b.Origin)
	}

	// The CRM refuses the key: the batch is paused, and the next tick
	// (delivered twice: a retry) is skipped and announced once.
	if _, err := s.store.SetStatus(ctx, first.BatchID, jobs.BatchPaused, jobs.PauseUnauthorized, "HTTP 401"); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		out, err := s.runner.RunTick(ctx, s.p, tick0.Add(time.Minute), "task-2", false)
		if err != nil || out.SkipCode != SkipRefused || out.HeldBy != first.BatchID {
			t.Fatalf("tick behind the refused batch: %+v, %v", out, err)
		}
	}
	// An operator pauses it instead: the next tick is announced as well.
	if _, err := s.store.SetStatus(ctx, first.BatchID, jobs.BatchRunning, "", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.store.SetStatus(ctx, first.BatchID, jobs.BatchPaused, "", "paused by an operator"); err != nil {
		t.Fatal(err)
	}
	if out, err := s.runner.RunTick(ctx, s.p, tick0.Add(2*time.Minute), "task-3", true); err != nil || out.SkipCode != SkipPaused {
		t.Fatalf("tick behind the paused batch: %+v, %v", out, err)
	}
	// Cancelled: the batch's end goes where the schedule said.
	if _, err := s.store.SetStatus(ctx, first.BatchID, jobs.BatchCancelled, "", ""); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := n.Fire(ctx, first.BatchID); err != nil || !ok {
		t.Fatalf("Fire of the cancelled batch: %v, %v", ok, err)
	}

	got := r.Wait(t, 3)
	byEvent := map[string][]notifytest.Delivery{}
	for _, x := range got {
		event, signature := x.Header.Get(notify.EventHeader), x.Header.Get(notify.SignatureHeader)
		if signature != notify.Sign([]byte(secret), x.Body) {
			t.Errorf("%s notice: signature %q does not match its body", event, signature)
		}
		byEvent[event] = append(byEvent[event], x)
	}
	if len(got) != 3 || len(byEvent[notify.EventSkipped]) != 2 || len(byEvent[notify.EventCancelled]) != 1 {
		t.Fatalf("notices %v, want two tick-skipped and one cancelled", byEvent)
	}
	var skips []notify.SkipNotice
	for _, x := range byEvent[notify.EventSkipped] {
		var sn notify.SkipNotice
		if err := json.Unmarshal(x.Body, &sn); err != nil {
			t.Fatalf("tick-skipped body: %v: %s", err, x.Body)
		}
		skips = append(skips, sn)
	}
	slices.SortFunc(skips, func(a, b notify.SkipNotice) int { return a.Tick.Compare(b.Tick) })
	for i, want := range []struct {
		tick       time.Time
		code, says string
	}{
		{tick0.Add(time.Minute), SkipRefused, "refused the API key"},
		{tick0.Add(2 * time.Minute), SkipPaused, "is paused"},
	} {
		sn := skips[i]
		if sn.Event != notify.EventSkipped || sn.Schedule != "rebalance" || !sn.Tick.Equal(want.tick) || sn.Code != want.code ||
			!strings.Contains(sn.Reason, want.says) || sn.Batch.BatchID != first.BatchID || sn.Batch.Rows != 2 {
			t.Errorf("skipped tick %d: %+v, want tick %s, code %s, a reason saying %q, batch %s", i, sn, want.tick, want.code, want.says, first.BatchID)
		}
	}
	runs, err := Runs(ctx, s.rdb, s.ns, s.p.Name, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, run := range runs {
		if w := notifyWarning(run.Warnings); w != "" {
			t.Errorf("run of tick %s: %s", run.Tick, w)
		}
	}
}

// notifyWarning is the first of warnings about notify, "" for none.
func notifyWarning(warnings []string) string {
	for _, w := range warnings {
		if strings.HasPrefix(w, "notify: ") {
			return w
		}
	}
	return ""
}

// TestTickNotifyWithoutNotifier: a process that cannot queue notices says
// so in the tick's record instead of dropping the target silently.
func TestTickNotifyWithoutNotifier(t *testing.T) {
	t.Parallel()
	s := newSetup(t)
	s.p.Notify = "https://hooks.example.com/services/s3cret"
	out, err := s.runner.RunTick(context.Background(), s.p, tick0, "task-1", true)
	if err != nil || out.BatchID == "" {
		t.Fatalf("tick: %+v, %v", out, err)
	}
	runs, err := Runs(context.Background(), s.rdb, s.ns, s.p.Name, 1)
	if err != nil {
		t.Fatal(err)
	}
	if out.Notify != "" || len(runs) != 1 || !strings.Contains(notifyWarning(runs[0].Warnings), "will not be announced") {
		t.Errorf("outcome %+v, records %+v; want a warning that the end will not be announced", out, runs)
	}
	if strings.Contains(strings.Join(runs[0].Warnings, " "), "s3cret") {
		t.Errorf("a warning shows the notify URL's path: %q", runs[0].Warnings)
	}
}
