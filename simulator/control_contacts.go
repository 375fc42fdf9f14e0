package simulator

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
)

// ContactAgentsPattern is the simulator's control endpoint for a contact's
// agents, outside the CRM's API: what someone changing the CRM by hand (or
// another integration) does behind bulkassign's back, for demos of
// `verify` and for tests.
//
//	PUT    /_control/contacts/{contact}/agents          body: ["member", ...]  sets them exactly ([] clears)
//	POST   /_control/contacts/{contact}/agents/{member} adds one
//	DELETE /_control/contacts/{contact}/agents/{member} removes one
//
// Each answers 200 with the contact as GET .../info shows it; 400 for a
// malformed id or body, 404 for a contact the simulator does not know.
// The control calls go through the same key check, latency and rate
// limit as the API, and are not counted as assignments.
const ContactAgentsPattern = "/_control/contacts/{contact}/agents"

// maxControlBody bounds a control request's body.
const maxControlBody = 1 << 20

// registerContactControls adds the contact control endpoints to mux.
func (s *Simulator) registerContactControls(mux *http.ServeMux) {
	mux.HandleFunc("PUT "+ContactAgentsPattern, s.handleSetAgents)
	mux.HandleFunc("POST "+ContactAgentsPattern+"/{member}", s.handleAgentControl)
	mux.HandleFunc("DELETE "+ContactAgentsPattern+"/{member}", s.handleAgentControl)
}

// RemoveAgent takes member off contact's agents, if it is one of them.
func (s *Simulator) RemoveAgent(contact, member string) {
	contact, member = strings.ToLower(contact), strings.ToLower(member)
	sh := &s.shards[shardOf(contact)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if st := sh.contacts[contact]; st != nil {
		st.agents = slices.DeleteFunc(st.agents, func(a string) bool { return a == member })
	}
}

func (s *Simulator) handleSetAgents(w http.ResponseWriter, r *http.Request) {
	contact, ok := s.controlContact(w, r)
	if !ok {
		return
	}
	var agents []string
	body, err := io.ReadAll(io.LimitReader(r.Body, maxControlBody))
	if err == nil {
		err = json.Unmarshal(body, &agents)
	}
	if err != nil {
		s.fail(w, http.StatusBadRequest, `body: want a JSON array of member ids, such as ["`+MemberID(1)+`"]`)
		return
	}
	for i, a := range agents {
		if agents[i], ok = normID(a); !ok {
			s.fail(w, http.StatusBadRequest, "malformed member id "+jsonQuote(a))
			return
		}
	}
	s.SetAgents(contact, agents...)
	s.handleInfo(w, r)
}

func (s *Simulator) handleAgentControl(w http.ResponseWriter, r *http.Request) {
	contact, ok := s.controlContact(w, r)
	if !ok {
		return
	}
	member, ok := normID(r.PathValue("member"))
	if !ok {
		s.fail(w, http.StatusBadRequest, "malformed member id")
		return
	}
	if r.Method == http.MethodDelete {
		s.RemoveAgent(contact, member)
	} else {
		s.apply(contact, member, false)
	}
	s.handleInfo(w, r)
}

// controlContact reads and checks the contact of a control request,
// answering the request when it is not one the simulator knows.
func (s *Simulator) controlContact(w http.ResponseWriter, r *http.Request) (string, bool) {
	contact, ok := normID(r.PathValue("contact"))
	if !ok {
		s.fail(w, http.StatusBadRequest, "malformed aiContactId")
		return "", false
	}
	if !s.knownContact(contact) {
		s.fail(w, http.StatusNotFound, "contact "+contact+" not found")
		return "", false
	}
	return contact, true
}

func jsonQuote(s string) string {
	b, _ := json.Marshal(s) // a string always encodes
	return string(b)
}
