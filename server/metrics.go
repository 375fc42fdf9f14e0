package server

import (
	"context"
	"errors"
	"time"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/prometheus/client_golang/prometheus"
)

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
