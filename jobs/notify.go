package jobs

import (
	"context"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// A batch may name where its end is announced (package notify): the
// field "notify" of its record holds the target, opaque here, and the
// field "notified" the key of the last event queued for it, so that each
// end (completed, cancelled, paused by a refused key) is announced once.
// Both live in the record, so they are deleted and expire with the batch.
// The set NS:notify lists the batches that have a target, for the
// workers that look for ends nobody announced (a process that died
// between the end and the announcement).

// Fields of the batch record that notify uses.
const (
	notifyField   = "notify"
	notifiedField = "notified"
)

func (s *Store) notifyIndexKey() string { return s.ns + ":notify" }

// SetNotify stores where the end of a batch is announced; ErrNotFound
// when the batch is gone.
func (s *Store) SetNotify(ctx context.Context, id, target string) error {
	// The index first: an entry without a target is dropped by
	// NotifyBatches' caller, a target without an entry would be missed.
	if err := s.rdb.SAdd(ctx, s.notifyIndexKey(), id).Err(); err != nil {
		return fmt.Errorf("batch %s: set notify: %w", id, err)
	}
	n, err := setIfExistsScript.Run(ctx, s.rdb, []string{s.metaKey(id)}, notifyField, target).Int()
	if err != nil {
		return fmt.Errorf("batch %s: set notify: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("batch %s: %w", id, ErrNotFound)
	}
	return nil
}

// NotifyState is what decides whether a batch's end is to be announced.
type NotifyState struct {
	// Target is what SetNotify stored; "" for none.
	Target    string
	Status    string
	PauseCode string
	// Epoch counts the batch's starts, resumes and reopenings: a batch
	// that ends, runs again and ends again ends in another epoch.
	Epoch int64
	// Notified is the key of the last event queued (MarkNotified).
	Notified string
}

// NotifyState reads a batch's notify target and where it stands;
// ErrNotFound when the batch is gone.
func (s *Store) NotifyState(ctx context.Context, id string) (NotifyState, error) {
	v, err := s.rdb.HMGet(ctx, s.metaKey(id), "status", "pauseCode", "epoch", notifyField, notifiedField).Result()
	if err != nil {
		return NotifyState{}, fmt.Errorf("read batch %s: %w", id, err)
	}
	if v[0] == nil {
		return NotifyState{}, fmt.Errorf("batch %s: %w", id, ErrNotFound)
	}
	str := func(i int) string { s, _ := v[i].(string); return s }
	epoch, _ := strconv.ParseInt(str(2), 10, 64)
	return NotifyState{Status: str(0), PauseCode: str(1), Epoch: epoch, Target: str(3), Notified: str(4)}, nil
}

// MarkNotified records that the event key was queued for the batch, unless
// the batch is gone.
func (s *Store) MarkNotified(ctx context.Context, id, key string) error {
	if err := setIfExistsScript.Run(ctx, s.rdb, []string{s.metaKey(id)}, notifiedField, key).Err(); err != nil {
		return fmt.Errorf("batch %s: mark notified: %w", id, err)
	}
	return nil
}

// NotifyBatches lists the batches with a notify target, and drops from
// the list those whose record is gone (deleted, or expired after its
// retention).
func (s *Store) NotifyBatches(ctx context.Context) ([]string, error) {
	ids, err := s.rdb.SMembers(ctx, s.notifyIndexKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("list batches to notify: %w", err)
	}
	pipe := s.rdb.Pipeline()
	exists := make([]*redis.IntCmd, len(ids))
	for i, id := range ids {
		exists[i] = pipe.Exists(ctx, s.metaKey(id))
	}
	if len(ids) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("list batches to notify: %w", err)
		}
	}
	live := ids[:0]
	var gone []any
	for i, id := range ids {
		if exists[i].Val() == 1 {
			live = append(live, id)
		} else {
			gone = append(gone, id)
		}
	}
	if len(gone) > 0 {
		if err := s.rdb.SRem(ctx, s.notifyIndexKey(), gone...).Err(); err != nil {
			return nil, fmt.Errorf("prune batches to notify: %w", err)
		}
	}
	return live, nil
}

// setIfExistsScript sets a field of a batch record that exists: a late
// write must not bring a deleted batch's record back.
// KEYS: meta; ARGV: field, value. Returns 1 when set, 0 when gone.
var setIfExistsScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
`)
