package metrics_test

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/bulkassign/bulkassign/internal/redistest"
	"github.com/bulkassign/bulkassign/metrics"
	"github.com/bulkassign/bulkassign/simulator"
	"github.com/redis/go-redis/v9"
)

// get asks h for path and returns the status and the body.
func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	res, err := srv.Client().Get(srv.URL + path)
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

// want fails unless h answers path with status and a body that begins
// with prefix, on one line.
func want(t *testing.T, h http.Handler, path string, status int, prefix string) {
	t.Helper()
	code, body := get(t, h, path)
	if code != status || !strings.HasPrefix(body, prefix) || strings.Count(body, "\n") != 1 || !strings.HasSuffix(body, "\n") {
		t.Errorf("%s: %d %q, want %d and one line beginning %q", path, code, body, status, prefix)
	}
}

func TestReadyWhileRedisAnswersAndTheKeyIsAccepted(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, redistest.Options{})
	opt, err := redis.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { _ = rdb.Close() })
	crm := sim(t, simulator.Options{APIKey: "k"})
	c := client(t, crm, "wrong")
	m := metrics.New()
	h := metrics.NewHandler(m, metrics.Probes{Redis: rdb, Refused: c.Refused()})

	want(t, h, "/healthz", http.StatusOK, "ok")
	want(t, h, "/readyz", http.StatusOK, "ok")

	srv.Stop()
	want(t, h, "/readyz", http.StatusServiceUnavailable, "not ready: redis: ")
	want(t, h, "/healthz", http.StatusOK, "ok")
	srv.Restart(t)
	want(t, h, "/readyz", http.StatusOK, "ok")

	m.Observe(c.Assign(t.Context(), "c-1", "m-1", false), time.Millisecond)
	want(t, h, "/readyz", http.StatusServiceUnavailable, "not ready: the CRM refused the API key")
	want(t, h, "/healthz", http.StatusOK, "ok")
	if code, body := get(t, h, "/metrics"); code != http.StatusOK || !strings.Contains(body, `bulkassign_api_calls_total{outcome="unauthorized",status="401"} 1`+"\n") {
		t.Errorf("/metrics: %d, want the refused call:\n%s", code, body)
	}
}

func TestReadyGivesUpOnASilentRedis(t *testing.T) {
	t.Parallel()
	// A server that takes connections and never answers: go-redis would
	// wait its ReadTimeout (3s) for the PING.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
		}
	}()
	rdb := redis.NewClient(&redis.Options{Addr: ln.Addr().String()})
	t.Cleanup(func() { _ = rdb.Close() })
	h := metrics.NewHandler(metrics.New(), metrics.Probes{Redis: rdb, Timeout: 200 * time.Millisecond})

	start := time.Now()
	want(t, h, "/readyz", http.StatusServiceUnavailable, "not ready: redis: no answer to PING within 200ms")
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("/readyz took %s with a timeout of 200ms", took)
	}
}
