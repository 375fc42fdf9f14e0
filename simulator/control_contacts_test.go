package simulator_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bulkassign/bulkassign/simulator"
)

// TestContactControls: the control endpoint changes a contact behind the
// API's back; unknown contacts and bad bodies are refused.
func TestContactControls(t *testing.T) {
	known := simulator.ContactID(1)
	sim := simulator.New(simulator.Options{Contacts: []string{known}})
	url, stop, err := simulator.Start(context.Background(), "127.0.0.1:0", sim)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stop(context.Background()) })
	call := func(method, contact, member, body string) int {
		t.Helper()
		u := url + strings.Replace(simulator.ContactAgentsPattern, "{contact}", contact, 1)
		if member != "" {
			u += "/" + member
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, method, u, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	m1, m2, m3 := simulator.MemberID(1), simulator.MemberID(2), simulator.MemberID(3)
	steps := []struct {
		method, contact, member, body string
		status                        int
		agents                        []string
	}{
		{"PUT", known, "", `["` + strings.ToUpper(m1) + `","` + m2 + `","` + m1 + `"]`, 200, []string{m1, m2}},
		{"POST", known, m3, "", 200, []string{m1, m2, m3}},
		{"POST", known, m3, "", 200, []string{m1, m2, m3}},
		{"DELETE", known, m1, "", 200, []string{m2, m3}},
		{"PUT", known, "", `{"agents":[]}`, 400, []string{m2, m3}},
		{"PUT", known, "", `["bad id!"]`, 400, []string{m2, m3}},
		{"PUT", simulator.ContactID(2), "", `[]`, 404, []string{m2, m3}},
		{"PUT", known, "", `[]`, 200, nil},
	}
	for i, s := range steps {
		if got := call(s.method, s.contact, s.member, s.body); got != s.status {
			t.Errorf("step %d %s %s: status %d, want %d", i+1, s.method, s.body, got, s.status)
		}
		if got := sim.Agents(known); !slices.Equal(got, s.agents) {
			t.Errorf("step %d %s %s: agents %v, want %v", i+1, s.method, s.body, got, s.agents)
		}
	}
	if st := sim.Stats(); st.Assigned != 0 {
		t.Errorf("control calls counted as %d assignments, want 0", st.Assigned)
	}
}
