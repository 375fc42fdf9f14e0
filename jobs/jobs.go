// Package jobs is the contract between the importer and the worker: the
// asynq task type and payload, and the batch record with its row ledger.
package jobs

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/hibiken/asynq"
)

// TypeAssign is the asynq task type of one contact's assignments.
const TypeAssign = "bulkassign:assign"

// Queue is the asynq queue every assignment task goes to.
const Queue = "bulkassign"

// Status is where a row ended.
type Status string

// The three final statuses of a row.
const (
	StatusSucceeded Status = "succeeded"
	StatusFailed    Status = "failed"
	StatusInvalid   Status = "invalid"
)

// Row is one input row as the importer read it and the ledger keeps it.
//
// For a valid row ContactID and MemberID are normalised (trimmed,
// lower-case) and Replace is the parsed flag. For an invalid row the fields
// hold the trimmed text of the file, ReplaceText the trimmed text of the
// removeExistingAgents cell, and Reason/Error say what is wrong.
//
// MemberEmail is the teamMemberEmail cell (trimmed, lower-case when it
// names the member). A row that names its member only by email leaves the
// decoder with MemberID empty; the importer fills MemberID from the team
// member list before the row is planned or stored.
type Row struct {
	Line        int      `json:"l"`
	ContactID   string   `json:"c"`
	MemberID    string   `json:"m"`
	MemberEmail string   `json:"e,omitempty"`
	Replace     bool     `json:"r,omitempty"`
	ReplaceText string   `json:"rt,omitempty"`
	Extra       []string `json:"x,omitempty"`
	Reason      string   `json:"why,omitempty"`
	Error       string   `json:"err,omitempty"`
	// BlockedBy, for a valid row, is the line of an earlier invalid row of
	// the same contact: the row is never sent and fails as blocked.
	BlockedBy int `json:"bb,omitempty"`
}

// Valid reports whether the row is well formed; it is sent to the API
// unless it is blocked.
func (r Row) Valid() bool { return r.Reason == "" }

// ReplaceCell is the removeExistingAgents value as the report shows it.
func (r Row) ReplaceCell() string {
	if r.ReplaceText != "" {
		return r.ReplaceText
	}
	if r.Replace {
		return "true"
	}
	return "false"
}

// Result is the outcome of one row in the ledger.
type Result struct {
	Status     Status `json:"s"`
	HTTPStatus int    `json:"h,omitempty"`
	Attempts   int    `json:"a,omitempty"`
	// Reason is a short, stable code counted in summary.json
	// ("http_404", "timeout", "invalid_contact_id", ...).
	Reason string `json:"why,omitempty"`
	// Error is the human explanation shown in failed.csv.
	Error string `json:"err,omitempty"`
}

// Op is one call to make for a contact: the member, the mode, and the file
// lines it stands for (more than one when exact duplicates were merged).
type Op struct {
	MemberID string `json:"m"`
	Replace  bool   `json:"r,omitempty"`
	Lines    []int  `json:"l"`
}

// AssignPayload is the payload of a TypeAssign task: it names the
// contacts of a batch it applies, one (a contact retried on its own) or a
// chunk of them; their calls are in the batch's plan, so nothing of the
// file is stored twice.
type AssignPayload struct {
	Batch string `json:"b"`
	// Contact is set for the task of one contact.
	Contact string `json:"c,omitempty"`
	// Contacts is set for a chunk.
	Contacts []string `json:"cs,omitempty"`
}

// Chunk reports whether the payload is a chunk of contacts.
func (p AssignPayload) Chunk() bool { return p.Contact == "" }

// TaskRetries is asynq's retry budget of a task. The worker counts each
// row's attempts in the ledger and dead-letters a row itself when it has
// had --max-attempts; asynq's own count must never run out first, because
// asynq archives a task whose count is spent even when it was only deferred
// (paused batch, 429).
const TaskRetries = 1_000_000

// NewAssignTask builds the task of one contact. Its task id is derived
// from the batch and contact, so that a contact has at most one task of
// its own. opts come after the defaults (queue Queue, TaskRetries) and
// override them.
func NewAssignTask(p AssignPayload, opts ...asynq.Option) (*asynq.Task, error) {
	opts = append([]asynq.Option{asynq.TaskID(TaskID(p.Batch, p.Contact))}, opts...)
	return newTask(AssignPayload{Batch: p.Batch, Contact: p.Contact}, opts)
}

// NewChunkTask builds the task of a chunk of contacts with the given task
// id. A chunk may run long under a low --rate: it gets chunkTimeout, not
// asynq's default 30 minutes (its lease keeps it from a dead worker).
func NewChunkTask(batch string, contacts []string, id string, opts ...asynq.Option) (*asynq.Task, error) {
	return newTask(AssignPayload{Batch: batch, Contacts: contacts}, append([]asynq.Option{asynq.TaskID(id), asynq.Timeout(chunkTimeout)}, opts...))
}

// chunkTimeout bounds one execution of a chunk.
const chunkTimeout = 24 * time.Hour

func newTask(p AssignPayload, opts []asynq.Option) (*asynq.Task, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode payload of batch %s: %w", p.Batch, err)
	}
	opts = append([]asynq.Option{asynq.Queue(Queue), asynq.MaxRetry(TaskRetries)}, opts...)
	return asynq.NewTask(TypeAssign, b, opts...), nil
}

// TaskID is the asynq task id of a contact's own task within a batch.
func TaskID(batch, contact string) string { return batch + ":" + contact }

// ChunkTaskID is the asynq task id of chunk n of a batch as its import
// queued it. Contact ids never hold ':', so it never equals a TaskID.
func ChunkTaskID(batch string, n int) string { return batch + ":chunk:" + strconv.Itoa(n) }

// ParseAssignPayload decodes a TypeAssign payload.
func ParseAssignPayload(b []byte) (AssignPayload, error) {
	var p AssignPayload
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("decode assign payload: %w", err)
	}
	return p, nil
}
