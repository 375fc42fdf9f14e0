package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/report"
	"github.com/hibiken/asynq"
)

// Options configures a Notifier; the zero value means defaults.
type Options struct {
	// Queue is the asynq queue of the tasks; default jobs.Queue.
	Queue string
	// Retention is how long a delivered event's task is kept, so that a
	// late Fire of the same event finds it and queues nothing; default
	// 7 days.
	Retention time.Duration
	// Retries is how many times a delivery is tried again before asynq
	// archives it; default 10,000 (about a week at a 1m --retry-max).
	Retries int
	// Every is how often Run looks for ends nobody fired; default 5s.
	Every time.Duration
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Notifier queues the events of batches that end.
type Notifier struct {
	store  *jobs.Store
	client *asynq.Client
	opts   Options
}

// New returns a Notifier reading batches from store and queueing tasks
// through client.
func New(store *jobs.Store, client *asynq.Client, opts Options) *Notifier {
	if opts.Queue == "" {
		opts.Queue = jobs.Queue
	}
	if opts.Retention <= 0 {
		opts.Retention = jobs.DefaultRetention
	}
	if opts.Retries <= 0 {
		opts.Retries = 10_000
	}
	if opts.Every <= 0 {
		opts.Every = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Notifier{store: store, client: client, opts: opts}
}

// Attach makes t the place where the batch's end is announced, and fires
// at once if the batch has already ended (a small file can be done before
// its importer gets here).
func (n *Notifier) Attach(ctx context.Context, id string, t Target) error {
	if err := n.store.SetNotify(ctx, id, t.encode()); err != nil {
		return err
	}
	_, _, err := n.Fire(ctx, id)
	return err
}

// Event is one end of one batch, as Fire queued it.
type Event struct {
	Batch, Name string
	// TaskID is the asynq task that delivers it.
	TaskID string
}

// Fire queues the event of the batch's end, if the batch has ended and
// has a target: completed (done), cancelled, or paused because the key
// was refused. It returns the event, or ok false when there is none. It
// is safe to call from any number of processes, any number of times:
// one end is queued once (its task id says which end it is).
func (n *Notifier) Fire(ctx context.Context, id string) (ev Event, ok bool, err error) {
	st, err := n.store.NotifyState(ctx, id)
	if err != nil || st.Target == "" {
		return Event{}, false, err
	}
	var name string
	switch {
	case st.Status == jobs.BatchDone:
		name = EventCompleted
	case st.Status == jobs.BatchCancelled:
		name = EventCancelled
	case st.Status == jobs.BatchPaused && st.PauseCode == jobs.PauseUnauthorized:
		name = EventPaused
	default:
		return Event{}, false, nil
	}
	t, err := decodeTarget(st.Target)
	if err != nil {
		return Event{}, false, fmt.Errorf("batch %s: %w", id, err)
	}
	key := eventKey(id, name, st.Epoch)
	ev = Event{Batch: id, Name: name, TaskID: TaskID(key)}
	if st.Notified == key {
		return ev, true, nil
	}
	sum, err := report.Summarize(ctx, n.store, id)
	if err != nil {
		return Event{}, false, err
	}
	body, err := Body(t.Format, sum)
	if err != nil {
		return Event{}, false, err
	}
	if err := n.enqueue(ctx, ev, key, body); err != nil {
		return Event{}, false, err
	}
	if err := n.store.MarkNotified(ctx, id, key); err != nil {
		return Event{}, false, err
	}
	n.opts.Logger.Info("notice queued", slog.String("batch", id), slog.String("event", name), slog.String("to", t.String()))
	return ev, true, nil
}

// enqueue queues the task that posts body for the event named key; an
// event queued already (the same task id) is not queued again.
func (n *Notifier) enqueue(ctx context.Context, ev Event, key string, body []byte) error {
	p, err := json.Marshal(Payload{Batch: ev.Batch, Event: ev.Name, Key: key, Body: body})
	if err != nil {
		return fmt.Errorf("encode the %s notice of batch %s: %w", ev.Name, ev.Batch, err)
	}
	task := asynq.NewTask(TypeNotify, p, asynq.Queue(n.opts.Queue), asynq.TaskID(ev.TaskID),
		asynq.MaxRetry(n.opts.Retries), asynq.Retention(n.opts.Retention))
	if _, err := n.client.EnqueueContext(ctx, task); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return fmt.Errorf("queue the %s notice of batch %s: %w", ev.Name, ev.Batch, err)
	}
	return nil
}

// Ended is Fire for a hook where a process sees a batch end (the write
// that completed it, the move that paused or cancelled it): it fires
// within 10 s, logging a failure, which Run makes up for.
func (n *Notifier) Ended(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, _, err := n.Fire(ctx, id); err != nil && !errors.Is(err, jobs.ErrNotFound) {
		n.opts.Logger.Warn("notify: fire", slog.String("batch", id), slog.Any("error", err))
	}
}

// Run fires, every Options.Every until ctx ends, the ends of batches with
// a target that nobody fired: the process that saw the end died first,
// or is not one that fires. Every worker runs it; the task ids keep the
// events single.
func (n *Notifier) Run(ctx context.Context) {
	t := time.NewTicker(n.opts.Every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ids, err := n.store.NotifyBatches(ctx)
		if err != nil {
			n.opts.Logger.Warn("notify: list batches", slog.Any("error", err))
			continue
		}
		for _, id := range ids {
			if _, _, err := n.Fire(ctx, id); err != nil && !errors.Is(err, jobs.ErrNotFound) && ctx.Err() == nil {
				n.opts.Logger.Warn("notify: fire", slog.String("batch", id), slog.Any("error", err))
			}
		}
	}
}

// Body is what is posted for a batch's summary: summary.json's JSON, or a
// Slack message.
func Body(format string, s report.Summary) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	if format == FormatSlack {
		if err := enc.Encode(map[string]string{"text": slackText(s)}); err != nil {
			return nil, err
		}
		return b.Bytes(), nil
	}
	enc.SetIndent("", "  ") // as summary.json
	if err := enc.Encode(s); err != nil {
		return nil, fmt.Errorf("encode the summary of batch %s: %w", s.BatchID, err)
	}
	return b.Bytes(), nil
}

// slackEscape escapes what Slack reads as markup in a message's text.
var slackEscape = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// slackText is a batch's summary in one line of a Slack message.
func slackText(s report.Summary) string {
	name := ""
	if s.Name != "" {
		name = " (" + slackEscape.Replace(s.Name) + ")"
	}
	what := s.Status
	switch s.Status {
	case jobs.BatchDone:
		what = "completed"
	case jobs.BatchPaused:
		what = "paused: the CRM refused the API key"
	}
	return fmt.Sprintf("bulkassign batch %s%s %s: %d rows: %d succeeded, %d failed, %d invalid; %d API calls, %.1fs",
		s.BatchID, name, what, s.Rows, s.Succeeded, s.Failed, s.Invalid, s.APICalls, s.DurationSeconds)
}
