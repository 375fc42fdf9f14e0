package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// watch follows a batch until it is finished or stopped for a bad API key,
// showing progress: a bar on a terminal, a line every `every` otherwise.
// It returns the batch as last read; an error only if ctx ended or Redis
// failed.
func watch(ctx context.Context, store *jobs.Store, id string, w io.Writer, every time.Duration) (jobs.Batch, error) {
	show := newProgress(w, every)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		b, err := store.Get(ctx, id)
		if err != nil {
			if ctx.Err() != nil {
				return jobs.Batch{ID: id}, interrupted(ctx, id)
			}
			return jobs.Batch{ID: id}, err
		}
		show(b)
		if jobs.Finished(b.Status) || (b.Status == jobs.BatchPaused && b.PauseCode == jobs.PauseUnauthorized) {
			return b, nil
		}
		select {
		case <-ctx.Done():
			return b, interrupted(ctx, id)
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
		fmt.Fprintf(w, "progress: %d/%d rows (%.0f%%): %d succeeded, %d failed, %d invalid%s\n",
			b.Done(), b.Rows, b.Percent(), b.Succeeded, b.Failed, b.Invalid, rate)
		last, lastDone = now, b.Done()
	}
}
