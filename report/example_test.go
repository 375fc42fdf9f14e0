package report_test

import (
	"fmt"
	"iter"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/report"
)

func ExampleWrite() {
	base, err := os.MkdirTemp("", "reports")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(base)

	rows := []report.Entry{
		{
			Row:    jobs.Row{Line: 2, ContactID: "c-1", MemberID: "m-1", Extra: []string{"north"}},
			Result: jobs.Result{Status: jobs.StatusSucceeded, HTTPStatus: 200, Attempts: 1},
		},
		{
			Row:    jobs.Row{Line: 3, ContactID: "c-2", MemberID: "m-9", Replace: true, Extra: []string{"=SUM(A1)"}},
			Result: jobs.Result{Status: jobs.StatusFailed, HTTPStatus: 404, Attempts: 1, Reason: "http_404", Error: "team member not found"},
		},
	}
	// In the program the rows come from the batch ledger in Redis, one at a
	// time; any error reading them aborts the report.
	var entries iter.Seq2[report.Entry, error] = func(yield func(report.Entry, error) bool) {
		for _, e := range rows {
			if !yield(e, nil) {
				return
			}
		}
	}

	start := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	dir := report.Dir(base, "batch_01")
	err = report.Write(dir, report.Summary{
		BatchID: "batch_01", Source: "owners.csv", Status: "done",
		Rows: 2, Succeeded: 1, Failed: 1, APICalls: 2,
		StartedAt: start, FinishedAt: start.Add(2 * time.Second), DurationSeconds: 2,
		Errors: map[string]int64{"http_404": 1},
	}, []string{"region"}, entries)
	if err != nil {
		log.Fatal(err)
	}

	failed, err := os.ReadFile(filepath.Join(dir, report.FailedFile))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(string(failed))
	// Output:
	// line,aiContactId,teamMemberId,removeExistingAgents,region,status,httpStatus,attempts,error
	// 3,c-2,m-9,true,'=SUM(A1),failed,404,1,team member not found
}
