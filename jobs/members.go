package jobs

import (
	"context"
	"fmt"
	"strconv"
	"sync"
)

// A batch's plan names members by their index in the batch's member
// table (the members key: index -> id), not by id: a batch has few members
// and many contacts, and an id is tens of bytes a call.

// memberTables caches the member tables of batches, in both directions.
// A table only grows, while its batch is imported; readers load it again
// when an index is missing. The tables of batches this process imports
// are its own (own) and never dropped: the indices it hands out must stay
// the ones it stored. The others (read) are a cache.
type memberTables struct {
	mu        sync.Mutex
	own, read map[string]*memberTable
}

type memberTable struct {
	ids   []string
	index map[string]int
}

// maxCachedTables bounds the tables a long-lived process keeps.
const maxCachedTables = 256

// get returns the table of batch: the importing process's own (own), or
// one read from Redis.
func (m *memberTables) get(batch string, own bool) *memberTable {
	m.mu.Lock()
	defer m.mu.Unlock()
	if t := m.own[batch]; t != nil {
		return t
	}
	if own {
		if m.own == nil {
			m.own = map[string]*memberTable{}
		}
		t := &memberTable{index: map[string]int{}}
		if r := m.read[batch]; r != nil {
			t = r
			delete(m.read, batch)
		}
		m.own[batch] = t
		return t
	}
	if m.read == nil || len(m.read) >= maxCachedTables {
		m.read = map[string]*memberTable{}
	}
	t := m.read[batch]
	if t == nil {
		t = &memberTable{index: map[string]int{}}
		m.read[batch] = t
	}
	return t
}

// drop forgets the table of a batch deleted.
func (m *memberTables) drop(batch string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.own, batch)
	delete(m.read, batch)
}

func (s *Store) membersKey(id string) string { return s.key(id, "members") }

// intern returns the plan's name of member in batch (its index), and
// whether it is new: then the caller stores it with what names it. Only
// the importing process adds members.
func (s *Store) intern(batch, member string) (name string, isNew bool) {
	t := s.members.get(batch, true)
	s.members.mu.Lock()
	defer s.members.mu.Unlock()
	i, ok := t.index[member]
	if !ok {
		i = len(t.ids)
		t.ids = append(t.ids, member)
		t.index[member] = i
	}
	return strconv.Itoa(i), !ok
}

// memberIDs maps the member indices of ops to ids.
func (s *Store) memberIDs(ctx context.Context, batch string, ops []Op) error {
	for i := range ops {
		id, err := s.memberID(ctx, batch, ops[i].MemberID)
		if err != nil {
			return err
		}
		ops[i].MemberID = id
	}
	return nil
}

// memberID maps a member's index in batch to its id, loading the batch's
// table when the index is not in it yet.
func (s *Store) memberID(ctx context.Context, batch, name string) (string, error) {
	n, err := strconv.Atoi(name)
	if err != nil || n < 0 {
		return "", fmt.Errorf("plan member %q: not an index", name)
	}
	t := s.members.get(batch, false)
	lookup := func() (string, bool) {
		s.members.mu.Lock()
		defer s.members.mu.Unlock()
		if n < len(t.ids) {
			return t.ids[n], true
		}
		return "", false
	}
	if id, ok := lookup(); ok {
		return id, nil
	}
	if err := s.loadMembers(ctx, batch, t); err != nil {
		return "", err
	}
	if id, ok := lookup(); ok {
		return id, nil
	}
	return "", fmt.Errorf("plan member %d: not in the batch's member table", n)
}

func (s *Store) loadMembers(ctx context.Context, batch string, t *memberTable) error {
	all, err := s.rdb.HGetAll(ctx, s.membersKey(batch)).Result()
	if err != nil {
		return fmt.Errorf("read the members of batch %s: %w", batch, err)
	}
	ids := make([]string, len(all))
	for k, v := range all {
		n, err := strconv.Atoi(k)
		if err != nil || n < 0 || n >= len(all) {
			return fmt.Errorf("batch %s: bad member index %q", batch, k)
		}
		ids[n] = v
	}
	s.members.mu.Lock()
	defer s.members.mu.Unlock()
	if len(ids) > len(t.ids) {
		t.ids = ids
		for i, id := range ids {
			t.index[id] = i
		}
	}
	return nil
}
