package worker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const secretKey = "sk-test-SECRET-4242"

// request is what a scripted CRM saw of one call.
type request struct {
	method, path, query, key string
}

// crm is an httptest server answering with answer and keeping what it saw.
type crm struct {
	*httptest.Server
	mu       sync.Mutex
	seen     []request
	inFlight atomic.Int64
	maxIn    atomic.Int64
}

func newCRM(t *testing.T, keyHeader string, answer http.HandlerFunc) *crm {
	t.Helper()
	c := &crm{}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := c.inFlight.Add(1)
		defer c.inFlight.Add(-1)
		for m := c.maxIn.Load(); n > m && !c.maxIn.CompareAndSwap(m, n); m = c.maxIn.Load() {
		}
		c.mu.Lock()
		c.seen = append(c.seen, request{r.Method, r.URL.EscapedPath(), r.URL.RawQuery, r.Header.Get(keyHeader)})
		c.mu.Unlock()
		answer(w, r)
	}))
	t.Cleanup(c.Close)
	return c
}

func (c *crm) requests() []request {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]request(nil), c.seen...)
}

func answerStatus(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}
}

func newTestClient(t *testing.T, opts ClientOptions) *Client {
	t.Helper()
	if opts.APIKey == "" {
		opts.APIKey = secretKey
	}
	c, err := NewClient(opts)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return c
}

func TestClientRequest(t *testing.T) {
	t.Parallel()
	srv := newCRM(t, DefaultKeyHeader, answerStatus(200, `{"success":true}`))
	c := newTestClient(t, ClientOptions{BaseURL: srv.URL + "/"})
	ctx := t.Context()
	if out := c.Assign(ctx, "c-1", "m_2", false); out.Kind != OK || out.HTTPStatus != 200 || out.Err != nil {
		t.Fatalf("Assign = %+v", out)
	}
	if out := c.Assign(ctx, "ab/c d?e", "m#1", true); out.Kind != OK {
		t.Fatalf("Assign = %+v", out)
	}
	want := []request{
		{"POST", "/api/public/contact/c-1/assign-team-member/m_2", "removeExistingAgents=false", secretKey},
		{"POST", "/api/public/contact/ab%2Fc%20d%3Fe/assign-team-member/m%231", "removeExistingAgents=true", secretKey},
	}
	got := srv.requests()
	if len(got) != len(want) {
		t.Fatalf("server saw %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("request %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestClientOptions(t *testing.T) {
	t.Parallel()
	srv := newCRM(t, "Authorization", answerStatus(201, ``))
	c := newTestClient(t, ClientOptions{
		BaseURL:      srv.URL + "/crm",
		PathTemplate: "/v2/assign/{teamMemberId}/to/{aiContactId}",
		KeyHeader:    "Authorization",
		APIKey:       "Bearer xyz",
	})
	if out := c.Assign(t.Context(), "c1", "m1", true); out.Kind != OK {
		t.Fatalf("Assign = %+v", out)
	}
	want := request{"POST", "/crm/v2/assign/m1/to/c1", "removeExistingAgents=true", "Bearer xyz"}
	if got := srv.requests(); len(got) != 1 || got[0] != want {
		t.Errorf("server saw %+v, want %+v", got, want)
	}
}

func TestNewClientRejects(t *testing.T) {
	t.Parallel()
	for _, opts := range []ClientOptions{
		{PathTemplate: "/contact/{aiContactId}"},
		{PathTemplate: "/member/{teamMemberId}"},
		{BaseURL: "ftp://example.com"},
		{BaseURL: "api.example.com"},
		{BaseURL: "http://"},
		{BaseURL: "://bad"},
	} {
		if _, err := NewClient(opts); err == nil {
			t.Errorf("NewClient(%+v): want an error", opts)
		}
	}
}

// assertNoKey fails if the API key leaked into an outcome.
func assertNoKey(t *testing.T, out Outcome) {
	t.Helper()
	if out.Err != nil && strings.Contains(out.Err.Error(), secretKey) {
		t.Errorf("error message contains the API key: %q", out.Err)
	}
	if strings.Contains(out.Reason, secretKey) {
		t.Errorf("reason contains the API key: %q", out.Reason)
	}
}

func TestClientNeverReportsTheKey(t *testing.T) {
	t.Parallel()
	// A CRM that echoes the key it was sent in its error messages.
	for _, status := range []int{400, 401, 404, 429, 500, 503} {
		srv := newCRM(t, DefaultKeyHeader, func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(status)
			_, _ = w.Write([]byte(`{"success":false,"message":"key ` + r.Header.Get(DefaultKeyHeader) + ` is not allowed here"}`))
		})
		c := newTestClient(t, ClientOptions{BaseURL: srv.URL})
		out := c.Assign(t.Context(), "c1", "m1", false)
		if out.HTTPStatus != status {
			t.Errorf("HTTP %d: outcome %+v", status, out)
		}
		assertNoKey(t, out)
	}
}

func TestClientTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := newCRM(t, DefaultKeyHeader, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) }) // runs before srv.Close
	c := newTestClient(t, ClientOptions{BaseURL: srv.URL, Timeout: 50 * time.Millisecond})
	out := c.Assign(t.Context(), "c1", "m1", false)
	if out.Kind != Transient || out.Reason != "timeout" || out.HTTPStatus != 0 {
		t.Fatalf("Assign = %+v, want transient timeout", out)
	}
	assertNoKey(t, out)
}

func TestClientConnectionRefused(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	c := newTestClient(t, ClientOptions{BaseURL: "http://" + addr, Timeout: 5 * time.Second})
	out := c.Assign(t.Context(), "c1", "m1", false)
	if out.Kind != Transient || out.Reason != "connection" {
		t.Fatalf("Assign = %+v, want transient connection", out)
	}
	if strings.Contains(out.Err.Error(), "/api/public") {
		t.Errorf("error names the URL: %q", out.Err)
	}
	assertNoKey(t, out)
	// A connection error is no answer: the key is still unproven, and the
	// next call is made (not refused).
	out = c.Assign(t.Context(), "c1", "m1", false)
	if out.Kind != Transient {
		t.Errorf("second Assign = %+v", out)
	}
}

func TestClientResetConnection(t *testing.T) {
	t.Parallel()
	srv := newCRM(t, DefaultKeyHeader, func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			_ = conn.Close()
		}
	})
	c := newTestClient(t, ClientOptions{BaseURL: srv.URL})
	out := c.Assign(t.Context(), "c1", "m1", false)
	if out.Kind != Transient || out.Reason != "connection" {
		t.Fatalf("Assign = %+v, want transient connection", out)
	}
	assertNoKey(t, out)
}

func TestClientCancelled(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := newCRM(t, DefaultKeyHeader, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) })
	c := newTestClient(t, ClientOptions{BaseURL: srv.URL})
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		eventually(t, 10*time.Second, "request reaches the server", func() bool { return len(srv.requests()) == 1 })
		cancel()
	}()
	out := c.Assign(ctx, "c1", "m1", false)
	if out.Kind != Transient || out.Reason != "cancelled" {
		t.Fatalf("Assign = %+v, want transient cancelled", out)
	}
}

func TestClientRefusedKeyCostsOneCall(t *testing.T) {
	t.Parallel()
	for _, status := range []int{401, 403} {
		release := make(chan struct{})
		srv := newCRM(t, DefaultKeyHeader, func(w http.ResponseWriter, r *http.Request) {
			<-release
			answerStatus(status, `{"message":"invalid key"}`)(w, r)
		})
		c := newTestClient(t, ClientOptions{BaseURL: srv.URL})
		const n = 50
		outs := make([]Outcome, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { outs[i] = c.Assign(t.Context(), "c1", "m1", false) })
		}
		eventually(t, 10*time.Second, "first call reaches the server", func() bool { return len(srv.requests()) >= 1 })
		close(release)
		wg.Wait()
		if got := len(srv.requests()); got != 1 {
			t.Errorf("HTTP %d: server saw %d requests, want 1", status, got)
		}
		sent := 0
		for _, out := range outs {
			if !out.NotSent {
				sent++
			}
		}
		if sent != 1 {
			t.Errorf("HTTP %d: %d outcomes say a request was sent, want 1", status, sent)
		}
		for i, out := range outs {
			if out.Kind != Unauthorized || out.HTTPStatus != status || !errors.Is(out.Err, ErrUnauthorized) {
				t.Errorf("HTTP %d: call %d = %+v", status, i, out)
				break
			}
			assertNoKey(t, out)
		}
		// Later calls are refused without a request.
		if out := c.Assign(t.Context(), "c2", "m2", true); out.Kind != Unauthorized {
			t.Errorf("later call = %+v", out)
		}
		if got := len(srv.requests()); got != 1 {
			t.Errorf("HTTP %d: server saw %d requests after a later call, want 1", status, got)
		}
	}
}

func TestClientConcurrentOnceKeyAccepted(t *testing.T) {
	t.Parallel()
	var srv *crm
	together := make(chan struct{})
	var once sync.Once
	srv = newCRM(t, DefaultKeyHeader, func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/c0/") {
			// Hold each call until a second one is in flight, or give up
			// (the test then fails on maxIn below).
			if srv.inFlight.Load() >= 2 {
				once.Do(func() { close(together) })
			}
			select {
			case <-together:
			case <-time.After(5 * time.Second):
			case <-r.Context().Done():
			}
		}
		answerStatus(200, `{"success":true}`)(w, r)
	})
	c := newTestClient(t, ClientOptions{BaseURL: srv.URL})
	// The first call proves the key.
	if out := c.Assign(t.Context(), "c0", "m0", false); out.Kind != OK {
		t.Fatalf("probe = %+v", out)
	}
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			if out := c.Assign(t.Context(), fmt.Sprint("c", i+1), "m1", false); out.Kind != OK {
				t.Errorf("call %d = %+v", i, out)
			}
		})
	}
	wg.Wait()
	if m := srv.maxIn.Load(); m < 2 {
		t.Errorf("at most %d call in flight at once after the key was accepted, want more than 1", m)
	}
}
