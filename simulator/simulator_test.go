package simulator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulkassign/bulkassign/simulator"
)

const testKey = "s3cret-key"

// bundle is what setup returns: the simulator, its server's URL and a client.
type bundle struct {
	sim    *simulator.Simulator
	url    string
	client *http.Client
}

func setup(t testing.TB, opts simulator.Options) *bundle {
	t.Helper()
	sim := simulator.New(opts)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	tr := &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: 30 * time.Second}
	t.Cleanup(tr.CloseIdleConnections)
	return &bundle{sim: sim, url: srv.URL, client: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (b *bundle) do(t testing.TB, method, path, key string) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, b.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("x-api-key", key)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: body}
}

func assignPath(contact, member string, replace string) string {
	p := "/api/public/contact/" + contact + "/assign-team-member/" + member
	if replace != "" {
		p += "?removeExistingAgents=" + replace
	}
	return p
}

func (b *bundle) assign(t testing.TB, contact, member string, replace bool) answer {
	t.Helper()
	return b.do(t, http.MethodPost, assignPath(contact, member, fmt.Sprint(replace)), testKey)
}

func TestAssignSemantics(t *testing.T) {
	t.Parallel()
	type call struct {
		member  string
		replace bool
	}
	tests := []struct {
		name  string
		calls []call
		want  []string
	}{
		{"add replace add", []call{{"A", false}, {"B", true}, {"C", false}}, []string{"b", "c"}},
		{"adds keep first-added order", []call{{"c", false}, {"a", false}, {"b", false}}, []string{"c", "a", "b"}},
		{"duplicate add is idempotent", []call{{"a", false}, {"b", false}, {"a", false}, {"A", false}}, []string{"a", "b"}},
		{"replace twice", []call{{"a", false}, {"b", true}, {"b", true}}, []string{"b"}},
		{"replace with existing agent", []call{{"a", false}, {"b", false}, {"b", true}}, []string{"b"}},
		{"replace on empty contact", []call{{"z", true}}, []string{"z"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, simulator.Options{APIKey: testKey})
			for _, c := range tt.calls {
				a := b.assign(t, "Contact-1", c.member, c.replace)
				if a.status != http.StatusOK {
					t.Fatalf("assign %s: status %d %s", c.member, a.status, a.body)
				}
				var got struct {
					Success bool   `json:"success"`
					Message string `json:"message"`
				}
				if err := json.Unmarshal(a.body, &got); err != nil || !got.Success || got.Message != "Team member assigned successfully" {
					t.Fatalf("assign body = %s (%v)", a.body, err)
				}
			}
			if got := b.sim.Agents("CONTACT-1"); !slices.Equal(got, tt.want) {
				t.Errorf("Agents = %v, want %v", got, tt.want)
			}
			if got := b.sim.State(); len(got) != 1 || !slices.Equal(got["contact-1"], tt.want) {
				t.Errorf("State = %v", got)
			}
			if st := b.sim.Stats(); st.Assigned != int64(len(tt.calls)) || st.ByStatus[200] != int64(len(tt.calls)) {
				t.Errorf("Stats = %+v", st)
			}
		})
	}
}

func TestAssignOmittedReplaceMeansAdd(t *testing.T) {
	t.Parallel()
	b := setup(t, simulator.Options{})
	for _, p := range []string{
		assignPath("c1", "a", ""),
		assignPath("c1", "b", "") + "?other=1&removeExistingAgents=false&removeExistingAgents=true",
		"/api/public/contact/c1/assign-team-member/c?removeExistingAgents=",
		"/api/public/contact/c1/assign-team-member/d?removeExistingAgents=FALSE",
	} {
		if a := b.do(t, http.MethodPost, p, ""); a.status != http.StatusOK {
			t.Fatalf("POST %s: %d %s", p, a.status, a.body)
		}
	}
	if got, want := b.sim.Agents("c1"), []string{"a", "b", "c", "d"}; !slices.Equal(got, want) {
		t.Errorf("Agents = %v, want %v", got, want)
	}
	if a := b.do(t, http.MethodPost, assignPath("c1", "e", "True"), ""); a.status != http.StatusOK {
		t.Fatalf("replace: %d", a.status)
	}
	if got, want := b.sim.Agents("c1"), []string{"e"}; !slices.Equal(got, want) {
		t.Errorf("Agents = %v, want %v", got, want)
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	members := []simulator.Member{
		{ID: "m-1", Name: "One", Active: true},
		{ID: "M-2", Name: "Two", Active: false},
	}
	b := setup(t, simulator.Options{APIKey: testKey, Contacts: []string{"C-1", "c-2"}, Members: members})
	long := strings.Repeat("x", 129)
	tests := []struct {
		name, method, path, key string
		status                  int
		msg                     string
	}{
		{"missing key", "POST", assignPath("c-1", "m-1", ""), "", 401, "API key"},
		{"wrong key", "POST", assignPath("c-1", "m-1", ""), "wrong", 401, "API key"},
		{"key prefix", "POST", assignPath("c-1", "m-1", ""), testKey[:4], 401, "API key"},
		{"wrong key on info", "GET", "/api/public/contact/c-1/info", "nope", 401, "API key"},
		{"malformed contact", "POST", assignPath("c.1", "m-1", ""), testKey, 400, "aiContactId"},
		{"contact with space", "POST", assignPath("c%201", "m-1", ""), testKey, 400, "aiContactId"},
		{"contact too long", "POST", assignPath(long, "m-1", ""), testKey, 400, "aiContactId"},
		{"malformed member", "POST", assignPath("c-1", "m@1", ""), testKey, 400, "teamMemberId"},
		{"bad replace", "POST", assignPath("c-1", "m-1", "yes"), testKey, 400, "removeExistingAgents"},
		{"bad replace escape", "POST", assignPath("c-1", "m-1", "%zz"), testKey, 400, "removeExistingAgents"},
		{"unknown contact", "POST", assignPath("c-3", "m-1", ""), testKey, 404, "contact c-3 not found"},
		{"unknown member", "POST", assignPath("c-1", "m-3", ""), testKey, 404, "team member m-3 not found"},
		{"inactive member", "POST", assignPath("c-1", "m-2", ""), testKey, 404, "team member m-2 is inactive"},
		{"info unknown contact", "GET", "/api/public/contact/c-9/info", testKey, 404, "contact c-9 not found"},
		{"info malformed contact", "GET", "/api/public/contact/c!9/info", testKey, 400, "aiContactId"},
		{"GET on assign", "GET", assignPath("c-1", "m-1", ""), testKey, 405, "POST"},
		{"POST on members", "POST", "/api/public/team-members/all", testKey, 405, "GET"},
		{"unknown path", "GET", "/api/public/nothing", testKey, 404, "no such endpoint"},
		{"ids are case-insensitive", "POST", assignPath("C-2", "M-1", "false"), testKey, 200, "assigned successfully"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := b.do(t, tt.method, tt.path, tt.key)
			if a.status != tt.status {
				t.Fatalf("status = %d, want %d (%s)", a.status, tt.status, a.body)
			}
			if ct := a.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			var got struct {
				Success *bool  `json:"success"`
				Message string `json:"message"`
			}
			if err := json.Unmarshal(a.body, &got); err != nil {
				t.Fatalf("body %s: %v", a.body, err)
			}
			if got.Success == nil || *got.Success != (tt.status == 200) || !strings.Contains(got.Message, tt.msg) {
				t.Errorf("body = %s, want success=%v and message containing %q", a.body, tt.status == 200, tt.msg)
			}
			if strings.Contains(string(a.body), testKey) {
				t.Errorf("answer echoes the API key: %s", a.body)
			}
		})
	}
}

func TestKeyHeaderOption(t *testing.T) {
	t.Parallel()
	b := setup(t, simulator.Options{APIKey: "k", KeyHeader: "Authorization-Token"})
	req, _ := http.NewRequest(http.MethodPost, b.url+assignPath("c", "m", ""), nil)
	req.Header.Set("authorization-token", "k")
	resp, err := b.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("custom header: status %d", resp.StatusCode)
	}
	if a := b.do(t, http.MethodPost, assignPath("c", "m", ""), "k"); a.status != 401 {
		t.Fatalf("key in default header: status %d, want 401", a.status)
	}
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	tests := []struct {
		name      string
		rate      float64
		burst     int
		wantRetry string
	}{
		{"one per second", 1, 2, "1"},
		{"one per four seconds", 0.25, 2, "4"},
		{"fast rate rounds up to one second", 1000, 2, "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Not parallel: the subtests share the fake clock.
			b := setup(t, simulator.Options{Rate: tt.rate, Burst: tt.burst, Now: clock})
			for i := range tt.burst {
				if a := b.assign(t, "c", "m", false); a.status != 200 {
					t.Fatalf("call %d within burst: status %d", i+1, a.status)
				}
			}
			a := b.do(t, http.MethodGet, "/api/public/team-members/all", "")
			if a.status != http.StatusTooManyRequests {
				t.Fatalf("over the rate: status %d, want 429", a.status)
			}
			if got := a.header.Get("Retry-After"); got != tt.wantRetry {
				t.Errorf("Retry-After = %q, want %q", got, tt.wantRetry)
			}
			advance(time.Duration(float64(time.Second) / tt.rate))
			if a := b.assign(t, "c", "m", false); a.status != 200 {
				t.Fatalf("after waiting: status %d", a.status)
			}
			if st := b.sim.Stats(); st.ByStatus[429] != 1 || st.Requests != int64(tt.burst)+2 {
				t.Errorf("Stats = %+v", st)
			}
		})
	}
}

func TestTransientFaultsAreDeterministic(t *testing.T) {
	t.Parallel()
	const attempts = 3
	opts := simulator.Options{Transient: 0.3, TransientAttempts: attempts}
	contacts := simulator.GenerateContacts(20)
	members := simulator.GenerateMembers(10)

	// failures returns, for each pair, the statuses of the calls it took to
	// succeed.
	failures := func() map[string][]int {
		b := setup(t, opts)
		out := make(map[string][]int)
		for _, c := range contacts {
			for _, m := range members {
				var codes []int
				for {
					a := b.assign(t, c, m.ID, false)
					if a.status == 200 {
						break
					}
					codes = append(codes, a.status)
					if len(codes) > attempts {
						t.Fatalf("pair %s/%s failed more than %d times: %v", c, m.ID, attempts, codes)
					}
				}
				if len(codes) != 0 && len(codes) != attempts {
					t.Fatalf("pair %s/%s failed %d times, want 0 or %d", c, m.ID, len(codes), attempts)
				}
				for _, code := range codes {
					if code != 500 && code != 502 && code != 503 {
						t.Fatalf("pair %s/%s: status %d, want 500, 502 or 503", c, m.ID, code)
					}
				}
				// Once through, the pair keeps succeeding.
				if a := b.assign(t, c, m.ID, false); a.status != 200 {
					t.Fatalf("pair %s/%s after success: %d", c, m.ID, a.status)
				}
				out[c+"/"+m.ID] = codes
			}
		}
		return out
	}
	first, second := failures(), failures()
	faulty := 0
	for pair, codes := range first {
		if !slices.Equal(codes, second[pair]) {
			t.Errorf("pair %s: %v in one run, %v in the other", pair, codes, second[pair])
		}
		if len(codes) > 0 {
			faulty++
		}
	}
	if n := len(first); faulty < n/10 || faulty > n/2 {
		t.Errorf("%d of %d pairs faulty, want about 30%%", faulty, n)
	}
}

func TestTransientAll(t *testing.T) {
	t.Parallel()
	b := setup(t, simulator.Options{Transient: 1})
	if a := b.assign(t, "c", "m", false); a.status < 500 {
		t.Fatalf("first call: %d, want 5xx", a.status)
	}
	if a := b.assign(t, "c", "m", false); a.status != 200 {
		t.Fatalf("second call: %d, want 200 (default TransientAttempts is 1)", a.status)
	}
	if got := b.sim.Agents("c"); !slices.Equal(got, []string{"m"}) {
		t.Errorf("Agents = %v; a failed call must not change state beforehand", got)
	}
	b.sim.Reset()
	if a := b.assign(t, "c", "m", false); a.status < 500 {
		t.Fatalf("after Reset: %d, want 5xx again", a.status)
	}
}

func TestHang(t *testing.T) {
	t.Parallel()
	t.Run("answers 504 after HangFor", func(t *testing.T) {
		t.Parallel()
		const hangFor = 150 * time.Millisecond
		b := setup(t, simulator.Options{Hang: 1, HangFor: hangFor})
		start := time.Now()
		a := b.assign(t, "c", "m", false)
		if a.status != http.StatusGatewayTimeout {
			t.Fatalf("status %d, want 504", a.status)
		}
		if d := time.Since(start); d < hangFor {
			t.Errorf("answered after %v, want at least %v", d, hangFor)
		}
		if a := b.assign(t, "c", "m", false); a.status != 200 {
			t.Fatalf("second call: %d, want 200", a.status)
		}
	})
	t.Run("stops when the client gives up", func(t *testing.T) {
		t.Parallel()
		b := setup(t, simulator.Options{Hang: 1, HangFor: time.Hour})
		b.client.Timeout = 100 * time.Millisecond
		req, _ := http.NewRequest(http.MethodPost, b.url+assignPath("c", "m", ""), nil)
		_, err := b.client.Do(req)
		if err == nil {
			t.Fatal("want a client timeout")
		}
		waitFor(t, 5*time.Second, func() bool { return b.sim.Stats().ByStatus[simulator.StatusClientClosed] == 1 })
		b.client.Timeout = 10 * time.Second
		if a := b.assign(t, "c", "m", false); a.status != 200 {
			t.Fatalf("next call: %d, want 200", a.status)
		}
	})
}

func TestLatency(t *testing.T) {
	t.Parallel()
	const latency = 80 * time.Millisecond
	b := setup(t, simulator.Options{Latency: latency})
	start := time.Now()
	if a := b.assign(t, "c", "m", false); a.status != 200 {
		t.Fatalf("status %d", a.status)
	}
	if d := time.Since(start); d < latency {
		t.Errorf("answered after %v, want at least %v", d, latency)
	}
}

func TestTeamMembersAndInfo(t *testing.T) {
	t.Parallel()
	t.Run("known members", func(t *testing.T) {
		t.Parallel()
		members := simulator.GenerateMembers(3)
		members[2].Active = false
		b := setup(t, simulator.Options{Members: members, Contacts: simulator.GenerateContacts(2)})
		a := b.do(t, http.MethodGet, "/api/public/team-members/all", "")
		var got []map[string]any
		if err := json.Unmarshal(a.body, &got); err != nil || a.status != 200 {
			t.Fatalf("team-members: %d %s %v", a.status, a.body, err)
		}
		if len(got) != 3 || got[0]["id"] != simulator.MemberID(1) || got[0]["email"] != "agent0001@example.com" ||
			got[0]["first_name"] != "Agent" || got[0]["active"] != true || got[2]["active"] != false {
			t.Errorf("team-members = %s", a.body)
		}
		for _, k := range []string{"id", "name", "first_name", "last_name", "email", "phone", "active"} {
			if _, ok := got[1][k]; !ok {
				t.Errorf("member has no %q: %s", k, a.body)
			}
		}

		c1, m1, m2 := simulator.ContactID(1), simulator.MemberID(1), simulator.MemberID(2)
		b.assign(t, c1, m2, false)
		b.assign(t, c1, strings.ToUpper(m1), false)
		a = b.do(t, http.MethodGet, "/api/public/contact/"+strings.ToUpper(c1)+"/info", "")
		want := `{"id":"` + c1 + `","agents":[{"id":"` + m2 + `","name":"Agent 0002","email":"agent0002@example.com"},{"id":"` + m1 + `","name":"Agent 0001","email":"agent0001@example.com"}]}`
		if a.status != 200 || string(a.body) != want {
			t.Errorf("info = %d %s, want %s", a.status, a.body, want)
		}
		a = b.do(t, http.MethodGet, "/api/public/contact/"+simulator.ContactID(2)+"/info", "")
		if want := `{"id":"` + simulator.ContactID(2) + `","agents":[]}`; a.status != 200 || string(a.body) != want {
			t.Errorf("info of a contact without agents = %d %s, want %s", a.status, a.body, want)
		}
	})
	t.Run("open simulator lists members seen", func(t *testing.T) {
		t.Parallel()
		b := setup(t, simulator.Options{})
		if a := b.do(t, http.MethodGet, "/api/public/team-members/all", ""); a.status != 200 || string(a.body) != "[]" {
			t.Fatalf("empty team-members = %d %s", a.status, a.body)
		}
		b.assign(t, "c", "Zed", false)
		b.assign(t, "d", "amy", false)
		b.assign(t, "e", "zed", false)
		a := b.do(t, http.MethodGet, "/api/public/team-members/all", "")
		var got []simulator.Member
		if err := json.Unmarshal(a.body, &got); err != nil {
			t.Fatal(err)
		}
		want := []simulator.Member{{ID: "zed", Name: "zed", Active: true}, {ID: "amy", Name: "amy", Active: true}}
		if !slices.Equal(got, want) {
			t.Errorf("team-members = %+v, want %+v", got, want)
		}
		a = b.do(t, http.MethodGet, "/api/public/contact/anyone/info", "")
		if want := `{"id":"anyone","agents":[]}`; a.status != 200 || string(a.body) != want {
			t.Errorf("info = %d %s", a.status, a.body)
		}
	})
}

func TestConcurrentAssigns(t *testing.T) {
	t.Parallel()
	const (
		clients  = 64
		contacts = 50
		members  = 8
	)
	b := setup(t, simulator.Options{APIKey: testKey, Latency: time.Millisecond, Transient: 0.2, Rate: 1e6, Burst: 1e6})
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range contacts {
				c := fmt.Sprintf("c%d", (i+j)%contacts)
				m := fmt.Sprintf("m%d", i%members)
				for {
					req, _ := http.NewRequest(http.MethodPost, b.url+assignPath(c, m, "false"), nil)
					req.Header.Set("x-api-key", testKey)
					resp, err := b.client.Do(req)
					if err != nil {
						failed.Add(1)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == 200 {
						break
					}
					if resp.StatusCode < 500 {
						failed.Add(1)
						return
					}
				}
				_ = b.sim.Agents(c) // readers race with writers too
			}
		}()
	}
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d clients failed", n)
	}
	state := b.sim.State()
	if len(state) != contacts {
		t.Fatalf("%d contacts in state, want %d", len(state), contacts)
	}
	for c, agents := range state {
		sorted := slices.Sorted(slices.Values(agents))
		if len(agents) != members || len(slices.Compact(sorted)) != members {
			t.Errorf("contact %s: agents %v, want each of %d members once", c, agents, members)
		}
	}
	st := b.sim.Stats()
	if st.Assigned != clients*contacts {
		t.Errorf("Assigned = %d, want %d", st.Assigned, clients*contacts)
	}
	var sum int64
	for _, n := range st.ByStatus {
		sum += n
	}
	if sum != st.Requests {
		t.Errorf("ByStatus sums to %d, Requests = %d", sum, st.Requests)
	}
	if st.MaxInFlight < 2 {
		t.Errorf("MaxInFlight = %d, want concurrency", st.MaxInFlight)
	}
}

func TestReset(t *testing.T) {
	t.Parallel()
	b := setup(t, simulator.Options{})
	b.assign(t, "c", "m", false)
	b.sim.Reset()
	if got := b.sim.State(); len(got) != 0 {
		t.Errorf("State after Reset = %v", got)
	}
	if st := b.sim.Stats(); st.Requests != 0 || st.Assigned != 0 || len(st.ByStatus) != 0 {
		t.Errorf("Stats after Reset = %+v", st)
	}
	if a := b.do(t, http.MethodGet, "/api/public/team-members/all", ""); string(a.body) != "[]" {
		t.Errorf("team-members after Reset = %s", a.body)
	}
}

func TestStart(t *testing.T) {
	t.Parallel()
	sim := simulator.New(simulator.Options{Hang: 1, HangFor: time.Hour})
	url, stop, err := simulator.Start(context.Background(), "127.0.0.1:0", sim)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Errorf("url = %q", url)
	}
	// A hanging call must not hold up stop.
	hung := make(chan error, 1)
	go func() {
		resp, err := http.Post(url+assignPath("c", "m", ""), "", nil)
		if err == nil {
			resp.Body.Close()
			err = fmt.Errorf("hanging call answered %d", resp.StatusCode)
		}
		hung <- err
	}()
	waitFor(t, 5*time.Second, func() bool { return sim.Stats().Requests == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("stop took %v", d)
	}
	if err := <-hung; err == nil {
		t.Error("hanging call got no error after stop")
	}
	if err := stop(ctx); err != nil {
		t.Errorf("second stop: %v", err)
	}
	if _, err := http.Get(url + "/api/public/team-members/all"); err == nil {
		t.Error("server still answers after stop")
	}
}

func TestStartListenError(t *testing.T) {
	t.Parallel()
	if _, _, err := simulator.Start(context.Background(), "256.0.0.1:bad", simulator.New(simulator.Options{})); err == nil {
		t.Fatal("want a listen error")
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", within)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func BenchmarkAssign(b *testing.B) {
	bb := setup(b, simulator.Options{APIKey: testKey, Contacts: simulator.GenerateContacts(10000), Members: simulator.GenerateMembers(100)})
	var next atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1)
			url := bb.url + assignPath(simulator.ContactID(int(i%10000+1)), simulator.MemberID(int(i%100+1)), "false")
			req, _ := http.NewRequest(http.MethodPost, url, nil)
			req.Header.Set("x-api-key", testKey)
			resp, err := bb.client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

// BenchmarkServeHTTP measures the handler alone, without the network.
func BenchmarkServeHTTP(b *testing.B) {
	sim := simulator.New(simulator.Options{APIKey: testKey})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequest(http.MethodPost, assignPath("c-000001", "m-0001", "false"), nil)
		req.Header.Set("x-api-key", testKey)
		w := &discardWriter{h: http.Header{}}
		for pb.Next() {
			sim.ServeHTTP(w, req)
		}
	})
}

type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}

func TestSetAgents(t *testing.T) {
	t.Parallel()
	s := simulator.New(simulator.Options{})
	s.SetAgents("C-1", "M-A", "m-b", "m-a")
	if got := s.Agents("c-1"); !slices.Equal(got, []string{"m-a", "m-b"}) {
		t.Errorf("agents %v, want [m-a m-b]", got)
	}
	s.SetAgents("c-1")
	if got := s.Agents("c-1"); got != nil {
		t.Errorf("agents %v after removing them all, want none", got)
	}
	if n := s.Stats().Requests; n != 0 {
		t.Errorf("%d requests counted, want none", n)
	}
}
