package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/hibiken/asynq"
)

// ErrContactNotFound means the CRM does not know the contact (HTTP 404).
var ErrContactNotFound = errors.New("contact not found")

// CallError is a call that did not succeed, with its classified outcome.
type CallError struct {
	Outcome Outcome
}

func (e *CallError) Error() string { return e.Outcome.Err.Error() }

func (e *CallError) Unwrap() error { return e.Outcome.Err }

// ContactAgents returns the ids of the agents the contact has now,
// lower-case, in the CRM's order; an empty list when it has none. A
// contact the CRM does not know is ErrContactNotFound; any other failure
// is a *CallError saying whether it is worth retrying (and wraps
// ErrUnauthorized when the key was refused).
func (c *Client) ContactAgents(ctx context.Context, contact string) ([]string, error) {
	agents, out := c.contactAgents(ctx, contact)
	switch {
	case out.Kind == OK:
		return agents, nil
	case out.HTTPStatus == http.StatusNotFound:
		return nil, fmt.Errorf("read agents of contact %s: %w: %w", contact, ErrContactNotFound, &CallError{Outcome: out})
	}
	return nil, fmt.Errorf("read agents of contact %s: %w", contact, &CallError{Outcome: out})
}

// maxInfoBody bounds the contact answer read; it may carry more than the
// agents.
const maxInfoBody = 1 << 20

// contactAgents makes the info call, under the same key probe as Assign,
// and classifies it. An answer whose agents cannot be read is Permanent
// with reason "unreadable_agents".
func (c *Client) contactAgents(ctx context.Context, contact string) ([]string, Outcome) {
	var body []byte
	out := c.guard(func() Outcome {
		path := strings.ReplaceAll(c.opts.InfoPathTemplate, "{aiContactId}", url.PathEscape(contact))
		var out Outcome
		out, body = c.send(ctx, http.MethodGet, c.base.String()+path, maxInfoBody)
		return out
	})
	if out.Kind != OK {
		return nil, out
	}
	agents, err := parseAgents(body)
	if err != nil {
		return nil, Outcome{Kind: Permanent, HTTPStatus: out.HTTPStatus, Reason: "unreadable_agents", Err: err}
	}
	return agents, out
}

// agentKeys are the fields that may list a contact's agents, in the order
// they are looked for.
var agentKeys = []string{"agents", "assignedAgents", "assigned_agents", "teamMembers", "team_members"}

// parseAgents reads the agent ids from a contact answer: the contact
// object, or one wrapped in "data" or "contact", with its agents in one of
// agentKeys, as objects with an "id" (or "teamMemberId") or as plain ids.
// A null list is no agents; an answer with none of the fields is an error
// rather than a guess, because the ids recorded are what a rollback
// restores.
func parseAgents(body []byte) ([]string, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil {
		return nil, fmt.Errorf("contact answer is not a JSON object: %s", apiMessage(body))
	}
	for _, wrap := range []string{"data", "contact"} {
		var inner map[string]json.RawMessage
		if raw, ok := obj[wrap]; ok && json.Unmarshal(raw, &inner) == nil && hasAny(inner, agentKeys) {
			obj = inner
			break
		}
	}
	for _, k := range agentKeys {
		raw, ok := obj[k]
		if !ok {
			continue
		}
		agents, err := agentIDs(raw)
		if err != nil {
			return nil, fmt.Errorf("contact answer field %q: %w", k, err)
		}
		return agents, nil
	}
	return nil, fmt.Errorf("contact answer has no agent list (looked for %s)", strings.Join(agentKeys, ", "))
}

func hasAny(m map[string]json.RawMessage, keys []string) bool {
	for _, k := range keys {
		if _, ok := m[k]; ok {
			return true
		}
	}
	return false
}

// agentIDs reads a list of agents: ids, or objects with an id.
func agentIDs(raw json.RawMessage) ([]string, error) {
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, errors.New("not an array")
	}
	out := make([]string, 0, len(items))
	seen := make(map[string]bool, len(items))
	for i, item := range items {
		id, err := agentID(item)
		if err != nil {
			return nil, fmt.Errorf("element %d: %w", i, err)
		}
		id = strings.ToLower(strings.TrimSpace(id))
		if id == "" {
			return nil, fmt.Errorf("element %d: empty id", i)
		}
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out, nil
}

// agentID reads one agent: a string or number id, or an object with one.
func agentID(item json.RawMessage) (string, error) {
	item = bytes.TrimSpace(item)
	var obj map[string]json.RawMessage
	if len(item) > 0 && item[0] == '{' {
		if err := json.Unmarshal(item, &obj); err != nil {
			return "", err
		}
		for _, k := range []string{"id", "teamMemberId", "team_member_id"} {
			if raw, ok := obj[k]; ok {
				return scalarID(raw)
			}
		}
		return "", errors.New("object without an id")
	}
	return scalarID(item)
}

func scalarID(raw json.RawMessage) (string, error) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String(), nil
	}
	return "", fmt.Errorf("id %s is not a string or a number", truncate(string(raw), 40))
}

// previous reads and records the contact's current agents before the
// batch's first call for it, when the batch records previous agents. The
// record is written once (a retry or a duplicate delivery finds it and
// reads nothing), and only while none of the contact's rows has a result:
// once a call was made, what the contact has is no longer what it had.
//
// The read is an API call like the assign calls: it waits for the rate
// limiter, is counted in apiCalls, and its failures count against the
// contact's first row. A 404 records nothing (the contact is unknown, its
// assign calls will fail with 404 too). When the read fails for good,
// every remaining row of the contact fails unsent, and settled is true.
func (h *Handler) previous(ctx context.Context, log *slog.Logger, p jobs.AssignPayload, prog jobs.Progress) (settled bool, err error) {
	if len(p.Ops) == 0 {
		return false, nil
	}
	for _, op := range p.Ops {
		if prog.Done[op.Lines[0]] {
			return false, nil
		}
	}
	on, err := h.recordsPrevious(ctx, p.Batch)
	if err != nil || !on {
		return false, err
	}
	has, err := h.store.HasPrevious(ctx, p.Batch, p.Contact)
	if err != nil || has {
		return false, err
	}
	first := p.Ops[0].Lines[0]
	attempts := prog.Attempts[first]
	var st jobs.Stats
	for limited := 0; ; {
		if err := h.limiter.Wait(ctx); err != nil {
			return false, h.abandon(p, st, err)
		}
		start := time.Now()
		agents, out := h.client.contactAgents(ctx, p.Contact)
		if h.opts.Observe != nil {
			h.opts.Observe(out, time.Since(start))
		}
		if ctx.Err() != nil && out.Kind != OK {
			return false, h.abandon(p, st, context.Cause(ctx))
		}
		if !out.NotSent {
			st.Calls++
		}
		switch {
		case out.Kind == RateLimited:
			limited++
			if err := h.onRateLimited(ctx, p, &st, out, limited); err != nil {
				return false, err
			}
			continue
		case out.Kind == OK:
			if _, err := h.store.SavePrevious(ctx, p.Batch, p.Contact, agents); err != nil {
				return false, h.abandon(p, st, err)
			}
			return false, h.store.AddStats(ctx, p.Batch, st)
		case out.HTTPStatus == http.StatusNotFound:
			log.Debug("contact unknown: no previous agents to record")
			return false, h.store.AddStats(ctx, p.Batch, st)
		case out.Kind == Unauthorized:
			return false, h.unauthorized(ctx, log, p, st, out)
		}
		attempts++
		res := jobs.Result{Status: jobs.StatusFailed, HTTPStatus: out.HTTPStatus, Attempts: attempts, Reason: out.Reason}
		if out.Kind == Permanent {
			res.Error = fmt.Sprintf("not sent: the contact's current agents could not be read (--record-previous): %v", out.Err)
			var lines []int
			for _, op := range p.Ops {
				lines = append(lines, op.Lines...)
			}
			return true, h.record(ctx, p.Batch, lines, res, st)
		}
		// Transient.
		if attempts < h.opts.MaxAttempts {
			st.Retries++
			if err := h.store.NoteAttempt(ctx, p.Batch, first, st); err != nil {
				return false, err
			}
			return false, &TransientError{Attempt: attempts, RetryAfter: out.RetryAfter, Err: fmt.Errorf("read the contact's agents: %w", out.Err)}
		}
		res.Error = fmt.Sprintf("not sent: gave up after %d attempts to read the contact's current agents (--record-previous): %v", attempts, out.Err)
		log.Warn("row dead-lettered: agents unread", slog.Int("line", first), slog.String("reason", out.Reason), slog.Int("attempts", attempts))
		if err := h.store.MarkDead(ctx, p); err != nil {
			return false, err
		}
		if err := h.record(ctx, p.Batch, p.Ops[0].Lines, res, st); err != nil {
			return false, err
		}
		if err := h.blockRest(ctx, p, 0); err != nil {
			return false, err
		}
		return true, fmt.Errorf("line %d dead-lettered after %d attempts to read the contact's agents: %v: %w", first, attempts, out.Err, asynq.SkipRetry)
	}
}

// recordsPrevious reports whether a batch records previous agents; the
// answer is fixed at import, so it is read once per batch.
func (h *Handler) recordsPrevious(ctx context.Context, batch string) (bool, error) {
	if v, ok := h.recording.Load(batch); ok {
		return v.(bool), nil
	}
	on, err := h.store.RecordsPrevious(ctx, batch)
	if err != nil {
		return false, err
	}
	h.recording.Store(batch, on)
	return on, nil
}
