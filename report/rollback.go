package report

import (
	"context"
	"encoding/csv"
	"fmt"
	"iter"
	"os"
	"path/filepath"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/gocarina/gocsv"
)

// Rollback files, written next to failed.csv for a batch that recorded its
// contacts' previous agents (imported with --record-previous).
//
// rollback.csv is an input file like any other: `bulkassign run
// rollback.csv` gives every contact the batch changed the agents it had
// before, in their order: the first with removeExistingAgents=true, the
// others added after it. A contact that had no agents cannot be restored
// (the API has no call that removes every agent): it goes to
// rollback-unrestorable.csv with the reason, and summary.json counts it in
// rollbackUnrestorable.
const (
	RollbackFile             = "rollback.csv"
	RollbackUnrestorableFile = "rollback-unrestorable.csv"
)

// Reasons a changed contact cannot be restored, as rollback-unrestorable.csv
// gives them.
const (
	UnrestorableNoAgents    = "had no agents before; the API cannot remove all agents"
	UnrestorableNotRecorded = "its agents before the batch were not recorded (the CRM did not know the contact when it was read)"
)

// rollbackRow is one row of rollback.csv, as gocsv writes it.
type rollbackRow struct {
	Contact cell `csv:"aiContactId"`
	Member  cell `csv:"teamMemberId"`
	Replace bool `csv:"removeExistingAgents"`
}

// unrestorableRow is one row of rollback-unrestorable.csv.
type unrestorableRow struct {
	Contact cell   `csv:"aiContactId"`
	Reason  string `csv:"reason"`
}

// cell is an id from the ledger or the CRM: gocsv writes it neutralised.
type cell string

// MarshalCSV keeps a spreadsheet from running the cell as a formula.
func (c cell) MarshalCSV() (string, error) { return neutralise(string(c)), nil }

// rollbackChunk is how many contacts' previous agents are read from Redis
// at once.
const rollbackChunk = 1000

// rollback writes the rollback files of a batch while its report's rows go
// by: every contact with a succeeded row, in the order of its first one,
// gets the rows that restore its previous agents.
type rollback struct {
	ctx   context.Context
	store *jobs.Store
	id    string
	dir   string

	seen    map[string]bool
	pending []string

	files        []*os.File // rollback.csv, rollback-unrestorable.csv temps
	rows, bad    *csv.Writer
	rowBuf       []rollbackRow     // the rows of the pending contacts
	badBuf       []unrestorableRow // and their unrestorable lines
	unrestorable int64
}

// newRollback returns the rollback writer of a batch, or nil when the batch
// did not record previous agents. A nil *rollback writes nothing.
func newRollback(ctx context.Context, store *jobs.Store, id, dir string) (*rollback, error) {
	on, err := store.RecordsPrevious(ctx, id)
	if err != nil || !on {
		return nil, err
	}
	return &rollback{ctx: ctx, store: store, id: id, dir: dir, seen: map[string]bool{}}, nil
}

// unrestorableCount is summary.json's rollbackUnrestorable: nil when the
// batch writes no rollback; else a count that is final once the entries
// from entries are all consumed.
func (r *rollback) unrestorableCount() *int64 {
	if r == nil {
		return nil
	}
	return &r.unrestorable
}

// entries passes in through, noting the contacts of succeeded rows, and
// once the last entry is consumed completes the rollback files and moves
// them into place (before summary.json is written, so that a summary
// always comes with them). A failure is yielded as an error after the
// last entry.
func (r *rollback) entries(in iter.Seq2[Entry, error]) iter.Seq2[Entry, error] {
	if r == nil {
		return in
	}
	return func(yield func(Entry, error) bool) {
		if err := r.open(); err != nil {
			yield(Entry{}, err)
			return
		}
		for e, err := range in {
			if err == nil && e.Result.Status == jobs.StatusSucceeded && !r.seen[e.Row.ContactID] {
				r.seen[e.Row.ContactID] = true
				r.pending = append(r.pending, e.Row.ContactID)
				if len(r.pending) == rollbackChunk {
					if err := r.flush(); err != nil {
						yield(Entry{}, err)
						return
					}
				}
			}
			if !yield(e, err) {
				return
			}
		}
		if err := r.finish(); err != nil {
			yield(Entry{}, err)
		}
	}
}

func (r *rollback) open() error {
	if r.dir == "" {
		return fmt.Errorf("write %s: empty folder", RollbackFile)
	}
	for _, name := range []string{RollbackFile, RollbackUnrestorableFile} {
		f, err := os.CreateTemp(r.dir, "."+name+".*.tmp")
		if err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
		r.files = append(r.files, f)
	}
	r.rows, r.bad = csv.NewWriter(r.files[0]), csv.NewWriter(r.files[1])
	// The headers alone.
	if err := gocsv.MarshalCSV([]rollbackRow{}, r.rows); err != nil {
		return fmt.Errorf("write %s: %w", RollbackFile, err)
	}
	if err := gocsv.MarshalCSV([]unrestorableRow{}, r.bad); err != nil {
		return fmt.Errorf("write %s: %w", RollbackUnrestorableFile, err)
	}
	return nil
}

// flush writes the rows of the pending contacts.
func (r *rollback) flush() error {
	prev, err := r.store.Previous(r.ctx, r.id, r.pending)
	if err != nil {
		return err
	}
	r.rowBuf, r.badBuf = r.rowBuf[:0], r.badBuf[:0]
	for _, c := range r.pending {
		agents, recorded := prev[c]
		r.add(c, agents, recorded)
	}
	r.pending = r.pending[:0]
	if err := gocsv.MarshalCSVWithoutHeaders(r.rowBuf, r.rows); err != nil {
		return fmt.Errorf("write %s: %w", RollbackFile, err)
	}
	if err := gocsv.MarshalCSVWithoutHeaders(r.badBuf, r.bad); err != nil {
		return fmt.Errorf("write %s: %w", RollbackUnrestorableFile, err)
	}
	return nil
}

// add gives one contact its rollback rows, or its unrestorable line.
func (r *rollback) add(contact string, agents []string, recorded bool) {
	if !recorded || len(agents) == 0 {
		r.unrestorable++
		why := UnrestorableNoAgents
		if !recorded {
			why = UnrestorableNotRecorded
		}
		r.badBuf = append(r.badBuf, unrestorableRow{Contact: cell(contact), Reason: why})
		return
	}
	for i, a := range agents {
		r.rowBuf = append(r.rowBuf, rollbackRow{Contact: cell(contact), Member: cell(a), Replace: i == 0})
	}
}

// finish writes what is pending (gocsv flushes each write), and syncs and
// renames both files.
func (r *rollback) finish() error {
	if err := r.flush(); err != nil {
		return err
	}
	for i, name := range []string{RollbackFile, RollbackUnrestorableFile} {
		if err := finish(r.files[i]); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
		if err := os.Rename(r.files[i].Name(), filepath.Join(r.dir, name)); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	r.files = nil
	return nil
}

// cleanup removes temporary files left by a report that failed.
func (r *rollback) cleanup() {
	if r == nil {
		return
	}
	for _, f := range r.files {
		_ = f.Close()
		_ = os.Remove(f.Name())
	}
	r.files = nil
}
