package main

// A migration from a legacy CRM, as a new user would run it: an export
// with its own headers and owner emails, a mapping file, `run` against the
// simulator with a known team (some members inactive, two sharing a
// mailbox), then failed.csv fixed and fed back in.

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/bulkassign/bulkassign/report"
	"github.com/bulkassign/bulkassign/simulator"
)

const (
	migrationKey     = "k-migration-SECRET"
	migrationExport  = "../../importer/testdata/legacy-export.csv"
	migrationMapping = "../../importer/testdata/legacy-mapping.yaml"
)

// migrationSim is the CRM of the migration: members 1…8 (simulator.MemberID),
// 3 and 5 inactive, 6 and 7 sharing team@example.com.
func migrationSim(t *testing.T) (*simulator.Simulator, string) {
	t.Helper()
	ms := simulator.GenerateMembers(8)
	ms[2].Active, ms[4].Active = false, false
	ms[5].Email, ms[6].Email = "team@example.com", "team@example.com"
	sim := simulator.New(simulator.Options{APIKey: migrationKey, Members: ms})
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	return sim, srv.URL
}

// migrationRun runs the CLI and returns its stdout, stderr and error.
func migrationRun(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var stdout, stderr syncBuffer
	err := run(t.Context(), args, strings.NewReader(""), &stdout, &stderr)
	return stdout.String(), stderr.String(), err
}

// migrationReport returns the report folder of the one batch run into out.
func migrationReport(t *testing.T, out string) string {
	t.Helper()
	dirs, err := os.ReadDir(out)
	if err != nil || len(dirs) != 1 {
		t.Fatalf("report folders in %s: %v (%v), want one", out, dirs, err)
	}
	return filepath.Join(out, dirs[0].Name())
}

// migrationCSV reads a report CSV as maps keyed by header, by line.
func migrationCSV(t *testing.T, path string) ([]string, map[string]map[string]string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil || len(recs) == 0 {
		t.Fatalf("%s: %v", path, err)
	}
	rows := map[string]map[string]string{}
	for _, rec := range recs[1:] {
		m := map[string]string{}
		for i, h := range recs[0] {
			m[h] = rec[i]
		}
		rows[m["line"]] = m
	}
	return recs[0], rows
}

func wantExit(t *testing.T, err error, code int) {
	t.Helper()
	var ee *exitError
	switch {
	case code == exitOK && err != nil, code == exitFatal && (err == nil || errors.As(err, &ee)),
		code == exitPartial && (!errors.As(err, &ee) || ee.code != exitPartial):
		t.Fatalf("error %v, want exit code %d", err, code)
	}
}

func TestRunLegacyMigration(t *testing.T) {
	t.Parallel()
	sim, url := migrationSim(t)
	out := t.TempDir()
	api := []string{"--api-url", url, "--api-key", migrationKey, "--retry-base", "10ms", "--retry-max", "50ms"}

	_, stderr, err := migrationRun(t, append([]string{"run", "--out", out, "--map", migrationMapping}, append(api, migrationExport)...)...)
	wantExit(t, err, exitPartial)
	if strings.Contains(stderr, migrationKey) || strings.Contains(err.Error(), migrationKey) {
		t.Errorf("the API key is in the output")
	}
	c, m := simulator.ContactID, simulator.MemberID // the export's contacts are c(1001)…
	want := map[string][]string{
		c(1001): {m(1), m(2)}, // Yes = replace, then an add
		c(1002): {m(4)},       // replaced by line 10
		c(1007): {m(4)},       // "  AGENT0004@example.com  "
		c(1009): {m(1)},       // an empty Replace Owner? is false
	}
	if got := sim.State(); !reflect.DeepEqual(got, want) {
		t.Fatalf("CRM state %v, want %v", got, want)
	}
	if st := sim.Stats(); st.ByStatus[404] != 0 || st.Assigned != 6 {
		t.Errorf("simulator: %d assigned, %d answered 404; want 6 and none (invalid rows are never sent)", st.Assigned, st.ByStatus[404])
	}

	dir := migrationReport(t, out)
	var sum report.Summary
	b, err := os.ReadFile(filepath.Join(dir, report.SummaryFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &sum); err != nil {
		t.Fatal(err)
	}
	wantErrors := map[string]int64{"inactive_member": 2, "unknown_member_email": 1, "invalid_member_email": 1,
		"ambiguous_member_email": 1, "missing_contact_id": 1}
	if sum.Rows != 12 || sum.Succeeded != 6 || sum.Invalid != 6 || sum.Failed != 0 || !reflect.DeepEqual(sum.Errors, wantErrors) {
		t.Errorf("summary: %d rows, %d succeeded, %d invalid, %d failed, errors %v; want 12, 6, 6, 0, %v",
			sum.Rows, sum.Succeeded, sum.Invalid, sum.Failed, sum.Errors, wantErrors)
	}

	header, ok := migrationCSV(t, filepath.Join(dir, report.SucceededFile))
	wantHeader := []string{"line", "aiContactId", "teamMemberId", "removeExistingAgents",
		"Account Name", "Owner E-mail", "Region", "Last Touch", "status", "httpStatus", "attempts", "error"}
	if !reflect.DeepEqual(header, wantHeader) {
		t.Errorf("succeeded.csv header %q, want %q", header, wantHeader)
	}
	if r := ok["9"]; r["teamMemberId"] != m(4) || r["Owner E-mail"] != "AGENT0004@example.com" || r["aiContactId"] != c(1007) {
		t.Errorf("succeeded.csv line 9: %v: want the resolved id and the email as given", r)
	}

	failedPath := filepath.Join(dir, report.FailedFile)
	_, failed := migrationCSV(t, failedPath)
	wantFailed := map[string]string{
		"5":  "team member Agent 0003 <agent0003@example.com> (id " + m(3) + ") is inactive",
		"6":  `"nobody@example.com" is not the email of any of the CRM's 8 team members`,
		"7":  `teamMemberEmail "agent0001 at example.com" is not an email address`,
		"8":  `"team@example.com" is the email of 2 team members (ids ` + m(6) + ", " + m(7) + ")",
		"11": "team member Agent 0005 <agent0005@example.com> (id " + m(5) + ") is inactive",
		"13": "aiContactId is empty",
	}
	if len(failed) != len(wantFailed) {
		t.Errorf("failed.csv has lines %v, want %v", keys(failed), keys(wantFailed))
	}
	for line, msg := range wantFailed {
		if r := failed[line]; r["status"] != "invalid" || !strings.Contains(r["error"], msg) {
			t.Errorf("failed.csv line %s: %v, want invalid with %q", line, r, msg)
		}
	}

	// Fix two rows of failed.csv and feed it back in, with the same
	// mapping: its header is ours now, and the emails are still read.
	fixed, err := os.ReadFile(failedPath)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(fixed), "nobody@example.com", "agent0008@example.com", 1)
	text = strings.Replace(text, "13,,,No,Orphan account", "13,"+strings.ToUpper(c(1010))+",,No,Orphan account", 1)
	if text == string(fixed) {
		t.Fatalf("failed.csv is not as expected:\n%s", fixed)
	}
	again := filepath.Join(t.TempDir(), "failed-fixed.csv")
	if err := os.WriteFile(again, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	out2 := t.TempDir()
	_, _, err = migrationRun(t, append([]string{"run", "--out", out2, "--map", migrationMapping}, append(api, again)...)...)
	wantExit(t, err, exitPartial)
	want[c(1004)] = []string{m(8)}
	want[c(1010)] = []string{m(2)}
	if got := sim.State(); !reflect.DeepEqual(got, want) {
		t.Fatalf("CRM state after the fixed failed.csv %v, want %v", got, want)
	}
	_, failed2 := migrationCSV(t, filepath.Join(migrationReport(t, out2), report.FailedFile))
	if len(failed2) != 4 {
		t.Errorf("failed.csv of the second run has %d rows, want the 4 left unfixed", len(failed2))
	}
}

func keys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// TestRunPreflight: --preflight checks member ids before any call.
func TestRunPreflight(t *testing.T) {
	t.Parallel()
	sim, url := migrationSim(t)
	c, m := simulator.ContactID, simulator.MemberID
	in := filepath.Join(t.TempDir(), "ids.csv")
	data := "aiContactId,teamMemberId\n" + c(1) + "," + m(1) + "\n" + c(2) + "," + strings.ToUpper(m(3)) + "\n" + c(3) + "," + m(9999) + "\n"
	if err := os.WriteFile(in, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	_, _, err := migrationRun(t, "run", "--preflight", "--out", out, "--api-url", url, "--api-key", migrationKey, in)
	wantExit(t, err, exitPartial)
	if got, want := sim.State(), map[string][]string{c(1): {m(1)}}; !reflect.DeepEqual(got, want) {
		t.Errorf("CRM state %v, want %v", got, want)
	}
	if st := sim.Stats(); st.ByStatus[404] != 0 || st.Requests != 2 {
		t.Errorf("simulator saw %d requests (%d answered 404), want 2: the list and one assign", st.Requests, st.ByStatus[404])
	}
	_, failed := migrationCSV(t, filepath.Join(migrationReport(t, out), report.FailedFile))
	if !strings.Contains(failed["3"]["error"], "(id "+m(3)+") is inactive") || !strings.Contains(failed["4"]["error"], `"`+m(9999)+`" is not among the CRM's 8 team members`) {
		t.Errorf("failed.csv: %v", failed)
	}
}

// TestMigrationFatal: no member list, a refused key or a bad mapping stop
// the command before anything is queued or sent.
func TestMigrationFatal(t *testing.T) {
	t.Parallel()
	badMap := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(badMap, []byte("aiContactId: \"Contact Ref\"\nowner: \"Owner E-mail\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wrongHeader := filepath.Join(t.TempDir(), "wrong.yaml")
	if err := os.WriteFile(wrongHeader, []byte("aiContactId: \"Contact Ref\"\nteamMemberEmail: \"Owner Mail\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		args  func(url string) []string
		errIn []string
	}{
		{"refused key", func(url string) []string {
			return []string{"run", "--map", migrationMapping, "--api-url", url, "--api-key", "wrong", migrationExport}
		}, []string{"legacy-export.csv: the team member list could not be fetched, so member emails cannot be resolved", "HTTP 401"}},
		{"unknown mapping key", func(url string) []string {
			return []string{"run", "--map", badMap, "--api-url", url, "--api-key", migrationKey, migrationExport}
		}, []string{"bad.yaml: line 2: unknown key \"owner\""}},
		{"mapped header not in the file", func(url string) []string {
			return []string{"run", "--map", wrongHeader, "--api-url", url, "--api-key", migrationKey, migrationExport}
		}, []string{"legacy-export.csv: line 1: mapping " + wrongHeader + ": teamMemberEmail: no column \"Owner Mail\""}},
		{"dry run without a key", func(url string) []string {
			return []string{"import", "--dry-run", "--map", migrationMapping, "--api-url", url, "--api-key=", migrationExport}
		}, []string{"could not be fetched", "no API key: set BULKASSIGN_API_KEY"}},
		{"preflight without a key", func(url string) []string {
			return []string{"import", "--dry-run", "--preflight", "--api-url", url, "--api-key=", migrationExport}
		}, []string{"--preflight checks members against the CRM's team member list"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sim, url := migrationSim(t)
			args := tt.args(url)
			if args[0] == "run" {
				args = append([]string{"run", "--out", t.TempDir()}, args[1:]...)
			}
			_, _, err := migrationRun(t, args...)
			wantExit(t, err, exitFatal)
			for _, s := range tt.errIn {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q, want it to contain %q", err, s)
				}
			}
			if strings.Contains(err.Error(), migrationKey) {
				t.Errorf("the error shows the API key: %v", err)
			}
			if st := sim.Stats(); st.Assigned != 0 {
				t.Errorf("%d assign calls, want none", st.Assigned)
			}
		})
	}
}

// TestImportDryRunResolves: import --dry-run fetches the member list only
// for emails, and says what would be queued.
func TestImportDryRunResolves(t *testing.T) {
	t.Parallel()
	sim, url := migrationSim(t)
	stdout, _, err := migrationRun(t, "import", "--dry-run", "--map", migrationMapping, "--api-url", url, "--api-key", migrationKey, migrationExport)
	if err != nil {
		t.Fatal(err)
	}
	var sum struct {
		Rows     int            `json:"rows"`
		Valid    int            `json:"valid"`
		Resolved int            `json:"membersResolvedByEmail"`
		Reasons  map[string]int `json:"invalidReasons"`
	}
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil {
		t.Fatalf("%v: %s", err, stdout)
	}
	if sum.Rows != 12 || sum.Valid != 6 || sum.Resolved != 6 || sum.Reasons["ambiguous_member_email"] != 1 {
		t.Errorf("dry run summary %+v", sum)
	}
	if st := sim.Stats(); st.Requests != 1 || st.Assigned != 0 {
		t.Errorf("simulator saw %d requests, %d assigns; want the member list only", st.Requests, st.Assigned)
	}

	// Ids only: no key needed, nothing fetched.
	in := filepath.Join(t.TempDir(), "ids.csv")
	if err := os.WriteFile(in, []byte("aiContactId,teamMemberId\n"+simulator.ContactID(1)+","+simulator.MemberID(1)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := migrationRun(t, "import", "--dry-run", "--api-url", url, "--api-key=", in); err != nil {
		t.Fatal(err)
	}
	if st := sim.Stats(); st.Requests != 1 {
		t.Errorf("simulator saw %d requests, want still 1", st.Requests)
	}
}
