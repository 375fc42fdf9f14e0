package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/bulkassign/bulkassign/report"
)

// Skip is a schedule's tick that queued nothing because the schedule's
// previous batch is paused.
type Skip struct {
	// Schedule is the schedule's name.
	Schedule string `json:"schedule"`
	// Tick is the tick that was skipped.
	Tick time.Time `json:"tick"`
	// Code is the schedule's code of the skip: previous-paused, or
	// previous-refused when the CRM refused the API key.
	Code string `json:"code"`
	// Reason says it for people, with what to do.
	Reason string `json:"reason"`
}

// SkipNotice is the JSON posted for a skipped tick (EventSkipped): the
// tick, and the summary of the paused batch that holds the schedule.
type SkipNotice struct {
	Event string `json:"event"`
	Skip
	Batch report.Summary `json:"batch"`
}

// Skipped queues the notice of a tick of a schedule that the paused batch
// id held up, to t. t becomes the batch's target too: the batch is the
// schedule's, and its end is announced where the schedule says. A tick is
// announced once, however many times Skipped is called for it (a retried
// or duplicated tick).
func (n *Notifier) Skipped(ctx context.Context, id string, t Target, s Skip) (Event, error) {
	if err := n.store.SetNotify(ctx, id, t.encode()); err != nil {
		return Event{}, err
	}
	sum, err := report.Summarize(ctx, n.store, id)
	if err != nil {
		return Event{}, err
	}
	body, err := SkipBody(t.Format, s, sum)
	if err != nil {
		return Event{}, err
	}
	key := eventKey(id, EventSkipped, s.Tick.Unix())
	ev := Event{Batch: id, Name: EventSkipped, TaskID: TaskID(key)}
	if err := n.enqueue(ctx, ev, key, body); err != nil {
		return Event{}, err
	}
	n.opts.Logger.Info("notice queued", slog.String("batch", id), slog.String("event", EventSkipped),
		slog.String("schedule", s.Schedule), slog.Time("tick", s.Tick), slog.String("to", t.String()))
	return ev, nil
}

// SkipBody is what is posted for a skipped tick: a SkipNotice as JSON, or
// a Slack message.
func SkipBody(format string, s Skip, batch report.Summary) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	var v any = SkipNotice{Event: EventSkipped, Skip: s, Batch: batch}
	if format == FormatSlack {
		v = map[string]string{"text": fmt.Sprintf("bulkassign schedule %s: the tick of %s queued nothing: %s",
			slackEscape.Replace(s.Schedule), s.Tick.UTC().Format(time.RFC3339), slackEscape.Replace(s.Reason))}
	} else {
		enc.SetIndent("", "  ")
	}
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("encode the notice of the skipped tick of schedule %s: %w", s.Schedule, err)
	}
	return b.Bytes(), nil
}
