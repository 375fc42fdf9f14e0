// Package notifytest is a --notify endpoint for tests: it records every
// request, and refuses the first ones when told to.
package notifytest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"
)

// Delivery is one request the receiver got, and what it answered.
type Delivery struct {
	Status int
	Header http.Header
	Body   []byte
}

// Receiver is a notify endpoint at URL.
type Receiver struct {
	URL  string
	mu   sync.Mutex
	fail int // POSTs still to refuse
	got  []Delivery
}

// New serves a receiver, until the test ends, that answers 500 to its
// first fail POSTs and 200 after (405 to anything but a POST).
func New(t *testing.T, fail int) *Receiver {
	t.Helper()
	r := &Receiver{fail: fail}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		d := Delivery{Status: http.StatusOK, Header: req.Header.Clone(), Body: body}
		if req.Method != http.MethodPost {
			d.Status = http.StatusMethodNotAllowed
		} else if r.fail > 0 {
			r.fail--
			d.Status = http.StatusInternalServerError
		}
		r.got = append(r.got, d)
		w.WriteHeader(d.Status)
	}))
	t.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}

// Deliveries is every request so far.
func (r *Receiver) Deliveries() []Delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// Accepted is the requests answered 2xx so far.
func (r *Receiver) Accepted() []Delivery {
	return slices.DeleteFunc(r.Deliveries(), func(d Delivery) bool { return d.Status != http.StatusOK })
}

// Wait returns the accepted requests once there are n, failing the test
// after 30 s.
func (r *Receiver) Wait(t *testing.T, n int) []Delivery {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if got := r.Accepted(); len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d notices within 30s, want %d", len(r.Accepted()), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
