// Package jobstest builds ledger fixtures for tests of the packages that
// use the ledger (jobs, worker, report).
package jobstest

import "github.com/bulkassign/bulkassign/jobs"

// Plan groups valid, unblocked rows per contact in order of first
// appearance, one op per row in file order: the plan the importer makes of
// rows without exact repeats.
func Plan(rows []jobs.Row) []jobs.Contact {
	var out []jobs.Contact
	idx := map[string]int{}
	for _, r := range rows {
		if !r.Valid() || r.BlockedBy != 0 {
			continue
		}
		i, ok := idx[r.ContactID]
		if !ok {
			i = len(out)
			idx[r.ContactID] = i
			out = append(out, jobs.Contact{ID: r.ContactID})
		}
		out[i].Ops = append(out[i].Ops, jobs.Op{MemberID: r.MemberID, Replace: r.Replace, Lines: []int{r.Line}})
	}
	return out
}
