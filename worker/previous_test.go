package worker

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/simulator"
	"github.com/hibiken/asynq"
)

func TestContactAgentsShapes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		status int
		body   string
		want   []string
		err    error // errors.Is target; nil with wantKind unset means success
		kind   Kind  // Kind of the *CallError, when err is nil and want is nil
	}{
		{name: "simulator", status: 200, body: `{"id":"c1","agents":[{"id":"A1","name":"Ann"},{"id":"b2"}]}`, want: []string{"a1", "b2"}},
		{name: "no agents", status: 200, body: `{"id":"c1","agents":[]}`, want: []string{}},
		{name: "null agents", status: 200, body: `{"id":"c1","agents":null}`, want: []string{}},
		{name: "assignedAgents", status: 200, body: `{"assignedAgents":[{"id":"x"},{"id":"y"}]}`, want: []string{"x", "y"}},
		{name: "teamMembers", status: 200, body: `{"teamMembers":[{"teamMemberId":"m9"}]}`, want: []string{"m9"}},
		{name: "strings", status: 200, body: `{"agents":[" M1 ","m2","m1"]}`, want: []string{"m1", "m2"}},
		{name: "numbers", status: 200, body: `{"agents":[{"id":42},7]}`, want: []string{"42", "7"}},
		{name: "wrapped in data", status: 200, body: `{"success":true,"data":{"id":"c1","teamMembers":["q"]}}`, want: []string{"q"}},
		{name: "first known field wins", status: 200, body: `{"agents":["a"],"teamMembers":["b"]}`, want: []string{"a"}},
		{name: "no agent field", status: 200, body: `{"id":"c1","owner":"x"}`, kind: Permanent},
		{name: "not an object", status: 200, body: `["a"]`, kind: Permanent},
		{name: "agents not a list", status: 200, body: `{"agents":"a,b"}`, kind: Permanent},
		{name: "object without id", status: 200, body: `{"agents":[{"name":"Ann"}]}`, kind: Permanent},
		{name: "empty id", status: 200, body: `{"agents":[""]}`, kind: Permanent},
		{name: "success false", status: 200, body: `{"success":false,"message":"busy"}`, kind: Transient},
		{name: "unknown contact", status: 404, body: `{"message":"contact not found"}`, err: ErrContactNotFound},
		{name: "bad id", status: 400, body: `{"message":"bad id"}`, kind: Permanent},
		{name: "server error", status: 503, body: `{"message":"down"}`, kind: Transient},
		{name: "rate limited", status: 429, body: `{}`, kind: RateLimited},
		{name: "refused key", status: 401, body: `{}`, err: ErrUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			crm := newCRM(t, DefaultKeyHeader, answerStatus(tt.status, tt.body))
			c := newTestClient(t, ClientOptions{BaseURL: crm.URL})
			got, err := c.ContactAgents(context.Background(), "C1")
			if reqs := crm.requests(); len(reqs) != 1 || reqs[0].method != http.MethodGet ||
				reqs[0].path != "/api/public/contact/C1/info" || reqs[0].key != secretKey {
				t.Errorf("requests = %+v", reqs)
			}
			switch {
			case tt.want != nil:
				if err != nil || !slices.Equal(got, tt.want) || got == nil {
					t.Errorf("ContactAgents = %q, %v; want %q", got, err, tt.want)
				}
			case tt.err != nil:
				if !errors.Is(err, tt.err) {
					t.Errorf("error = %v, want %v", err, tt.err)
				}
			default:
				var ce *CallError
				if !errors.As(err, &ce) || ce.Outcome.Kind != tt.kind {
					t.Errorf("error = %v (%+v), want a CallError of kind %d", err, ce, tt.kind)
				}
			}
			if err != nil && strings.Contains(err.Error(), secretKey) {
				t.Errorf("error shows the key: %v", err)
			}
		})
	}
}

func TestContactAgentsInfoPathTemplate(t *testing.T) {
	t.Parallel()
	crm := newCRM(t, DefaultKeyHeader, answerStatus(200, `{"agents":[]}`))
	c := newTestClient(t, ClientOptions{BaseURL: crm.URL + "/v2", InfoPathTemplate: "/contacts/{aiContactId}"})
	if _, err := c.ContactAgents(context.Background(), "a b"); err != nil {
		t.Fatal(err)
	}
	if reqs := crm.requests(); len(reqs) != 1 || reqs[0].path != "/v2/contacts/a%20b" {
		t.Errorf("requests = %+v", reqs)
	}
	if _, err := NewClient(ClientOptions{InfoPathTemplate: "/contacts/info"}); err == nil {
		t.Error("an info path without {aiContactId} was accepted")
	}
}

// prevEnv is a handler whose CRM is the simulator behind front, which may
// answer the info calls itself.
type prevEnv struct {
	*env
	handler *Handler
	infos   atomic.Int64 // info calls the CRM got
	assigns atomic.Int64 // assign calls the CRM got
}

func newPrevEnv(t *testing.T, o envOptions, front func(w http.ResponseWriter, r *http.Request) bool) *prevEnv {
	t.Helper()
	p := &prevEnv{env: newEnv(t, o)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/info") {
			p.infos.Add(1)
		} else {
			p.assigns.Add(1)
		}
		if front != nil && front(w, r) {
			return
		}
		p.sim.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	client, err := NewClient(ClientOptions{BaseURL: srv.URL, APIKey: o.apiKey})
	if err != nil {
		t.Fatal(err)
	}
	p.handler = NewHandler(p.store, client, NewLocalLimiter(0, 1), HandlerOptions{
		MaxAttempts: o.maxAttempts,
		PausedRetry: o.pausedRetry,
		Logger:      slog.New(slog.DiscardHandler),
	})
	return p
}

// checkSent asserts that the batch counted every call the handler's CRM
// got.
func (p *prevEnv) checkSent(t *testing.T, b jobs.Batch) {
	t.Helper()
	if got := p.infos.Load() + p.assigns.Load(); b.APICalls != got {
		t.Errorf("batch counted %d API calls, the CRM got %d", b.APICalls, got)
	}
}

// loadRecording writes a running batch that records previous agents.
func (p *prevEnv) loadRecording(t *testing.T, id string, rows []jobs.Row) []jobs.AssignPayload {
	t.Helper()
	ps := p.load(t, id, rows)
	if err := p.store.SetRecordPrevious(p.ctx, id); err != nil {
		t.Fatal(err)
	}
	return ps
}

// assign sets the simulator's state directly, as an earlier batch would.
func (p *prevEnv) assign(t *testing.T, contact string, members ...string) {
	t.Helper()
	for i, m := range members {
		q := "false"
		if i == 0 {
			q = "true"
		}
		req := httptest.NewRequest(http.MethodPost, "/api/public/contact/"+contact+"/assign-team-member/"+m+"?removeExistingAgents="+q, nil)
		rec := httptest.NewRecorder()
		p.sim.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("set up %s: HTTP %d", contact, rec.Code)
		}
	}
}

func (p *prevEnv) previous(t *testing.T, id string, contacts ...string) map[string][]string {
	t.Helper()
	m, err := p.store.Previous(p.ctx, id, contacts)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestHandlerRecordsPreviousOnce(t *testing.T) {
	t.Parallel()
	p := newPrevEnv(t, envOptions{}, nil)
	p.assign(t, "alice", "a1", "a2")
	rows := []jobs.Row{row(2, "alice", "b", true), row(3, "alice", "c", false), row(4, "nobody", "b", false)}
	ps := p.loadRecording(t, "b", rows)

	for i := range 3 { // a duplicate delivery, then a third
		if err := p.handler.ProcessTask(p.ctx, p.task(t, ps[0])); err != nil {
			t.Fatalf("delivery %d: %v", i+1, err)
		}
	}
	if n := p.infos.Load(); n != 1 {
		t.Errorf("the CRM got %d info calls for alice, want 1", n)
	}
	if got := p.sim.Agents("alice"); !slices.Equal(got, []string{"b", "c"}) {
		t.Errorf("alice's agents = %v, want [b c]", got)
	}
	if err := p.handler.ProcessTask(p.ctx, p.task(t, ps[1])); err != nil {
		t.Fatal(err)
	}
	prev := p.previous(t, "b", "alice", "nobody")
	want := map[string][]string{"alice": {"a1", "a2"}, "nobody": {}}
	if len(prev) != 2 || !slices.Equal(prev["alice"], want["alice"]) || prev["nobody"] == nil || len(prev["nobody"]) != 0 {
		t.Errorf("previous = %q, want %q", prev, want)
	}
	b := p.batch(t, "b")
	if b.Status != jobs.BatchDone || b.Succeeded != 3 {
		t.Errorf("batch = %+v", b)
	}
	p.checkSent(t, b)
}

func TestHandlerKeepsFirstRecord(t *testing.T) {
	t.Parallel()
	p := newPrevEnv(t, envOptions{}, nil)
	p.assign(t, "alice", "now")
	ps := p.loadRecording(t, "b", []jobs.Row{row(2, "alice", "b", true)})
	// A worker read the agents and died before its first call: the next
	// one keeps that record and reads nothing.
	stored, err := p.store.SavePrevious(p.ctx, "b", "alice", []string{"before"})
	if err != nil || !stored {
		t.Fatalf("SavePrevious = %v, %v", stored, err)
	}
	if stored, err := p.store.SavePrevious(p.ctx, "b", "alice", []string{"other"}); err != nil || stored {
		t.Fatalf("second SavePrevious = %v, %v; want false", stored, err)
	}
	if err := p.handler.ProcessTask(p.ctx, p.task(t, ps[0])); err != nil {
		t.Fatal(err)
	}
	if n := p.infos.Load(); n != 0 {
		t.Errorf("the CRM got %d info calls, want 0", n)
	}
	if got := p.previous(t, "b", "alice")["alice"]; !slices.Equal(got, []string{"before"}) {
		t.Errorf("previous = %q, want [before]", got)
	}
}

func TestHandlerNoReadAfterFirstCall(t *testing.T) {
	t.Parallel()
	p := newPrevEnv(t, envOptions{}, nil)
	p.assign(t, "alice", "changed")
	ps := p.loadRecording(t, "b", []jobs.Row{row(2, "alice", "changed", true), row(3, "alice", "more", false)})
	// Line 2 was applied (by a worker of an older version, or before the
	// record was lost): what alice has now is not what she had before.
	got, err := p.store.Begin(p.ctx, "b", "alice", 5)
	if err != nil || got.Verdict != jobs.Run {
		t.Fatalf("Begin = %+v, %v", got, err)
	}
	if _, err := p.store.Settle(p.ctx, got.Exec, 0, jobs.Result{Status: jobs.StatusSucceeded, HTTPStatus: 200, Attempts: 1}, false, false, jobs.Stats{Calls: 1}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.store.Release(p.ctx, got.Exec, -1, false, jobs.Stats{}); err != nil {
		t.Fatal(err)
	}
	if err := p.handler.ProcessTask(p.ctx, p.task(t, ps[0])); err != nil {
		t.Fatal(err)
	}
	if n := p.infos.Load(); n != 0 {
		t.Errorf("the CRM got %d info calls, want 0", n)
	}
	if len(p.previous(t, "b", "alice")) != 0 {
		t.Error("the state after a call was recorded as the previous one")
	}
}

func TestHandlerNoRecordWithoutFlag(t *testing.T) {
	t.Parallel()
	p := newPrevEnv(t, envOptions{}, nil)
	ps := p.load(t, "b", []jobs.Row{row(2, "alice", "b", true)})
	if err := p.handler.ProcessTask(p.ctx, p.task(t, ps[0])); err != nil {
		t.Fatal(err)
	}
	if n := p.infos.Load(); n != 0 {
		t.Errorf("the CRM got %d info calls, want 0", n)
	}
	if on, err := p.store.RecordsPrevious(p.ctx, "b"); err != nil || on {
		t.Errorf("RecordsPrevious = %v, %v", on, err)
	}
	if len(p.previous(t, "b", "alice")) != 0 {
		t.Error("previous agents recorded for a batch without the flag")
	}
}

func TestHandlerPreviousUnknownContact(t *testing.T) {
	t.Parallel()
	p := newPrevEnv(t, envOptions{sim: simulator.Options{Contacts: []string{"known"}}}, nil)
	ps := p.loadRecording(t, "b", []jobs.Row{row(2, "ghost", "m1", false)})
	if err := p.handler.ProcessTask(p.ctx, p.task(t, ps[0])); err != nil {
		t.Fatal(err)
	}
	if len(p.previous(t, "b", "ghost")) != 0 {
		t.Error("an unknown contact got a previous record")
	}
	if r := p.results(t, "b")[2]; r.Status != jobs.StatusFailed || r.HTTPStatus != http.StatusNotFound {
		t.Errorf("line 2 = %+v", r)
	}
	if p.infos.Load() != 1 || p.assigns.Load() != 1 {
		t.Errorf("the CRM got %d info and %d assign calls, want 1 and 1", p.infos.Load(), p.assigns.Load())
	}
	p.checkSent(t, p.batch(t, "b"))
}

func TestHandlerPreviousTransientThenOK(t *testing.T) {
	t.Parallel()
	var failures atomic.Int64
	p := newPrevEnv(t, envOptions{maxAttempts: 5}, func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, "/info") && failures.Add(1) <= 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return true
		}
		return false
	})
	p.assign(t, "alice", "old")
	ps := p.loadRecording(t, "b", []jobs.Row{row(2, "alice", "new", true)})
	for i := range 2 {
		err := p.handler.ProcessTask(p.ctx, p.task(t, ps[0]))
		var te *TransientError
		if !errors.As(err, &te) || te.Attempt != i+1 {
			t.Fatalf("delivery %d: %v, want a transient error of attempt %d", i+1, err, i+1)
		}
		if p.assigns.Load() != 0 {
			t.Fatalf("assign sent before the agents were read")
		}
	}
	if err := p.handler.ProcessTask(p.ctx, p.task(t, ps[0])); err != nil {
		t.Fatal(err)
	}
	if got := p.previous(t, "b", "alice")["alice"]; !slices.Equal(got, []string{"old"}) {
		t.Errorf("previous = %q, want [old]", got)
	}
	b := p.batch(t, "b")
	if b.Succeeded != 1 || b.Retries != 2 || b.APICalls != 4 {
		t.Errorf("batch = %+v, want 1 succeeded, 2 retries, 4 calls", b)
	}
	if r := p.results(t, "b")[2]; r.Attempts != 3 {
		t.Errorf("line 2 = %+v, want 3 attempts (2 reads, 1 assign)", r)
	}
}

func TestHandlerPreviousDeadLetters(t *testing.T) {
	t.Parallel()
	p := newPrevEnv(t, envOptions{maxAttempts: 2}, func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, "/info") {
			w.WriteHeader(http.StatusBadGateway)
			return true
		}
		return false
	})
	ps := p.loadRecording(t, "b", []jobs.Row{row(2, "alice", "x", true), row(3, "alice", "y", false)})
	if err := p.handler.ProcessTask(p.ctx, p.task(t, ps[0])); err == nil {
		t.Fatal("first delivery: no error")
	}
	err := p.handler.ProcessTask(p.ctx, p.task(t, ps[0]))
	if !errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("second delivery: %v, want SkipRetry", err)
	}
	if n := p.assigns.Load(); n != 0 {
		t.Errorf("%d assign calls sent", n)
	}
	res := p.results(t, "b")
	if r := res[2]; r.Status != jobs.StatusFailed || r.Reason != "http_502" || r.Attempts != 2 || !strings.Contains(r.Error, "--record-previous") {
		t.Errorf("line 2 = %+v", r)
	}
	if r := res[3]; r.Status != jobs.StatusFailed || r.Reason != "blocked" {
		t.Errorf("line 3 = %+v", r)
	}
	dead, err := p.store.Dead(p.ctx, "b")
	if err != nil || len(dead) != 1 {
		t.Errorf("dead letters = %v, %v", dead, err)
	}
	b := p.batch(t, "b")
	if b.Status != jobs.BatchDone || b.Failed != 2 || b.APICalls != 2 || b.Retries != 1 {
		t.Errorf("batch = %+v, want 2 failed, 2 calls, 1 retry", b)
	}
}

func TestHandlerPreviousUnreadableFailsRows(t *testing.T) {
	t.Parallel()
	p := newPrevEnv(t, envOptions{}, func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, "/info") {
			_, _ = w.Write([]byte(`{"id":"alice","owner":"x"}`))
			return true
		}
		return false
	})
	ps := p.loadRecording(t, "b", []jobs.Row{row(2, "alice", "x", true), row(3, "alice", "y", false)})
	if err := p.handler.ProcessTask(p.ctx, p.task(t, ps[0])); err != nil {
		t.Fatal(err)
	}
	if n := p.assigns.Load(); n != 0 {
		t.Errorf("%d assign calls sent", n)
	}
	res := p.results(t, "b")
	if r := res[2]; r.Status != jobs.StatusFailed || r.Reason != "unreadable_agents" || !strings.Contains(r.Error, "no agent list") {
		t.Errorf("line 2 = %+v", r)
	}
	if r := res[3]; r.Status != jobs.StatusFailed || r.Reason != jobs.ReasonBlocked {
		t.Errorf("line 3 = %+v, want blocked", r)
	}
}

func TestHandlerPreviousUnauthorizedPauses(t *testing.T) {
	t.Parallel()
	p := newPrevEnv(t, envOptions{sim: simulator.Options{APIKey: "right"}, apiKey: "wrong"}, nil)
	ps := p.loadRecording(t, "b", []jobs.Row{row(2, "alice", "x", true)})
	if err := p.handler.ProcessTask(p.ctx, p.task(t, ps[0])); err != nil {
		t.Fatalf("ProcessTask = %v, want the contact parked", err)
	}
	b := p.batch(t, "b")
	if b.Status != jobs.BatchPaused || b.PauseCode != jobs.PauseUnauthorized || b.Done() != 0 {
		t.Errorf("batch = %+v", b)
	}
}
