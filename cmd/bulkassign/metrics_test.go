package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/simulator"
)

// metricsAddrRE finds the address a worker's metrics server listens on in
// its log.
var metricsAddrRE = regexp.MustCompile(`msg="serving metrics and health checks" addr=(\S+)`)

// metricsURL waits for the worker to log its metrics address and returns
// its base URL.
func metricsURL(t *testing.T, logs *syncBuffer) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if m := metricsAddrRE.FindStringSubmatch(logs.String()); m != nil {
			return "http://" + m[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("the worker logged no metrics address within 10s:\n%s", logs.String())
		}
		<-tick.C
	}
}

// httpGet returns the status and body of a GET of url.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	res, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, string(body)
}

// samples reads a Prometheus text exposition into name{labels} -> value.
func samples(t *testing.T, text string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

func TestWorkerMetricsAddr(t *testing.T) {
	t.Parallel()
	good := oneEach("w", 40)
	contacts := make([]string, len(good))
	for i, r := range good {
		contacts[i] = r.contact
	}
	// Some known contacts' calls fail more often than a row's 2 attempts
	// (dead letters); unknown contacts answer 404.
	d := newDist(t, simulator.Options{Contacts: contacts, Transient: 0.2, TransientAttempts: 5, Latency: 20 * time.Millisecond})
	const unknown = 3
	rows := append(good, oneEach("x", unknown)...)
	id := d.importRows(t, "watched.csv", rows)
	logs, _ := d.startWorkerLog(t, "--metrics-addr", "127.0.0.1:0", "--max-attempts", "2", "--retry-base", "10ms", "--retry-max", "50ms")
	base := metricsURL(t, logs)

	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := httpGet(t, base+path); code != http.StatusOK || body != "ok\n" {
			t.Errorf("%s: %d %q, want 200 ok", path, code, body)
		}
	}
	inFlight := `bulkassign_tasks_in_flight{type="` + jobs.TypeAssign + `"}`
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, body := httpGet(t, base+"/metrics"); samples(t, body)[inFlight] > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no assign task in flight seen in /metrics within 10s")
		}
	}
	if r := runCLI(t, nil, "healthcheck", base+"/readyz"); r.code != exitOK || r.stdout != "ok\n" {
		t.Errorf("healthcheck of /readyz: exit %d (%s), stdout %q", r.code, r.errText(), r.stdout)
	}
	b := d.waitBatch(t, id, 30*time.Second, "done", func(b jobs.Batch) bool { return b.Status == jobs.BatchDone })
	dead := b.Failed - unknown
	if b.Succeeded == 0 || dead <= 0 || b.Errors["http_404"] != unknown {
		t.Fatalf("batch %+v: want rows succeeded, %d failed with 404 and some dead-lettered", b, unknown)
	}

	// A task returns just after its last write to the ledger.
	var got map[string]float64
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := httpGet(t, base+"/metrics")
		if code != http.StatusOK {
			t.Fatalf("/metrics: %d %s", code, body)
		}
		got = samples(t, body)
		if got[inFlight] == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	calls := 0.0
	for k, v := range got {
		if strings.HasPrefix(k, "bulkassign_api_calls_total{") {
			calls += v
		}
	}
	for _, c := range []struct {
		name string
		got  float64
		want int64
	}{
		{"calls made", calls, b.APICalls},
		{"calls timed", got["bulkassign_api_call_duration_seconds_count"], b.APICalls},
		{"calls that waited for a rate slot", got["bulkassign_rate_slot_wait_seconds_count"], b.APICalls},
		{"calls answered 200", got[`bulkassign_api_calls_total{outcome="ok",status="200"}`], b.Succeeded},
		{"calls answered 404", got[`bulkassign_api_calls_total{outcome="permanent",status="404"}`], unknown},
		{"rows succeeded", got[`bulkassign_rows_total{result="succeeded"}`], b.Succeeded},
		{"rows failed", got[`bulkassign_rows_total{result="failed"}`], unknown},
		{"rows dead-lettered", got[`bulkassign_rows_total{result="dead_lettered"}`], dead},
		{"assign tasks in flight", got[inFlight], 0},
	} {
		if c.got != float64(c.want) {
			t.Errorf("%s: %s in /metrics, want %d", c.name, fmt.Sprint(c.got), c.want)
		}
	}
}

func TestHealthcheck(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, "not ready: redis: gone\nmore\n")
	}))
	t.Cleanup(srv.Close)
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{srv.URL + "/readyz"}, "HTTP 503: not ready: redis: gone"},
		{[]string{gone.URL + "/readyz"}, "connection refused"},
		{nil, "want one URL argument"},
	} {
		r := runCLI(t, nil, append([]string{"healthcheck"}, c.args...)...)
		if r.code != exitFatal || !strings.Contains(r.errText(), c.want) || strings.Contains(r.errText(), "more") {
			t.Errorf("healthcheck %v: exit %d (%s), want 1 and %q", c.args, r.code, r.errText(), c.want)
		}
	}
}
