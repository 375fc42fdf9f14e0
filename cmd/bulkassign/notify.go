package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/bulkassign/bulkassign/config"
	"github.com/bulkassign/bulkassign/notify"
	"github.com/hibiken/asynq"
	"github.com/spf13/pflag"
)

// notifyFlags are --notify and --notify-format, of the commands that
// start batches.
type notifyFlags struct {
	url, format string
}

// registerNotifyFlags adds --notify and --notify-format to fs.
func registerNotifyFlags(fs *pflag.FlagSet) *notifyFlags {
	f := &notifyFlags{}
	fs.StringVar(&f.url, "notify", "", "POST the batch's summary to `URL` when it ends (completed, cancelled, or paused by a refused key), signed with "+notify.SecretEnv+" (header "+notify.SignatureHeader+": sha256=<hex HMAC-SHA256 of the body>), retried until a 2xx")
	fs.StringVar(&f.format, "notify-format", notify.FormatJSON, "`FORMAT` of --notify: json (summary.json, signed) or slack (an incoming-webhook message)")
	return f
}

// target is the --notify target; ok false without --notify.
func (f *notifyFlags) target() (t notify.Target, ok bool, err error) {
	if f.url == "" {
		return notify.Target{}, false, nil
	}
	t, err = notify.ParseTarget(f.url, f.format)
	return t, err == nil, err
}

// notifySecret is the signing secret of this process's notices.
func notifySecret() []byte { return []byte(os.Getenv(notify.SecretEnv)) }

// requireSecret refuses a json target when this process, which will send
// it, has no secret to sign it with.
func requireSecret(t notify.Target) error {
	if t.Format == notify.FormatJSON && len(notifySecret()) == 0 {
		return fmt.Errorf("--notify: set %s: the notice is signed with it (or use --notify-format slack)", notify.SecretEnv)
	}
	return nil
}

// notifier queues the notices of the queue's batches.
func (q *queue) notifier(cfg config.Config, log *slog.Logger) *notify.Notifier {
	return notify.New(q.store, q.client, notify.Options{Queue: cfg.Namespace, Retention: cfg.Retention, Logger: log})
}

// warnLogger logs warnings and errors on stderr, for the commands that
// have no --log-level.
func (a *app) warnLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// attachNotify gives a batch just imported its --notify target, and says
// so on w. A batch already running is not stopped for a failure: it is
// reported, and the batch's end is then not announced.
func attachNotify(ctx context.Context, w io.Writer, n *notify.Notifier, id string, t notify.Target) {
	if err := n.Attach(ctx, id, t); err != nil {
		fmt.Fprintf(w, "notify: %v: the end of batch %s will not be announced\n", err, id)
		return
	}
	fmt.Fprintf(w, "notify: the end of batch %s will be posted to %s\n", id, t)
}

// awaitNotice fires the notice of a batch that ended and waits, up to
// wait, until it is delivered: `run`'s own workers deliver it, and an
// embedded queue ends with the command.
func (a *app) awaitNotice(ctx context.Context, q *queue, n *notify.Notifier, id string, wait time.Duration) {
	ev, ok, err := n.Fire(ctx, id)
	if err != nil {
		fmt.Fprintf(a.stderr, "notify: %v\n", err)
		return
	}
	if !ok {
		return // the batch did not end (interrupted), or has no target
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		info, err := q.inspector.GetTaskInfo(q.queueName, ev.TaskID)
		switch {
		case err == nil && info.State == asynq.TaskStateCompleted:
			fmt.Fprintf(a.stderr, "notify: %s notice of batch %s delivered\n", ev.Name, id)
			return
		case err == nil && info.State == asynq.TaskStateArchived:
			fmt.Fprintf(a.stderr, "notify: %s notice of batch %s not delivered: %s\n", ev.Name, id, info.LastErr)
			return
		case err != nil && !errors.Is(err, asynq.ErrTaskNotFound):
			fmt.Fprintf(a.stderr, "notify: %v\n", err)
			return
		}
		select {
		case <-ctx.Done():
			left := "it is lost with the embedded queue"
			if q.embedded == "" {
				left = "it stays queued: any worker delivers it"
			}
			fmt.Fprintf(a.stderr, "notify: %s notice of batch %s not delivered within %s (%s)\n", ev.Name, id, wait, left)
			return
		case <-tick.C:
		}
	}
}

// registerNotifyWait adds run's --notify-wait to fs.
func registerNotifyWait(fs *pflag.FlagSet, wait *time.Duration) {
	fs.DurationVar(wait, "notify-wait", time.Minute, "how long run waits, once the batch has ended, for --notify's receiver to take the notice")
}

// newNotifySender is the handler that delivers the queue's notices, signed
// with this process's secret.
func newNotifySender(q *queue, log *slog.Logger) *notify.Sender {
	return notify.NewSender(q.store, notify.SenderOptions{Secret: notifySecret(), Logger: log})
}
