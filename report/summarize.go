package report

import (
	"context"

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
	s := summaryOf(b)
	if unsent := b.Rows - b.Done(); unsent > 0 {
		s.Failed += unsent
		s.Errors[NotProcessed] += unsent
	}
	return s, nil
}
