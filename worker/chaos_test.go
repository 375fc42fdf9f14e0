package worker

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulkassign/bulkassign/jobs"
)

// Chaos tests of the CRM side: a CRM that answers slowly, resets
// connections, sends garbage with a 200, says success:false, or asks to
// come back later with Retry-After (seconds or an HTTP date). The real
// Client and Handler drive it through asynq on a real Redis; behind the
// faults sits the simulator, so the CRM's end state can be checked, and
// the ledger must be exact in every case.

// misbehave answers call n (1-based, counted per contact) of a contact, or
// returns false to let the simulator answer normally. apply runs the call
// on the simulator and returns its answer, for faults that come after the
// CRM did the work.
type misbehave func(n int, w http.ResponseWriter, r *http.Request, apply func() *httptest.ResponseRecorder) bool

// chaosCRM serves the simulator behind a misbehave script.
type chaosCRM struct {
	requests atomic.Int64
	mu       sync.Mutex
	calls    map[string][]time.Time // by contact: when each call came in
}

func (c *chaosCRM) callTimes(contact string) []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.calls[contact])
}

// newChaosEnv is newEnv with the handler's client pointed at a CRM that
// misbehaves as script says, with the given call timeout.
func newChaosEnv(t *testing.T, script misbehave, timeout time.Duration, maxAttempts int) (*env, *chaosCRM) {
	t.Helper()
	e := newEnv(t, envOptions{maxAttempts: maxAttempts})
	c := &chaosCRM{calls: map[string][]time.Time{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.requests.Add(1)
		parts := strings.Split(r.URL.Path, "/")
		if len(parts) != 7 || parts[5] != "assign-team-member" {
			e.sim.ServeHTTP(w, r)
			return
		}
		contact := parts[4]
		c.mu.Lock()
		c.calls[contact] = append(c.calls[contact], time.Now())
		n := len(c.calls[contact])
		c.mu.Unlock()
		apply := func() *httptest.ResponseRecorder {
			rec := httptest.NewRecorder()
			e.sim.ServeHTTP(rec, r)
			return rec
		}
		if !script(n, w, r, apply) {
			e.sim.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	client, err := NewClient(ClientOptions{BaseURL: srv.URL, APIKey: "k-chaos", Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	e.handler = NewHandler(e.store, client, NewLocalLimiter(0, 1), HandlerOptions{
		MaxAttempts: maxAttempts,
		Logger:      slog.New(slog.DiscardHandler),
	})
	return e, c
}

// chaosRows are 10 contacts; the first two have three rows (add, replace,
// add), so a fault on a contact's first call must not reorder its rows.
func chaosRows() []jobs.Row {
	var rows []jobs.Row
	line := 2
	add := func(contact, member string, replace bool) {
		rows = append(rows, row(line, contact, member, replace))
		line++
	}
	for i := range 10 {
		c := fmt.Sprintf("x%02d", i)
		add(c, "m1", false)
		if i < 2 {
			add(c, "m2", true)
			add(c, "m3", false)
		}
	}
	return rows
}

// stateOf is the CRM state rows leave when each is applied once, in order.
func stateOf(rows []jobs.Row) map[string][]string {
	st := map[string][]string{}
	for _, r := range rows {
		switch {
		case r.Replace:
			st[r.ContactID] = []string{r.MemberID}
		case !slices.Contains(st[r.ContactID], r.MemberID):
			st[r.ContactID] = append(st[r.ContactID], r.MemberID)
		}
	}
	return st
}

// firstOfContact reports which lines are the first row of their contact.
func firstOfContact(rows []jobs.Row) map[int]bool {
	seen := map[string]bool{}
	first := map[int]bool{}
	for _, r := range rows {
		if !seen[r.ContactID] {
			seen[r.ContactID], first[r.Line] = true, true
		}
	}
	return first
}

// hang holds a request until the client gives up on it.
func hang(r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-time.After(10 * time.Second):
	}
}

// reset closes the connection without an answer.
func reset(w http.ResponseWriter) {
	if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
		_ = conn.Close()
	}
}

func answer(w http.ResponseWriter, status int, header http.Header, body string) {
	for k, v := range header {
		w.Header()[k] = v
	}
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

// TestChaosCRMRecovers covers faults on each contact's first call that a
// retry gets past: every row succeeds once, the CRM ends exactly as the
// file says, and the counters say what happened.
func TestChaosCRMRecovers(t *testing.T) {
	t.Parallel()
	retryAfterDate := func() http.Header {
		// Two seconds ahead, at HTTP dates' one-second resolution: a wait
		// of more than one second.
		return http.Header{"Retry-After": {time.Now().Add(2 * time.Second).UTC().Format(http.TimeFormat)}}
	}
	tests := []struct {
		name   string
		script misbehave
		// attempts is the first row's attempts; retries and limited the
		// batch counters per contact.
		attempts, retries, limited int
		// minGap is the least time between a contact's first two calls.
		minGap time.Duration
	}{
		{
			name: "slow answer beyond the timeout, applied",
			script: func(n int, w http.ResponseWriter, r *http.Request, apply func() *httptest.ResponseRecorder) bool {
				if n == 1 {
					apply() // the CRM did the work; the answer is late
					hang(r)
					return true
				}
				return false
			},
			attempts: 2, retries: 1,
		},
		{
			name: "slow answer beyond the timeout, not applied",
			script: func(n int, w http.ResponseWriter, r *http.Request, _ func() *httptest.ResponseRecorder) bool {
				if n == 1 {
					hang(r)
					return true
				}
				return false
			},
			attempts: 2, retries: 1,
		},
		{
			name: "connection reset after applying",
			script: func(n int, w http.ResponseWriter, r *http.Request, apply func() *httptest.ResponseRecorder) bool {
				if n == 1 {
					apply()
					reset(w)
					return true
				}
				return false
			},
			attempts: 2, retries: 1,
		},
		{
			name: "connection reset before applying",
			script: func(n int, w http.ResponseWriter, r *http.Request, _ func() *httptest.ResponseRecorder) bool {
				if n == 1 {
					reset(w)
					return true
				}
				return false
			},
			attempts: 2, retries: 1,
		},
		{
			// Documented: a 2xx whose body is not JSON is a success (a
			// proxy may rewrite the body; the status is what counts).
			name: "garbage body with 200",
			script: func(n int, w http.ResponseWriter, r *http.Request, apply func() *httptest.ResponseRecorder) bool {
				if rec := apply(); rec.Code == http.StatusOK {
					answer(w, http.StatusOK, nil, "<html><body>upstream OK \x00\xff</body>")
					return true
				}
				return false
			},
			attempts: 1,
		},
		{
			// Documented: 200 with success:false is a transient refusal.
			name: "200 with success false",
			script: func(n int, w http.ResponseWriter, r *http.Request, _ func() *httptest.ResponseRecorder) bool {
				if n == 1 {
					answer(w, http.StatusOK, http.Header{"Content-Type": {"application/json"}}, `{"success":false,"message":"try again"}`)
					return true
				}
				return false
			},
			attempts: 2, retries: 1,
		},
		{
			// A 429 waits what it asks and does not use up an attempt.
			name: "429 with Retry-After as an HTTP date",
			script: func(n int, w http.ResponseWriter, r *http.Request, _ func() *httptest.ResponseRecorder) bool {
				if n == 1 {
					answer(w, http.StatusTooManyRequests, retryAfterDate(), `{"message":"slow down"}`)
					return true
				}
				return false
			},
			attempts: 1, limited: 1, minGap: 900 * time.Millisecond,
		},
		{
			name: "503 with Retry-After in seconds",
			script: func(n int, w http.ResponseWriter, r *http.Request, _ func() *httptest.ResponseRecorder) bool {
				if n == 1 {
					answer(w, http.StatusServiceUnavailable, http.Header{"Retry-After": {"1"}}, `{"message":"maintenance"}`)
					return true
				}
				return false
			},
			attempts: 2, retries: 1, minGap: time.Second,
		},
		{
			name: "503 with Retry-After as an HTTP date",
			script: func(n int, w http.ResponseWriter, r *http.Request, _ func() *httptest.ResponseRecorder) bool {
				if n == 1 {
					answer(w, http.StatusServiceUnavailable, retryAfterDate(), "")
					return true
				}
				return false
			},
			attempts: 2, retries: 1, minGap: 900 * time.Millisecond,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e, crm := newChaosEnv(t, tt.script, 200*time.Millisecond, 3)
			rows := chaosRows()
			e.enqueue(t, e.load(t, "b", rows))
			e.run(t)
			b := e.waitDone(t, "b")

			contacts := int64(len(stateOf(rows)))
			if b.Succeeded != int64(len(rows)) || b.Failed != 0 {
				t.Errorf("succeeded %d failed %d, want %d and 0", b.Succeeded, b.Failed, len(rows))
			}
			if b.Retries != int64(tt.retries)*contacts || b.RateLimited != int64(tt.limited)*contacts {
				t.Errorf("retries %d rate-limited %d, want %d and %d", b.Retries, b.RateLimited, int64(tt.retries)*contacts, int64(tt.limited)*contacts)
			}
			if got := crm.requests.Load(); b.APICalls != got {
				t.Errorf("batch counted %d API calls, the CRM got %d", b.APICalls, got)
			}
			first := firstOfContact(rows)
			for line, r := range e.results(t, "b") {
				want := 1
				if first[line] {
					want = tt.attempts
				}
				if r.Status != jobs.StatusSucceeded || r.Attempts != want || r.HTTPStatus != http.StatusOK {
					t.Errorf("line %d: %+v, want succeeded (200) after %d attempts", line, r, want)
				}
			}
			for c, want := range stateOf(rows) {
				if got := e.sim.Agents(c); !slices.Equal(got, want) {
					t.Errorf("%s's agents = %v, want %v", c, got, want)
				}
				if times := crm.callTimes(c); tt.minGap > 0 && len(times) > 1 && times[1].Sub(times[0]) < tt.minGap {
					t.Errorf("%s called again after %s, want at least %s", c, times[1].Sub(times[0]), tt.minGap)
				}
			}
		})
	}
}

// TestChaosCRMDeadLetters covers a CRM that never gets better: every
// contact's first row runs out of attempts and is dead-lettered with the
// reason of its last failure, the contact's later rows are blocked, and
// nothing is counted twice.
func TestChaosCRMDeadLetters(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		script misbehave
		reason string
	}{
		{"always slower than the timeout", func(_ int, w http.ResponseWriter, r *http.Request, _ func() *httptest.ResponseRecorder) bool {
			hang(r)
			return true
		}, "timeout"},
		{"always resets", func(_ int, w http.ResponseWriter, r *http.Request, _ func() *httptest.ResponseRecorder) bool {
			reset(w)
			return true
		}, "connection"},
		{"always success false", func(_ int, w http.ResponseWriter, r *http.Request, _ func() *httptest.ResponseRecorder) bool {
			answer(w, http.StatusOK, nil, `{"success":false,"message":"member is busy"}`)
			return true
		}, "success_false"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			const maxAttempts = 2
			e, crm := newChaosEnv(t, tt.script, 150*time.Millisecond, maxAttempts)
			rows := chaosRows()
			e.enqueue(t, e.load(t, "b", rows))
			e.run(t)
			b := e.waitDone(t, "b")

			contacts := int64(len(stateOf(rows)))
			blocked := int64(len(rows)) - contacts
			if b.Failed != int64(len(rows)) || b.Succeeded != 0 {
				t.Errorf("failed %d succeeded %d, want %d and 0", b.Failed, b.Succeeded, len(rows))
			}
			if b.Errors[tt.reason] != contacts || b.Errors["blocked"] != blocked {
				t.Errorf("errors by reason %v, want %s: %d, blocked: %d", b.Errors, tt.reason, contacts, blocked)
			}
			if want := (maxAttempts - 1) * contacts; b.Retries != want {
				t.Errorf("retries %d, want %d", b.Retries, want)
			}
			if got := crm.requests.Load(); b.APICalls != got || got != maxAttempts*contacts {
				t.Errorf("batch counted %d API calls, the CRM got %d, want %d", b.APICalls, got, maxAttempts*contacts)
			}
			first := firstOfContact(rows)
			for line, r := range e.results(t, "b") {
				switch {
				case first[line]:
					if r.Status != jobs.StatusFailed || r.Reason != tt.reason || r.Attempts != maxAttempts ||
						!strings.Contains(r.Error, fmt.Sprintf("gave up after %d attempts", maxAttempts)) || strings.Contains(r.Error, "k-chaos") {
						t.Errorf("line %d: %+v, want failed (%s) after %d attempts", line, r, tt.reason, maxAttempts)
					}
				case r.Status != jobs.StatusFailed || r.Reason != "blocked":
					t.Errorf("line %d: %+v, want failed as blocked", line, r)
				}
			}
			if st := e.sim.State(); len(st) != 0 {
				t.Errorf("the CRM applied %v; every call failed", st)
			}
			eventually(t, 30*time.Second, "every contact's task archived (dead-lettered)", func() bool {
				return int64(len(e.archived(t))) == contacts
			})
		})
	}
}
