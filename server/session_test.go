package server_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bulkassign/bulkassign/server"
	"github.com/bulkassign/bulkassign/simulator"
)

var formHeader = http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}

// login posts the login form with tok and returns the answer and the
// session cookie it set, if any.
func (b *bundle) login(t *testing.T, tok string, h http.Header) (*http.Response, *http.Cookie) {
	t.Helper()
	hh := http.Header{}
	for k, v := range formHeader {
		hh[k] = v
	}
	for k, v := range h {
		hh[k] = v
	}
	res, _ := b.do(t, "POST", "/login", "", strings.NewReader(url.Values{"token": {tok}, "next": {"/"}}.Encode()), hh)
	for _, c := range res.Cookies() {
		if c.Name == "bulkassign_session" && c.Value != "" {
			return res, c
		}
	}
	return res, nil
}

func cookieHeader(c *http.Cookie) http.Header {
	return http.Header{"Cookie": {c.Name + "=" + c.Value}}
}

// TestSessions: each login gets its own random session, kept in Redis
// under a hash of its id with an expiry; logout ends it, and the old
// cookie, replayed, is refused.
func TestSessions(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{opts: server.Options{Token: token, SessionTTL: time.Hour}})
	ctx := context.Background()

	res, first := b.login(t, token, nil)
	wantStatus(t, res, nil, http.StatusSeeOther)
	_, second := b.login(t, token, nil)
	if first == nil || second == nil || first.Value == second.Value {
		t.Fatalf("two logins: cookies %v and %v, want two different sessions", first, second)
	}
	if first.MaxAge != 3600 || !first.HttpOnly || first.SameSite != http.SameSiteStrictMode || first.Secure {
		t.Errorf("cookie %+v: want Max-Age 3600, HttpOnly, SameSite=Strict, not Secure over plain HTTP", first)
	}

	// Redis holds the sessions, with an expiry, and never the cookie's value.
	keys, err := b.rdb.Keys(ctx, b.ns+":serve:session:*").Result()
	if err != nil || len(keys) != 2 {
		t.Fatalf("session keys %v (%v): want 2", keys, err)
	}
	for _, k := range keys {
		if strings.Contains(k, first.Value) || strings.Contains(k, second.Value) {
			t.Errorf("session key %s holds the cookie's value", k)
		}
		ttl, err := b.rdb.PTTL(ctx, k).Result()
		if err != nil || ttl <= 0 || ttl > time.Hour {
			t.Errorf("session %s expires in %v (%v): want within the hour", k, ttl, err)
		}
		if v := b.rdb.Get(ctx, k).Val(); strings.Contains(v, first.Value) || strings.Contains(v, token) || !strings.HasPrefix(v, server.DefaultTokenName+" ") {
			t.Errorf("session value %q: want the token's name, never the cookie or the token", v)
		}
	}

	for _, c := range []*http.Cookie{first, second} {
		res, body := b.do(t, "GET", "/api/v1/batches", "", nil, cookieHeader(c))
		wantStatus(t, res, body, http.StatusOK)
	}

	res, body := b.do(t, "POST", "/logout", "", nil, cookieHeader(first))
	wantStatus(t, res, body, http.StatusSeeOther)
	for _, c := range res.Cookies() {
		if c.Name == "bulkassign_session" && c.MaxAge >= 0 {
			t.Errorf("logout left the cookie %+v in the browser", c)
		}
	}
	// The old cookie, copied before the logout, is dead everywhere.
	res, body = b.do(t, "GET", "/api/v1/batches", "", nil, cookieHeader(first))
	wantStatus(t, res, body, http.StatusUnauthorized)
	res, body = b.do(t, "GET", "/", "", nil, http.Header{"Cookie": {first.Name + "=" + first.Value}, "Accept": {"text/html"}})
	wantStatus(t, res, body, http.StatusSeeOther)
	if loc := res.Header.Get("Location"); !strings.HasPrefix(loc, "/login") {
		t.Errorf("a page with the old cookie goes to %q, want the login form", loc)
	}
	// The other session lives on.
	res, body = b.do(t, "GET", "/api/v1/batches", "", nil, cookieHeader(second))
	wantStatus(t, res, body, http.StatusOK)

	// A session that expired in Redis is refused like a forged one.
	if err := b.rdb.Del(ctx, keys...).Err(); err != nil {
		t.Fatal(err)
	}
	res, body = b.do(t, "GET", "/api/v1/batches", "", nil, cookieHeader(second))
	wantStatus(t, res, body, http.StatusUnauthorized)
}

// TestNamedTokens: with --tokens each person has a token; the batches they
// upload, with the bearer token or a session, record their name, and a
// token removed from the file no longer opens its sessions.
func TestNamedTokens(t *testing.T) {
	t.Parallel()
	const alice, bob = "alice-token-0123456789abcdef", "bob-token-0123456789abcdef"
	file := fmt.Sprintf("# who may use serve\nalice: \"sha256:%x\"\nbob.smith@example.com: sha256:%x\n",
		server.HashToken("", alice).Hash, server.HashToken("", bob).Hash)
	creds, err := server.LoadTokens(strings.NewReader(file), "tokens.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b := setup(t, setupOptions{opts: server.Options{Tokens: creds}})

	res, body := b.upload(t, "", "a.csv", sample) // as the token of the test's default
	wantStatus(t, res, body, http.StatusUnauthorized)

	b.uploadAs = alice
	res, body = b.upload(t, "", "a.csv", sample)
	wantStatus(t, res, body, http.StatusCreated)
	aliceBatch := decode[server.UploadResult](t, body).BatchID

	res, cookie := b.login(t, bob, nil)
	if cookie == nil {
		t.Fatalf("bob's login: %d, no session", res.StatusCode)
	}
	b.uploadAs, b.uploadHeader = "", cookieHeader(cookie)
	res, body = b.upload(t, "?again=true", "b.csv", sample) // the same file, meant
	wantStatus(t, res, body, http.StatusCreated)
	bobBatch := decode[server.UploadResult](t, body).BatchID

	for id, want := range map[string]string{aliceBatch: "alice", bobBatch: "bob.smith@example.com"} {
		res, body := b.do(t, "GET", "/api/v1/batches/"+id, alice, nil, nil)
		wantStatus(t, res, body, http.StatusOK)
		if got := decode[server.Batch](t, body).UploadedBy; got != want {
			t.Errorf("batch %s uploaded by %q, want %q", id, got, want)
		}
	}
	res, body = b.do(t, "GET", "/api/v1/batches", bob, nil, nil)
	wantStatus(t, res, body, http.StatusOK)
	if list := decode[struct{ Batches []server.Batch }](t, body); len(list.Batches) != 2 || list.Batches[0].UploadedBy == "" || list.Batches[1].UploadedBy == "" {
		t.Errorf("the list does not say who uploaded: %s", body)
	}

	// Bob leaves: the same Redis served with a file without him refuses
	// his session.
	c := setupOn(t, b, server.Options{Tokens: creds[:1]})
	res, body = c.do(t, "GET", "/api/v1/batches", "", nil, cookieHeader(cookie))
	wantStatus(t, res, body, http.StatusUnauthorized)
	res, body = b.do(t, "GET", "/api/v1/batches", "", nil, cookieHeader(cookie))
	wantStatus(t, res, body, http.StatusOK) // still in the tokens file of the first server
}

func TestLoadTokens(t *testing.T) {
	t.Parallel()
	h := fmt.Sprintf("%x", server.HashToken("", "x").Hash)
	for _, tc := range []struct{ file, want string }{
		{"alice: sha256:" + h + "\n", ""},
		{"", "no token"},
		{"[a, b]\n", "no token"},
		{"alice: " + h + "\n", `line 1: alice: want "sha256:"`},
		{"alice: sha256:abc\n", "line 1: alice: want"},
		{"alice: the-token-itself\n", "never the token itself"},
		{"al ice: sha256:" + h + "\n", `line 1: name "al ice"`},
		{"alice: sha256:" + h + "\nalice: sha256:" + h + "\n", "line 2: alice is named twice"},
		{"alice: sha256:" + h + "\nbob: sha256:" + h + "\n", "line 2: bob has the same token as alice"},
		{"alice: [\n", "not valid YAML"},
	} {
		creds, err := server.LoadTokens(strings.NewReader(tc.file), "tokens.yaml")
		switch {
		case tc.want == "" && (err != nil || len(creds) != 1 || creds[0].Name != "alice"):
			t.Errorf("%q: %v, %v", tc.file, creds, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "tokens.yaml")):
			t.Errorf("%q: error %v, want one naming tokens.yaml and %q", tc.file, err, tc.want)
		}
	}
}

// TestSecureCookie: behind a TLS proxy the cookie is Secure, when
// --public-url is https or a trusted proxy says the browser used https;
// an X-Forwarded-Proto from an untrusted client changes nothing.
func TestSecureCookie(t *testing.T) {
	t.Parallel()
	https := http.Header{"X-Forwarded-Proto": {"https"}}
	for _, tc := range []struct {
		name   string
		opts   server.Options
		header http.Header
		secure bool
	}{
		{"plain", server.Options{}, nil, false},
		{"forged X-Forwarded-Proto", server.Options{}, https, false},
		{"--public-url https", server.Options{PublicURL: "https://bulkassign.example.com"}, nil, true},
		{"--trust-proxy, https", server.Options{TrustProxy: true}, https, true},
		{"--trust-proxy, http", server.Options{TrustProxy: true}, http.Header{"X-Forwarded-Proto": {"http"}}, false},
	} {
		b := setup(t, setupOptions{opts: tc.opts})
		_, c := b.login(t, token, tc.header)
		if c == nil || c.Secure != tc.secure {
			t.Errorf("%s: cookie %+v, want Secure=%v", tc.name, c, tc.secure)
		}
	}
	// The public URL's origin passes the cross-origin check (a proxy may
	// hand on another Host).
	b := setup(t, setupOptions{opts: server.Options{PublicURL: "https://bulkassign.example.com/"}})
	for origin, want := range map[string]int{"https://bulkassign.example.com": http.StatusSeeOther, "https://evil.example": http.StatusForbidden} {
		res, _ := b.login(t, token, http.Header{"Origin": {origin}})
		if res.StatusCode != want {
			t.Errorf("login from %s: %d, want %d", origin, res.StatusCode, want)
		}
	}
	if _, err := server.New(server.Deps{}, server.Options{Token: token, PublicURL: "bulkassign.example.com"}); err == nil {
		t.Error("a public URL without a scheme was accepted")
	}
}

// TestLoginThrottled: after LoginBurst wrong tokens from one address,
// every attempt from it is refused with 429 and Retry-After — the right
// token too, by form or bearer — while other addresses are not affected.
func TestLoginThrottled(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{opts: server.Options{TrustProxy: true, LoginBurst: 3, LoginEvery: time.Hour}})
	from := func(ip string) http.Header { return http.Header{"X-Forwarded-For": {"203.0.113.9, " + ip}} }
	attacker, other := from("198.51.100.7"), from("198.51.100.8")

	for i := range 2 {
		res, c := b.login(t, fmt.Sprintf("guess-%d", i), attacker)
		if res.StatusCode != http.StatusUnauthorized || c != nil {
			t.Fatalf("wrong token %d: %d, cookie %v", i, res.StatusCode, c)
		}
	}
	res, body := b.do(t, "GET", "/api/v1/batches", "guess-bearer", nil, attacker) // wrong bearer tokens count too
	wantStatus(t, res, body, http.StatusUnauthorized)

	res, c := b.login(t, token, attacker)
	if res.StatusCode != http.StatusTooManyRequests || c != nil || res.Header.Get("Retry-After") == "" {
		t.Fatalf("the right token after 3 wrong ones: %d, cookie %v, Retry-After %q: want 429, none, a wait", res.StatusCode, c, res.Header.Get("Retry-After"))
	}
	res, body = b.do(t, "GET", "/api/v1/batches", token, nil, attacker)
	wantStatus(t, res, body, http.StatusTooManyRequests)
	if e := decode[map[string]string](t, body)["error"]; !strings.Contains(e, "too many wrong tokens") {
		t.Errorf("429 message %q", e)
	}

	if _, c := b.login(t, token, other); c == nil {
		t.Error("another address was throttled too")
	}
	res, body = b.do(t, "GET", "/api/v1/batches", token, nil, other)
	wantStatus(t, res, body, http.StatusOK)
}

// TestSlowUploadCutOff: an upload that trickles in is cut off at the read
// timeout, and leaves no batch behind.
func TestSlowUploadCutOff(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{opts: server.Options{ReadTimeout: time.Second}})
	u, _ := url.Parse(b.url)
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /api/v1/batches?format=csv HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: text/csv\r\nContent-Length: 10000000\r\n\r\n", u.Host, token)
	fmt.Fprintf(conn, "aiContactId,teamMemberId\n")

	// One row every 100 ms, forever: only the read timeout ends it.
	cut := make(chan error, 1)
	go func() {
		for i := 1; ; i++ {
			if _, err := fmt.Fprintf(conn, "%s,%s\n", simulator.ContactID(i), simulator.MemberID(1)); err != nil {
				cut <- err
				return
			}
			time.Sleep(100 * time.Millisecond)
			if i == 600 {
				cut <- nil
				return
			}
		}
	}()
	// The server answers or hangs up; the client sees its writes fail or
	// the connection end.
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, rerr := io.ReadAll(bufio.NewReader(conn))
	if ne, ok := rerr.(net.Error); ok && ne.Timeout() {
		t.Fatal("the slow upload was not cut off")
	}
	if err := <-cut; err == nil {
		t.Fatal("the server read a trickling upload for a minute")
	}
	// An upload is read in full before its batch is made: the cut-off one
	// left none.
	b.wantNothingQueued(t)
}

// waitFor polls cond for 30 s at most.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestReportWrittenOnce: the report of a finished batch is written from
// Redis once; later downloads are served from its folder.
func TestReportWrittenOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{worker: true})
	res, body := b.upload(t, "", "sample.csv", sample)
	wantStatus(t, res, body, http.StatusCreated)
	got := b.waitDone(t, decode[server.UploadResult](t, body).BatchID)

	var first []byte
	for i := range 3 {
		for _, f := range []string{"failed.csv", "succeeded.csv", "summary.json"} {
			res, body := b.do(t, "GET", got.Links[f], token, nil, nil)
			wantStatus(t, res, body, http.StatusOK)
			if f == "failed.csv" && i == 0 {
				first = body
			} else if f == "failed.csv" && string(body) != string(first) {
				t.Errorf("failed.csv changed between downloads:\n%s\n%s", first, body)
			}
		}
	}
	if n := writes(t, b); n != 1 {
		t.Errorf("the report was written %d times for 9 downloads of a finished batch, want once", n)
	}
}

// writes reads how many report folders the server wrote.
func writes(t *testing.T, b *bundle) int {
	t.Helper()
	res, body := b.do(t, "GET", "/metrics", token, nil, nil)
	wantStatus(t, res, body, http.StatusOK)
	m := regexp.MustCompile(`(?m)^bulkassign_serve_report_writes_total (\d+)`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("/metrics lacks bulkassign_serve_report_writes_total")
	}
	var n int
	fmt.Sscan(string(m[1]), &n)
	return n
}
