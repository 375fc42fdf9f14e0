package importer

// Benchmarks of planning: Plan.Add over 100k rows, the step between decode
// and queueing that groups rows by contact and merges duplicates. Run with
//
//	go test ./importer -run '^$' -bench BenchmarkPlanAdd -benchmem

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/bulkassign/bulkassign/jobs"
)

// benchPlanRows is the rows of one op.
const benchPlanRows = 100_000

// BenchmarkPlanAdd plans 100k rows shaped four ways: "distinct", one row
// per contact (a rebalancing export); "10-per-contact", 10k contacts with
// 10 rows each over 4 members, a replace among them and exact duplicates
// (a messy supervisor's file); "1000-per-contact", 100 contacts with 1000
// rows each over 50 members; and "one-contact", 100k adds of distinct
// members to one contact, the worst case of the duplicate search (it was
// quadratic: 13 s for these rows before contactPlan.adds).
func BenchmarkPlanAdd(b *testing.B) {
	shapes := []struct {
		name     string
		contacts int
		members  int
		replace  bool
	}{
		{"distinct", benchPlanRows, 50, false},
		{"10-per-contact", benchPlanRows / 10, 4, true},
		{"1000-per-contact", benchPlanRows / 1000, 50, true},
		{"one-contact", 1, benchPlanRows, false},
	}
	for _, s := range shapes {
		rows := make([]jobs.Row, benchPlanRows)
		for i := range rows {
			k := i / s.contacts // the row's number within its contact
			rows[i] = jobs.Row{
				Line:      i + 2,
				ContactID: fmt.Sprintf("c-%07d", i%s.contacts),
				MemberID:  fmt.Sprintf("m-%06d", k%s.members),
				Replace:   s.replace && k%7 == 3,
			}
		}
		b.Run(s.name, func(b *testing.B) {
			b.ReportAllocs()
			var p *Plan
			for b.Loop() {
				p = NewPlan()
				for _, r := range rows {
					p.Add(r)
				}
			}
			if p.Valid != benchPlanRows || p.Contacts() != s.contacts {
				b.Fatalf("planned %d valid rows, %d contacts; want %d, %d", p.Valid, p.Contacts(), benchPlanRows, s.contacts)
			}
			b.ReportMetric(float64(benchPlanRows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
			b.ReportMetric(float64(p.Merged), "merged")
		})
	}
}

// TestPlanLongContactMatchesScan: with many rows for one contact, where
// Plan indexes the contact's adds instead of scanning them, it plans the
// same ops as the plain scan (planScan) over random files.
func TestPlanLongContactMatchesScan(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	for iter := range 300 {
		n := 1 + rng.IntN(400)
		members := 1 + rng.IntN(60)
		replaceEvery := 2 + rng.IntN(80)
		rows := make([]jobs.Row, n)
		for i := range rows {
			rows[i] = jobs.Row{Line: i + 2, ContactID: "c1", MemberID: fmt.Sprintf("m%d", rng.IntN(members)),
				Replace: rng.IntN(replaceEvery) == 0}
		}
		p := NewPlan()
		for _, r := range rows {
			p.Add(r)
		}
		got := slices.Collect(p.Payloads("b"))[0].Ops
		if want := planScan(rows); !reflect.DeepEqual(got, want) {
			t.Fatalf("iteration %d (%d rows, %d members): ops differ from the scan:\n got %v\nwant %v", iter, n, members, got, want)
		}
	}
}

// planScan is Plan's merge rule for one contact as a plain scan: an add
// merges into an add of the same member since the last replace, a replace
// into the op just before it when that is a replace of the same member.
func planScan(rows []jobs.Row) []jobs.Op {
	var ops []jobs.Op
	since := 0
	for _, r := range rows {
		dup := -1
		switch {
		case len(ops) == 0:
		case r.Replace:
			if last := ops[len(ops)-1]; last.Replace && last.MemberID == r.MemberID {
				dup = len(ops) - 1
			}
		default:
			for i := since; i < len(ops); i++ {
				if !ops[i].Replace && ops[i].MemberID == r.MemberID {
					dup = i
					break
				}
			}
		}
		if dup >= 0 {
			ops[dup].Lines = append(ops[dup].Lines, r.Line)
			continue
		}
		ops = append(ops, jobs.Op{MemberID: r.MemberID, Replace: r.Replace, Lines: []int{r.Line}})
		if r.Replace {
			since = len(ops) - 1
		}
	}
	return ops
}
