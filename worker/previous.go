package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
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
