package server_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkassign/bulkassign/internal/notifytest"
	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/notify"
	"github.com/bulkassign/bulkassign/report"
	"github.com/bulkassign/bulkassign/server"
)

// TestUploadNotify: an upload with notify gets its batch's end posted
// there once, signed, with the counts of its report; the answer shows the
// URL without its path.
func TestUploadNotify(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{worker: true})
	r := notifytest.New(t, 0)
	res, body := b.form(t, "/api/v1/batches", "sample.csv", sample, "notify", r.URL+"/hooks/T0/s3cret-path", "notifyFormat", "json")
	wantStatus(t, res, body, http.StatusCreated)
	up := decode[server.UploadResult](t, body)
	if up.Notify != r.URL+"/… (json)" || up.NotifyError != "" || bytes.Contains(body, []byte("s3cret-path")) {
		t.Errorf("upload answer: notify %q, error %q; want %q, and the URL's path nowhere: %s", up.Notify, up.NotifyError, r.URL+"/… (json)", body)
	}
	done := b.waitDone(t, up.BatchID)

	got := r.Wait(t, 1)
	if len(got) != 1 {
		t.Fatalf("%d notices, want 1", len(got))
	}
	h := got[0].Header
	if h.Get(notify.EventHeader) != notify.EventCompleted || h.Get(notify.SignatureHeader) != notify.Sign([]byte(notifySecret), got[0].Body) {
		t.Errorf("notice headers %v: want event completed and the body's signature", h)
	}
	var sum report.Summary
	if err := json.Unmarshal(got[0].Body, &sum); err != nil {
		t.Fatalf("notice body: %v: %s", err, got[0].Body)
	}
	if sum.BatchID != up.BatchID || sum.Status != jobs.BatchDone || sum.Succeeded != done.Succeeded || sum.Failed != done.Failed || sum.Invalid != done.Invalid || sum.Rows != 8 {
		t.Errorf("notice summary %+v, want the finished batch's counts %+v", sum, done)
	}
}

// TestUploadNotifyRefused: a bad notify target is refused with a message
// naming the field, the URL's path left out, and nothing is queued.
func TestUploadNotifyRefused(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	for _, tc := range []struct {
		fields []string
		want   string
	}{
		{[]string{"notify", "ftp://example.com/s3cret"}, "notify ftp://example.com/…: want an http:// or https:// URL"},
		{[]string{"notify", "hooks.example.com/s3cret"}, "want an http:// or https:// URL"},
		{[]string{"notify", "https://example.com/s3cret", "notifyFormat", "xml"}, `notifyFormat "xml": want json or slack`},
		{[]string{"notifyFormat", "slack"}, "notifyFormat without notify"},
	} {
		res, body := b.form(t, "/api/v1/batches", "sample.csv", sample, tc.fields...)
		msg := decode[map[string]string](t, body)["error"]
		if res.StatusCode != http.StatusBadRequest || !strings.Contains(msg, tc.want) || strings.Contains(msg, "s3cret") {
			t.Errorf("%q: %d %q, want 400 saying %q without the URL's path", tc.fields, res.StatusCode, msg, tc.want)
		}
	}
	b.wantNothingQueued(t)
}

// conflict is the answer to an upload of a file queued already.
type conflict struct {
	Error       string
	DuplicateOf server.Batch
}

// TestUploadSameFileTwice: the same file for the same CRM is refused while
// its batch is known, naming that batch, its status and its time, unless
// again=true; a dry run says it would be; another file, or the same file
// for another CRM, is not.
func TestUploadSameFileTwice(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{opts: server.Options{APIURL: "https://crm.example.com/"}})
	res, body := b.upload(t, "", "sample.csv", sample)
	wantStatus(t, res, body, http.StatusCreated)
	first := decode[server.UploadResult](t, body).BatchID

	res, body = b.upload(t, "", "copy of sample.csv", sample)
	wantStatus(t, res, body, http.StatusConflict)
	c := decode[conflict](t, body)
	if c.DuplicateOf.ID != first || c.DuplicateOf.Status != jobs.BatchRunning || c.DuplicateOf.CreatedAt.IsZero() ||
		!strings.Contains(c.Error, "batch "+first) || !strings.Contains(c.Error, "running") || !strings.Contains(c.Error, "imported 20") ||
		!strings.Contains(c.Error, "nothing was queued") || !strings.Contains(c.Error, "again=true") {
		t.Errorf("409 answer %s: want the earlier batch %s, its status and time, and how to send it anyway", body, first)
	}
	res, body = b.upload(t, "?dryRun=true", "sample.csv", sample)
	wantStatus(t, res, body, http.StatusOK)
	if d := decode[server.UploadResult](t, body).DuplicateOf; d == nil || d.ID != first {
		t.Errorf("dry run of the same file: %s, want duplicateOf %s", body, first)
	}
	if ids, _ := b.store.IDs(t.Context()); len(ids) != 1 {
		t.Fatalf("%d batches after the refused upload, want 1", len(ids))
	}

	res, body = b.upload(t, "?again=true", "sample.csv", sample)
	wantStatus(t, res, body, http.StatusCreated)
	second := decode[server.UploadResult](t, body).BatchID
	res, body = b.upload(t, "", "sample.csv", sample)
	wantStatus(t, res, body, http.StatusConflict)
	if got := decode[conflict](t, body).DuplicateOf.ID; got != second {
		t.Errorf("after again=true, a third upload names %s, want the newest batch %s", got, second)
	}

	res, body = b.upload(t, "", "sample.csv", sample+"c0000000-0000-8000-8000-000000000007,a0000000-0000-8000-8000-000000000001,false,\n")
	wantStatus(t, res, body, http.StatusCreated)
	other := setupOn(t, b, server.Options{APIURL: "https://other-crm.example.com"})
	other.uploadAs = token
	res, body = other.upload(t, "", "sample.csv", sample)
	wantStatus(t, res, body, http.StatusCreated)
	// The same URL spelled otherwise is the same CRM.
	same := setupOn(t, b, server.Options{APIURL: "HTTPS://crm.example.com"})
	same.uploadAs = token
	res, body = same.upload(t, "", "sample.csv", sample)
	wantStatus(t, res, body, http.StatusConflict)

	res, body = b.do(t, "GET", "/", token, nil, http.Header{"Accept": {"text/html"}})
	wantStatus(t, res, body, http.StatusOK)
	if !bytes.Contains(body, []byte(`id="send-again" name="again" type="checkbox"`)) {
		t.Error(`the page has no "Queue it again" checkbox`)
	}
}

// TestUploadSameFileAtOnce: a double click, or a script retrying while
// the first upload is still being queued, makes one batch.
func TestUploadSameFileAtOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	var file strings.Builder
	file.WriteString("aiContactId,teamMemberId\n")
	for i := range 20000 {
		fmt.Fprintf(&file, "c0000000-0000-8000-8000-%012d,a0000000-0000-8000-8000-000000000001\n", i)
	}
	const n = 4
	codes := make([]int, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { codes[i], errs[i] = postFile(b.url, file.String()) })
	}
	wg.Wait()
	created := 0
	for i, code := range codes {
		switch {
		case errs[i] != nil:
			t.Fatal(errs[i])
		case code == http.StatusCreated:
			created++
		case code != http.StatusConflict:
			t.Errorf("upload %d: status %d, want 201 or 409", i, code)
		}
	}
	if ids, _ := b.store.IDs(t.Context()); created != 1 || len(ids) != 1 {
		t.Errorf("%d uploads of one file at once: %d created, %d batches; want 1 and 1", n, created, len(ids))
	}
}

// postFile uploads content as a multipart file and returns the status.
func postFile(url, content string) (int, error) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, _ := mw.CreateFormFile("file", "big.csv")
	io.WriteString(fw, content)
	mw.Close()
	req, err := http.NewRequest("POST", url+"/api/v1/batches", &buf)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, res.Body)
	return res.StatusCode, nil
}

// TestUploadOrigin: a batch uploaded through serve records who (the
// token's name), from where (the client's address, through the trusted
// proxy) and, with the server's own workers, their settings; the API, the
// list and the page show it.
func TestUploadOrigin(t *testing.T) {
	t.Parallel()
	const alice = "alice-token-0123456789abcdef"
	b := setup(t, setupOptions{opts: server.Options{Tokens: []server.Credential{server.HashToken("alice", alice)}, TrustProxy: true,
		Settings: &jobs.Settings{Rate: 20, Burst: 1, Concurrency: 4, MaxAttempts: 5}}})
	b.uploadAs, b.uploadHeader = alice, http.Header{"X-Forwarded-For": {"203.0.113.7"}}
	res, body := b.upload(t, "", "sample.csv", sample)
	wantStatus(t, res, body, http.StatusCreated)
	id := decode[server.UploadResult](t, body).BatchID

	want := jobs.Origin{Via: "serve", By: "alice", Client: "203.0.113.7", Settings: &jobs.Settings{Rate: 20, Burst: 1, Concurrency: 4, MaxAttempts: 5}}
	const says = "alice (serve; from 203.0.113.7; rate 20/s, concurrency 4, 5 attempts)"
	res, body = b.do(t, "GET", "/api/v1/batches/"+id, alice, nil, nil)
	wantStatus(t, res, body, http.StatusOK)
	got := decode[server.Batch](t, body)
	if got.Origin == nil || got.Origin.Via != want.Via || got.Origin.By != want.By || got.Origin.Client != want.Client ||
		got.Origin.Settings == nil || *got.Origin.Settings != *want.Settings || got.StartedBy != says {
		t.Errorf("batch origin %+v, started by %q; want %+v, %q", got.Origin, got.StartedBy, want, says)
	}
	res, body = b.do(t, "GET", "/api/v1/batches", alice, nil, nil)
	wantStatus(t, res, body, http.StatusOK)
	if list := decode[struct{ Batches []server.Batch }](t, body).Batches; len(list) != 1 || list[0].StartedBy != says {
		t.Errorf("list %s: want the batch started by %q", body, says)
	}
	res, body = b.do(t, "GET", "/", alice, nil, http.Header{"Accept": {"text/html"}})
	wantStatus(t, res, body, http.StatusOK)
	if !bytes.Contains(body, []byte("<td>"+says+"</td>")) {
		t.Errorf("the page's batch list does not say %q", says)
	}
}
