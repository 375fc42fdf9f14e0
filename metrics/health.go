package metrics

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Probes are what a worker's /readyz checks.
type Probes struct {
	// Redis holds the queue; it must answer a PING within Timeout.
	Redis redis.UniversalClient
	// Refused is closed once the CRM refused the API key
	// (worker.Client.Refused); nil when there is no key to refuse.
	Refused <-chan struct{}
	// Timeout bounds the PING; default 2s.
	Timeout time.Duration
}

// NewHandler returns the HTTP handler of a worker process's
// --metrics-addr: /metrics; /healthz, 200 while the process answers; and
// /readyz, 200 while Redis answers and the CRM has not refused the key,
// else 503 with the reason on one line.
func NewHandler(m *Metrics, p Probes) http.Handler {
	if p.Timeout <= 0 {
		p.Timeout = 2 * time.Second
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		plain(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := p.ready(r.Context()); err != nil {
			plain(w, http.StatusServiceUnavailable, "not ready: "+strings.Join(strings.Fields(err.Error()), " "))
			return
		}
		plain(w, http.StatusOK, "ok")
	})
	return mux
}

// ready says why the process cannot do its work, if it cannot.
func (p Probes) ready(ctx context.Context) error {
	select {
	case <-p.Refused:
		return errors.New("the CRM refused the API key")
	default:
	}
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	// go-redis bounds a read by its ReadTimeout, not by the context: the
	// answer is awaited here, so the probe ends on time whatever the
	// client's settings.
	pinged := make(chan error, 1)
	go func() { pinged <- p.Redis.Ping(ctx).Err() }()
	select {
	case err := <-pinged:
		if err != nil {
			return fmt.Errorf("redis: %w", err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("redis: no answer to PING within %s", p.Timeout)
	}
}

func plain(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	fmt.Fprintln(w, msg)
}
