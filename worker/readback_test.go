package worker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestReadAgents(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	calls := map[string]int{}
	crm := newCRM(t, DefaultKeyHeader, func(w http.ResponseWriter, r *http.Request) {
		contact := strings.Split(r.URL.Path, "/")[4]
		mu.Lock()
		calls[contact]++
		n := calls[contact]
		mu.Unlock()
		switch {
		case contact == "flaky" && n < 3:
			answerStatus(503, `{"message":"down"}`)(w, r)
		case contact == "limited" && n == 1:
			w.Header().Set("Retry-After", "0")
			answerStatus(429, `{}`)(w, r)
		case contact == "down":
			answerStatus(500, `{}`)(w, r)
		case contact == "unknown":
			answerStatus(404, `{"message":"contact not found"}`)(w, r)
		default:
			answerStatus(200, fmt.Sprintf(`{"agents":[{"id":"M-%s"}]}`, contact))(w, r)
		}
	})
	c := newTestClient(t, ClientOptions{BaseURL: crm.URL})
	got := map[string]Agents{}
	contacts := []string{"a", "flaky", "limited", "down", "unknown", "b"}
	err := ReadAgents(context.Background(), c, NewLocalLimiter(0, 1), ReadOptions{Concurrency: 3, MaxAttempts: 3, Backoff: time.Millisecond},
		contacts, func(a Agents) error {
			if _, dup := got[a.Contact]; dup {
				t.Errorf("contact %s handed over twice", a.Contact)
			}
			got[a.Contact] = a
			return nil
		})
	if err != nil {
		t.Fatalf("ReadAgents: %v", err)
	}
	for _, ok := range []string{"a", "flaky", "limited", "b"} {
		if a := got[ok]; a.Err != nil || len(a.IDs) != 1 || a.IDs[0] != "m-"+ok {
			t.Errorf("%s: got %+v, want agents [m-%s]", ok, a, ok)
		}
	}
	if a := got["unknown"]; !errors.Is(a.Err, ErrContactNotFound) {
		t.Errorf("unknown: err %v, want ErrContactNotFound", a.Err)
	}
	var ce *CallError
	if a := got["down"]; !errors.As(a.Err, &ce) || ce.Outcome.Kind != Transient {
		t.Errorf("down: err %v, want a transient *CallError", a.Err)
	}
	if calls["down"] != 3 || calls["flaky"] != 3 || calls["limited"] != 2 {
		t.Errorf("calls = %v: want down 3 (out of attempts), flaky 3, limited 2 (a 429 uses no attempt)", calls)
	}
}

func TestReadAgentsStopsOnRefusedKey(t *testing.T) {
	t.Parallel()
	crm := newCRM(t, DefaultKeyHeader, answerStatus(401, `{}`))
	c := newTestClient(t, ClientOptions{BaseURL: crm.URL})
	contacts := make([]string, 50)
	for i := range contacts {
		contacts[i] = fmt.Sprint("c", i)
	}
	err := ReadAgents(context.Background(), c, NewLocalLimiter(0, 1), ReadOptions{Concurrency: 4}, contacts,
		func(a Agents) error { return nil })
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("err = %v, want ErrUnauthorized", err)
	}
	if n := len(crm.requests()); n != 1 {
		t.Errorf("%d requests made with a refused key, want 1", n)
	}
}
