package server_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/bulkassign/bulkassign/server"
	"github.com/bulkassign/bulkassign/simulator"
)

// TestFailuresAndProgress: a batch's failed and invalid rows, by reason,
// and its progress over time, as the batch page reads them.
func TestFailuresAndProgress(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{worker: true, sim: simulator.Options{Latency: 30 * time.Millisecond},
		opts: server.Options{SampleEvery: 20 * time.Millisecond}})
	res, body := b.upload(t, "", "sample.csv", sample)
	wantStatus(t, res, body, http.StatusCreated)
	id := decode[server.UploadResult](t, body).BatchID
	b.waitDone(t, id)

	res, body = b.do(t, "GET", "/api/v1/batches/"+id+"/failures", token, nil, nil)
	wantStatus(t, res, body, http.StatusOK)
	f := decode[server.Failures](t, body)
	if len(f.Rows) != 3 || f.Matching != 3 {
		t.Fatalf("failures %s: want the 404 row and the 2 invalid rows", body)
	}
	r404 := f.Rows[0]
	if r404.Line != 7 || r404.Status != "failed" || r404.Reason != "http_404" || r404.HTTPStatus != 404 || r404.Attempts != 1 ||
		r404.ContactID != simulator.ContactID(4) || !strings.Contains(r404.Error, "not found") {
		t.Errorf("the 404 row: %+v", r404)
	}
	if f.Rows[1].Line != 8 || f.Rows[1].Status != "invalid" || f.Rows[1].Reason != "invalid_member_id" || f.Rows[2].Line != 9 || f.Rows[2].Error == "" {
		t.Errorf("the invalid rows: %+v", f.Rows[1:])
	}
	if f.Reasons["http_404"] != 1 || f.Reasons["invalid_member_id"] != 1 || len(f.Reasons) != 3 {
		t.Errorf("rows by reason %v", f.Reasons)
	}

	res, body = b.do(t, "GET", "/api/v1/batches/"+id+"/failures?reason=invalid_member_id", token, nil, nil)
	wantStatus(t, res, body, http.StatusOK)
	if f := decode[server.Failures](t, body); len(f.Rows) != 1 || f.Rows[0].Line != 8 || f.Matching != 1 {
		t.Errorf("filtered by invalid_member_id: %s", body)
	}
	res, body = b.do(t, "GET", "/api/v1/batches/"+id+"/failures?limit=1000", token, nil, nil)
	wantStatus(t, res, body, http.StatusBadRequest)

	// The last sample of a finished batch is its end.
	var p server.Progress
	waitFor(t, "the batch's last progress sample", func() bool {
		res, body := b.do(t, "GET", "/api/v1/batches/"+id+"/progress", token, nil, nil)
		wantStatus(t, res, body, http.StatusOK)
		p = decode[server.Progress](t, body)
		n := len(p.Samples)
		return n > 1 && p.Samples[n-1].Succeeded == 5 && p.Samples[n-1].Failed == 1 && p.Samples[n-1].Invalid == 2
	})
	if p.Samples[0].Succeeded+p.Samples[0].Failed != 0 || len(p.Rates) != len(p.Samples)-1 || p.ETASeconds != nil {
		t.Errorf("progress %+v: want it to start at zero, a rate between samples, no ETA once done", p)
	}
	sent := 0.0
	for i, r := range p.Rates {
		sent += r.RowsPerSecond * p.Samples[i+1].Time.Sub(p.Samples[i].Time).Seconds()
	}
	if sent < 5.9 || sent > 6.1 {
		t.Errorf("the rates add up to %.2f rows sent, want 6", sent)
	}
}

// TestListFilter: the batch list by status and by a piece of the name.
func TestListFilter(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{}) // no worker: batches stay running
	ids := map[string]string{}
	for _, name := range []string{"north rebalance", "South import", "north cleanup"} {
		var buf strings.Builder
		buf.WriteString(sample)
		res, body := b.do(t, "POST", "/api/v1/batches?format=csv&again=true&name="+url.QueryEscape(name), token, strings.NewReader(buf.String()), nil)
		wantStatus(t, res, body, http.StatusCreated)
		ids[name] = decode[server.UploadResult](t, body).BatchID
	}
	res, body := b.do(t, "POST", "/api/v1/batches/"+ids["north cleanup"]+"/cancel", token, nil, nil)
	wantStatus(t, res, body, http.StatusOK)
	for q, want := range map[string][]string{
		"name=NORTH":                  {"north cleanup", "north rebalance"},
		"status=running":              {"South import", "north rebalance"},
		"status=cancelled&name=north": {"north cleanup"},
		"name=" + ids["South import"]: {"South import"},
		"status=done":                 {},
	} {
		res, body := b.do(t, "GET", "/api/v1/batches?"+q, token, nil, nil)
		wantStatus(t, res, body, http.StatusOK)
		var got []string
		for _, x := range decode[struct{ Batches []server.Batch }](t, body).Batches {
			got = append(got, x.Name)
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("?%s: %v, want %v", q, got, want)
		}
	}
	res, body = b.do(t, "GET", "/api/v1/batches?status=sleeping", token, nil, nil)
	wantStatus(t, res, body, http.StatusBadRequest)
}
