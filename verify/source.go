package verify

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/bulkassign/bulkassign/importer"
	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/worker"
)

// FromBatch is the end state the succeeded rows of a batch applied, read
// from its ledger: one expectation per contact with a succeeded row, in
// the order of its first one. A contact's succeeded rows come before its
// first row that did not succeed (that row stopped it), so they are what
// the CRM was left with, whatever the batch's status. ErrNotFound (jobs)
// when the batch is gone.
func FromBatch(ctx context.Context, store *jobs.Store, id string) ([]Expectation, error) {
	var exps []Expectation
	at := map[string]int{}
	for e, err := range store.Entries(ctx, id) {
		if err != nil {
			return nil, err
		}
		if e.Result.Status != jobs.StatusSucceeded {
			continue
		}
		i, ok := at[e.Row.ContactID]
		if !ok {
			i = len(exps)
			at[e.Row.ContactID] = i
			exps = append(exps, Expectation{Contact: e.Row.ContactID})
		}
		exps[i].apply(e.Row.MemberID, e.Row.Replace)
	}
	if len(exps) == 0 {
		// No rows at all is a batch that is gone (or was never imported);
		// a batch without a succeeded row has nothing to verify.
		if _, err := store.Get(ctx, id); err != nil {
			return nil, err
		}
	}
	return exps, nil
}

// FileInfo is what FromFile read.
type FileInfo struct {
	Rows, Valid, Invalid int
	// Stopped counts the contacts with an invalid row: they are expected
	// in the state of their rows before it, as an import would leave them.
	Stopped int
}

// FromFile is the end state the rows dec reads describe, applied in file
// order as an import would apply them: a contact's rows up to its first
// invalid row. The whole file is read first; a *importer.FileError ends
// it. A row that names its member only by email cannot be verified from
// the file (the member list resolves it at import): verify the batch by
// its id instead.
func FromFile(dec *importer.Decoder) ([]Expectation, FileInfo, error) {
	var info FileInfo
	plan := importer.NewPlan()
	stopped := map[string]bool{}
	for {
		row, err := dec.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, info, err
		}
		info.Rows++
		if !row.Valid() {
			info.Invalid++
			stopped[row.ContactID] = true
		} else if row.MemberID == "" {
			return nil, info, fmt.Errorf("line %d names its member by email (%s): verify reads member ids only; verify the batch that imported the file by its id instead", row.Line, row.MemberEmail)
		}
		plan.Add(&row)
	}
	info.Valid = info.Rows - info.Invalid
	var exps []Expectation
	for c := range plan.All() {
		if stopped[c.ID] {
			info.Stopped++
		}
		exps = append(exps, Expect(c.ID, c.Ops))
	}
	return exps, info, nil
}

// Batch verifies a batch: FromBatch, then Check. It is what a "Verify"
// button of a finished batch calls.
func Batch(ctx context.Context, store *jobs.Store, client *worker.Client, limiter worker.Limiter, id string, opts Options) (Summary, []Drift, error) {
	exps, err := FromBatch(ctx, store, id)
	if err != nil {
		return Summary{Batch: id}, nil, err
	}
	sum, drifts, err := Check(ctx, client, limiter, exps, opts)
	sum.Batch = id
	return sum, drifts, err
}
