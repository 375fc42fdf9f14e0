package jobs

import (
	"context"
	"encoding/json"
	"fmt"
)

// A batch imported with RecordPrevious keeps, per contact, the agents the
// contact had before the batch's first call for it: the ledger of what to
// restore to undo the batch. It lives in the hash NS:batch:ID:previous
// (contact -> JSON array of member ids, in the CRM's order), one of the
// batch's keys, so it is deleted and expires with the batch.

func (s *Store) previousKey(id string) string { return s.key(id, "previous") }

// recordPreviousField is the batch record's flag of a batch that records
// previous agents.
const recordPreviousField = "recordPrevious"

// SetRecordPrevious marks a batch being imported as one whose workers read
// and keep each contact's agents before changing them. The importer sets it
// before the batch runs; it never changes afterwards.
func (s *Store) SetRecordPrevious(ctx context.Context, id string) error {
	n, err := setFlagScript.Run(ctx, s.rdb, s.keys(id), recordPreviousField, "1").Int()
	if err != nil {
		return fmt.Errorf("batch %s: record previous agents: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("batch %s: record previous agents: %w", id, ErrNotFound)
	}
	return nil
}

// RecordsPrevious reports whether the batch keeps its contacts' previous
// agents; ErrNotFound when the batch is gone.
func (s *Store) RecordsPrevious(ctx context.Context, id string) (bool, error) {
	v, err := s.rdb.HMGet(ctx, s.metaKey(id), "id", recordPreviousField).Result()
	if err != nil {
		return false, fmt.Errorf("read batch %s: %w", id, err)
	}
	if v[0] == nil {
		return false, fmt.Errorf("batch %s: %w", id, ErrNotFound)
	}
	return v[1] == "1", nil
}

// HasPrevious reports whether the contact's previous agents are recorded.
func (s *Store) HasPrevious(ctx context.Context, id, contact string) (bool, error) {
	ok, err := s.rdb.HExists(ctx, s.previousKey(id), contact).Result()
	if err != nil {
		return false, fmt.Errorf("batch %s: read previous agents of %s: %w", id, contact, err)
	}
	return ok, nil
}

// SavePrevious records the contact's agents before the batch changed them,
// once: when they are recorded already (a retry, a duplicate delivery, a
// worker that crashed after the first read) the first record stays, and
// SavePrevious reports false. Nothing is written for a batch that is gone:
// that is ErrNotFound.
func (s *Store) SavePrevious(ctx context.Context, id, contact string, agents []string) (bool, error) {
	if agents == nil {
		agents = []string{} // "had none" is a record too
	}
	b, err := json.Marshal(agents)
	if err != nil {
		return false, fmt.Errorf("encode previous agents of %s: %w", contact, err)
	}
	n, err := savePreviousScript.Run(ctx, s.rdb, s.keys(id), contact, b).Int()
	if err != nil {
		return false, fmt.Errorf("batch %s: record previous agents of %s: %w", id, contact, err)
	}
	if n == -1 {
		return false, fmt.Errorf("batch %s: %w", id, ErrNotFound)
	}
	return n == 1, nil
}

// Previous returns the recorded previous agents of the given contacts; a
// contact with no record is not in the map.
func (s *Store) Previous(ctx context.Context, id string, contacts []string) (map[string][]string, error) {
	out := make(map[string][]string, len(contacts))
	if len(contacts) == 0 {
		return out, nil
	}
	vals, err := s.rdb.HMGet(ctx, s.previousKey(id), contacts...).Result()
	if err != nil {
		return nil, fmt.Errorf("batch %s: read previous agents: %w", id, err)
	}
	for i, v := range vals {
		str, ok := v.(string)
		if !ok {
			continue
		}
		var agents []string
		if err := json.Unmarshal([]byte(str), &agents); err != nil {
			return nil, fmt.Errorf("batch %s: previous agents of %s: %w", id, contacts[i], err)
		}
		if agents == nil {
			agents = []string{}
		}
		out[contacts[i]] = agents
	}
	return out, nil
}

// setFlagLua sets a field of a batch record that exists.
// ARGV: field, value
const setFlagLua = `
if redis.call('EXISTS', meta) == 0 then
  return 0
end
redis.call('HSET', meta, ARGV[1], ARGV[2])
return 1
`

// savePreviousLua records a contact's previous agents once, in a batch
// that exists, with the batch's expiry: a worker finishing a task of a
// deleted or expired batch must not bring a key of it back.
// ARGV: contact, agents json
const savePreviousLua = `
if redis.call('EXISTS', meta) == 0 then
  return -1
end
local n = redis.call('HSETNX', KEYS[7], ARGV[1], ARGV[2])
touch(KEYS[7])
return n
`

var (
	setFlagScript      = script(setFlagLua)
	savePreviousScript = script(savePreviousLua)
)
