package server_test

import (
	"bytes"
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bulkassign/bulkassign/server"
	"github.com/bulkassign/bulkassign/simulator"
	"github.com/bulkassign/bulkassign/worker"
)

// workersCRM gives Verify the workers' own client.
func workersCRM(limiter worker.Limiter) func(string, *worker.Client) *server.CRM {
	return func(_ string, c *worker.Client) *server.CRM {
		return &server.CRM{Client: c, Limiter: limiter, Read: worker.ReadOptions{Concurrency: 1, Backoff: 10 * time.Millisecond}}
	}
}

// finishedSample uploads sample and waits until its batch is done. Its
// succeeded rows leave three contacts: 1 exactly [member 2] (an add, then
// a replace), 2 with member 1 among its agents, 3 exactly [member 2].
func finishedSample(t *testing.T, b *bundle) string {
	t.Helper()
	res, body := b.upload(t, "", "sample.csv", sample)
	wantStatus(t, res, body, http.StatusCreated)
	id := decode[server.UploadResult](t, body).BatchID
	b.waitDone(t, id)
	return id
}

// verifyBatch presses Verify and waits for its result.
func (b *bundle) verifyBatch(t *testing.T, id string) server.Verification {
	t.Helper()
	res, body := b.do(t, "POST", "/api/v1/batches/"+id+"/verify", token, nil, nil)
	wantStatus(t, res, body, http.StatusAccepted)
	if v := decode[server.Verification](t, body); v.Status != server.VerifyRunning || v.BatchID != id {
		t.Fatalf("verify started as %s", body)
	}
	return b.waitVerify(t, id)
}

// waitVerify polls the batch's verification until it is not running.
func (b *bundle) waitVerify(t *testing.T, id string) server.Verification {
	t.Helper()
	var v server.Verification
	waitFor(t, "verify ends", func() bool {
		res, body := b.do(t, "GET", "/api/v1/batches/"+id+"/verify", token, nil, nil)
		wantStatus(t, res, body, http.StatusOK)
		v = decode[server.Verification](t, body)
		return v.Status != server.VerifyRunning
	})
	return v
}

// TestVerifyFinishedBatch: Verify of a finished batch reads its contacts
// back from the CRM: no drift while the CRM is as the batch left it; once
// a contact is changed behind the tool's back (the simulator's control
// endpoint), exactly that contact, in the answer and in drift.csv.
func TestVerifyFinishedBatch(t *testing.T) {
	t.Parallel()
	var sim string
	b := setup(t, setupOptions{worker: true, crm: func(simURL string, c *worker.Client) *server.CRM {
		sim = simURL
		return workersCRM(worker.NewLocalLimiter(0, 0))(simURL, c)
	}})
	id := finishedSample(t, b)

	res, body := b.do(t, "GET", "/", token, nil, nil)
	wantStatus(t, res, body, http.StatusOK)
	if !bytes.Contains(body, []byte(`id="verify"`)) || bytes.Contains(body, []byte(`data-off`)) {
		t.Errorf("the page with a CRM key has no enabled Verify button")
	}

	v := b.verifyBatch(t, id)
	if v.Status != server.VerifyDone || v.Contacts != 3 || v.Read != 3 || v.Matching != 3 || v.Drifted != 0 || len(v.Drift) != 0 || v.By != server.DefaultTokenName {
		t.Fatalf("clean batch verified as %+v, want done, 3 contacts matching, no drift", v)
	}
	res, body = b.do(t, "GET", v.DriftFile, token, nil, nil)
	wantStatus(t, res, body, http.StatusOK)
	if got := strings.TrimSpace(string(body)); got != "aiContactId,expected,actual,missing,unexpected,match,error" {
		t.Errorf("drift.csv of a clean batch:\n%s", body)
	}

	// Someone gives contact 3 member 1 instead of member 2, in the CRM.
	contact, m1, m2 := simulator.ContactID(3), simulator.MemberID(1), simulator.MemberID(2)
	req, err := http.NewRequest("PUT", sim+"/_control/contacts/"+contact+"/agents", strings.NewReader(`["`+m1+`"]`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(worker.DefaultKeyHeader, apiKey)
	cres, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	cres.Body.Close()
	if cres.StatusCode != http.StatusOK {
		t.Fatalf("simulator control: %s", cres.Status)
	}

	v = b.verifyBatch(t, id)
	if v.Status != server.VerifyDone || v.Contacts != 3 || v.Matching != 2 || v.Drifted != 1 || len(v.Drift) != 1 {
		t.Fatalf("verify after the change: %+v, want 1 of 3 drifted", v)
	}
	d := v.Drift[0]
	if d.Contact != contact || !slices.Equal(d.Expected, []string{m2}) || !slices.Equal(d.Actual, []string{m1}) ||
		!slices.Equal(d.Missing, []string{m2}) || !slices.Equal(d.Unexpected, []string{m1}) || d.Match != "exact" || d.Error != "" {
		t.Errorf("drift %+v, want contact %s expected [%s] actual [%s] missing [%s] unexpected [%s], exact", d, contact, m2, m1, m2, m1)
	}
	res, body = b.do(t, "GET", "/api/v1/batches/"+id+"/drift.csv", token, nil, nil)
	wantStatus(t, res, body, http.StatusOK)
	if cd := res.Header.Get("Content-Disposition"); !strings.Contains(cd, id+"-drift.csv") {
		t.Errorf("drift.csv served as %q", cd)
	}
	lines := strings.Split(strings.TrimSpace(string(body)), "\n")
	if want := contact + "," + m2 + "," + m1 + "," + m2 + "," + m1 + ",exact,"; len(lines) != 2 || lines[1] != want {
		t.Errorf("drift.csv:\n%s\nwant one row %s", body, want)
	}
}

// gate is a limiter that lets one read through per value sent.
type gate chan struct{}

func (g gate) Wait(ctx context.Context) error {
	select {
	case <-g:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (gate) Slow(context.Context) {}

// TestVerifyOneAtATime: a second Verify while one runs answers the
// running one instead of starting another, and the running one shows how
// far it got.
func TestVerifyOneAtATime(t *testing.T) {
	t.Parallel()
	g := make(gate)
	b := setup(t, setupOptions{worker: true, crm: workersCRM(g)})
	id := finishedSample(t, b)

	res, body := b.do(t, "POST", "/api/v1/batches/"+id+"/verify", token, nil, nil)
	wantStatus(t, res, body, http.StatusAccepted)
	first := decode[server.Verification](t, body)
	res, body = b.do(t, "POST", "/api/v1/batches/"+id+"/verify", token, nil, nil)
	wantStatus(t, res, body, http.StatusOK)
	if again := decode[server.Verification](t, body); again.Status != server.VerifyRunning || !again.StartedAt.Equal(first.StartedAt) {
		t.Fatalf("a second Verify while one runs answered %s, want the running one (started %s)", body, first.StartedAt)
	}

	g <- struct{}{} // one contact read
	waitFor(t, "the progress shows one contact read", func() bool {
		res, body := b.do(t, "GET", "/api/v1/batches/"+id+"/verify", token, nil, nil)
		wantStatus(t, res, body, http.StatusOK)
		v := decode[server.Verification](t, body)
		return v.Status == server.VerifyRunning && v.Read == 1 && v.Contacts == 3
	})
	g <- struct{}{}
	g <- struct{}{}
	if v := b.waitVerify(t, id); v.Status != server.VerifyDone || v.Read != 3 || v.Drifted != 0 || !v.StartedAt.Equal(first.StartedAt) {
		t.Errorf("the verify ended as %+v", v)
	}
}

// TestVerifyRefused: Verify says why it cannot run: on a batch that has
// not finished, and on a server without the CRM's API key (the page's
// button is disabled with the same explanation); and a batch never
// verified has no result and no drift.csv yet.
func TestVerifyRefused(t *testing.T) {
	t.Parallel()
	// No workers: the batch stays queued.
	b := setup(t, setupOptions{crm: workersCRM(worker.NewLocalLimiter(0, 0))})
	res, body := b.upload(t, "", "sample.csv", sample)
	wantStatus(t, res, body, http.StatusCreated)
	id := decode[server.UploadResult](t, body).BatchID
	res, body = b.do(t, "POST", "/api/v1/batches/"+id+"/verify", token, nil, nil)
	wantStatus(t, res, body, http.StatusConflict)
	if e := decode[map[string]string](t, body)["error"]; !strings.Contains(e, "finished batch (done or cancelled)") {
		t.Errorf("verify of an unfinished batch: %q, want it to say it verifies finished batches", e)
	}
	res, body = b.do(t, "GET", "/api/v1/batches/"+id+"/verify", token, nil, nil)
	wantStatus(t, res, body, http.StatusOK)
	if v := decode[server.Verification](t, body); v.Status != server.VerifyNone || !strings.Contains(v.Error, "not been verified yet") {
		t.Errorf("the verify of a batch never verified: %s", body)
	}
	res, body = b.do(t, "GET", "/api/v1/batches/"+id+"/drift.csv", token, nil, nil)
	wantStatus(t, res, body, http.StatusNotFound)
	if e := decode[map[string]string](t, body)["error"]; !strings.Contains(e, "press Verify") {
		t.Errorf("drift.csv of a batch never verified: %q", e)
	}

	// No CRM key: refused with the setting to give, and the page says so.
	n := setup(t, setupOptions{worker: true})
	id = finishedSample(t, n)
	res, body = n.do(t, "POST", "/api/v1/batches/"+id+"/verify", token, nil, nil)
	wantStatus(t, res, body, http.StatusBadRequest)
	if e := decode[map[string]string](t, body)["error"]; !strings.Contains(e, "no CRM API key") || !strings.Contains(e, "BULKASSIGN_API_KEY") {
		t.Errorf("verify without a key: %q, want it to name BULKASSIGN_API_KEY", e)
	}
	res, body = n.do(t, "GET", "/", token, nil, nil)
	wantStatus(t, res, body, http.StatusOK)
	if !bytes.Contains(body, []byte(`data-off="true" disabled`)) || !bytes.Contains(body, []byte("Verify is off: this server has no CRM API key")) ||
		!bytes.Contains(body, []byte("BULKASSIGN_API_KEY")) {
		t.Errorf("the page without a key does not disable Verify with an explanation")
	}
}

// TestVerifyKeyRefused: a key the CRM refuses fails the verify with a
// message that says so and names the setting, never the key.
func TestVerifyKeyRefused(t *testing.T) {
	t.Parallel()
	const wrongKey = "wrong-crm-key-never-shown-7"
	b := setup(t, setupOptions{worker: true, crm: func(simURL string, _ *worker.Client) *server.CRM {
		c, err := worker.NewClient(worker.ClientOptions{BaseURL: simURL, APIKey: wrongKey, Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return &server.CRM{Client: c, Limiter: worker.NewLocalLimiter(0, 0)}
	}})
	id := finishedSample(t, b)
	v := b.verifyBatch(t, id)
	if v.Status != server.VerifyFailed || !strings.Contains(v.Error, "refused serve's API key") || !strings.Contains(v.Error, "BULKASSIGN_API_KEY") ||
		strings.Contains(v.Error, wrongKey) || v.DriftFile != "" {
		t.Errorf("verify with a refused key: %+v, want failed, saying the key was refused and naming BULKASSIGN_API_KEY", v)
	}
	res, body := b.do(t, "GET", "/api/v1/batches/"+id+"/drift.csv", token, nil, nil)
	wantStatus(t, res, body, http.StatusNotFound)
}
