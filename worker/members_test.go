package worker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkassign/bulkassign/simulator"
)

// pagedCRM answers GET team-members/all from a script keyed by the
// request's raw query, and keeps the queries and keys it saw.
type pagedCRM struct {
	*httptest.Server
	mu      sync.Mutex
	queries []string
	keys    []string
}

func newPagedCRM(t *testing.T, pages map[string]func(w http.ResponseWriter, base string)) *pagedCRM {
	t.Helper()
	c := &pagedCRM{}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.queries = append(c.queries, r.URL.RawQuery)
		c.keys = append(c.keys, r.Header.Get(DefaultKeyHeader))
		c.mu.Unlock()
		if r.Method != http.MethodGet || r.URL.Path != MembersPath {
			http.Error(w, `{"message":"no such endpoint"}`, http.StatusNotFound)
			return
		}
		page, ok := pages[r.URL.RawQuery]
		if !ok {
			http.Error(w, `{"message":"no such page"}`, http.StatusNotFound)
			return
		}
		page(w, "http://"+r.Host)
	}))
	t.Cleanup(c.Close)
	return c
}

func (c *pagedCRM) seen() ([]string, []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.queries...), append([]string(nil), c.keys...)
}

// body answers 200 with a JSON text.
func body(s string) func(http.ResponseWriter, string) {
	return func(w http.ResponseWriter, _ string) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, s)
	}
}

func membersClient(t *testing.T, url string) *Client {
	t.Helper()
	c, err := NewClient(ClientOptions{BaseURL: url, APIKey: secretKey, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestTeamMembers(t *testing.T) {
	t.Parallel()
	ann := Member{ID: "m-1", Email: "ann@x.io", Name: "Ann Lee", Active: true}
	bob := Member{ID: "m-2", Email: "bob@x.io", Name: "Bob", Active: false}
	tests := []struct {
		name    string
		pages   map[string]func(http.ResponseWriter, string)
		want    []Member
		queries []string
		errIn   string
		errIs   error
	}{
		{
			name: "the documented array, without an active flag",
			pages: map[string]func(http.ResponseWriter, string){"": body(
				`[{"id":"m-1","name":"","first_name":"Ann","last_name":"Lee","email":"ann@x.io","phone":"+1"},` +
					`{"id":"m-2","name":"Bob","email":"bob@x.io"}]`)},
			want:    []Member{ann, {ID: "m-2", Email: "bob@x.io", Name: "Bob", Active: true}},
			queries: []string{""},
		},
		{
			name: "active flags: active, isActive, status; a numeric id",
			pages: map[string]func(http.ResponseWriter, string){"": body(
				`[{"id":"m-1","name":"Ann Lee","email":"ann@x.io","active":true},` +
					`{"id":"m-2","name":"Bob","email":"bob@x.io","isActive":false},` +
					`{"id":"m-3","name":"Cy","email":"cy@x.io","status":"DISABLED"},` +
					`{"id":"m-4","name":"Di","email":"di@x.io","status":"active"},` +
					`{"id":17,"firstName":"Ed","lastName":"Ng","email":"ed@x.io","is_active":"false"},` +
					`{"name":"no id"}]`)},
			want: []Member{ann, bob, {ID: "m-3", Email: "cy@x.io", Name: "Cy"}, {ID: "m-4", Email: "di@x.io", Name: "Di", Active: true},
				{ID: "17", Email: "ed@x.io", Name: "Ed Ng"}},
			queries: []string{""},
		},
		{
			name: "pages by number",
			pages: map[string]func(http.ResponseWriter, string){
				"":       body(`{"data":[{"id":"m-1","name":"Ann Lee","email":"ann@x.io"}],"page":1,"totalPages":3}`),
				"page=2": body(`{"data":[{"id":"m-2","name":"Bob","email":"bob@x.io","active":false}],"page":2,"totalPages":3}`),
				"page=3": body(`{"data":[{"id":"m-3","name":"Cy","email":"cy@x.io"}],"page":3,"totalPages":3}`),
			},
			want:    []Member{ann, bob, {ID: "m-3", Email: "cy@x.io", Name: "Cy", Active: true}},
			queries: []string{"", "page=2", "page=3"},
		},
		{
			name: "paging in a meta object, members under items",
			pages: map[string]func(http.ResponseWriter, string){
				"":       body(`{"items":[{"id":"m-1","name":"Ann Lee","email":"ann@x.io"}],"meta":{"current_page":1,"total_pages":2}}`),
				"page=2": body(`{"items":[{"id":"m-2","name":"Bob","email":"bob@x.io","active":false}],"meta":{"current_page":2,"total_pages":2}}`),
			},
			want:    []Member{ann, bob},
			queries: []string{"", "page=2"},
		},
		{
			name: "next URL, then a cursor, then the end",
			pages: map[string]func(http.ResponseWriter, string){
				"": func(w http.ResponseWriter, base string) {
					fmt.Fprintf(w, `{"members":[{"id":"m-1","name":"Ann Lee","email":"ann@x.io"}],"next":"%s%s?after=m-1"}`, base, MembersPath)
				},
				"after=m-1":              body(`{"members":[{"id":"m-2","name":"Bob","email":"bob@x.io","active":false}],"nextCursor":"c/2"}`),
				"after=m-1&cursor=c%2F2": body(`{"members":[{"id":"m-3","name":"Cy","email":"cy@x.io"}],"next":null}`),
			},
			want:    []Member{ann, bob, {ID: "m-3", Email: "cy@x.io", Name: "Cy", Active: true}},
			queries: []string{"", "after=m-1", "after=m-1&cursor=c%2F2"},
		},
		{
			name: "an empty page ends the list, whatever the paging says",
			pages: map[string]func(http.ResponseWriter, string){
				"":       body(`{"data":[{"id":"m-1","name":"Ann Lee","email":"ann@x.io"}],"page":1,"totalPages":99}`),
				"page=2": body(`{"data":[],"page":2,"totalPages":99}`),
			},
			want:    []Member{ann},
			queries: []string{"", "page=2"},
		},
		{
			name: "a next link that repeats itself stops",
			pages: map[string]func(http.ResponseWriter, string){
				"": body(`{"data":[{"id":"m-1","name":"Ann Lee","email":"ann@x.io"}],"next":"` + MembersPath + `"}`),
			},
			want:    []Member{ann},
			queries: []string{""},
		},
		{
			name: "401 is ErrUnauthorized, and the key is not echoed",
			pages: map[string]func(http.ResponseWriter, string){"": func(w http.ResponseWriter, _ string) {
				w.WriteHeader(http.StatusUnauthorized)
				fmt.Fprintf(w, `{"message":"bad key %s"}`, secretKey)
			}},
			errIn: "list team members: HTTP 401", errIs: ErrUnauthorized,
			queries: []string{""},
		},
		{
			name: "403 is ErrUnauthorized",
			pages: map[string]func(http.ResponseWriter, string){"": func(w http.ResponseWriter, _ string) {
				w.WriteHeader(http.StatusForbidden)
			}},
			errIs: ErrUnauthorized, queries: []string{""},
		},
		{
			name:  "a 404 is not tried again",
			pages: map[string]func(http.ResponseWriter, string){},
			errIn: "list team members: HTTP 404: no such page", queries: []string{""},
		},
		{
			name: "a next page on another host is not followed with the key",
			pages: map[string]func(http.ResponseWriter, string){
				"": body(`{"data":[{"id":"m-1"}],"next":"https://evil.example/steal"}`),
			},
			errIn: "another host", queries: []string{""},
		},
		{
			name:    "not JSON",
			pages:   map[string]func(http.ResponseWriter, string){"": body(`<html>login</html>`)},
			errIn:   "the answer is not JSON: <html>login</html>",
			queries: []string{""},
		},
		{
			name:    "an object without a list",
			pages:   map[string]func(http.ResponseWriter, string){"": body(`{"total":3}`)},
			errIn:   "without a data, items or members array",
			queries: []string{""},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			crm := newPagedCRM(t, tt.pages)
			got, err := membersClient(t, crm.URL).TeamMembers(t.Context())
			queries, keys := crm.seen()
			if !reflect.DeepEqual(queries, tt.queries) {
				t.Errorf("queries %q, want %q", queries, tt.queries)
			}
			for _, k := range keys {
				if k != secretKey {
					t.Errorf("key header %q, want the API key", k)
				}
			}
			if tt.errIn != "" || tt.errIs != nil {
				if err == nil || !strings.Contains(err.Error(), tt.errIn) {
					t.Fatalf("error %v, want one containing %q", err, tt.errIn)
				}
				if tt.errIs != nil && !errors.Is(err, tt.errIs) {
					t.Errorf("error %v is not %v", err, tt.errIs)
				}
				if strings.Contains(err.Error(), secretKey) {
					t.Errorf("the error shows the API key: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("members:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// TestTeamMembersTransient: a 503 is tried again, after the wait the API
// asks for.
func TestTeamMembersTransient(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	calls := 0
	crm := newPagedCRM(t, map[string]func(http.ResponseWriter, string){"": func(w http.ResponseWriter, _ string) {
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		if n == 1 {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, `[{"id":"m-1","email":"ann@x.io"}]`)
	}})
	got, err := membersClient(t, crm.URL).TeamMembers(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || calls != 2 {
		t.Errorf("members %+v after %d calls, want 1 after 2", got, calls)
	}

	// A cancelled context stops the waiting.
	down := newPagedCRM(t, map[string]func(http.ResponseWriter, string){"": func(w http.ResponseWriter, _ string) {
		w.Header().Set("Retry-After", "30")
		w.WriteHeader(http.StatusTooManyRequests)
	}})
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := membersClient(t, down.URL).TeamMembers(ctx); err == nil {
		t.Fatal("no error from a CRM that only answers 429")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("gave up after %s, want about the context's 200ms", d)
	}
}

// TestTeamMembersSimulator reads the simulator's list through the client.
func TestTeamMembersSimulator(t *testing.T) {
	t.Parallel()
	ms := simulator.GenerateMembers(3)
	ms[1].Active = false
	srv := httptest.NewServer(simulator.New(simulator.Options{APIKey: secretKey, Members: ms}))
	t.Cleanup(srv.Close)
	got, err := membersClient(t, srv.URL).TeamMembers(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := []Member{
		{ID: simulator.MemberID(1), Email: "agent0001@example.com", Name: "Agent 0001", Active: true},
		{ID: simulator.MemberID(2), Email: "agent0002@example.com", Name: "Agent 0002", Active: false},
		{ID: simulator.MemberID(3), Email: "agent0003@example.com", Name: "Agent 0003", Active: true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("members:\n got %+v\nwant %+v", got, want)
	}

	wrong, err := NewClient(ClientOptions{BaseURL: srv.URL, APIKey: "wrong"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wrong.TeamMembers(t.Context()); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("wrong key: %v, want ErrUnauthorized", err)
	}
}
