package report

import (
	"context"
	"maps"

	"github.com/bulkassign/bulkassign/jobs"
)

// Summarize is a batch's summary.json as WriteBatch would write it now,
// from the batch record alone, without reading its rows: the rows not yet
// sent count as failed with reason not_processed. It is what a notice of
// the batch's end carries. Only rollbackUnrestorable, which needs every
// row, is left out.
func Summarize(ctx context.Context, store *jobs.Store, id string) (Summary, error) {
	b, err := store.Get(ctx, id)
	if err != nil {
		return Summary{}, err
	}
	s := Summary{
		BatchID: b.ID, Name: b.Name, Source: b.Source, Status: b.Status,
		Rows: b.Rows, Succeeded: b.Succeeded, Failed: b.Failed, Invalid: b.Invalid,
		APICalls: b.APICalls, Retries: b.Retries, RateLimited: b.RateLimited,
		StartedAt: b.StartedAt, FinishedAt: b.FinishedAt, Errors: maps.Clone(b.Errors),
	}
	if s.Errors == nil {
		s.Errors = map[string]int64{}
	}
	if !s.FinishedAt.IsZero() {
		s.DurationSeconds = s.FinishedAt.Sub(s.StartedAt).Seconds()
	}
	if unsent := b.Rows - b.Done(); unsent > 0 {
		s.Failed += unsent
		s.Errors[NotProcessed] += unsent
	}
	return s, nil
}
