package report

import (
	"context"
	"fmt"
	"maps"

	"github.com/bulkassign/bulkassign/jobs"
)

// NotProcessed is the reason code of a row that had no result when the
// report was written: the batch was stopped before it was sent.
const NotProcessed = "not_processed"

// summaryOf is the summary of batch b as its record has it.
func summaryOf(b jobs.Batch) Summary {
	s := Summary{
		BatchID: b.ID, Name: b.Name, Source: b.Source, Status: b.Status,
		Rows: b.Rows, Succeeded: b.Succeeded, Failed: b.Failed, Invalid: b.Invalid,
		APICalls: b.APICalls, Retries: b.Retries, RateLimited: b.RateLimited,
		StartedAt: b.StartedAt, FinishedAt: b.FinishedAt, Errors: maps.Clone(b.Errors),
	}
	if s.Errors == nil {
		s.Errors = map[string]int64{}
	}
	if !b.Origin.IsZero() {
		s.Origin = &b.Origin
	}
	if !s.FinishedAt.IsZero() {
		s.DurationSeconds = s.FinishedAt.Sub(s.StartedAt).Seconds()
	}
	return s
}

// WriteBatch writes the report of a batch from its ledger into dir. Rows
// still without a result (an interrupted or cancelled batch) are reported
// as failed with reason not_processed, and counted so in the summary, so
// the files and summary.json always add up to the batch's rows. A batch
// that recorded its contacts' previous agents also gets RollbackFile and
// RollbackUnrestorableFile.
func WriteBatch(ctx context.Context, store *jobs.Store, id, dir string) (Summary, error) {
	b, err := store.Get(ctx, id)
	if err != nil {
		return Summary{}, err
	}
	s := summaryOf(b)
	rb, err := newRollback(ctx, store, id, dir)
	if err != nil {
		return s, err
	}
	defer rb.cleanup()
	s.RollbackUnrestorable = rb.unrestorableCount()
	why := fmt.Sprintf("not processed: the batch was %s before this row was sent", b.Status)
	if !jobs.Finished(b.Status) {
		why = fmt.Sprintf("not processed yet: the batch is %s; `bulkassign report --wait` waits for it to finish", b.Status)
	}
	// The counts are those of the rows as the files get them, not as Get
	// read them: workers may record rows of a running (or just cancelled)
	// batch while the files are written, and summary.json must describe
	// its files.
	var counts [3]int64 // succeeded, failed, invalid
	reasons := map[string]int64{}
	entries := func(yield func(Entry, error) bool) {
		for e, err := range store.Entries(ctx, id) {
			if err == nil && e.Result.Status == "" && e.Row.Valid() {
				e.Result = jobs.Result{Status: jobs.StatusFailed, Reason: NotProcessed, Error: why}
			}
			if err == nil {
				switch e.Result.Status {
				case jobs.StatusSucceeded:
					counts[0]++
				case jobs.StatusFailed:
					counts[1]++
				case jobs.StatusInvalid:
					counts[2]++
				}
				if e.Result.Reason != "" {
					reasons[e.Result.Reason]++
				}
			}
			if !yield(e, err) {
				return
			}
		}
	}
	summary := func() Summary {
		s.Succeeded, s.Failed, s.Invalid, s.Errors = counts[0], counts[1], counts[2], reasons
		return s
	}
	if err := write(dir, summary, b.Extras, rb.entries(entries)); err != nil {
		return s, fmt.Errorf("write report of batch %s: %w", id, err)
	}
	return s, nil
}
