// Package notify tells someone when a batch ends: it completed, was
// cancelled, or was paused because the CRM refused the API key; and when
// a schedule's tick queued nothing because the schedule's previous batch
// is paused. The event is announced by an HTTP POST (for an end, the
// batch's summary: the JSON of summary.json), signed with an HMAC-SHA256
// of the exact body, or by a Slack incoming-webhook message.
//
// Each end is an event, queued as an asynq task (TypeNotify) whose id is
// derived from the batch, the event and the batch's epoch, so the many
// processes that may see one end queue it once; the task is retried with
// backoff until the receiver answers 2xx, and survives the death of any
// process. The target URL is stored in the batch record (not in the task,
// which asynq's monitor shows); the signing secret never leaves the
// sending process's environment.
//
// Who does what:
//   - Attach stores a batch's target (import, run, serve uploads,
//     schedule ticks), and queues the event at once if the batch has
//     already ended.
//   - Fire queues the event of a batch that has just ended: the process
//     that saw the end calls it (the worker whose write completed the
//     batch, the command that cancelled it, `run` when its batch ends).
//   - Skipped queues the event of a schedule's tick that a paused batch
//     held up: the schedule's runner calls it.
//   - Notifier.Run, in every worker, fires the ends nobody fired (a
//     process that died between the end and Fire) every few seconds.
//   - Sender is the asynq handler that makes the POST.
package notify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// TypeNotify is the asynq task type of one event of one batch.
const TypeNotify = "bulkassign:notify"

// Events: how a batch ended.
const (
	EventCompleted = "completed"
	EventCancelled = "cancelled"
	// EventPaused: the batch was paused because the CRM refused the API
	// key (a pause by an operator is not an end).
	EventPaused = "paused"
	// EventSkipped: a schedule's tick queued nothing because the
	// schedule's previous batch is paused (by an operator, or because the
	// CRM refused the key); the schedule is stalled until that batch is
	// resumed or cancelled. Each skipped tick is one event.
	EventSkipped = "tick-skipped"
)

// Formats of the POST.
const (
	// FormatJSON posts the summary as summary.json has it, signed.
	FormatJSON = "json"
	// FormatSlack posts a Slack incoming-webhook message ({"text": ...}).
	FormatSlack = "slack"
)

// Headers of every POST.
const (
	// SignatureHeader is "sha256=<hex HMAC-SHA256 of the body>" with the
	// secret of BULKASSIGN_NOTIFY_SECRET.
	SignatureHeader = "X-Bulkassign-Signature"
	// EventHeader names the event: completed, cancelled, paused or
	// tick-skipped.
	EventHeader = "X-Bulkassign-Event"
	// DeliveryHeader is the same for every retry of one event, so a
	// receiver can drop a repeat (a delivery whose answer was lost).
	DeliveryHeader = "X-Bulkassign-Delivery"
)

// SecretEnv is the environment variable of the signing secret.
const SecretEnv = "BULKASSIGN_NOTIFY_SECRET"

// Target is where and how a batch's end is announced.
type Target struct {
	URL    string `json:"url"`
	Format string `json:"format,omitempty"`
}

// ParseTarget checks a --notify URL and --notify-format (empty: json).
func ParseTarget(rawURL, format string) (Target, error) {
	if format == "" {
		format = FormatJSON
	}
	if format != FormatJSON && format != FormatSlack {
		return Target{}, fmt.Errorf("--notify-format %q: want json or slack", format)
	}
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// The URL stays out of the message: its path may be a secret.
		return Target{}, fmt.Errorf("--notify %s: want an http:// or https:// URL", Redact(rawURL))
	}
	return Target{URL: rawURL, Format: format}, nil
}

// String shows the target with its URL redacted.
func (t Target) String() string { return Redact(t.URL) + " (" + t.Format + ")" }

// encode is the target as the batch record keeps it.
func (t Target) encode() string {
	b, _ := json.Marshal(t) // two strings always encode
	return string(b)
}

func decodeTarget(s string) (Target, error) {
	var t Target
	if err := json.Unmarshal([]byte(s), &t); err != nil || t.URL == "" {
		return Target{}, errors.New("unreadable notify target in the batch record")
	}
	return t, nil
}

// Redact shows a URL without what may be a secret: its user, path and
// query (a Slack webhook's path is its key). "https://hooks.example/…".
func Redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return "(a URL)"
	}
	s := u.Scheme + "://" + u.Host
	if strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "" {
		s += "/…"
	}
	return s
}

// Sign is the SignatureHeader value of body: "sha256=" and the hex
// HMAC-SHA256 of body keyed with secret. A receiver checks it with
// hmac.Equal against its own computation over the bytes it received.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Payload is the payload of a TypeNotify task: the event and the exact
// body to post. The target is read from the batch record when it is sent.
type Payload struct {
	Batch string `json:"b"`
	Event string `json:"e"`
	// Key names the event: batch, event and epoch; the task's id and the
	// DeliveryHeader.
	Key  string `json:"k"`
	Body []byte `json:"body"`
}

// TaskID is the asynq task id of an event key.
func TaskID(key string) string { return "notify:" + key }

// eventKey names one end of a batch.
func eventKey(batch, event string, epoch int64) string {
	return fmt.Sprintf("%s:%s:%d", batch, event, epoch)
}
