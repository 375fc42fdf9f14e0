package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bulkassign/bulkassign/report"
	"github.com/bulkassign/bulkassign/simulator"
	"github.com/bulkassign/bulkassign/worker"
)

// startServe runs `bulkassign serve args` in-process until the test ends
// and returns its URL.
func startServe(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"serve", "--addr", "127.0.0.1:0"}, args...), strings.NewReader(""), io.Discard, &stderr)
	}()
	t.Cleanup(func() { cancel(); <-done })
	listening := regexp.MustCompile(`listening on (http://[0-9.:]+)`)
	waitUntil(t, 30*time.Second, "serve listens", func() bool {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("serve %v ended: %v\n%s", args, err, stderr.String())
		default:
		}
		return listening.MatchString(stderr.String())
	})
	return listening.FindStringSubmatch(stderr.String())[1]
}

// TestServeVerify: serve's Verify button reads a finished batch's
// contacts back from the CRM with the CRM key serve was given, with its
// in-process workers (--workers) or without them, and writes drift.csv
// to --out/<batch id>/; a serve without the key says which setting Verify
// needs.
func TestServeVerify(t *testing.T) {
	t.Parallel()
	const token = "serve-verify-token-0123456789"
	sim, simURL := startSim(t, simulator.Options{APIKey: secKey, Members: simulator.GenerateMembers(3)})
	target := newRedisTarget(t)
	base := append([]string{"--token", token, "--api-url", simURL}, target.flags()...)
	out := t.TempDir()
	withWorkers := startServe(t, append(slices.Clone(base), "--api-key", secKey, "--workers", "2", "--out", out)...)
	without := startServe(t, append(slices.Clone(base), "--api-key", secKey, "--out", out)...)
	keyless := startServe(t, base...)

	client := &http.Client{Timeout: 30 * time.Second}
	call := func(method, url string, body io.Reader, h http.Header, want int) []byte {
		t.Helper()
		req, err := http.NewRequest(method, url, body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header = h.Clone()
		if req.Header == nil {
			req.Header = http.Header{}
		}
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		data, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(data), secKey) {
			t.Errorf("%s %s: the answer carries the API key", method, url)
		}
		if res.StatusCode != want {
			t.Fatalf("%s %s: %d, want %d: %s", method, url, res.StatusCode, want, data)
		}
		return data
	}
	c1, c2, m1, m2 := simulator.ContactID(1), simulator.ContactID(2), simulator.MemberID(1), simulator.MemberID(2)
	file := "aiContactId,teamMemberId,removeExistingAgents\n" + c1 + "," + m1 + ",true\n" + c2 + "," + m2 + ",false\n"
	var up struct{ BatchID string }
	if err := json.Unmarshal(call("POST", withWorkers+"/api/v1/batches", strings.NewReader(file), http.Header{"Content-Type": {"text/csv"}}, http.StatusCreated), &up); err != nil {
		t.Fatal(err)
	}
	batch := "/api/v1/batches/" + up.BatchID
	waitUntil(t, 30*time.Second, "the batch is done", func() bool {
		var b struct{ Status string }
		_ = json.Unmarshal(call("GET", withWorkers+batch, nil, nil, http.StatusOK), &b)
		return b.Status == "done"
	})

	type verification struct {
		Status            string
		Contacts, Drifted int
		Error             string
		Drift             []struct{ AIContactID string }
	}
	verify := func(srv string) verification {
		t.Helper()
		call("POST", srv+batch+"/verify", nil, nil, http.StatusAccepted)
		var v verification
		waitUntil(t, 30*time.Second, "the verify ends", func() bool {
			_ = json.Unmarshal(call("GET", srv+batch+"/verify", nil, nil, http.StatusOK), &v)
			return v.Status != "running"
		})
		return v
	}
	if v := verify(withWorkers); v.Status != "done" || v.Contacts != 2 || v.Drifted != 0 {
		t.Errorf("serve --workers: verify of the clean batch %+v, want done, 2 contacts, no drift", v)
	}

	// Contact 2 loses its agent behind bulkassign's back.
	req, err := http.NewRequest("DELETE", simURL+"/_control/contacts/"+c2+"/agents/"+m2, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(worker.DefaultKeyHeader, secKey)
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK || len(sim.Agents(c2)) != 0 {
		t.Fatalf("simulator control: %s, contact 2 has %v", res.Status, sim.Agents(c2))
	}
	if v := verify(without); v.Status != "done" || v.Drifted != 1 || len(v.Drift) != 1 || v.Drift[0].AIContactID != c2 {
		t.Errorf("serve without workers: verify after the change %+v, want contact 2 drifted", v)
	}
	drift, err := os.ReadFile(filepath.Join(report.Dir(out, up.BatchID), report.DriftFile))
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(string(drift)), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[1], c2+","+m2+",,"+m2+",,contains,") {
		t.Errorf("--out/<id>/drift.csv:\n%s", drift)
	}

	// Without the key Verify is refused, naming the setting.
	var e struct{ Error string }
	_ = json.Unmarshal(call("POST", keyless+batch+"/verify", nil, nil, http.StatusBadRequest), &e)
	if !strings.Contains(e.Error, "BULKASSIGN_API_KEY") {
		t.Errorf("serve without --api-key: verify answered %q, want it to name BULKASSIGN_API_KEY", e.Error)
	}
}
