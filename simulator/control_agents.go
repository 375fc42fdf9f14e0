package simulator

import (
	"slices"
	"strings"
)

// SetAgents makes agents the contact's agents, as a change made in the
// CRM by someone else would (no call is counted); none removes them all.
// Ids are stored lower-case; a repeated id is kept once. It is how tests
// and demos change a contact behind a file's back.
func (s *Simulator) SetAgents(contact string, agents ...string) {
	contact = strings.ToLower(strings.TrimSpace(contact))
	list := make([]string, 0, len(agents))
	for _, a := range agents {
		if a = strings.ToLower(strings.TrimSpace(a)); a != "" && !slices.Contains(list, a) {
			list = append(list, a)
		}
	}
	sh := &s.shards[shardOf(contact)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if len(list) == 0 {
		delete(sh.contacts, contact)
		return
	}
	sh.contacts[contact] = &contactState{agents: list}
}
