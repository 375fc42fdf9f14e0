package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bulkassign/bulkassign/internal/notifytest"
	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/notify"
	"github.com/bulkassign/bulkassign/report"
	"github.com/bulkassign/bulkassign/simulator"
	"github.com/hibiken/asynq"
)

// checkNotices checks that the receiver got exactly refused+1 requests,
// the last one accepted, all of them the same signed event, and returns
// the summary it carried.
func checkNotices(t *testing.T, r *notifytest.Receiver, refused int, secret, event string) report.Summary {
	t.Helper()
	all := r.Deliveries()
	if len(all) != refused+1 || len(r.Accepted()) != 1 || all[len(all)-1].Status != http.StatusOK {
		statuses := make([]int, len(all))
		for i, d := range all {
			statuses[i] = d.Status
		}
		t.Fatalf("receiver answered %v: want %d refusals, then exactly one delivery", statuses, refused)
	}
	last := all[len(all)-1]
	for i, d := range all {
		if string(d.Body) != string(last.Body) || d.Header.Get(notify.DeliveryHeader) != last.Header.Get(notify.DeliveryHeader) {
			t.Errorf("request %d differs from the delivered one: every retry sends the same event", i+1)
		}
	}
	if got := last.Header.Get(notify.EventHeader); got != event {
		t.Errorf("%s: %q, want %q", notify.EventHeader, got, event)
	}
	if secret != "" {
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(last.Body)
		want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
		if got := last.Header.Get(notify.SignatureHeader); !hmac.Equal([]byte(got), []byte(want)) {
			t.Errorf("%s: %q, want %q", notify.SignatureHeader, got, want)
		}
	}
	var s report.Summary
	if err := json.Unmarshal(last.Body, &s); err != nil {
		t.Fatalf("notice body: %v\n%s", err, last.Body)
	}
	return s
}

// sameCounts compares a notice's summary with summary.json.
func sameCounts(t *testing.T, got, want report.Summary) {
	t.Helper()
	type counts struct {
		id, status                                                string
		rows, succeeded, failed, invalid, calls, retries, limited int64
	}
	c := func(s report.Summary) counts {
		return counts{s.BatchID, s.Status, s.Rows, s.Succeeded, s.Failed, s.Invalid, s.APICalls, s.Retries, s.RateLimited}
	}
	if c(got) != c(want) {
		t.Errorf("notice summary %+v, summary.json %+v", c(got), c(want))
	}
	if len(got.Errors) != len(want.Errors) {
		t.Errorf("notice errors %v, summary.json %v", got.Errors, want.Errors)
	}
	for k, v := range want.Errors {
		if got.Errors[k] != v {
			t.Errorf("notice errors %v, summary.json %v", got.Errors, want.Errors)
			break
		}
	}
}

// TestNotifyRun: run --notify against a receiver that refuses twice: one
// delivery after the refusals, signed, with summary.json's counts; the
// URL's path and the secret are shown nowhere and not in Redis; another
// Fire of the same end, even with the record's mark lost, queues nothing.
func TestNotifyRun(t *testing.T) {
	const secret = "notify-SECRET-7c1d"
	t.Setenv(notify.SecretEnv, secret)
	rcv := notifytest.New(t, 2)
	target := newRedisTarget(t)
	out := t.TempDir()
	hook := rcv.URL + "/hooks/PATH-SECRET?token=QUERY-SECRET"
	args := append([]string{"run", uuidFile(t, 40), "--simulate", "--sim-transient", "0.2", "--out", out, "--notify", hook}, fastFlags()...)
	res := runCLI(t, nil, append(args, target.flags()...)...)
	if res.code != exitOK {
		t.Fatalf("run: exit %d: %s\n%s", res.code, res.errText(), res.stderr)
	}
	want := readSummary(t, reportDir(t, out))
	sameCounts(t, checkNotices(t, rcv, 2, secret, notify.EventCompleted), want)
	if !strings.Contains(res.stderr, notify.Redact(hook)) || !strings.Contains(res.stderr, "delivered") {
		t.Errorf("run does not say where the notice goes (redacted) and that it was delivered:\n%s", res.stderr)
	}
	for _, leak := range []string{"PATH-SECRET", "QUERY-SECRET", secret} {
		if strings.Contains(res.stdout+res.stderr, leak) {
			t.Errorf("run printed %q", leak)
		}
	}
	rdb := target.client(t)
	if hits := scanDB(t, rdb, secret); len(hits) > 0 {
		t.Errorf("the notify secret is in Redis: %v", hits)
	}

	// Another process seeing the same end, once as it is and once as if
	// the mark of the first Fire had been lost, queues nothing new.
	store := jobs.NewStore(rdb, jobs.StoreOptions{Namespace: target.ns})
	client := asynq.NewClientFromRedisClient(rdb)
	n := notify.New(store, client, notify.Options{Queue: target.ns, Logger: slog.New(slog.DiscardHandler)})
	ctx := context.Background()
	for i := range 2 {
		if i == 1 {
			if err := store.MarkNotified(ctx, want.BatchID, ""); err != nil {
				t.Fatal(err)
			}
		}
		ev, ok, err := n.Fire(ctx, want.BatchID)
		if err != nil || !ok || ev.Name != notify.EventCompleted {
			t.Fatalf("Fire again: %+v %v %v", ev, ok, err)
		}
		info, err := asynq.NewInspectorFromRedisClient(rdb).GetTaskInfo(target.ns, ev.TaskID)
		if err != nil || info.State != asynq.TaskStateCompleted {
			t.Fatalf("the event's task after another Fire: %+v %v, want it completed, not queued again", info, err)
		}
	}
}

// TestNotifyCancelledByWorkers: two batches imported with --notify and
// cancelled before any worker ran: one by `cancel`, which queues its
// notice at once, one behind the CLI's back (as if the process that
// cancelled it had died before it could), whose end the workers find.
// Two workers deliver each once, after the receiver's refusal, with the
// counts of its report.
func TestNotifyCancelledByWorkers(t *testing.T) {
	const secret = "notify-secret-cancel"
	t.Setenv(notify.SecretEnv, secret)
	d := newDist(t, simulator.Options{})
	byCLI, byNobody := notifytest.New(t, 1), notifytest.New(t, 1)
	idCLI := d.importFile(t, writeAssignments(t, d.dir, "a.csv", oneEach("a", 30)), "--id-format", "any", "--notify", byCLI.URL+"/hook")
	idNobody := d.importFile(t, writeAssignments(t, d.dir, "b.csv", oneEach("b", 20)), "--id-format", "any", "--notify", byNobody.URL+"/hook")
	if r := d.cli(t, "cancel", idCLI); r.code != exitOK || r.stderr != "" {
		t.Fatalf("cancel: exit %d: %s\n%s", r.code, r.errText(), r.stderr)
	}
	queued, err := d.insp.ListPendingTasks(d.target.ns, asynq.PageSize(1000))
	if err != nil || !slices.ContainsFunc(queued, func(ti *asynq.TaskInfo) bool {
		return ti.Type == notify.TypeNotify && strings.Contains(ti.ID, idCLI+":"+notify.EventCancelled)
	}) {
		t.Errorf("after `cancel`, no notice of %s is queued (%v)", idCLI, err)
	}
	if _, err := d.store.SetStatus(context.Background(), idNobody, jobs.BatchCancelled, "", ""); err != nil {
		t.Fatal(err)
	}
	flags := []string{"--retry-base", "10ms", "--retry-max", "50ms"}
	stop1, stop2 := d.startWorker(t, flags...), d.startWorker(t, flags...)
	waitUntil(t, time.Minute, "both notices are delivered", func() bool {
		return len(byCLI.Accepted()) > 0 && len(byNobody.Accepted()) > 0
	})
	logs := stop1() + stop2()
	for id, rcv := range map[string]*notifytest.Receiver{idCLI: byCLI, idNobody: byNobody} {
		got := checkNotices(t, rcv, 1, secret, notify.EventCancelled)
		if r := d.cli(t, "report", "--out", d.dir, id); r.code == exitFatal {
			t.Fatalf("report: %s", r.errText())
		}
		want := readSummary(t, report.Dir(d.dir, id))
		sameCounts(t, got, want)
		if got.Errors[report.NotProcessed] != want.Rows {
			t.Errorf("notice errors %v: want all %d rows not processed", got.Errors, want.Rows)
		}
	}
	if strings.Contains(logs, "/hook") {
		t.Errorf("a worker logged the notify URL's path:\n%s", logs)
	}
}

// TestNotifyPausedSlack: a refused key pauses run's batch; the notice is a
// Slack message, unsigned without a secret.
func TestNotifyPausedSlack(t *testing.T) {
	t.Setenv(notify.SecretEnv, "")
	rcv := notifytest.New(t, 0)
	_, api := startSim(t, simulator.Options{APIKey: "right"})
	args := append([]string{"run", uuidFile(t, 5), "--api-url", api, "--api-key", "wrong", "--out", t.TempDir(),
		"--notify", rcv.URL, "--notify-format", "slack"}, fastFlags()...)
	res := runCLI(t, nil, args...)
	if res.code != exitFatal {
		t.Fatalf("run with a refused key: exit %d, want 1: %s", res.code, res.errText())
	}
	all := rcv.Accepted()
	if len(all) != 1 {
		t.Fatalf("receiver accepted %d notices, want 1\n%s", len(all), res.stderr)
	}
	var msg struct{ Text string }
	if err := json.Unmarshal(all[0].Body, &msg); err != nil || !strings.Contains(msg.Text, "refused the API key") {
		t.Errorf("slack message %s (%v): want a text saying the key was refused", all[0].Body, err)
	}
	if all[0].Header.Get(notify.EventHeader) != notify.EventPaused || all[0].Header.Get(notify.SignatureHeader) != "" {
		t.Errorf("headers %v: want event paused, no signature without a secret", all[0].Header)
	}

	// A json notice is never sent unsigned: run refuses to start.
	res = runCLI(t, nil, "run", "--simulate", "--notify", rcv.URL)
	if res.code != exitFatal || !strings.Contains(res.errText(), notify.SecretEnv) {
		t.Errorf("run --notify without a secret: exit %d %q, want 1 naming %s", res.code, res.errText(), notify.SecretEnv)
	}
}
