// Package metrics is the Prometheus metrics of the processes that call the
// CRM: serve (with --workers) and worker (with --metrics-addr), on a
// registry of their own.
package metrics

import (
	"net/http"
	"time"

	"github.com/bulkassign/bulkassign/worker"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the Prometheus metrics of one process, on a registry of
// their own (never the global default one).
type Metrics struct {
	reg     *prometheus.Registry
	calls   *prometheus.CounterVec
	latency prometheus.Histogram
	waits   prometheus.Counter
}

// New returns the call metrics on a new registry, with the Go and
// process collectors. Pass its Observe to worker.HandlerOptions.Observe.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bulkassign_api_calls_total",
			Help: "CRM API calls made by this process's workers, by outcome (ok, permanent, unauthorized, rate_limited, transient).",
		}, []string{"outcome"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "bulkassign_api_call_duration_seconds",
			Help:    "Duration of CRM API calls made by this process's workers.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		waits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bulkassign_rate_limit_waits_total",
			Help: "Times the CRM answered 429 and the workers had to wait and slow down.",
		}),
	}
	for _, o := range []string{"ok", "permanent", "unauthorized", "rate_limited", "transient"} {
		m.calls.WithLabelValues(o) // show every outcome from the start, at 0
	}
	m.reg.MustRegister(m.calls, m.latency, m.waits,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Observe records one API call; it has the signature of
// worker.HandlerOptions.Observe.
func (m *Metrics) Observe(out worker.Outcome, took time.Duration) {
	m.calls.WithLabelValues(outcomeName(out.Kind)).Inc()
	m.latency.Observe(took.Seconds())
	if out.Kind == worker.RateLimited {
		m.waits.Inc()
	}
}

func outcomeName(k worker.Kind) string {
	switch k {
	case worker.OK:
		return "ok"
	case worker.Permanent:
		return "permanent"
	case worker.Unauthorized:
		return "unauthorized"
	case worker.RateLimited:
		return "rate_limited"
	}
	return "transient"
}

// Register adds a collector of the process's own, such as serve's batch
// progress, to the registry.
func (m *Metrics) Register(c prometheus.Collector) error { return m.reg.Register(c) }

// Handler serves the metrics in Prometheus's exposition format.
func (m *Metrics) Handler() http.Handler { return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}) }
