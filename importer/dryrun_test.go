package importer_test

import (
	"context"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/bulkassign/bulkassign/importer"
)

// TestDryRunKeepsNoRows: a dry run (serve checks every upload with one)
// holds no more of the file than a real import does. The file is 40 MB of
// invalid rows, which the plan does not keep, so the live heap near its end
// is about what it was near its start unless the rows themselves are kept.
// Not parallel: it reads the process's heap.
func TestDryRunKeepsNoRows(t *testing.T) {
	const rows = 40_000
	in := &invalidRows{rows: rows, cell: strings.Repeat("x", 1000)}
	sum, err := importer.New(nil, nil, "").Import(context.Background(), in, importer.Options{File: "big.csv", DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Rows != rows || sum.Invalid != rows {
		t.Fatalf("read %d rows, %d invalid; want %d of each", sum.Rows, sum.Invalid, rows)
	}
	if in.early == 0 || in.late == 0 {
		t.Fatal("the heap was not measured")
	}
	if grown := int64(in.late) - int64(in.early); grown > 10<<20 {
		t.Errorf("the live heap grew by %d MiB while a dry run read %d MiB: it keeps the rows", grown>>20, rows*len(in.cell)>>20)
	}
}

// invalidRows generates a CSV of rows rows, each with a malformed contact
// id and a long note, and notes the live heap after a quarter of them and
// at the end.
type invalidRows struct {
	rows, made  int
	cell        string
	header      bool
	pending     string
	early, late uint64
}

func (r *invalidRows) Read(p []byte) (int, error) {
	switch {
	case r.pending != "":
	case !r.header:
		r.header, r.pending = true, "aiContactId,teamMemberId,note\n"
	case r.made == r.rows:
		r.late = liveHeap()
		return 0, io.EOF
	default:
		if r.made == r.rows/4 {
			r.early = liveHeap()
		}
		r.made++
		r.pending = "not a valid id!,m," + r.cell + "\n"
	}
	n := copy(p, r.pending)
	r.pending = r.pending[n:]
	return n, nil
}

func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
