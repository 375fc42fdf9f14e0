// Package report writes a batch's report files — summary.json,
// succeeded.csv and failed.csv — into a folder.
//
// The CSV files have the columns
//
//	line, aiContactId, teamMemberId, removeExistingAgents, <extras...>, status, httpStatus, attempts, error
//
// so that failed.csv can be fixed and fed back to the importer as it is.
//
// Formula neutralisation (OWASP "CSV injection"): every cell, header cells
// included, that starts with '=', '+', '-', '@', a tab or a carriage return
// gets a leading single quote, so a spreadsheet shows it as text instead of
// running it. This is deliberately simple and applies to numbers too: an
// extra column holding "-5" is written as "'-5". Ids, line numbers, HTTP
// statuses and attempt counts never start with those characters, so the
// columns the importer reads back are unaffected.
package report

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/bulkassign/bulkassign/jobs"
)

// File names inside a report folder.
const (
	SummaryFile   = "summary.json"
	SucceededFile = "succeeded.csv"
	FailedFile    = "failed.csv"
)

// Summary is the content of summary.json.
type Summary struct {
	BatchID     string    `json:"batchId"`
	Name        string    `json:"name,omitempty"`
	Source      string    `json:"source"`
	Status      string    `json:"status"`
	Rows        int64     `json:"rows"`
	Succeeded   int64     `json:"succeeded"`
	Failed      int64     `json:"failed"`
	Invalid     int64     `json:"invalid"`
	APICalls    int64     `json:"apiCalls"`
	Retries     int64     `json:"retries"`
	RateLimited int64     `json:"rateLimited"`
	StartedAt   time.Time `json:"startedAt"`
	// FinishedAt is left out while the batch has not ended (a paused or
	// interrupted batch's report), rather than written as year 1.
	FinishedAt      time.Time        `json:"finishedAt,omitzero"`
	DurationSeconds float64          `json:"durationSeconds"`
	Errors          map[string]int64 `json:"errors"` // reason code -> rows
	// Origin says who started the batch and how, and its settings; absent
	// for a batch that did not record it.
	Origin *jobs.Origin `json:"origin,omitempty"`
	// RollbackUnrestorable, only for a batch that recorded previous agents,
	// counts the contacts in rollback-unrestorable.csv.
	RollbackUnrestorable *int64 `json:"rollbackUnrestorable,omitempty"`
}

// Entry is one row with its outcome.
type Entry = jobs.Entry

// fixedHead and fixedTail are the CSV columns around the input's extras.
var (
	fixedHead = []string{"line", "aiContactId", "teamMemberId", "removeExistingAgents"}
	fixedTail = []string{"status", "httpStatus", "attempts", "error"}
)

// maxBatchIDLen bounds a batch id used as a folder name.
const maxBatchIDLen = 128

// ValidBatchID reports whether id is safe to use as a path element: 1 to
// 128 characters from [A-Za-z0-9_-]. Anything else — "..", "/", "\",
// spaces, dots — is rejected.
func ValidBatchID(id string) bool {
	if id == "" || len(id) > maxBatchIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// Dir is the report folder of a batch under base. It returns "" when
// batchID is not ValidBatchID, and Write refuses an empty dir, so an id from
// a request or from Redis can never point a report outside base.
func Dir(base, batchID string) string {
	if !ValidBatchID(batchID) {
		return ""
	}
	return filepath.Join(base, batchID)
}

// Write creates dir (mode 0o750, with parents) and writes summary.json,
// succeeded.csv and failed.csv into it.
//
// entries must yield the batch's rows in line order; an error it yields
// aborts Write, as does a row out of order, a row with more extra cells than
// extras, or a row whose status is not succeeded, failed or invalid (leave
// unfinished rows out). Rows with status succeeded go to succeeded.csv,
// failed and invalid rows to failed.csv; both files always get their
// header. Rows are streamed to disk, never held in memory.
//
// Each file is written to a temporary file in dir, synced, and renamed into
// place, summary.json last: when Write fails, or the process dies, dir holds
// no new report file at all (at worst a hidden ".*.tmp" file from a crash),
// and a summary.json always comes with the CSV files it describes.
func Write(dir string, s Summary, extras []string, entries iter.Seq2[Entry, error]) error {
	return write(dir, func() Summary { return s }, extras, entries)
}

// write is Write with the summary asked for once every entry is written,
// so that a caller can count what it yielded.
func write(dir string, summary func() Summary, extras []string, entries iter.Seq2[Entry, error]) (err error) {
	if dir == "" {
		return errors.New("write report: empty folder (invalid batch id?)")
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("write report: %w", err)
	}

	var temps []*os.File
	defer func() {
		if err != nil {
			for _, f := range temps {
				_ = f.Close()
				_ = os.Remove(f.Name())
			}
		}
	}()
	create := func(name string) (*os.File, error) {
		f, err := os.CreateTemp(dir, "."+name+".*.tmp")
		if err != nil {
			return nil, fmt.Errorf("write report %s: %w", name, err)
		}
		temps = append(temps, f)
		return f, nil
	}

	okFile, err := create(SucceededFile)
	if err != nil {
		return err
	}
	failFile, err := create(FailedFile)
	if err != nil {
		return err
	}
	if err := writeCSVs(okFile, failFile, extras, entries); err != nil {
		return fmt.Errorf("write report in %s: %w", dir, err)
	}

	sumFile, err := create(SummaryFile)
	if err != nil {
		return err
	}
	s := summary()
	if s.Errors == nil {
		s.Errors = map[string]int64{} // always an object, never null
	}
	enc := json.NewEncoder(sumFile)
	enc.SetIndent("", "  ")
	if err := enc.Encode(s); err != nil {
		return fmt.Errorf("write report %s: %w", SummaryFile, err)
	}

	for _, f := range temps {
		if err := finish(f); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
	}
	// Rename the CSVs first and summary.json last: summary.json marks a
	// complete report.
	for i, name := range []string{SucceededFile, FailedFile, SummaryFile} {
		if err := os.Rename(temps[i].Name(), filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
	}
	temps = nil // renamed: nothing left to clean up
	syncDir(dir)
	return nil
}

// finish makes a temp file readable by the group, flushes it to disk and
// closes it.
func finish(f *os.File) error {
	if err := f.Chmod(0o640); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}

// syncDir makes the renames durable where the platform allows it; failing
// to sync a directory is not worth failing a finished report for.
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	_ = d.Sync()
	_ = d.Close()
}

// WriteFailed writes entries that failed or were invalid as one CSV in
// failed.csv's format, which can be imported again.
func WriteFailed(w io.Writer, extras []string, entries iter.Seq2[Entry, error]) error {
	return writeCSVs(io.Discard, w, extras, entries)
}

// writeCSVs streams entries into the succeeded and failed files. csv.Writer
// buffers through its own bufio.Writer, so rows go out in 4 KiB writes.
func writeCSVs(okFile, failFile io.Writer, extras []string, entries iter.Seq2[Entry, error]) error {
	ok, failed := csv.NewWriter(okFile), csv.NewWriter(failFile)

	header := make([]string, 0, len(fixedHead)+len(extras)+len(fixedTail))
	header = append(header, fixedHead...)
	header = append(header, extras...)
	header = append(header, fixedTail...)
	neutraliseAll(header)
	if err := ok.Write(header); err != nil {
		return err
	}
	if err := failed.Write(header); err != nil {
		return err
	}

	record := make([]string, len(header)) // reused for every row
	prev := 0
	for e, err := range entries {
		if err != nil {
			return fmt.Errorf("read rows: %w", err)
		}
		if e.Row.Line <= prev {
			return fmt.Errorf("row at line %d comes after line %d: rows must be in line order", e.Row.Line, prev)
		}
		prev = e.Row.Line
		if len(e.Row.Extra) > len(extras) {
			return fmt.Errorf("line %d has %d extra cells, the report has %d extra columns", e.Row.Line, len(e.Row.Extra), len(extras))
		}
		status := e.Result.Status
		if status == "" && !e.Row.Valid() {
			status = jobs.StatusInvalid
		}
		var w *csv.Writer
		switch status {
		case jobs.StatusSucceeded:
			w = ok
		case jobs.StatusFailed, jobs.StatusInvalid:
			w = failed
		default:
			return fmt.Errorf("line %d has status %q: only finished rows (succeeded, failed, invalid) go in a report", e.Row.Line, status)
		}
		fill(record, e, status, len(extras))
		if err := w.Write(record); err != nil {
			return err
		}
	}
	for _, w := range []*csv.Writer{ok, failed} {
		w.Flush()
		if err := w.Error(); err != nil {
			return err
		}
	}
	return nil
}

// fill sets record to the neutralised cells of one entry.
func fill(record []string, e Entry, status jobs.Status, nExtras int) {
	record[0] = strconv.Itoa(e.Row.Line)
	record[1] = e.Row.ContactID
	record[2] = e.Row.MemberID
	record[3] = e.Row.ReplaceCell()
	i := len(fixedHead)
	for j := range nExtras {
		record[i] = ""
		if j < len(e.Row.Extra) {
			record[i] = e.Row.Extra[j]
		}
		i++
	}
	record[i] = string(status)
	record[i+1] = itoaNonZero(e.Result.HTTPStatus)
	record[i+2] = itoaNonZero(e.Result.Attempts)
	record[i+3] = errorText(e)
	neutraliseAll(record)
}

// errorText is the human explanation of an entry's outcome.
func errorText(e Entry) string {
	switch {
	case e.Result.Error != "":
		return e.Result.Error
	case e.Row.Error != "":
		return e.Row.Error
	case e.Result.Reason != "":
		return e.Result.Reason
	}
	return e.Row.Reason
}

func itoaNonZero(n int) string {
	if n == 0 {
		return ""
	}
	return strconv.Itoa(n)
}

func neutraliseAll(cells []string) {
	for i, c := range cells {
		cells[i] = neutralise(c)
	}
}

// neutralise prefixes a cell a spreadsheet would treat as a formula with a
// single quote.
func neutralise(cell string) string {
	if cell != "" && strings.IndexByte("=+-@\t\r", cell[0]) >= 0 {
		return "'" + cell
	}
	return cell
}
