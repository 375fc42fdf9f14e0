package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// redisOutage is how long watch keeps trying while Redis does not answer
// (a restart, a failover) before it gives up.
const redisOutage = time.Minute

// errBatchLost means the batch record vanished from Redis while it was
// being watched: the ledger is gone, no report can be written.
var errBatchLost = errors.New("batch lost in Redis")

// watchEvery is how often watch reads the batch: the command ends within
// that time of the batch's last row.
const watchEvery = 50 * time.Millisecond

// watch follows a batch until it is finished or stopped for a bad API key,
// showing progress: a bar on a terminal, a line every `every` otherwise.
// It returns the batch as last read; an error if ctx ended, Redis did not
// answer for redisOutage, or the batch vanished from Redis (errBatchLost).
func watch(ctx context.Context, store *jobs.Store, id string, w io.Writer, every time.Duration) (jobs.Batch, error) {
	show := newProgress(w, every)
	tick := time.NewTicker(watchEvery)
	defer tick.Stop()
	last, seen := jobs.Batch{ID: id}, false
	var failingSince time.Time
	for {
		b, err := store.Get(ctx, id)
		switch {
		case err == nil:
			failingSince = time.Time{}
		case ctx.Err() != nil:
			return last, interrupted(ctx, id)
		case errors.Is(err, jobs.ErrNotFound) && seen:
			return last, fmt.Errorf("batch %s not found in Redis: it was lost (Redis restarted without persistence, or its keys were deleted); "+
				"%d of %d rows had been reported before (%d succeeded, %d failed, %d invalid), the results of all %d are unknown now "+
				"and no report can be written; the calls are idempotent: run the whole file again: %w",
				id, last.Done(), last.Rows, last.Succeeded, last.Failed, last.Invalid, last.Rows, errBatchLost)
		case errors.Is(err, jobs.ErrNotFound):
			return last, err
		default:
			// Redis does not answer: the workers ride out a restart, and
			// so does the watch, for a while.
			if failingSince.IsZero() {
				failingSince = time.Now()
				fmt.Fprintf(w, "redis: %v; trying again for up to %s\n", err, redisOutage)
			} else if time.Since(failingSince) > redisOutage {
				return last, fmt.Errorf("%w (Redis did not answer for %s)", err, redisOutage)
			}
		}
		if err == nil {
			last, seen = b, true
			show(b)
			if jobs.Finished(b.Status) || (b.Status == jobs.BatchPaused && b.PauseCode == jobs.PauseUnauthorized) {
				return b, nil
			}
		}
		select {
		case <-ctx.Done():
			return last, interrupted(ctx, id)
		case <-tick.C:
		}
	}
}

func interrupted(ctx context.Context, id string) error {
	return fmt.Errorf("batch %s interrupted (%v) before it finished", id, context.Cause(ctx))
}

// newProgress returns the function that shows a batch's progress.
func newProgress(w io.Writer, every time.Duration) func(jobs.Batch) {
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		var bar *progressbar.ProgressBar
		return func(b jobs.Batch) {
			if bar == nil {
				bar = progressbar.NewOptions64(b.Rows,
					progressbar.OptionSetWriter(w),
					progressbar.OptionSetDescription("applying"),
					progressbar.OptionShowCount(),
					progressbar.OptionShowIts(),
					progressbar.OptionSetItsString("rows"),
					progressbar.OptionThrottle(100*time.Millisecond),
					progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
				)
			}
			_ = bar.Set64(b.Done())
		}
	}
	var last time.Time
	var lastDone int64
	return func(b jobs.Batch) {
		now := time.Now()
		finished := jobs.Finished(b.Status)
		if !finished && now.Sub(last) < every {
			return
		}
		rate := ""
		if !last.IsZero() {
			rate = fmt.Sprintf(", %.0f rows/s", float64(b.Done()-lastDone)/now.Sub(last).Seconds())
		}
		if d, ok := eta(b, now); ok && !finished {
			rate += ", ETA " + d.String()
		}
		fmt.Fprintf(w, "progress: %d/%d rows (%.0f%%): %d succeeded, %d failed, %d invalid%s\n",
			b.Done(), b.Rows, b.Percent(), b.Succeeded, b.Failed, b.Invalid, rate)
		last, lastDone = now, b.Done()
	}
}

// eta is how long the rows not yet done take at the batch's pace since it
// started, to the second; false while no pace is known. serve's API
// computes its ETA the same way.
func eta(b jobs.Batch, now time.Time) (time.Duration, bool) {
	pace := b.RowsPerSecond(now)
	left := b.Rows - b.Done()
	if pace <= 0 || left <= 0 {
		return 0, false
	}
	return time.Duration(float64(left) / pace * float64(time.Second)).Round(time.Second), true
}
