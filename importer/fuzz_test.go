package importer

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bulkassign/bulkassign/jobs"
)

var reasons = map[string]bool{
	"missing_contact_id": true, "missing_member_id": true, "invalid_contact_id": true,
	"invalid_member_id": true, "invalid_remove_existing_agents": true,
	"missing_member_email": true, "invalid_member_email": true,
}

// checkDecode decodes data under each id rule and checks the decoder's
// promises: no panic, only *FileError or io.EOF as errors, and rows with
// positive, strictly increasing lines, valid rows with ids well formed
// under the rule, invalid ones with a known reason.
func checkDecode(t *testing.T, data []byte, file string, format Format) {
	for _, ids := range []jobs.IDFormat{jobs.IDUUID, jobs.IDAny} {
		checkDecodeIDs(t, data, file, format, ids)
	}
}

func checkDecodeIDs(t *testing.T, data []byte, file string, format Format, ids jobs.IDFormat) {
	d, err := NewDecoder(bytes.NewReader(data), file, format, ids)
	if err != nil {
		checkFileError(t, err, data)
		return
	}
	last, maxExtra := 0, 0
	for n := 0; ; n++ {
		if n > len(data)+1 {
			t.Fatalf("more rows than bytes: the decoder does not advance")
		}
		row, err := d.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			checkFileError(t, err, data)
			if _, again := d.Next(); again != err {
				t.Fatalf("Next after an error returned %v, want the same error", again)
			}
			return
		}
		if row.Line <= last {
			t.Fatalf("row line %d after line %d: %+v", row.Line, last, row)
		}
		last = row.Line
		maxExtra = max(maxExtra, len(row.Extra))
		if row.Valid() {
			byEmail := row.MemberID == "" && validEmail(row.MemberEmail) // resolved by Import
			if !ids.Valid(row.ContactID) || !ids.Valid(row.MemberID) && !byEmail || row.ReplaceText != "" || row.Error != "" {
				t.Fatalf("valid row with bad fields: %+v", row)
			}
		} else if !reasons[row.Reason] || row.Error == "" {
			t.Fatalf("invalid row without a known reason and message: %+v", row)
		}
	}
	if maxExtra > len(d.Extras()) {
		t.Fatalf("a row has %d extras, Extras() has %d", maxExtra, len(d.Extras()))
	}
}

// checkFileError checks that err is a *FileError on a line of the file.
func checkFileError(t *testing.T, err error, data []byte) {
	t.Helper()
	var fe *FileError
	if !errors.As(err, &fe) {
		t.Fatalf("%v (%T), want a *FileError", err, err)
	}
	if lines := bytes.Count(data, []byte{'\n'}) + 1; fe.Line < 0 || fe.Line > lines {
		t.Fatalf("%v: line %d of a file of %d lines", err, fe.Line, lines)
	}
}

// addSeeds adds the testdata files with one of exts, and inline seeds.
func addSeeds(f *testing.F, exts []string, inline ...string) {
	for _, ext := range exts {
		files, _ := filepath.Glob(filepath.Join("testdata", "*"+ext))
		for _, name := range files {
			b, err := os.ReadFile(name)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	for _, s := range inline {
		f.Add([]byte(s))
	}
}

func FuzzDecodeCSV(f *testing.F) {
	addSeeds(f, []string{".csv"},
		"aiContactId,teamMemberId,removeExistingAgents\nc1,m1,true\n",
		"aiContactId,teamMemberId\n0B6E4F8A-3C2D-4E1F-9A7B-5C6D7E8F9A0B,{550e8400-e29b-41d4-a716-446655440000}\n",
		"\ufeffcontact_id,agent_id,note\r\n\"c\n1\",m,\"a,\"\"b\"\"\"\r\n\r\n,,\r\n",
		"aiContactId,teamMemberId\nc,m\"x\n",
		"aiContactId,teamMemberId,x\n'=c,'-m,'@\n",
		"a,b\n")
	f.Fuzz(func(t *testing.T, data []byte) {
		checkDecode(t, data, "fuzz.csv", FormatCSV)
		checkDecode(t, data, "-", FormatAuto)
	})
}

func FuzzDecodeJSON(f *testing.F) {
	addSeeds(f, []string{".json"},
		`[{"aiContactId":"c","teamMemberId":"m","removeExistingAgents":true,"x":{"y":[1,null]}}]`,
		`[{"aiContactId":"0b6e4f8a-3c2d-4e1f-9a7b-5c6d7e8f9a0b","teamMemberId":550}]`,
		"[\n{\"aiContactId\":1,\"teamMemberId\":\"m\"},\n{\"aiContactId\":\"c\" \"teamMemberId\":\"m\"}]",
		`[{"aiContactId":"c","teamMemberId":"m"}] x`,
		`[1, "a", null, {}]`,
		`[]`)
	f.Fuzz(func(t *testing.T, data []byte) {
		checkDecode(t, data, "fuzz.json", FormatJSON)
		checkDecode(t, data, "-", FormatAuto)
	})
}

func FuzzDecodeJSONL(f *testing.F) {
	addSeeds(f, []string{".jsonl"},
		"{\"aiContactId\":\"c\",\"teamMemberId\":\"m\"}\n\n{\"contact\":\"C\",\"agent\":\"M\",\"replace\":\"y\"}\r\n",
		"{\"aiContactId\":\"c\"}\n[1]\n",
		"{} {}\n",
		"\ufeff{\"aiContactId\":\"\\u0041\",\"teamMemberId\":\"m\",\"Note\":1,\"note\":2}\n")
	f.Fuzz(func(t *testing.T, data []byte) {
		checkDecode(t, data, "fuzz.jsonl", FormatJSONL)
		checkDecode(t, data, "-", FormatAuto)
	})
}

// benchInput builds a CSV or JSON Lines file of n rows.
func benchInput(n int, format Format) []byte {
	var b bytes.Buffer
	if format == FormatCSV {
		b.WriteString("aiContactId,teamMemberId,removeExistingAgents,region,note\n")
	}
	for i := range n {
		switch format {
		case FormatCSV:
			fmt.Fprintf(&b, "c0000000-0000-8000-8000-%012d,a0000000-0000-8000-8000-%012d,%t,north,\"note %d, with a comma\"\n", i, i%500, i%3 == 0, i)
		default:
			fmt.Fprintf(&b, `{"aiContactId":"c0000000-0000-8000-8000-%012d","teamMemberId":"a0000000-0000-8000-8000-%012d","removeExistingAgents":%t,"region":"north","note":"note %d"}`+"\n",
				i, i%500, i%3 == 0, i)
		}
	}
	return b.Bytes()
}

func benchmarkDecode(b *testing.B, format Format) {
	const rows = 100_000
	data := benchInput(rows, format)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		d, err := NewDecoder(bytes.NewReader(data), "bench", format, jobs.IDUUID)
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for {
			_, err := d.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		if n != rows {
			b.Fatalf("%d rows, want %d", n, rows)
		}
	}
	b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkDecodeCSV decodes and validates 100k CSV rows.
func BenchmarkDecodeCSV(b *testing.B) { benchmarkDecode(b, FormatCSV) }

// BenchmarkDecodeJSONL decodes and validates 100k JSON Lines rows.
func BenchmarkDecodeJSONL(b *testing.B) { benchmarkDecode(b, FormatJSONL) }

// FuzzLoadMapping: no mapping file may panic the parser, and a mapping it
// accepts maps known fields to non-empty headers.
func FuzzLoadMapping(f *testing.F) {
	seed, err := os.ReadFile("testdata/legacy-mapping.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte("aiContactId: Contact Ref\nteamMemberEmail: \"Owner E-mail\"\n"))
	f.Add([]byte("aiContactId: [a, b]\n"))
	f.Add([]byte("unknown: x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := LoadMapping(bytes.NewReader(data), "fuzz.yaml")
		if err != nil {
			return
		}
		for field, header := range m {
			if field == "" || strings.TrimSpace(header) == "" {
				t.Errorf("accepted mapping %q <- %q", field, header)
			}
		}
	})
}
