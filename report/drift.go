package report

import (
	"encoding/csv"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/bulkassign/bulkassign/verify"
	"github.com/gocarina/gocsv"
)

// DriftFile is the file `verify` writes: one row per contact whose agents
// in the CRM are not the end state the batch or file describes.
const DriftFile = "drift.csv"

// Match values of drift.csv: how the expected agents are compared.
const (
	// MatchExact: a replace was applied; the contact must have exactly
	// the expected agents.
	MatchExact = "exact"
	// MatchContains: only adds were applied; the contact must have the
	// expected agents, and may have others.
	MatchContains = "contains"
)

// driftRow is one row of drift.csv; agents are ';'-separated ids.
type driftRow struct {
	Contact    cell   `csv:"aiContactId"`
	Expected   cell   `csv:"expected"`
	Actual     cell   `csv:"actual"`
	Missing    cell   `csv:"missing"`
	Unexpected cell   `csv:"unexpected"`
	Match      string `csv:"match"`
	Error      cell   `csv:"error"`
}

// WriteDrift writes drifts to path as drift.csv: aiContactId, expected,
// actual, missing, unexpected (agents as ';'-separated ids), then match
// (exact or contains) and error (why a contact could not be read; empty
// otherwise). The file is written under a temporary name and renamed: a
// crash never leaves half of it.
func WriteDrift(path string, drifts []verify.Drift) error {
	rows := make([]driftRow, len(drifts))
	for i, d := range drifts {
		rows[i] = driftRow{
			Contact: cell(d.Contact), Expected: agents(d.Agents), Actual: agents(d.Actual),
			Missing: agents(d.Missing), Unexpected: agents(d.Unexpected), Match: MatchContains,
		}
		if d.Exact {
			rows[i].Match = MatchExact
		}
		if d.Err != nil {
			rows[i].Error = cell(d.Err.Error())
		}
	}
	return writeAtomic(path, func(w *csv.Writer) error { return gocsv.MarshalCSV(rows, w) })
}

// FixCounts says what WriteFix wrote.
type FixCounts struct {
	// Contacts and Rows are the contacts the fix file restores and its rows.
	Contacts, Rows int
	// NotFound contacts are gone from the CRM and Unknown ones could not
	// be read: the file leaves both out.
	NotFound, Unknown int
}

// WriteFix writes to path an assignment file (aiContactId, teamMemberId,
// removeExistingAgents) that, run, restores the expected state of every
// drifted contact: an exact contact gets its expected agents again, the
// first with removeExistingAgents=true; a contains contact gets its
// missing agents added. Contacts that are gone or could not be read are
// left out and counted.
func WriteFix(path string, drifts []verify.Drift) (FixCounts, error) {
	var n FixCounts
	var rows []rollbackRow
	for _, d := range drifts {
		switch {
		case d.Unknown():
			n.Unknown++
			continue
		case d.Err != nil:
			n.NotFound++
			continue
		}
		add := d.Missing
		if d.Exact {
			add = d.Agents
		}
		if len(add) == 0 {
			continue
		}
		n.Contacts++
		for i, a := range add {
			rows = append(rows, rollbackRow{Contact: cell(d.Contact), Member: cell(a), Replace: d.Exact && i == 0})
		}
	}
	n.Rows = len(rows)
	return n, writeAtomic(path, func(w *csv.Writer) error { return gocsv.MarshalCSV(rows, w) })
}

// agents is a list of agent ids as one drift.csv cell.
func agents(ids []string) cell { return cell(strings.Join(ids, ";")) }

// writeAtomic writes a CSV file to a temporary file next to path and
// renames it into place.
func writeAtomic(path string, write func(*csv.Writer) error) (err error) {
	if path == "" {
		return errors.New("write CSV: empty file name")
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	w := csv.NewWriter(f)
	if err := write(w); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if w.Flush(); w.Error() != nil {
		return fmt.Errorf("write %s: %w", path, w.Error())
	}
	if err := finish(f); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	syncDir(dir)
	return nil
}
