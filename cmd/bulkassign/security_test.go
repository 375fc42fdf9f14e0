package main

// Security properties of the CLI as an operator meets them: report folders
// that batch ids cannot leave, an API key and a Redis password that no
// help text or error message repeats, and an API key that no redirect can
// carry to another host. SECURITY.md names these tests.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulkassign/bulkassign/internal/redistest"
	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/report"
	"github.com/bulkassign/bulkassign/simulator"
	"github.com/redis/go-redis/v9"
)

// secHostileIDs are batch ids that would point a report elsewhere.
var secHostileIDs = []string{
	"..", ".", "../escape", "../../escape", "a/../../escape", "sub/escape", "/tmp/escape",
	`..\escape`, "escape\x00", "a b", strings.Repeat("e", 129),
}

// secFiles lists every file under root, relative to it.
func secFiles(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(root, path)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// TestReportHostileIDsStayInOut stores finished batches under hostile ids
// in Redis (as a tampered Redis could hold them) and asks `report --out
// DIR ID` for each: every one is refused before Redis is read, and nothing
// is written anywhere. A plain id, for contrast, writes DIR/ID/.
func TestReportHostileIDsStayInOut(t *testing.T) {
	t.Parallel()
	target := newRedisTarget(t)
	store := jobs.NewStore(target.client(t), jobs.StoreOptions{Namespace: target.ns})
	ctx := t.Context()
	for _, id := range append(slices.Clone(secHostileIDs), "plain-1") {
		if err := store.Create(ctx, id, "", "x.csv"); err != nil {
			t.Fatal(err)
		}
		if err := store.Start(ctx, id, 0, 0, nil); err != nil {
			t.Fatal(err)
		}
	}
	// root/a/b/out: "../.." from out stays inside root, where the test looks.
	root := t.TempDir()
	out := filepath.Join(root, "a", "b", "out")
	for _, id := range secHostileIDs {
		res := runCLI(t, nil, append([]string{"report", "--out", out}, append(target.flags(), id)...)...)
		if res.code != exitFatal || !strings.Contains(res.errText(), "batch id") {
			t.Errorf("report %q: exit %d (%v), want 1 naming the batch id", id, res.code, res.err)
		}
	}
	if files := secFiles(t, root); len(files) != 0 {
		t.Fatalf("hostile ids wrote %v", files)
	}

	res := runCLI(t, nil, append([]string{"report", "--out", out}, append(target.flags(), "plain-1")...)...)
	if res.code != exitOK {
		t.Fatalf("report plain-1: exit %d (%v)\n%s", res.code, res.err, res.stderr)
	}
	want := []string{
		filepath.Join("a", "b", "out", "plain-1", report.FailedFile),
		filepath.Join("a", "b", "out", "plain-1", report.SucceededFile),
		filepath.Join("a", "b", "out", "plain-1", report.SummaryFile),
	}
	if files := secFiles(t, root); !slices.Equal(files, want) {
		t.Errorf("report plain-1 wrote %v, want %v", files, want)
	}
}

// TestReportOutUsedAsGiven: --out is the operator's folder and is used as
// given — a path with "..", or a symlink to a folder elsewhere — while the
// report always lands in OUT/<batch id>/ and a symlink planted where a
// report file goes is replaced, not written through.
func TestReportOutUsedAsGiven(t *testing.T) {
	t.Parallel()
	target := newRedisTarget(t)
	store := jobs.NewStore(target.client(t), jobs.StoreOptions{Namespace: target.ns})
	for _, id := range []string{"b-dots", "b-link"} {
		if err := store.Create(t.Context(), id, "", "x.csv"); err != nil {
			t.Fatal(err)
		}
		if err := store.Start(t.Context(), id, 0, 0, nil); err != nil {
			t.Fatal(err)
		}
	}
	root := t.TempDir()

	// "x/../elsewhere" is root/elsewhere: the path is the operator's.
	res := runCLI(t, nil, append([]string{"report", "--out", filepath.Join(root, "x", "..", "elsewhere")}, append(target.flags(), "b-dots")...)...)
	if res.code != exitOK {
		t.Fatalf("exit %d (%v)", res.code, res.err)
	}
	if _, err := os.Stat(filepath.Join(root, "elsewhere", "b-dots", report.SummaryFile)); err != nil {
		t.Errorf("--out with ..: %v", err)
	}

	// --out is a symlink to a real folder; a file symlink inside the batch
	// folder points at a file that must not change.
	real := filepath.Join(root, "real")
	if err := os.MkdirAll(filepath.Join(real, "b-link"), 0o750); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(root, "victim")
	if err := os.WriteFile(victim, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(root, "link")
	if err := os.Symlink(real, link); err != nil {
		t.Skipf("symlinks not available: %v", err)
	}
	if err := os.Symlink(victim, filepath.Join(real, "b-link", report.FailedFile)); err != nil {
		t.Fatal(err)
	}
	res = runCLI(t, nil, append([]string{"report", "--out", link}, append(target.flags(), "b-link")...)...)
	if res.code != exitOK {
		t.Fatalf("exit %d (%v)", res.code, res.err)
	}
	if _, err := os.Stat(filepath.Join(real, "b-link", report.SummaryFile)); err != nil {
		t.Errorf("--out symlink: report not in its target: %v", err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep" {
		t.Errorf("the report wrote through a symlink: victim is %q", b)
	}
	if fi, err := os.Lstat(filepath.Join(real, "b-link", report.FailedFile)); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("failed.csv is not a regular file in place of the symlink: %v", err)
	}
}

// secKey is an API key distinctive enough to search for.
const secKey = "sk-SECURITY-TEST-7c1d2e"

// wantNoSecret fails when secret is in anything the command printed or
// returned.
func wantNoSecret(t *testing.T, what, secret string, res cliResult) {
	t.Helper()
	for name, text := range map[string]string{"stdout": res.stdout, "stderr": res.stderr, "error": res.errText()} {
		if strings.Contains(text, secret) {
			t.Errorf("%s: the secret is in %s:\n%s", what, name, text)
		}
	}
}

// TestAPIKeyFromEnvNeverShown sets the key the documented way, in
// BULKASSIGN_API_KEY, and looks for it in every command's --help, in the
// errors of a bad --api-url, and in `batches` after a batch ran with it.
// Not parallel: it sets the environment.
func TestAPIKeyFromEnvNeverShown(t *testing.T) {
	t.Setenv("BULKASSIGN_API_KEY", secKey)
	t.Setenv("BULKASSIGN_SERVER_TOKEN", "a-server-token-for-tests")

	commands := [][]string{
		{"run"}, {"import"}, {"plan"}, {"worker"}, {"report"}, {"batches"},
		{"pause"}, {"resume"}, {"cancel"}, {"dlq"}, {"dlq", "list"}, {"serve"}, {"simulate"},
	}
	for _, cmd := range commands {
		res := runCLI(t, nil, append(slices.Clone(cmd), "--help")...)
		if res.code != exitOK || !strings.Contains(res.stdout, "Usage:") {
			t.Errorf("%v --help: exit %d (%v), stdout %q", cmd, res.code, res.err, res.stdout)
		}
		wantNoSecret(t, fmt.Sprint(cmd, " --help"), secKey, res)
	}

	file := filepath.Join(t.TempDir(), "in.csv")
	if err := os.WriteFile(file, []byte("aiContactId,teamMemberId\n"+simulator.ContactID(1)+","+simulator.MemberID(1)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	target := newRedisTarget(t)
	for _, url := range []string{"ftp://crm.example", "http://", "not a url", "http://[::1", "http://crm.example/%zz"} {
		for _, cmd := range [][]string{
			{"run", "--api-url", url, file},
			{"worker", "--api-url", url},
			{"serve", "--api-url", url},
			{"import", "--api-url", url, "--preflight", file},
		} {
			args := slices.Insert(slices.Clone(cmd), 1, target.flags()...)
			res := runCLI(t, nil, args...)
			if res.code != exitFatal {
				t.Errorf("%v: exit %d (%v), want 1", cmd, res.code, res.err)
			}
			wantNoSecret(t, fmt.Sprint(cmd), secKey, res)
		}
	}

	// A batch applied with the key from the environment, then listed.
	sim, api := startSim(t, simulator.Options{APIKey: secKey})
	res := runCLI(t, nil, append(append([]string{"run", "--api-url", api, "--out", t.TempDir()}, target.flags()...), append(fastFlags(), file)...)...)
	if res.code != exitOK {
		t.Fatalf("run with the key from the environment: exit %d (%v)\n%s", res.code, res.err, res.stderr)
	}
	if sim.Stats().Requests == 0 {
		t.Fatal("the simulator got no call")
	}
	wantNoSecret(t, "run", secKey, res)
	res = runCLI(t, nil, append([]string{"batches"}, target.flags()...)...)
	if res.code != exitOK || !strings.Contains(res.stdout, "done") {
		t.Fatalf("batches: exit %d (%v)\n%s", res.code, res.err, res.stdout)
	}
	wantNoSecret(t, "batches", secKey, res)
}

// TestRedisPasswordNeverShown gives every command that opens Redis a URL
// with a password, for a Redis that is not there or a URL that does not
// parse: the command fails, and no message repeats the password.
func TestRedisPasswordNeverShown(t *testing.T) {
	t.Parallel()
	const pw = "pw-SECRET-41d9"
	// Every command with one unreachable Redis and with URLs that do not
	// parse; the other unreachable forms through one command (the
	// connection error comes from the same code for all of them).
	urls := []string{
		"redis://:" + pw + "@127.0.0.1:1/0",
		"redis://admin:" + pw + "@127.0.0.1:notaport/0",
		"redis://admin:" + pw + "@[::1/0",
		"unix://admin:" + pw + "@/nonexistent/redis.sock",
	}
	oneCommand := []string{
		"redis://admin:" + pw + "@127.0.0.1:1/3",
		"rediss://admin:" + pw + "@127.0.0.1:1/0",
	}
	file := filepath.Join(t.TempDir(), "in.csv")
	if err := os.WriteFile(file, []byte("aiContactId,teamMemberId\nc-1,m-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, u := range append(urls, oneCommand...) {
		for i, cmd := range [][]string{
			{"batches"},
			{"report", "b1"},
			{"pause", "b1"},
			{"dlq", "list", "b1"},
			{"import", file},
			{"worker", "--api-key", "k"},
			{"serve", "--token", "a-server-token-for-tests"},
			{"run", "--api-key", "k", "--out", t.TempDir(), file},
		} {
			if i > 0 && slices.Contains(oneCommand, u) {
				break
			}
			n := 1
			if cmd[0] == "dlq" {
				n = 2
			}
			args := slices.Insert(slices.Clone(cmd), n, "--redis", u)
			// In parallel: go-redis spends over a second retrying a
			// refused connection.
			t.Run(fmt.Sprintf("%s/%q", strings.Join(cmd[:n], "_"), u), func(t *testing.T) {
				t.Parallel()
				res := runCLI(t, nil, args...)
				if res.code != exitFatal {
					t.Errorf("%v: exit %d (%v), want 1", args, res.code, res.err)
				}
				wantNoSecret(t, fmt.Sprint(cmd, " ", u), pw, res)
			})
		}
	}
}

// TestAPIKeyNotSentOnRedirect: a CRM (or anything on the way to it) that
// answers with a redirect to another host must not receive the key there.
// The assign call and the team member list both refuse to follow it: the
// rows fail with the 3xx and the command says so.
func TestAPIKeyNotSentOnRedirect(t *testing.T) {
	t.Parallel()
	var leaked, calls atomic.Int64
	thief := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		for _, vs := range r.Header {
			for _, v := range vs {
				if strings.Contains(v, secKey) {
					leaked.Add(1)
				}
			}
		}
		_, _ = w.Write([]byte(`{"success":true,"message":"Team member assigned successfully"}`))
	}))
	t.Cleanup(thief.Close)
	crm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", thief.URL+r.URL.RequestURI())
		w.WriteHeader(http.StatusTemporaryRedirect)
	}))
	t.Cleanup(crm.Close)
	dir := t.TempDir()

	file := filepath.Join(dir, "in.csv")
	c, m := simulator.ContactID, simulator.MemberID
	if err := os.WriteFile(file, []byte("aiContactId,teamMemberId\n"+c(1)+","+m(1)+"\n"+c(2)+","+m(2)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "reports")
	args := append([]string{"run", "--api-url", crm.URL, "--api-key", secKey, "--out", out, "--max-attempts", "2"}, fastFlags()...)
	res := runCLI(t, nil, append(append(args, newRedisTarget(t).flags()...), file)...)
	if res.code != exitPartial {
		t.Errorf("run against a redirecting CRM: exit %d (%v), want 2\n%s", res.code, res.err, res.stderr)
	}
	if res.code != exitFatal {
		_, rows := readReportCSV(t, filepath.Join(reportDir(t, out), report.FailedFile))
		if len(rows) != 2 || rows[0].cells["httpStatus"] != "307" {
			t.Errorf("failed.csv rows %+v: want both rows failed with HTTP 307", rows)
		}
	}

	emails := filepath.Join(dir, "emails.csv")
	if err := os.WriteFile(emails, []byte("aiContactId,teamMemberEmail\n"+c(1)+",ana@example.com\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	res = runCLI(t, nil, "import", "--dry-run", "--api-url", crm.URL, "--api-key", secKey, emails)
	if res.code != exitFatal || !strings.Contains(res.errText(), "307") {
		t.Errorf("import resolving emails through a redirecting CRM: exit %d (%v), want 1 naming the 307", res.code, res.err)
	}
	wantNoSecret(t, "import", secKey, res)

	if n := leaked.Load(); n != 0 {
		t.Errorf("the other host received the API key %d times (%d requests)", n, calls.Load())
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("the redirect was followed %d times", n)
	}
}

// TestRedisACLUser: a Redis that refuses its default user and admits a
// named ACL user is reached with redis://user:password@host/db (asynq by
// itself would drop the user and AUTH as "default"); a wrong password is
// refused and not printed.
func TestRedisACLUser(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, redistest.Options{})
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, PoolSize: 1})
	t.Cleanup(func() { _ = admin.Close() })
	ctx := t.Context()
	if err := admin.Do(ctx, "ACL", "SETUSER", "bulk", "on", ">pw-ACL-good", "~*", "&*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	if err := admin.Do(ctx, "ACL", "SETUSER", "default", "off").Err(); err != nil {
		t.Fatal(err)
	}

	ok := "redis://bulk:pw-ACL-good@" + srv.Addr() + "/9"
	res := runCLI(t, nil, "batches", "--redis", ok)
	if res.code != exitOK {
		t.Fatalf("batches as the ACL user: exit %d (%v)", res.code, res.err)
	}
	wantNoSecret(t, "batches as the ACL user", "pw-ACL-good", res)

	for _, u := range []string{
		"redis://bulk:pw-ACL-wrong@" + srv.Addr() + "/9",
		"redis://" + srv.Addr() + "/9", // the default user is off
	} {
		res := runCLI(t, nil, "batches", "--redis", u)
		if res.code != exitFatal {
			t.Errorf("batches --redis %s: exit %d (%v), want 1", u, res.code, res.err)
		}
		wantNoSecret(t, "batches with a wrong password", "pw-ACL-wrong", res)
	}
}

// TestServeTokenHeadersAndCrossOrigin runs `bulkassign serve` as an
// operator would: without a token it refuses to start; with one it binds
// loopback by default, sends its pages with a Content-Security-Policy and
// the other security headers, refuses state-changing requests a browser
// makes from another site (even with a valid session cookie), and never
// shows the CRM API key it was given in any answer.
func TestServeTokenHeadersAndCrossOrigin(t *testing.T) {
	t.Parallel()
	target := newRedisTarget(t)
	base := append([]string{"serve", "--api-key", secKey}, target.flags()...)

	res := runCLI(t, nil, append(slices.Clone(base), "--addr", "127.0.0.1:0")...)
	if res.code != exitFatal || !strings.Contains(res.errText(), "no access token") {
		t.Fatalf("serve without a token: exit %d (%v), want 1 and no access token", res.code, res.err)
	}

	const token = "serve-test-token-0123456789"
	ctx, cancel := context.WithCancel(context.Background())
	var stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		// --addr left at its default would collide between test runs:
		// the default is checked below from the flag's help instead.
		done <- run(ctx, append(slices.Clone(base), "--token", token, "--addr", "127.0.0.1:0"), strings.NewReader(""), io.Discard, &stderr)
	}()
	t.Cleanup(func() { cancel(); <-done })
	listening := regexp.MustCompile(`listening on (http://[0-9.:]+)`)
	waitUntil(t, 30*time.Second, "serve listens", func() bool { return listening.MatchString(stderr.String()) })
	srv := listening.FindStringSubmatch(stderr.String())[1]

	if def := (&app{}).serveCommand().Flags().Lookup("addr").DefValue; def != "127.0.0.1:8081" {
		t.Errorf("serve's default --addr is %s, want loopback", def)
	}

	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(method, path string, body string, h http.Header) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, srv+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for k, vs := range h {
			req.Header[k] = vs
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for k, vs := range resp.Header {
			if strings.Contains(strings.Join(vs, " "), secKey) {
				t.Errorf("%s %s: header %s carries the API key", method, path, k)
			}
		}
		if strings.Contains(string(b), secKey) {
			t.Errorf("%s %s: the answer carries the API key", method, path)
		}
		return resp, string(b)
	}
	bearer := http.Header{"Authorization": {"Bearer " + token}}
	form := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}

	resp, _ := do("GET", "/", "", bearer)
	for k, want := range map[string]string{
		"Content-Security-Policy": "default-src 'self'",
		"X-Content-Type-Options":  "nosniff",
		"X-Frame-Options":         "DENY",
		"Referrer-Policy":         "no-referrer",
		"Cache-Control":           "no-store",
	} {
		if got := resp.Header.Get(k); !strings.Contains(got, want) {
			t.Errorf("GET /: %s = %q, want %q", k, got, want)
		}
	}
	for _, path := range []string{"/api/v1/batches", "/metrics", "/monitor/", "/monitor/api/queues", "/login"} {
		if resp, body := do("GET", path, "", bearer); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s with the token: %d %s", path, resp.StatusCode, body)
		}
	}
	if resp, _ := do("GET", "/api/v1/batches", "", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /api/v1/batches without a token: %d, want 401", resp.StatusCode)
	}

	resp, _ = do("POST", "/login", "token="+token, form)
	var cookie string
	for _, c := range resp.Cookies() {
		if c.Name == "bulkassign_session" && c.HttpOnly && c.SameSite == http.SameSiteStrictMode && !strings.Contains(c.Value, token) {
			cookie = c.Name + "=" + c.Value
		}
	}
	if cookie == "" {
		t.Fatalf("login: %d, cookies %v: want an HttpOnly SameSite=Strict session that is not the token", resp.StatusCode, resp.Cookies())
	}

	upload := "/api/v1/batches?dryRun=true&format=csv"
	csvBody := "aiContactId,teamMemberId\nc-1,m-1\n"
	for name, h := range map[string]http.Header{
		"Sec-Fetch-Site: cross-site": {"Cookie": {cookie}, "Sec-Fetch-Site": {"cross-site"}},
		"Origin of another site":     {"Cookie": {cookie}, "Origin": {"http://evil.example"}},
	} {
		if resp, body := do("POST", upload, csvBody, h); resp.StatusCode != http.StatusForbidden {
			t.Errorf("cross-origin upload (%s): %d %s, want 403", name, resp.StatusCode, body)
		}
		if resp, _ := do("POST", "/login", "token="+token, http.Header{"Content-Type": form["Content-Type"], "Sec-Fetch-Site": h["Sec-Fetch-Site"], "Origin": h["Origin"]}); resp.StatusCode != http.StatusForbidden {
			t.Errorf("cross-origin login (%s): %d, want 403", name, resp.StatusCode)
		}
	}
	for name, h := range map[string]http.Header{
		"same-origin cookie": {"Cookie": {cookie}, "Sec-Fetch-Site": {"same-origin"}},
		"bearer, no browser": bearer,
	} {
		if resp, body := do("POST", upload, csvBody, h); resp.StatusCode != http.StatusOK {
			t.Errorf("upload (%s): %d %s, want 200", name, resp.StatusCode, body)
		}
	}
}
