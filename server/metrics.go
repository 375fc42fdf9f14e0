package server

import (
	"context"
	"errors"
	"time"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/worker"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the Prometheus metrics serve exposes at /metrics, on a
// registry of their own (never the global default one).
type Metrics struct {
	reg     *prometheus.Registry
	calls   *prometheus.CounterVec
	latency prometheus.Histogram
	waits   prometheus.Counter
}

// NewMetrics returns the call metrics on a new registry, with the Go and
// process collectors. Pass its Observe to worker.HandlerOptions.Observe.
func NewMetrics() *Metrics {
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

// batchCollector reads the progress of recent batches from the store on
// every scrape, so the gauge is right whichever process did the work.
type batchCollector struct {
	store  *jobs.Store
	recent int
	desc   *prometheus.Desc
}

func newBatchCollector(store *jobs.Store, recent int) *batchCollector {
	return &batchCollector{
		store:  store,
		recent: recent,
		desc: prometheus.NewDesc("bulkassign_batch_rows",
			"Rows of recent batches by status (succeeded, failed, invalid, pending).",
			[]string{"batch", "status"}, nil),
	}
}

func (c *batchCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *batchCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ids, err := c.store.IDs(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	n := 0
	for _, id := range ids {
		if n == c.recent {
			break
		}
		b, err := c.store.Get(ctx, id)
		if errors.Is(err, jobs.ErrNotFound) {
			continue // expired after its retention
		}
		if err != nil {
			ch <- prometheus.NewInvalidMetric(c.desc, err)
			return
		}
		n++
		for status, v := range map[string]int64{
			"succeeded": b.Succeeded, "failed": b.Failed, "invalid": b.Invalid, "pending": max(b.Rows-b.Done(), 0),
		} {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(v), id, status)
		}
	}
}
