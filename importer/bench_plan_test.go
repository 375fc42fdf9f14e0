package importer

// Benchmarks of planning: Plan.Add over 100k rows, the step between decode
// and queueing that groups rows by contact and merges duplicates. Run with
//
//	go test ./importer -run '^$' -bench BenchmarkPlanAdd -benchmem

import (
	"fmt"
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
// members to one contact (planning once took quadratic time on it).
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
					p.Add(&r)
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
