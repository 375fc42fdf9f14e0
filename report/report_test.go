package report_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/report"
)

// seq yields entries, then err if it is not nil.
func seq(entries []report.Entry, err error) iter.Seq2[report.Entry, error] {
	return func(yield func(report.Entry, error) bool) {
		for _, e := range entries {
			if !yield(e, nil) {
				return
			}
		}
		if err != nil {
			yield(report.Entry{}, err)
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestWriteCSVBytes(t *testing.T) {
	t.Parallel()
	entries := []report.Entry{
		{
			Row:    jobs.Row{Line: 2, ContactID: "c1", MemberID: "m1", Extra: []string{"north", "Ana, \"the boss\""}},
			Result: jobs.Result{Status: jobs.StatusSucceeded, HTTPStatus: 200, Attempts: 1},
		},
		{
			Row:    jobs.Row{Line: 3, ContactID: "c2", MemberID: "m2", Replace: true, Extra: []string{"=HYPERLINK(\"http://x\")", "-5"}},
			Result: jobs.Result{Status: jobs.StatusFailed, HTTPStatus: 404, Attempts: 1, Reason: "http_404", Error: "contact or team member not found"},
		},
		{
			// Invalid: the file's text is kept, the result is left empty
			// and the reason comes from the row.
			Row: jobs.Row{Line: 4, ContactID: "c3", MemberID: "@m3", ReplaceText: "maybe", Extra: []string{"south"},
				Reason: "invalid_replace", Error: `removeExistingAgents "maybe" is not true/false`},
		},
		{
			Row:    jobs.Row{Line: 5, ContactID: "c4", MemberID: "m4", Extra: []string{"+1 555", "\tx"}},
			Result: jobs.Result{Status: jobs.StatusSucceeded, HTTPStatus: 200, Attempts: 2},
		},
		{
			Row:    jobs.Row{Line: 7, ContactID: "c5", MemberID: "m5"}, // fewer extras than columns
			Result: jobs.Result{Status: jobs.StatusFailed, Attempts: 5, Reason: "timeout", Error: "timeout after 5 attempts\nlast: context deadline exceeded"},
		},
	}
	dir := filepath.Join(t.TempDir(), "b1")
	if err := report.Write(dir, report.Summary{BatchID: "b1"}, []string{"region", "note"}, seq(entries, nil)); err != nil {
		t.Fatal(err)
	}

	wantOK := "line,aiContactId,teamMemberId,removeExistingAgents,region,note,status,httpStatus,attempts,error\n" +
		"2,c1,m1,false,north,\"Ana, \"\"the boss\"\"\",succeeded,200,1,\n" +
		"5,c4,m4,false,'+1 555,'\tx,succeeded,200,2,\n"
	wantFailed := "line,aiContactId,teamMemberId,removeExistingAgents,region,note,status,httpStatus,attempts,error\n" +
		"3,c2,m2,true,\"'=HYPERLINK(\"\"http://x\"\")\",'-5,failed,404,1,contact or team member not found\n" +
		"4,c3,'@m3,maybe,south,,invalid,,,\"removeExistingAgents \"\"maybe\"\" is not true/false\"\n" +
		"7,c5,m5,false,,,failed,,5,\"timeout after 5 attempts\nlast: context deadline exceeded\"\n"

	if got := readFile(t, filepath.Join(dir, "succeeded.csv")); got != wantOK {
		t.Errorf("succeeded.csv:\n got %q\nwant %q", got, wantOK)
	}
	if got := readFile(t, filepath.Join(dir, "failed.csv")); got != wantFailed {
		t.Errorf("failed.csv:\n got %q\nwant %q", got, wantFailed)
	}
}

func TestWriteEmptyBatchHasHeaders(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := report.Write(dir, report.Summary{BatchID: "b"}, nil, seq(nil, nil)); err != nil {
		t.Fatal(err)
	}
	const header = "line,aiContactId,teamMemberId,removeExistingAgents,status,httpStatus,attempts,error\n"
	for _, name := range []string{"succeeded.csv", "failed.csv"} {
		if got := readFile(t, filepath.Join(dir, name)); got != header {
			t.Errorf("%s = %q, want %q", name, got, header)
		}
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(dir, "summary.json"))), &m); err != nil {
		t.Fatal(err)
	}
	if errs, ok := m["errors"].(map[string]any); !ok || len(errs) != 0 {
		t.Errorf("errors = %#v, want an empty object", m["errors"])
	}
	if _, ok := m["name"]; ok {
		t.Errorf("name present though empty: %v", m)
	}
}

func TestWriteSummaryFields(t *testing.T) {
	t.Parallel()
	start := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	s := report.Summary{
		BatchID: "b_1", Name: "march rebalance", Source: "owners.csv", Status: "done",
		Rows: 10, Succeeded: 7, Failed: 2, Invalid: 1, APICalls: 12, Retries: 3, RateLimited: 1,
		StartedAt: start, FinishedAt: start.Add(90 * time.Second), DurationSeconds: 90,
		Errors: map[string]int64{"http_404": 2, "invalid_contact_id": 1},
	}
	dir := t.TempDir()
	if err := report.Write(dir, s, nil, seq(nil, nil)); err != nil {
		t.Fatal(err)
	}
	raw := readFile(t, filepath.Join(dir, "summary.json"))
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		t.Fatal(err)
	}
	want := []string{"batchId", "name", "source", "status", "rows", "succeeded", "failed", "invalid",
		"apiCalls", "retries", "rateLimited", "startedAt", "finishedAt", "durationSeconds", "errors"}
	var got []string
	for k := range m {
		got = append(got, k)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("summary.json keys = %v, want %v", got, want)
	}
	for k, v := range map[string]string{
		"batchId":   `"b_1"`,
		"rows":      `10`,
		"startedAt": `"2025-03-01T10:00:00Z"`,
		"errors":    `{"http_404":2,"invalid_contact_id":1}`,
	} {
		var compact bytes.Buffer
		if err := json.Compact(&compact, m[k]); err != nil {
			t.Fatal(err)
		}
		if compact.String() != v {
			t.Errorf("%s = %s, want %s", k, compact.String(), v)
		}
	}
	var back report.Summary
	if err := json.Unmarshal([]byte(raw), &back); err != nil {
		t.Fatal(err)
	}
	if !back.FinishedAt.Equal(s.FinishedAt) || back.Errors["http_404"] != 2 || back.Name != s.Name {
		t.Errorf("round trip = %+v, want %+v", back, s)
	}
}

// TestSummaryOfUnendedBatch: a batch that has not ended (paused,
// interrupted) has no finishedAt, not year 1, and reads back as zero.
func TestSummaryOfUnendedBatch(t *testing.T) {
	t.Parallel()
	s := report.Summary{BatchID: "b", Status: "paused", StartedAt: time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)}
	raw, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if v, ok := m["finishedAt"]; ok {
		t.Errorf("finishedAt = %s, want none", v)
	}
	var back report.Summary
	if err := json.Unmarshal(raw, &back); err != nil || !back.FinishedAt.IsZero() || back.Status != "paused" {
		t.Errorf("read back %+v (%v)", back, err)
	}
}

func TestWriteFailingIteratorLeavesNothing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	boom := errors.New("redis went away")
	entries := []report.Entry{{
		Row:    jobs.Row{Line: 2, ContactID: "c1", MemberID: "m1"},
		Result: jobs.Result{Status: jobs.StatusSucceeded},
	}}
	err := report.Write(dir, report.Summary{BatchID: "b"}, nil, seq(entries, boom))
	if !errors.Is(err, boom) {
		t.Fatalf("Write error = %v, want it to wrap %v", err, boom)
	}
	if left := listDir(t, dir); len(left) != 0 {
		t.Errorf("files left after a failed Write: %v", left)
	}
}

func TestWriteFailureKeepsPreviousReport(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first := []report.Entry{{Row: jobs.Row{Line: 2, ContactID: "c1", MemberID: "m1"}, Result: jobs.Result{Status: jobs.StatusSucceeded}}}
	if err := report.Write(dir, report.Summary{BatchID: "b", Rows: 1}, nil, seq(first, nil)); err != nil {
		t.Fatal(err)
	}
	before := map[string]string{}
	for _, name := range listDir(t, dir) {
		before[name] = readFile(t, filepath.Join(dir, name))
	}
	if err := report.Write(dir, report.Summary{BatchID: "b", Rows: 2}, nil, seq(nil, errors.New("boom"))); err == nil {
		t.Fatal("Write succeeded with a failing iterator")
	}
	after := listDir(t, dir)
	if len(after) != len(before) {
		t.Fatalf("files after failed rewrite = %v, want %d files", after, len(before))
	}
	for _, name := range after {
		if got := readFile(t, filepath.Join(dir, name)); got != before[name] {
			t.Errorf("%s changed by a failed Write:\n%s", name, got)
		}
	}
}

func TestWriteRejects(t *testing.T) {
	t.Parallel()
	ok := jobs.Result{Status: jobs.StatusSucceeded}
	tests := []struct {
		name    string
		extras  []string
		entries []report.Entry
	}{
		{"out of order", nil, []report.Entry{
			{Row: jobs.Row{Line: 3, ContactID: "a", MemberID: "m"}, Result: ok},
			{Row: jobs.Row{Line: 2, ContactID: "b", MemberID: "m"}, Result: ok},
		}},
		{"unfinished row", nil, []report.Entry{
			{Row: jobs.Row{Line: 2, ContactID: "a", MemberID: "m"}},
		}},
		{"too many extras", []string{"x"}, []report.Entry{
			{Row: jobs.Row{Line: 2, ContactID: "a", MemberID: "m", Extra: []string{"1", "2"}}, Result: ok},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if err := report.Write(dir, report.Summary{}, tt.extras, seq(tt.entries, nil)); err == nil {
				t.Fatal("Write succeeded")
			}
			if left := listDir(t, dir); len(left) != 0 {
				t.Errorf("files left: %v", left)
			}
		})
	}
	if err := report.Write("", report.Summary{}, nil, seq(nil, nil)); err == nil {
		t.Error("Write with an empty dir succeeded")
	}
}

func TestFailedCSVReadsBack(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	entries := []report.Entry{
		{Row: jobs.Row{Line: 2, ContactID: "c1", MemberID: "m1", Extra: []string{"a,b"}}, Result: jobs.Result{Status: jobs.StatusFailed, HTTPStatus: 400, Attempts: 1, Error: "bad \"id\""}},
		{Row: jobs.Row{Line: 9, ContactID: "c 2", MemberID: "", Extra: []string{""}, Reason: "missing_member", Error: "teamMemberId is empty"}, Result: jobs.Result{Status: jobs.StatusInvalid}},
	}
	if err := report.Write(dir, report.Summary{}, []string{"notes"}, seq(entries, nil)); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(dir, "failed.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	records, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	wantHeader := []string{"line", "aiContactId", "teamMemberId", "removeExistingAgents", "notes", "status", "httpStatus", "attempts", "error"}
	if !slices.Equal(records[0], wantHeader) {
		t.Errorf("header = %q, want %q", records[0], wantHeader)
	}
	want := [][]string{
		{"2", "c1", "m1", "false", "a,b", "failed", "400", "1", `bad "id"`},
		{"9", "c 2", "", "false", "", "invalid", "", "", "teamMemberId is empty"},
	}
	if len(records) != 1+len(want) {
		t.Fatalf("got %d records, want %d", len(records), 1+len(want))
	}
	for i, w := range want {
		if !slices.Equal(records[i+1], w) {
			t.Errorf("record %d = %q, want %q", i+1, records[i+1], w)
		}
	}
}

func TestValidBatchIDAndDir(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		id   string
		want bool
	}{
		{"01JAB_cd-9", true},
		{"a", true},
		{strings.Repeat("a", 128), true},
		{strings.Repeat("a", 129), false},
		{"", false},
		{"..", false},
		{"../etc", false},
		{"a/b", false},
		{`a\b`, false},
		{"a.b", false},
		{"a b", false},
		{"é", false},
		{"a\x00", false},
	} {
		if got := report.ValidBatchID(tt.id); got != tt.want {
			t.Errorf("ValidBatchID(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
	if got, want := report.Dir("reports", "b1"), filepath.Join("reports", "b1"); got != want {
		t.Errorf("Dir = %q, want %q", got, want)
	}
	if got := report.Dir("reports", "../x"); got != "" {
		t.Errorf("Dir with a bad id = %q, want empty", got)
	}
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}
