package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkassign/bulkassign/importer"
	"github.com/bulkassign/bulkassign/internal/redistest"
	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/metrics"
	"github.com/bulkassign/bulkassign/notify"
	"github.com/bulkassign/bulkassign/server"
	"github.com/bulkassign/bulkassign/simulator"
	"github.com/bulkassign/bulkassign/worker"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

const (
	token  = "test-token-0123456789abcdef"
	apiKey = "crm-key-must-never-leak-42"
	// notifySecret signs the notices of the setup's workers.
	notifySecret = "notify-secret-must-never-leak"
)

// sample is a small messy file: a replace, a duplicate, a member the CRM
// does not know (404), and two invalid rows. Its ids are the simulator's
// (simulator.ContactID and MemberID).
const sample = `aiContactId,teamMemberId,removeExistingAgents,note
c0000000-0000-8000-8000-000000000001,a0000000-0000-8000-8000-000000000001,false,new lead
c0000000-0000-8000-8000-000000000001,a0000000-0000-8000-8000-000000000002,true,replace
C0000000-0000-8000-8000-000000000002 , A0000000-0000-8000-8000-000000000001 ,no,padding
c0000000-0000-8000-8000-000000000003,a0000000-0000-8000-8000-000000000002,yes,
c0000000-0000-8000-8000-000000000003,a0000000-0000-8000-8000-000000000002,yes,duplicate
c0000000-0000-8000-8000-000000000004,a0000000-0000-8000-8000-000000000009,false,unknown member: 404
c0000000-0000-8000-8000-000000000005,not an id,false,invalid member
c0000000-0000-8000-8000-000000000006,a0000000-0000-8000-8000-000000000003,maybe,invalid boolean
`

type bundle struct {
	url     string
	opt     asynq.RedisConnOpt
	client  *asynq.Client
	log     *slog.Logger
	dir     func(context.Context) ([]importer.Member, error)
	rdb     redis.UniversalClient
	sim     *simulator.Simulator
	store   *jobs.Store
	insp    *asynq.Inspector
	ns      string
	metrics *metrics.Metrics
	// crm is the server's Deps.CRM (Verify), nil without.
	crm *server.CRM

	// uploadAs is the bearer token of upload (default token), or "" with
	// uploadHeader set (a session cookie).
	uploadAs     string
	uploadHeader http.Header

	mu     sync.Mutex
	bodies [][]byte // every response body, checked for the API key
}

type setupOptions struct {
	maxUpload int64
	worker    bool
	idFormat  jobs.IDFormat
	// opts, if set, are the server's options (Token defaults to token).
	opts server.Options
	// sim are the simulator's options when worker is set.
	sim simulator.Options
	// directory gives the server the simulator's member list.
	directory bool
	// crm, if set, gives the server a CRM for Verify, made from the
	// simulator's URL and the workers' client.
	crm func(simURL string, workers *worker.Client) *server.CRM
}

func setup(t *testing.T, so setupOptions) *bundle {
	t.Helper()
	redisURL := redistest.URL(t)
	ns := redistest.Namespace(t, redisURL)
	opt, err := asynq.ParseRedisURI(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := opt.MakeRedisClient().(redis.UniversalClient)
	t.Cleanup(func() { rdb.Close() })
	store := jobs.NewStore(rdb, jobs.StoreOptions{Namespace: ns})
	client := asynq.NewClient(opt)
	t.Cleanup(func() { client.Close() })
	insp := asynq.NewInspector(opt)
	t.Cleanup(func() { insp.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	b := &bundle{rdb: rdb, store: store, insp: insp, ns: ns, metrics: metrics.New()}

	var directory func(context.Context) ([]importer.Member, error)
	if so.worker || so.directory || so.crm != nil {
		simOpts := so.sim
		simOpts.APIKey = apiKey
		if simOpts.Members == nil {
			simOpts.Members = simulator.GenerateMembers(5)
		}
		b.sim = simulator.New(simOpts)
		sim := httptest.NewServer(b.sim)
		t.Cleanup(sim.Close)
		c, err := worker.NewClient(worker.ClientOptions{BaseURL: sim.URL, APIKey: apiKey, Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if so.crm != nil {
			b.crm = so.crm(sim.URL, c)
		}
		if so.directory {
			directory = func(ctx context.Context) ([]importer.Member, error) {
				ms, err := c.TeamMembers(ctx)
				out := make([]importer.Member, len(ms))
				for i, m := range ms {
					out[i] = importer.Member{ID: m.ID, Email: m.Email, Name: m.Name, Active: m.Active}
				}
				return out, err
			}
		}
		if so.worker {
			tasks := jobs.Tasks{Store: store, Client: client, Inspector: insp, Queue: ns}
			// The workers announce the ends they see, and deliver notices.
			ended := notify.New(store, client, notify.Options{Queue: ns, Logger: log}).Ended
			h := worker.NewHandler(store, c, worker.NewLocalLimiter(0, 0), worker.HandlerOptions{Logger: log, Observe: b.metrics.Observe, Settled: b.metrics.Settled, PausedRetry: 100 * time.Millisecond, Tasks: &tasks, Ended: ended})
			srv, mux := worker.NewServer(opt, h, worker.ServerOptions{Queue: ns, Concurrency: 4, RetryBase: 50 * time.Millisecond, RetryMax: 200 * time.Millisecond, PollInterval: 50 * time.Millisecond, Logger: log})
			mux.Handle(notify.TypeNotify, notify.NewSender(store, notify.SenderOptions{Secret: []byte(notifySecret), Logger: log}))
			if err := srv.Start(mux); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(srv.Shutdown)
		}
	}

	b.opt, b.client, b.log, b.dir = opt, client, log, directory
	opts := so.opts
	opts.MaxUpload, opts.IDFormat = so.maxUpload, so.idFormat
	b.url = serve(t, b, opts)
	b.uploadAs = token
	t.Cleanup(func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, body := range b.bodies {
			if bytes.Contains(body, []byte(apiKey)) {
				t.Errorf("the CRM API key is in a response: %s", body)
			}
			if bytes.Contains(body, []byte(notifySecret)) {
				t.Errorf("the notify secret is in a response: %s", body)
			}
		}
	})
	return b
}

// serve starts a server on b's Redis and namespace and returns its URL.
// Without a token in opts it uses token.
func serve(t *testing.T, b *bundle, opts server.Options) string {
	t.Helper()
	if opts.Token == "" && len(opts.Tokens) == 0 {
		opts.Token = token
	}
	opts.TempDir = t.TempDir()
	h, err := server.New(server.Deps{
		Store: b.store, Redis: b.rdb, Importer: importer.New(b.store, b.client, b.ns), Client: b.client, Inspector: b.insp,
		RedisOpt: b.opt, Queue: b.ns, Metrics: b.metrics, Logger: b.log, Directory: b.dir, CRM: b.crm,
	}, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	ts := httptest.NewUnstartedServer(h)
	ts.Config = h.HTTPServer(nil)
	ts.Start()
	t.Cleanup(ts.Close)
	return ts.URL
}

// setupOn returns a bundle for a second server on b's Redis.
func setupOn(t *testing.T, b *bundle, opts server.Options) *bundle {
	t.Helper()
	c := &bundle{opt: b.opt, client: b.client, log: b.log, dir: b.dir, rdb: b.rdb, store: b.store, insp: b.insp, ns: b.ns, metrics: metrics.New()}
	c.url = serve(t, c, opts)
	return c
}

// do sends a request with the token (unless auth is empty) and returns the
// status and body.
func (b *bundle) do(t *testing.T, method, path, auth string, body io.Reader, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, b.url+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }, Timeout: 30 * time.Second}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	b.bodies = append(b.bodies, data)
	b.mu.Unlock()
	return res, data
}

// upload posts content as the multipart field "file".
func (b *bundle) upload(t *testing.T, query, filename, content string) (*http.Response, []byte) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	_ = mw.WriteField("name", "test batch")
	fw, err := mw.CreateFormFile("file", filename)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(fw, content)
	mw.Close()
	h := http.Header{"Content-Type": {mw.FormDataContentType()}}
	for k, v := range b.uploadHeader {
		h[k] = v
	}
	return b.do(t, "POST", "/api/v1/batches"+query, b.uploadAs, &buf, h)
}

func decode[T any](t *testing.T, data []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("not JSON: %v: %s", err, data)
	}
	return v
}

func wantStatus(t *testing.T, res *http.Response, body []byte, want int) {
	t.Helper()
	if res.StatusCode != want {
		t.Fatalf("%s %s: status %d, want %d: %s", res.Request.Method, res.Request.URL.Path, res.StatusCode, want, body)
	}
}

// wantNothingQueued checks that no batch and no task exist.
func (b *bundle) wantNothingQueued(t *testing.T) {
	t.Helper()
	ids, err := b.store.IDs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 0 {
		t.Errorf("batches exist: %v", ids)
	}
	if info, err := b.insp.GetQueueInfo(b.ns); err == nil && info.Size != 0 {
		t.Errorf("%d tasks queued", info.Size)
	}
}

func TestTokenRequired(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	for _, path := range []string{"/api/v1/batches", "/metrics", "/monitor", "/monitor/api/queues", "/"} {
		for _, auth := range []string{"", "wrong-token"} {
			res, body := b.do(t, "GET", path, auth, nil, nil)
			wantStatus(t, res, body, http.StatusUnauthorized)
			if e := decode[map[string]string](t, body)["error"]; !strings.Contains(e, "token") {
				t.Errorf("GET %s: error %q does not mention the token", path, e)
			}
		}
	}
	res, body := b.upload(t, "", "a.csv", sample)
	wantStatus(t, res, body, http.StatusCreated) // the token works for uploads
	res, body = b.do(t, "POST", "/api/v1/batches", "nope", strings.NewReader(sample), nil)
	wantStatus(t, res, body, http.StatusUnauthorized)

	// A browser goes to the login form, which sets a session cookie.
	res, body = b.do(t, "GET", "/", "", nil, http.Header{"Accept": {"text/html"}})
	wantStatus(t, res, body, http.StatusSeeOther)
	if loc := res.Header.Get("Location"); loc != "/login?next=%2F" {
		t.Errorf("redirect to %q", loc)
	}
	form := func(tok string) io.Reader {
		return strings.NewReader(url.Values{"token": {tok}, "next": {"//evil.example/"}}.Encode())
	}
	formHeader := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	res, body = b.do(t, "POST", "/login", "", form("wrong"), formHeader)
	wantStatus(t, res, body, http.StatusUnauthorized)
	if len(res.Cookies()) != 0 {
		t.Error("a wrong token got a cookie")
	}
	res, body = b.do(t, "POST", "/login", "", form(token), formHeader)
	wantStatus(t, res, body, http.StatusSeeOther)
	if loc := res.Header.Get("Location"); loc != "/" {
		t.Errorf("after login, redirect to %q, want / (never another site)", loc)
	}
	var session *http.Cookie
	for _, c := range res.Cookies() {
		if c.Name == "bulkassign_session" {
			session = c
		}
	}
	if session == nil || !session.HttpOnly || session.SameSite != http.SameSiteStrictMode || strings.Contains(session.Value, token) {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, not the token itself", session)
	}
	res, body = b.do(t, "GET", "/", "", nil, http.Header{"Cookie": {session.String()}})
	wantStatus(t, res, body, http.StatusOK)
	if !bytes.Contains(body, []byte(`id="upload-form"`)) || !bytes.Contains(body, []byte("test batch")) {
		t.Errorf("page lacks the upload form or the recent batch: %s", body)
	}
	res, body = b.do(t, "GET", "/api/v1/batches", "", nil, http.Header{"Cookie": {"bulkassign_session=forged"}})
	wantStatus(t, res, body, http.StatusUnauthorized)
}

func TestNoTokenRefused(t *testing.T) {
	t.Parallel()
	_, err := server.New(server.Deps{}, server.Options{})
	if err == nil || !strings.Contains(err.Error(), "BULKASSIGN_SERVER_TOKEN") {
		t.Fatalf("New without a token: %v", err)
	}
}

// chunked hides the length of a body, so the client streams it.
type chunked struct{ io.Reader }

func TestUploadTooLarge(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{maxUpload: 2048})
	big := sample + strings.Repeat(simulator.ContactID(9)+","+simulator.MemberID(1)+",false,padding padding padding\n", 200)

	res, body := b.upload(t, "", "big.csv", big)
	wantStatus(t, res, body, http.StatusRequestEntityTooLarge)
	if e := decode[map[string]string](t, body)["error"]; !strings.Contains(e, "2 KiB") {
		t.Errorf("413 message %q does not give the limit", e)
	}
	// Without a Content-Length the limit is found while streaming.
	res, body = b.do(t, "POST", "/api/v1/batches", token, chunked{strings.NewReader(big)}, http.Header{"Content-Type": {"text/csv"}})
	wantStatus(t, res, body, http.StatusRequestEntityTooLarge)
	b.wantNothingQueued(t)

	res, body = b.upload(t, "?dryRun=true", "small.csv", sample) // under the limit
	wantStatus(t, res, body, http.StatusOK)
}

func TestBrokenFile(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	broken := "aiContactId,teamMemberId\nc-1,m-1\nc-2,m-2\n\"c-3,m-3\nc-4,m-4\n"
	res, body := b.upload(t, "", "broken.csv", broken)
	wantStatus(t, res, body, http.StatusUnprocessableEntity)
	got := decode[struct {
		Error string
		Line  int
	}](t, body)
	if got.Line != 4 || !strings.Contains(got.Error, "line 4") || !strings.Contains(got.Error, "broken.csv") {
		t.Errorf("422 answer %+v: want line 4 and the file name", got)
	}
	res, body = b.do(t, "POST", "/api/v1/batches?format=json", token, strings.NewReader(`[{"aiContactId": "c-1"`), nil)
	wantStatus(t, res, body, http.StatusUnprocessableEntity)
	res, body = b.do(t, "POST", "/api/v1/batches?format=xml", token, strings.NewReader(sample), nil)
	wantStatus(t, res, body, http.StatusBadRequest)
	b.wantNothingQueued(t)
}

func TestDryRun(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	res, body := b.upload(t, "?dryRun=true", "sample.csv", sample)
	wantStatus(t, res, body, http.StatusOK)
	got := decode[server.UploadResult](t, body)
	s := got.Summary
	if !got.DryRun || got.BatchID != "" || s.Rows != 8 || s.Valid != 6 || s.Invalid != 2 || s.Merged != 1 || s.File != "sample.csv" {
		t.Errorf("dry run answer %+v", got)
	}
	if len(got.InvalidRows) != 2 || got.InvalidRows[0].Line != 8 || got.InvalidRows[1].Line != 9 || got.InvalidRows[0].Error == "" {
		t.Errorf("invalid rows %+v, want lines 8 and 9 with their errors", got.InvalidRows)
	}
	b.wantNothingQueued(t)
}

// TestUploadIDFormat: uploads are checked by serve's --id-format: by
// default ids are UUIDs and others make their rows invalid, with the form
// wanted in the answer; with any the older ids pass.
func TestUploadIDFormat(t *testing.T) {
	t.Parallel()
	older := "aiContactId,teamMemberId\nc-1,m-0001\n" + simulator.ContactID(2) + "," + simulator.MemberID(2) + "\n"
	for _, tt := range []struct {
		ids              jobs.IDFormat
		valid, invalid   int
		invalidRowErrors []string
	}{
		{ids: "", valid: 1, invalid: 1, invalidRowErrors: []string{`aiContactId "c-1" is not a valid id: want a UUID`}},
		{ids: jobs.IDAny, valid: 2},
	} {
		b := setup(t, setupOptions{idFormat: tt.ids})
		res, body := b.upload(t, "?dryRun=true", "older.csv", older)
		wantStatus(t, res, body, http.StatusOK)
		got := decode[server.UploadResult](t, body)
		if got.Summary.Valid != tt.valid || got.Summary.Invalid != tt.invalid || len(got.InvalidRows) != len(tt.invalidRowErrors) {
			t.Errorf("--id-format %q: summary %+v, invalid rows %+v", tt.ids, got.Summary, got.InvalidRows)
			continue
		}
		for i, want := range tt.invalidRowErrors {
			if r := got.InvalidRows[i]; r.Reason != "invalid_contact_id" || !strings.Contains(r.Error, want) {
				t.Errorf("--id-format %q: invalid row %+v, want invalid_contact_id and %q", tt.ids, r, want)
			}
		}
	}
}

func TestUploadRunsToCompletion(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{worker: true})
	res, body := b.upload(t, "", "sample.csv", sample)
	wantStatus(t, res, body, http.StatusCreated)
	up := decode[server.UploadResult](t, body)
	if up.BatchID == "" || res.Header.Get("Location") != "/api/v1/batches/"+up.BatchID {
		t.Fatalf("upload answer %s, Location %q", body, res.Header.Get("Location"))
	}

	got := b.waitDone(t, up.BatchID)
	if _, ok := got.Links["rollback.csv"]; ok {
		t.Error("a batch that did not record previous agents links a rollback.csv")
	}
	res, body = b.do(t, "GET", "/api/v1/batches/"+up.BatchID+"/rollback.csv", token, nil, nil)
	wantStatus(t, res, body, http.StatusNotFound)
	if got.Rows != 8 || got.Succeeded != 5 || got.Failed != 1 || got.Invalid != 2 || got.Percent != 100 || got.Name != "test batch" {
		t.Errorf("finished batch %+v", got)
	}

	res, body = b.do(t, "GET", got.Links["failed.csv"], token, nil, nil)
	wantStatus(t, res, body, http.StatusOK)
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/csv") || !strings.Contains(res.Header.Get("Content-Disposition"), "attachment") {
		t.Errorf("failed.csv served as %q, %q", ct, res.Header.Get("Content-Disposition"))
	}
	lines := strings.Split(strings.TrimSpace(string(body)), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "line,aiContactId,teamMemberId") || !strings.Contains(lines[1], "404") {
		t.Errorf("failed.csv:\n%s", body)
	}
	res, body = b.do(t, "GET", got.Links["succeeded.csv"], token, nil, nil)
	wantStatus(t, res, body, http.StatusOK)
	if n := strings.Count(strings.TrimSpace(string(body)), "\n"); n != 5 {
		t.Errorf("succeeded.csv has %d rows, want 5:\n%s", n, body)
	}
	res, body = b.do(t, "GET", got.Links["summary.json"], token, nil, nil)
	wantStatus(t, res, body, http.StatusOK)
	if sum := decode[map[string]any](t, body); sum["batchId"] != up.BatchID || sum["succeeded"] != 5.0 {
		t.Errorf("summary.json %s", body)
	}

	res, body = b.do(t, "GET", "/api/v1/batches", token, nil, nil)
	wantStatus(t, res, body, http.StatusOK)
	if list := decode[struct{ Batches []server.Batch }](t, body); len(list.Batches) != 1 || list.Batches[0].ID != up.BatchID {
		t.Errorf("list %s", body)
	}

	// A finished batch cannot be paused; retrying a batch without dead
	// letters requeues nothing.
	res, body = b.do(t, "POST", "/api/v1/batches/"+up.BatchID+"/pause", token, nil, nil)
	wantStatus(t, res, body, http.StatusConflict)
	res, body = b.do(t, "POST", "/api/v1/batches/"+up.BatchID+"/retry-failed", token, nil, nil)
	wantStatus(t, res, body, http.StatusOK)
	if n := decode[map[string]any](t, body)["requeued"]; n != 0.0 {
		t.Errorf("requeued %v", n)
	}

	res, body = b.do(t, "GET", "/metrics", token, nil, nil)
	wantStatus(t, res, body, http.StatusOK)
	for _, want := range []string{
		`bulkassign_api_calls_total{outcome="ok",status="200"} 4` + "\n", // the duplicate row is applied once,
		`bulkassign_api_calls_total{outcome="permanent",status="404"} 1` + "\n",
		`bulkassign_rows_total{result="succeeded"} 4` + "\n", // and counted once
		`bulkassign_rows_total{result="failed"} 1` + "\n",
		"bulkassign_api_call_duration_seconds_bucket",
		"bulkassign_rate_limit_waits_total 0",
		`bulkassign_batch_rows{batch="` + up.BatchID + `",status="succeeded"} 5`,
		`bulkassign_batch_rows{batch="` + up.BatchID + `",status="pending"} 0`,
	} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// waitDone polls a batch until it is done (30 s at most) and returns it.
func (b *bundle) waitDone(t *testing.T, id string) server.Batch {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, body := b.do(t, "GET", "/api/v1/batches/"+id, token, nil, nil)
		wantStatus(t, res, body, http.StatusOK)
		got := decode[server.Batch](t, body)
		if got.Status == jobs.BatchDone {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("batch not done within 30s: %s", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestUploadRecordPrevious: an upload with recordPrevious=true gets a
// rollback.csv that restores each changed contact's earlier agents.
func TestUploadRecordPrevious(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{worker: true})
	c1, c2 := simulator.ContactID(1), simulator.ContactID(2)
	m := simulator.MemberID
	first := "aiContactId,teamMemberId\n" + c1 + "," + m(1) + "\n" + c2 + "," + m(2) + "\n"
	res, body := b.upload(t, "", "first.csv", first)
	wantStatus(t, res, body, http.StatusCreated)
	b.waitDone(t, decode[server.UploadResult](t, body).BatchID)

	second := "aiContactId,teamMemberId,removeExistingAgents\n" + c1 + "," + m(3) + ",true\n" + c2 + "," + m(4) + ",false\n"
	res, body = b.upload(t, "?recordPrevious=true", "second.csv", second)
	wantStatus(t, res, body, http.StatusCreated)
	got := b.waitDone(t, decode[server.UploadResult](t, body).BatchID)
	link, ok := got.Links["rollback.csv"]
	if !ok {
		t.Fatalf("no rollback.csv link: %+v", got.Links)
	}
	res, body = b.do(t, "GET", link, token, nil, nil)
	wantStatus(t, res, body, http.StatusOK)
	if !strings.HasPrefix(string(body), "aiContactId,teamMemberId,removeExistingAgents") ||
		!strings.Contains(string(body), "\n"+c1+","+m(1)+",true") || !strings.Contains(string(body), "\n"+c2+","+m(2)+",true") {
		t.Errorf("rollback.csv:\n%s\nwant rows restoring contact 1 to member 1 and contact 2 to member 2", body)
	}
}

func TestControl(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{}) // no worker: the batch stays running
	res, body := b.upload(t, "", "sample.csv", sample)
	wantStatus(t, res, body, http.StatusCreated)
	id := decode[server.UploadResult](t, body).BatchID
	for _, step := range []struct{ action, want string }{
		{"pause", jobs.BatchPaused}, {"resume", jobs.BatchRunning}, {"cancel", jobs.BatchCancelled},
	} {
		res, body = b.do(t, "POST", "/api/v1/batches/"+id+"/"+step.action, token, nil, nil)
		wantStatus(t, res, body, http.StatusOK)
		if got := decode[struct{ Batch server.Batch }](t, body).Batch.Status; got != step.want {
			t.Errorf("%s: status %s, want %s", step.action, got, step.want)
		}
	}
	res, body = b.do(t, "POST", "/api/v1/batches/"+id+"/resume", token, nil, nil)
	wantStatus(t, res, body, http.StatusConflict)
	res, body = b.do(t, "POST", "/api/v1/batches/"+id+"/retry-failed", token, nil, nil)
	wantStatus(t, res, body, http.StatusConflict)
	res, body = b.do(t, "GET", "/api/v1/batches/"+id+"/failed.csv", token, nil, nil)
	wantStatus(t, res, body, http.StatusOK)
	if !bytes.Contains(body, []byte("not processed")) {
		t.Errorf("failed.csv of a cancelled batch lacks the rows not processed:\n%s", body)
	}
}

func TestBadAndUnknownIDs(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/api/v1/batches/20260101-000000-deadbeef", http.StatusNotFound},
		{"GET", "/api/v1/batches/20260101-000000-deadbeef/failed.csv", http.StatusNotFound},
		{"POST", "/api/v1/batches/20260101-000000-deadbeef/pause", http.StatusNotFound},
		{"GET", "/api/v1/batches/bad.id", http.StatusBadRequest},
		{"GET", "/api/v1/batches/..%2F..%2Fetc/failed.csv", http.StatusBadRequest},
		{"GET", "/api/v1/batches/" + strings.Repeat("a", 129), http.StatusBadRequest},
		{"POST", "/api/v1/batches/x%20y/cancel", http.StatusBadRequest},
		{"GET", "/api/v1/batches/abc/passwd", http.StatusNotFound},
		{"POST", "/api/v1/batches/abc/explode", http.StatusNotFound},
		{"GET", "/api/v2/anything", http.StatusNotFound},
	} {
		res, body := b.do(t, tc.method, tc.path, token, nil, nil)
		if res.StatusCode != tc.want {
			t.Errorf("%s %s: %d, want %d: %s", tc.method, tc.path, res.StatusCode, tc.want, body)
			continue
		}
		if decode[map[string]string](t, body)["error"] == "" {
			t.Errorf("%s %s: no error message: %s", tc.method, tc.path, body)
		}
	}
}

func TestMonitorAndMetrics(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	res, body := b.do(t, "GET", "/monitor", token, nil, nil)
	wantStatus(t, res, body, http.StatusOK)
	res, body = b.do(t, "GET", "/monitor/api/queues", token, nil, nil)
	wantStatus(t, res, body, http.StatusOK)
	res, body = b.do(t, "GET", "/metrics", token, nil, nil)
	wantStatus(t, res, body, http.StatusOK)
	// The calls by outcome and status show with the first call.
	for _, name := range []string{"bulkassign_api_call_duration_seconds", "bulkassign_rate_limit_waits_total", "bulkassign_rows_total"} {
		if !bytes.Contains(body, []byte(name)) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}
