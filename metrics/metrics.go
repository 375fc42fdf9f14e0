// Package metrics is the Prometheus metrics of the processes that call the
// CRM, serve (with --workers) and worker, on a registry of their own, and
// the health endpoints of a worker process.
package metrics

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/worker"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the Prometheus metrics of one process, on a registry of
// their own (never the global default one).
type Metrics struct {
	reg      *prometheus.Registry
	calls    *prometheus.CounterVec
	latency  prometheus.Histogram
	waits    prometheus.Counter
	slotWait prometheus.Histogram
	rows     *prometheus.CounterVec
	inFlight *prometheus.GaugeVec
}

// New returns the metrics on a new registry, with the Go and process
// collectors. Feed them with Observe and Settled (worker.HandlerOptions),
// Limiter and InFlight.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bulkassign_api_calls_total",
			Help: "CRM API calls made by this process's workers, by outcome (ok, permanent, unauthorized, rate_limited, transient) and HTTP status (none: no answer).",
		}, []string{"outcome", "status"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "bulkassign_api_call_duration_seconds",
			Help:    "Duration of CRM API calls made by this process's workers.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		waits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bulkassign_rate_limit_waits_total",
			Help: "Times the CRM answered 429 and the workers had to wait and slow down.",
		}),
		slotWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "bulkassign_rate_slot_wait_seconds",
			Help:    "Time each call waited for a slot of --rate (the pace shared by all workers) before it was sent.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bulkassign_rows_total",
			Help: "Rows whose final result this process's calls decided, by result (succeeded, failed, dead_lettered); rows never sent because an earlier row of their contact failed are not counted here.",
		}, []string{"result"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "bulkassign_tasks_in_flight",
			Help: "Tasks this process is running, by type.",
		}, []string{"type"}),
	}
	// Series with a fixed set of labels show from the start, at 0.
	for _, r := range []string{"succeeded", "failed", "dead_lettered"} {
		m.rows.WithLabelValues(r)
	}
	for _, t := range []string{jobs.TypeAssign, jobs.TypePlan} {
		m.inFlight.WithLabelValues(t)
	}
	m.reg.MustRegister(m.calls, m.latency, m.waits, m.slotWait, m.rows, m.inFlight,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Observe records one API call; it has the signature of
// worker.HandlerOptions.Observe. A call not sent (the key had been refused
// before) is not one.
func (m *Metrics) Observe(out worker.Outcome, took time.Duration) {
	if out.NotSent {
		return
	}
	status := "none"
	if out.HTTPStatus != 0 {
		status = strconv.Itoa(out.HTTPStatus)
	}
	m.calls.WithLabelValues(outcomeName(out.Kind), status).Inc()
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

// Settled records a row's final result; it has the signature of
// worker.HandlerOptions.Settled.
func (m *Metrics) Settled(res jobs.Result, dead bool) {
	result := string(res.Status)
	if dead {
		result = "dead_lettered"
	}
	m.rows.WithLabelValues(result).Inc()
}

// Limiter returns l timing every wait that ends with a slot for a call.
func (m *Metrics) Limiter(l worker.Limiter) worker.Limiter { return timedLimiter{l, m.slotWait} }

type timedLimiter struct {
	worker.Limiter
	waited prometheus.Histogram
}

func (t timedLimiter) Wait(ctx context.Context) error {
	start := time.Now()
	if err := t.Limiter.Wait(ctx); err != nil {
		return err
	}
	t.waited.Observe(time.Since(start).Seconds())
	return nil
}

// InFlight is asynq middleware (ServeMux.Use) that counts the tasks
// running in this process.
func (m *Metrics) InFlight(next asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		g := m.inFlight.WithLabelValues(t.Type())
		g.Inc()
		defer g.Dec()
		return next.ProcessTask(ctx, t)
	})
}

// Register adds a collector of the process's own, such as serve's batch
// progress, to the registry.
func (m *Metrics) Register(c prometheus.Collector) error { return m.reg.Register(c) }

// Handler serves the metrics in Prometheus's exposition format.
func (m *Metrics) Handler() http.Handler { return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}) }
