package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/redis/go-redis/v9"
)

// Progress over time: every SampleEvery the server reads the counters of
// the recent batches that are not finished and appends a sample to a
// capped Redis list per batch, plus one last sample once a batch ends, so
// that a page opened late still draws the whole run (and any serve
// process draws the same picture):
//
//	NS:serve:progress:<id>  list of "<unix ms> <succeeded> <failed> <invalid>"

func (s *Server) progressKey(id string) string { return s.deps.Queue + ":serve:progress:" + id }

// DefaultSampleEvery is how often the progress of running batches is
// sampled.
const DefaultSampleEvery = 5 * time.Second

// maxSamples caps a batch's samples: 2000 at 5 s is close to 3 hours;
// a longer run shows its last 3 hours.
const maxSamples = 2000

// Sample is the counters of a batch at one time.
type Sample struct {
	Time      time.Time `json:"t"`
	Succeeded int64     `json:"succeeded"`
	Failed    int64     `json:"failed"`
	Invalid   int64     `json:"invalid"`
}

func (x Sample) sent() int64 { return x.Succeeded + x.Failed }

func (x Sample) encode() string {
	return fmt.Sprintf("%d %d %d %d", x.Time.UnixMilli(), x.Succeeded, x.Failed, x.Invalid)
}

func decodeSample(v string) (Sample, bool) {
	f := strings.Fields(v)
	if len(f) != 4 {
		return Sample{}, false
	}
	var n [4]int64
	for i := range f {
		var err error
		if n[i], err = strconv.ParseInt(f[i], 10, 64); err != nil {
			return Sample{}, false
		}
	}
	return Sample{Time: time.UnixMilli(n[0]), Succeeded: n[1], Failed: n[2], Invalid: n[3]}, true
}

// sampleLoop samples until ctx ends.
func (s *Server) sampleLoop(ctx context.Context) {
	t := time.NewTicker(s.opts.SampleEvery)
	defer t.Stop()
	for {
		if err := s.sampleOnce(ctx); err != nil && ctx.Err() == nil {
			s.deps.Logger.Warn("sample batch progress", slog.Any("error", err))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sampleOnce appends a sample to every recent batch that is running or
// paused, and a last one to a batch that ended since its last sample.
func (s *Server) sampleOnce(ctx context.Context) error {
	ids, err := s.deps.Store.IDs(ctx)
	if err != nil {
		return err
	}
	ids = ids[:min(len(ids), s.opts.Recent)]
	var bs []jobs.Batch
	for _, id := range ids {
		b, err := s.deps.Store.Get(ctx, id)
		if errors.Is(err, jobs.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if b.Status != jobs.BatchImporting && b.Status != jobs.BatchAbandoned {
			bs = append(bs, b)
		}
	}
	if len(bs) == 0 {
		return nil
	}
	pipe := s.deps.Redis.Pipeline()
	last := make([]*redis.StringCmd, len(bs))
	for i, b := range bs {
		last[i] = pipe.LIndex(ctx, s.progressKey(b.ID), -1)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("read progress samples: %w", err)
	}
	now := s.opts.Now()
	pipe = s.deps.Redis.Pipeline()
	n := 0
	for i, b := range bs {
		x := Sample{Time: now, Succeeded: b.Succeeded, Failed: b.Failed, Invalid: b.Invalid}
		prev, had := decodeSample(last[i].Val())
		if jobs.Finished(b.Status) {
			if had && prev.Succeeded == x.Succeeded && prev.Failed == x.Failed && prev.Invalid == x.Invalid {
				continue // its last sample is in
			}
			if !b.FinishedAt.IsZero() {
				x.Time = b.FinishedAt
			}
			if had && !x.Time.After(prev.Time) {
				// A sample of the last moments before the end was taken
				// after the end: the end comes just after it.
				x.Time = prev.Time.Add(time.Millisecond)
			}
		}
		if had && !x.Time.After(prev.Time) {
			continue
		}
		if !had && !b.StartedAt.IsZero() && b.StartedAt.Before(x.Time) {
			// The first sample is the start: the chart begins at zero.
			pipe.RPush(ctx, s.progressKey(b.ID), Sample{Time: b.StartedAt, Invalid: b.Invalid}.encode())
		}
		key := s.progressKey(b.ID)
		pipe.RPush(ctx, key, x.encode())
		pipe.LTrim(ctx, key, -maxSamples, -1)
		if ttl := s.infoTTL(); ttl > 0 {
			pipe.Expire(ctx, key, ttl)
		}
		n++
	}
	if n == 0 {
		return nil
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("write progress samples: %w", err)
	}
	return nil
}

// Progress is the answer to GET /api/v1/batches/{id}/progress.
type Progress struct {
	BatchID string `json:"batchId"`
	// Samples are the batch's counters over time, at most 200 of them
	// evenly spread over the run.
	Samples []Sample `json:"samples"`
	// Rates are the rows sent per second between one sample and the next,
	// timed at the later one.
	Rates []Rate `json:"rates"`
	// RowsPerSecond is the recent pace (the last minute of samples), and
	// ETASeconds the time left at that pace; null when unknown or ended.
	RowsPerSecond float64  `json:"rowsPerSecond"`
	ETASeconds    *float64 `json:"etaSeconds"`
	// SampleEverySeconds is the sampling interval.
	SampleEverySeconds float64 `json:"sampleEverySeconds"`
}

// Rate is the pace between two samples.
type Rate struct {
	Time          time.Time `json:"t"`
	RowsPerSecond float64   `json:"rowsPerSecond"`
}

// maxChartPoints bounds the samples an answer carries.
const maxChartPoints = 200

func (s *Server) progress(w http.ResponseWriter, r *http.Request) {
	b, ok := s.batch(w, r)
	if !ok {
		return
	}
	vals, err := s.deps.Redis.LRange(r.Context(), s.progressKey(b.ID), 0, -1).Result()
	if err != nil {
		s.internal(w, "read progress", err)
		return
	}
	var all []Sample
	for _, v := range vals {
		if x, ok := decodeSample(v); ok && (len(all) == 0 || x.Time.After(all[len(all)-1].Time)) {
			all = append(all, x)
		}
	}
	now := s.opts.Now()
	if !jobs.Finished(b.Status) && b.Status != jobs.BatchImporting {
		// The counters as they are now end the picture.
		x := Sample{Time: now, Succeeded: b.Succeeded, Failed: b.Failed, Invalid: b.Invalid}
		if len(all) == 0 || x.Time.After(all[len(all)-1].Time) {
			all = append(all, x)
		}
	}
	out := Progress{BatchID: b.ID, Samples: thin(all, maxChartPoints), Rates: []Rate{}, SampleEverySeconds: s.opts.SampleEvery.Seconds()}
	for i := 1; i < len(out.Samples); i++ {
		a, c := out.Samples[i-1], out.Samples[i]
		if dt := c.Time.Sub(a.Time).Seconds(); dt > 0 {
			out.Rates = append(out.Rates, Rate{Time: c.Time, RowsPerSecond: float64(c.sent()-a.sent()) / dt})
		}
	}
	if b.Status == jobs.BatchRunning && len(all) > 1 {
		end := all[len(all)-1]
		from := all[0]
		for i := len(all) - 2; i >= 0; i-- {
			from = all[i]
			if end.Time.Sub(all[i].Time) >= time.Minute {
				break
			}
		}
		if dt := end.Time.Sub(from.Time).Seconds(); dt > 0 {
			out.RowsPerSecond = float64(end.sent()-from.sent()) / dt
		}
		if pending := b.Rows - b.Done(); out.RowsPerSecond > 0 && pending > 0 {
			eta := float64(pending) / out.RowsPerSecond
			out.ETASeconds = &eta
		}
	}
	if out.Samples == nil {
		out.Samples = []Sample{}
	}
	writeJSON(w, http.StatusOK, out)
}

// thin keeps at most n samples, evenly spread, always the first and last.
func thin(all []Sample, n int) []Sample {
	if len(all) <= n {
		return all
	}
	out := make([]Sample, 0, n)
	for i := range n {
		out = append(out, all[i*(len(all)-1)/(n-1)])
	}
	return out
}
