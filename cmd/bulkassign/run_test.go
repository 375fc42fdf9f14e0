package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/report"
	"github.com/bulkassign/bulkassign/simulator"
)

// messyRun is one `run` of a generated file and what it must produce.
type messyRun struct {
	res  cliResult
	sim  *simulator.Simulator
	url  string // the simulator's
	out  string // --out
	dir  string // the batch's report folder
	want expectation
}

// runMessy writes f as format into a file, runs it against a simulator
// with opts (plus f's contacts and members) on target, and returns what
// happened. extra flags go last.
func runMessy(t *testing.T, f *messyFile, format string, target redisTarget, opts simulator.Options, extra ...string) messyRun {
	t.Helper()
	known := f.simOptions()
	opts.Contacts, opts.Members = known.Contacts, known.Members
	opts.APIKey = "k-test"
	sim, url := startSim(t, opts)

	data, lines := f.render(format)
	tmp := t.TempDir()
	file := filepath.Join(tmp, "assignments."+format)
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(tmp, "reports")
	args := []string{"run", "--api-url", url, "--api-key", "k-test", "--out", out}
	args = append(args, fastFlags()...)
	args = append(args, target.flags()...)
	args = append(args, extra...)
	args = append(args, file)
	res := runCLI(t, nil, args...)
	if res.code == 1 {
		t.Fatalf("run: exit 1: %v\nstderr:\n%s", res.err, res.stderr)
	}
	return messyRun{res: res, sim: sim, url: url, out: out, dir: reportDir(t, out), want: f.expect(format, lines)}
}

// refNeutralise is the report's formula neutralisation as docs/design.md and
// OWASP describe it.
func refNeutralise(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// check compares a run with the reference model: exit code, the CRM's
// final state, summary.json, and every line of succeeded.csv and
// failed.csv. exactCalls also requires the summary's apiCalls to match the
// requests the simulator saw.
func (r messyRun) check(t *testing.T, exactCalls bool) {
	t.Helper()
	if r.res.code != exitPartial {
		t.Errorf("exit code %d (%v), want %d: the file has invalid and failing rows", r.res.code, r.res.err, exitPartial)
	}

	got := r.sim.State()
	if !maps.EqualFunc(got, r.want.state, slices.Equal) {
		n := 0
		for c := range r.want.state {
			if !slices.Equal(got[c], r.want.state[c]) && n < 10 {
				t.Errorf("contact %s: agents %v, want %v", c, got[c], r.want.state[c])
				n++
			}
		}
		for c := range got {
			if _, ok := r.want.state[c]; !ok && n < 10 {
				t.Errorf("contact %s: agents %v, want none", c, got[c])
				n++
			}
		}
		t.Errorf("CRM state differs from the model: %d contacts, want %d", len(got), len(r.want.state))
	}

	s := readSummary(t, r.dir)
	if s.Status != "done" || s.Rows != int64(len(r.want.rows)) || s.Succeeded != r.want.counts[wantSucceeded] ||
		s.Failed != r.want.counts[wantFailed] || s.Invalid != r.want.counts[wantInvalid] {
		t.Errorf("summary: status %s, rows %d: %d succeeded, %d failed, %d invalid; want done, %d: %d, %d, %d",
			s.Status, s.Rows, s.Succeeded, s.Failed, s.Invalid, len(r.want.rows),
			r.want.counts[wantSucceeded], r.want.counts[wantFailed], r.want.counts[wantInvalid])
	}
	if !maps.Equal(s.Errors, r.want.reasons) {
		t.Errorf("summary errors %v, want %v", s.Errors, r.want.reasons)
	}
	if st := r.sim.Stats(); exactCalls && st.Requests != s.APICalls {
		t.Errorf("summary apiCalls %d, the simulator saw %d requests", s.APICalls, st.Requests)
	}

	byLine := map[int]wantRow{}
	for _, w := range r.want.rows {
		byLine[w.line] = w
	}
	seen := map[int]bool{}
	for _, name := range []string{report.SucceededFile, report.FailedFile} {
		header, rows := readReportCSV(t, filepath.Join(r.dir, name))
		wantHeader := []string{"line", "aiContactId", "teamMemberId", "removeExistingAgents", "status", "httpStatus", "attempts", "error"}
		if len(header) != len(wantHeader)+2 || !slices.Equal(header[:4], wantHeader[:4]) || !slices.Equal(header[6:], wantHeader[4:]) {
			t.Errorf("%s header %q: want %q with the two extra columns after removeExistingAgents", name, header, wantHeader)
		}
		bad := 0
		for _, row := range rows {
			c := row.cells
			line, err := strconv.Atoi(c["line"])
			w, ok := byLine[line]
			switch {
			case err != nil || !ok:
				t.Errorf("%s line %d: line cell %q is not a line of the input", name, row.fileLine, c["line"])
				continue
			case seen[line]:
				t.Errorf("%s: input line %d reported twice", name, line)
				continue
			}
			seen[line] = true
			if errs := compareRow(c, w); len(errs) > 0 && bad < 10 {
				bad++
				t.Errorf("%s, input line %d (%s): %s", name, line, w.status, strings.Join(errs, "; "))
			}
			wantFile := report.FailedFile
			if w.status == wantSucceeded {
				wantFile = report.SucceededFile
			}
			if name != wantFile {
				t.Errorf("input line %d (%s) is in %s, want %s", line, w.status, name, wantFile)
			}
		}
	}
	for _, w := range r.want.rows {
		if !seen[w.line] {
			t.Errorf("input line %d (%s) is in no report file", w.line, w.status)
		}
	}
}

// compareRow checks one report row against the model.
func compareRow(c map[string]string, w wantRow) []string {
	var errs []string
	eq := func(col, want string) {
		if c[col] != want {
			errs = append(errs, fmt.Sprintf("%s %q, want %q", col, c[col], want))
		}
	}
	eq("aiContactId", refNeutralise(w.contact))
	eq("teamMemberId", refNeutralise(w.member))
	eq("removeExistingAgents", w.replace)
	eq("status", w.status)
	eq("httpStatus", w.http)
	// The extras, whatever the input called them.
	for col := range c {
		switch strings.ToLower(col) {
		case "note":
			eq(col, refNeutralise(w.note))
		case "formula":
			eq(col, refNeutralise(w.formula))
		}
	}
	if w.status == wantInvalid || w.reason == jobs.ReasonBlocked {
		eq("attempts", "") // never sent
	} else if n, err := strconv.Atoi(c["attempts"]); err != nil || n < 1 {
		errs = append(errs, fmt.Sprintf("attempts %q, want a count", c["attempts"]))
	}
	if w.errHas == "" {
		eq("error", "")
	} else if !strings.Contains(c["error"], w.errHas) {
		errs = append(errs, fmt.Sprintf("error %q does not mention %q", c["error"], w.errHas))
	}
	return errs
}

var formats = []string{fmtCSV, fmtJSON, fmtJSONL}

// TestRunMessyFile runs the generated file in each format through the
// embedded queue and a real Redis, and checks every outcome against the
// reference model.
func TestRunMessyFile(t *testing.T) {
	t.Parallel()
	f := newMessyFile(1, messyRows)
	for _, queue := range []string{"embedded", "redis"} {
		for _, format := range formats {
			t.Run(queue+"/"+format, func(t *testing.T) {
				t.Parallel()
				var target redisTarget
				if queue == "redis" {
					target = newRedisTarget(t)
				}
				r := runMessy(t, f, format, target, simulator.Options{}, "--request-timeout", "5s")
				r.check(t, true)
			})
		}
	}
}

// TestRunMessyFileFlaky runs the generated file against a CRM that fails
// transiently, hangs and rate-limits: the outcome must be the same.
func TestRunMessyFileFlaky(t *testing.T) {
	t.Parallel()
	f := newMessyFile(2, messyRows)
	flaky := simulator.Options{
		Transient: 0.2, TransientAttempts: 2,
		Hang: 0.01, HangFor: 2 * time.Second,
		Rate: 300, Burst: 10,
	}
	for _, tc := range []struct{ queue, format string }{
		{"embedded", fmtCSV}, {"redis", fmtJSONL}, {"redis", fmtJSON},
	} {
		t.Run(tc.queue+"/"+tc.format, func(t *testing.T) {
			t.Parallel()
			var target redisTarget
			if tc.queue == "redis" {
				target = newRedisTarget(t)
			}
			r := runMessy(t, f, tc.format, target, flaky,
				"--max-attempts", "6", "--request-timeout", "300ms", "--rate", "250", "--burst", "5")
			r.check(t, false)
			s := readSummary(t, r.dir)
			if s.Retries == 0 {
				t.Errorf("summary retries 0: the simulator's faults were never met")
			}
			if n := r.sim.Stats().ByStatus[http.StatusTooManyRequests]; s.RateLimited != n {
				t.Errorf("summary rateLimited %d, the simulator answered 429 %d times", s.RateLimited, n)
			}
			t.Logf("%d API calls, %d retries, %d rate-limited in %.1fs", s.APICalls, s.Retries, s.RateLimited, s.DurationSeconds)
		})
	}
}

// TestRunFailedCSVReimport feeds failed.csv back in as it is: it is a
// valid input, and with nothing fixed the same rows fail the same way.
func TestRunFailedCSVReimport(t *testing.T) {
	t.Parallel()
	f := newMessyFile(3, 600)
	first := runMessy(t, f, fmtCSV, redisTarget{}, simulator.Options{}, "--request-timeout", "5s")
	first.check(t, true)
	failedCSV := filepath.Join(first.dir, report.FailedFile)
	_, before := readReportCSV(t, failedCSV)

	sim, url := startSim(t, f.simOptions())
	out := filepath.Join(t.TempDir(), "again")
	args := append([]string{"run", "--api-url", url, "--api-key", "k", "--out", out}, fastFlags()...)
	res := runCLI(t, nil, append(args, failedCSV)...)
	if res.code != exitPartial {
		t.Fatalf("re-import: exit %d (%v), want %d\nstderr:\n%s", res.code, res.err, exitPartial, res.stderr)
	}
	if st := sim.State(); len(st) != 0 {
		t.Errorf("re-import changed %d contacts, want none: every row still fails", len(st))
	}
	dir := reportDir(t, out)
	s := readSummary(t, dir)
	if s.Rows != int64(len(before)) || s.Succeeded != 0 || s.Invalid != first.want.counts[wantInvalid] ||
		s.Failed != first.want.counts[wantFailed] {
		t.Errorf("re-import summary: %d rows: %d succeeded, %d failed, %d invalid; want %d: 0, %d, %d",
			s.Rows, s.Succeeded, s.Failed, s.Invalid, len(before), first.want.counts[wantFailed], first.want.counts[wantInvalid])
	}
	_, ok := readReportCSV(t, filepath.Join(dir, report.SucceededFile))
	if len(ok) != 0 {
		t.Errorf("re-import: %d rows succeeded, want 0", len(ok))
	}
	_, after := readReportCSV(t, filepath.Join(dir, report.FailedFile))
	if len(after) != len(before) {
		t.Fatalf("re-import failed.csv has %d rows, want %d", len(after), len(before))
	}
	// A blocked row names the line that blocked it: now failed.csv's own.
	fileLine := map[string]string{}
	for _, b := range before {
		fileLine[b.cells["line"]] = strconv.Itoa(b.fileLine)
	}
	blockedBy := regexp.MustCompile(`^not sent: line (\d+) `)
	for i, b := range before {
		a := after[i]
		// The line is now failed.csv's own line.
		if a.cells["line"] != strconv.Itoa(b.fileLine) {
			t.Errorf("row %d: line %q, want %d (its line in the re-imported failed.csv)", i, a.cells["line"], b.fileLine)
		}
		if m := blockedBy.FindStringSubmatch(b.cells["error"]); m != nil {
			b.cells["error"] = strings.Replace(b.cells["error"], "line "+m[1]+" ", "line "+fileLine[m[1]]+" ", 1)
		}
		for _, col := range []string{"aiContactId", "teamMemberId", "removeExistingAgents", "Note", "Formula", "status", "httpStatus", "error"} {
			if a.cells[col] != b.cells[col] {
				t.Errorf("row %d (line %s before): %s %q, was %q", i, b.cells["line"], col, a.cells[col], b.cells[col])
			}
		}
	}
}

// TestRunFailedCSVFixedRoundTrip is the promise of failed.csv: run a
// file, fix failed.csv as an operator would (correct the refused members,
// delete the rows that cannot be fixed), feed it back as it is, and the
// CRM ends exactly in the state the corrected file describes.
func TestRunFailedCSVFixedRoundTrip(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		format string
		flaky  bool
	}{{fmtCSV, false}, {fmtJSON, false}, {fmtCSV, true}} {
		t.Run(fmt.Sprintf("%s/flaky=%v", tc.format, tc.flaky), func(t *testing.T) {
			t.Parallel()
			format := tc.format
			f := newMessyFile(4, 1500)
			var first messyRun
			if tc.flaky {
				// Some pairs fail 3 times; rows get 2 attempts: those are
				// dead-lettered, and kept in the fixed file as they are.
				first = runMessy(t, f, format, redisTarget{}, simulator.Options{Transient: 0.05, TransientAttempts: 3},
					"--request-timeout", "5s", "--max-attempts", "2")
			} else {
				first = runMessy(t, f, format, redisTarget{}, simulator.Options{}, "--request-timeout", "5s")
				first.check(t, true)
			}

			// The fix: refused members become an active one, rows that
			// cannot be fixed (invalid, unknown contact) go.
			good := simulator.MemberID(1)
			raw, err := os.ReadFile(filepath.Join(first.dir, report.FailedFile))
			if err != nil {
				t.Fatal(err)
			}
			recs, err := csv.NewReader(bytes.NewReader(raw)).ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			col := map[string]int{}
			for i, h := range recs[0] {
				col[h] = i
			}
			fixed := [][]string{recs[0]}
			fix := map[int]string{} // input line -> new member, "" to delete
			dead := 0
			for _, rec := range recs[1:] {
				line, _ := strconv.Atoi(rec[col["line"]])
				switch errText := rec[col["error"]]; {
				case rec[col["status"]] == wantInvalid, strings.Contains(errText, "contact") && strings.Contains(errText, "not found"):
					fix[line] = ""
					continue
				case strings.Contains(errText, "team member"):
					rec[col["teamMemberId"]] = good
					fix[line] = good
				case strings.Contains(errText, "gave up after"):
					dead++ // kept: the CRM was only down for a while
				case !strings.Contains(errText, "not sent"):
					t.Fatalf("line %d failed for a reason the test cannot fix: %s", line, errText)
				}
				fixed = append(fixed, rec)
			}
			var buf bytes.Buffer
			w := csv.NewWriter(&buf)
			if err := w.WriteAll(fixed); err != nil {
				t.Fatal(err)
			}
			fixedFile := filepath.Join(t.TempDir(), "fixed.csv")
			if err := os.WriteFile(fixedFile, buf.Bytes(), 0o600); err != nil {
				t.Fatal(err)
			}
			// Back in, against the same CRM.
			args := append([]string{"run", "--api-url", first.url, "--api-key", "k-test", "--out", t.TempDir()}, fastFlags()...)
			if res := runCLI(t, nil, append(args, fixedFile)...); res.code == exitFatal {
				t.Fatalf("re-import: exit %d (%v)\nstderr:\n%s", res.code, res.err, res.stderr)
			}

			// The corrected file, as the reference model runs it from an
			// empty CRM.
			corrected := &messyFile{contacts: f.contacts, members: f.members}
			var lines []int
			for i, r := range f.rows {
				m, ok := fix[first.want.rows[i].line]
				switch {
				case ok && m == "":
					continue
				case ok:
					r.member, r.mBase = m, m
				}
				corrected.rows = append(corrected.rows, r)
				lines = append(lines, len(lines)+2)
			}
			if len(fix) == 0 || len(corrected.rows) == len(f.rows) || (tc.flaky && dead == 0) {
				t.Fatalf("nothing to fix (%d fixes, %d dead letters): the test needs refused, invalid and dead rows", len(fix), dead)
			}
			checkState(t, first.sim.State(), corrected.expect(format, lines).state)
		})
	}
}

// TestRunExitOK: a file whose every row succeeds exits 0.
func TestRunExitOK(t *testing.T) {
	t.Parallel()
	// Both embedded queues: the private redis-server (auto, where one is
	// installed) and miniredis in this process.
	for _, embedded := range []string{"auto", "memory"} {
		t.Run(embedded, func(t *testing.T) {
			t.Parallel()
			testRunExitOK(t, "--embedded", embedded)
		})
	}
}

func testRunExitOK(t *testing.T, flags ...string) {
	sim, url := startSim(t, simulator.Options{})
	var in bytes.Buffer
	in.WriteString("aiContactId,teamMemberId,removeExistingAgents\n")
	want := map[string][]string{}
	for i := range 40 {
		c, m := simulator.ContactID(i%10), simulator.MemberID(i%3)
		fmt.Fprintf(&in, "%s,%s,%v\n", c, m, i%7 == 0)
		if i%7 == 0 {
			want[c] = []string{m}
		} else if !slices.Contains(want[c], m) {
			want[c] = append(want[c], m)
		}
	}
	file := filepath.Join(t.TempDir(), "ok.csv")
	if err := os.WriteFile(file, in.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"run", "--api-url", url, "--api-key", "k", "--out", t.TempDir()}, fastFlags()...)
	args = append(args, flags...)
	res := runCLI(t, nil, append(args, file)...)
	if res.code != exitOK {
		t.Fatalf("exit %d (%v), want 0\nstderr:\n%s", res.code, res.err, res.stderr)
	}
	if got := sim.State(); !maps.EqualFunc(got, want, slices.Equal) {
		t.Errorf("state %v, want %v", got, want)
	}
}

// TestRunBrokenFile: a file that is unusable as a whole exits 1 with a
// message naming the file and the line, makes no call and leaves no batch
// behind.
func TestRunBrokenFile(t *testing.T) {
	t.Parallel()
	// Enough good rows before the problem that some reach Redis first.
	var good strings.Builder
	good.WriteString("aiContactId,teamMemberId,note\n")
	for i := range 2500 {
		fmt.Fprintf(&good, "%s,%s,ok\n", simulator.ContactID(i), simulator.MemberID(1))
	}
	// "two\nlines" makes the file's lines differ from the record count.
	csvBad := good.String() + "c-x,m-1,\"two\nlines\"\nc-y,m-1\n" // line 2502+2 = 2504
	var js strings.Builder
	js.WriteString("[\n")
	for i := range 2500 {
		fmt.Fprintf(&js, "  {\"aiContactId\": %q, \"teamMemberId\": %q},\n", simulator.ContactID(i), simulator.MemberID(1))
	}
	js.WriteString("  {\"aiContactId\": \"c-x\", \"teamMemberId\": \"m-1\"}\n") // line 2502: no comma
	js.WriteString("  {\"aiContactId\": \"c-y\", \"teamMemberId\": \"m-1\"}\n") // line 2503
	js.WriteString("]\n")

	tests := []struct {
		name     string
		file     string // name in the temp folder; "" for a path that does not exist
		data     string
		dir      bool // the path is a folder
		wantMsgs []string
	}{
		{name: "wrong field count", file: "in.csv", data: csvBad, wantMsgs: []string{"in.csv", "line 2504", "number of fields"}},
		{name: "JSON syntax error", file: "in.json", data: js.String(), wantMsgs: []string{"in.json", "line 2503"}},
		{name: "no member column", file: "in.csv", data: "aiContactId,note\nc-1,x\n", wantMsgs: []string{"in.csv", "line 1", "teamMemberId"}},
		{name: "header only", file: "in.csv", data: "aiContactId,teamMemberId\r\n", wantMsgs: []string{"in.csv", "no data rows"}},
		{name: "empty file", file: "in.csv", data: "", wantMsgs: []string{"in.csv", "empty"}},
		{name: "empty JSON array", file: "in.json", data: "[]", wantMsgs: []string{"in.json"}},
		{name: "unreadable path", file: "", wantMsgs: []string{"missing.csv"}},
		{name: "a folder", file: "folder.csv", dir: true, wantMsgs: []string{"folder.csv"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sim, url := startSim(t, simulator.Options{})
			target := newRedisTarget(t)
			tmp := t.TempDir()
			path := filepath.Join(tmp, "missing.csv")
			if tt.file != "" {
				path = filepath.Join(tmp, tt.file)
				var err error
				if tt.dir {
					err = os.Mkdir(path, 0o700)
				} else {
					err = os.WriteFile(path, []byte(tt.data), 0o600)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			out := filepath.Join(tmp, "reports")
			args := append([]string{"run", "--api-url", url, "--api-key", "k", "--out", out}, fastFlags()...)
			args = append(args, target.flags()...)
			res := runCLI(t, nil, append(args, path)...)
			if res.code != exitFatal {
				t.Fatalf("exit %d (%v), want 1", res.code, res.err)
			}
			for _, m := range tt.wantMsgs {
				if !strings.Contains(res.errText(), m) {
					t.Errorf("message %q does not mention %q", res.errText(), m)
				}
			}
			if n := sim.Stats().Requests; n != 0 {
				t.Errorf("the CRM got %d requests, want none", n)
			}
			if keys := target.keys(t); len(keys) != 0 {
				t.Errorf("keys left in Redis: %v", keys)
			}
			if _, err := os.Stat(out); err == nil {
				t.Errorf("a report folder was written for a broken file")
			}
		})
	}
}

func TestRunUnknownFlag(t *testing.T) {
	t.Parallel()
	res := runCLI(t, nil, "run", "--no-such-flag", "x.csv")
	if res.code != exitFatal {
		t.Fatalf("exit %d (%v), want 1", res.code, res.err)
	}
	if !strings.Contains(res.stderr+res.errText(), "no-such-flag") {
		t.Errorf("nothing names the unknown flag: %v\nstderr:\n%s", res.err, res.stderr)
	}
}

// TestRunWrongKey: a refused key stops the run at once with exit 1; the
// workers do not each try it.
func TestRunWrongKey(t *testing.T) {
	t.Parallel()
	sim, url := startSim(t, simulator.Options{APIKey: "right"})
	var in strings.Builder
	in.WriteString("aiContactId,teamMemberId\n")
	for i := range 300 {
		fmt.Fprintf(&in, "%s,%s\n", simulator.ContactID(i), simulator.MemberID(i%5))
	}
	file := filepath.Join(t.TempDir(), "in.csv")
	if err := os.WriteFile(file, []byte(in.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"run", "--api-url", url, "--api-key", "wrong", "--concurrency", "32", "--out", t.TempDir()}, fastFlags()...)
	res := runCLI(t, nil, append(args, file)...)
	if res.code != exitFatal {
		t.Fatalf("exit %d (%v), want 1\nstderr:\n%s", res.code, res.err, res.stderr)
	}
	if !strings.Contains(res.errText(), "refused the API key") {
		t.Errorf("message %q does not say the key was refused", res.errText())
	}
	if n := sim.Stats().Requests; n > 3 {
		t.Errorf("the CRM got %d requests with a refused key, want at most 3", n)
	}
	if st := sim.State(); len(st) != 0 {
		t.Errorf("assignments made with a refused key: %v", st)
	}
}

// TestRunNonUUIDIDs: against a CRM that answers 400 to an id that is not a
// UUID, as the real API documents its ids, the rows whose ids are not
// UUIDs (an older id, a UUID cut short, braces, a URN, a JSON number) are
// invalid and cost no call, each with its reason; the UUID rows, in any
// case, go through lower-cased. With --id-format any the older ids are sent,
// and this CRM refuses them, but braces, a URN and a JSON number are still
// never ids.
func TestRunNonUUIDIDs(t *testing.T) {
	t.Parallel()
	c, m := simulator.ContactID, simulator.MemberID
	in := "[\n" + strings.Join([]string{
		`{"aiContactId": "` + c(1) + `", "teamMemberId": "` + m(1) + `"}`,
		`{"aiContactId": "c-000002", "teamMemberId": "` + m(1) + `"}`,
		`{"aiContactId": "` + c(3) + `", "teamMemberId": "agent-1a2b3c4d"}`,
		`{"aiContactId": "` + c(4)[:35] + `", "teamMemberId": "` + m(1) + `"}`,
		`{"aiContactId": "{` + c(5) + `}", "teamMemberId": "` + m(1) + `"}`,
		`{"aiContactId": "` + c(6) + `", "teamMemberId": "urn:uuid:` + m(2) + `"}`,
		`{"aiContactId": 7, "teamMemberId": "` + m(1) + `"}`,
		`{"aiContactId": "` + strings.ToUpper(c(8)) + `", "teamMemberId": " ` + strings.ToUpper(m(2)) + ` "}`,
	}, ",\n") + "\n]\n"
	file := filepath.Join(t.TempDir(), "ids.json")
	if err := os.WriteFile(file, []byte(in), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name           string
		flags          []string
		calls, refused int64 // requests the CRM saw, and answered 400
		reasons        map[string]int64
	}{
		{name: "uuid", calls: 2, reasons: map[string]int64{"invalid_contact_id": 4, "invalid_member_id": 2}},
		{name: "any", flags: []string{"--id-format", "any"}, calls: 5, refused: 3,
			reasons: map[string]int64{"http_400": 3, "invalid_contact_id": 2, "invalid_member_id": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sim := simulator.New(simulator.Options{})
			var calls, refused atomic.Int64
			crm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				// /api/public/contact/{aiContactId}/assign-team-member/{teamMemberId}
				if p := strings.Split(r.URL.Path, "/"); len(p) == 7 && (!jobs.IDUUID.Valid(p[4]) || !jobs.IDUUID.Valid(p[6])) {
					refused.Add(1)
					http.Error(w, `{"message":"aiContactId and teamMemberId must be UUIDs"}`, http.StatusBadRequest)
					return
				}
				sim.ServeHTTP(w, r)
			}))
			t.Cleanup(crm.Close)
			out := t.TempDir()
			args := append([]string{"run", "--api-url", crm.URL, "--api-key", "k", "--out", out}, fastFlags()...)
			res := runCLI(t, nil, append(append(args, tt.flags...), file)...)
			if res.code != exitPartial {
				t.Fatalf("exit %d (%v), want 2\nstderr:\n%s", res.code, res.err, res.stderr)
			}
			if calls.Load() != tt.calls || refused.Load() != tt.refused {
				t.Errorf("the CRM saw %d calls and refused %d, want %d and %d", calls.Load(), refused.Load(), tt.calls, tt.refused)
			}
			want := map[string][]string{c(1): {m(1)}, c(8): {m(2)}}
			if got := sim.State(); !maps.EqualFunc(got, want, slices.Equal) {
				t.Errorf("CRM state %v, want %v", got, want)
			}
			dir := reportDir(t, out)
			if s := readSummary(t, dir); s.Succeeded != 2 || !maps.Equal(s.Errors, tt.reasons) {
				t.Errorf("summary: %d succeeded, errors %v; want 2 and %v", s.Succeeded, s.Errors, tt.reasons)
			}
			_, failed := readReportCSV(t, filepath.Join(dir, report.FailedFile))
			for _, r := range failed {
				if e := r.cells["error"]; r.cells["status"] == wantInvalid && tt.name == "uuid" && !strings.Contains(e, "want a UUID, 8-4-4-4-12 hex digits") {
					t.Errorf("failed.csv line %s: error %q does not show the form wanted", r.cells["line"], e)
				}
			}
		})
	}
}

// TestRunKeyNeverWritten runs with a distinctive key, with failures and
// dead letters, and looks for the key in everything the run left.
func TestRunKeyNeverWritten(t *testing.T) {
	t.Parallel()
	const key = "sk-SECRET-1234"
	f := newMessyFile(4, 400)
	opts := f.simOptions()
	opts.APIKey = key
	opts.Transient, opts.TransientAttempts = 0.2, 3
	sim, url := startSim(t, opts)
	target := newRedisTarget(t)
	data, _ := f.render(fmtCSV)
	tmp := t.TempDir()
	file := filepath.Join(tmp, "in.csv")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(tmp, "reports")
	args := append([]string{"run", "--api-url", url, "--api-key", key, "--out", out,
		"--max-attempts", "2", "--log-level", "debug"}, fastFlags()...)
	args = append(args, target.flags()...)
	res := runCLI(t, nil, append(args, file)...)
	if res.code != exitPartial {
		t.Fatalf("exit %d (%v), want 2\nstderr:\n%s", res.code, res.err, res.stderr)
	}
	if sim.Stats().ByStatus[503]+sim.Stats().ByStatus[500]+sim.Stats().ByStatus[502] == 0 {
		t.Fatal("no transient failure happened: the test proves less than it should")
	}

	for name, text := range map[string]string{"stdout": res.stdout, "stderr": res.stderr, "error": res.errText()} {
		if strings.Contains(text, key) {
			t.Errorf("the key is in %s", name)
		}
	}
	err := filepath.WalkDir(tmp, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(key)) {
			t.Errorf("the key is in %s", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	c := target.client(t)
	ctx := context.Background()
	keys := target.keys(t)
	if len(keys) == 0 {
		t.Fatal("no keys in the namespace to look at")
	}
	for _, k := range keys {
		if strings.Contains(k, key) {
			t.Errorf("the key is in a Redis key name: %s", k)
		}
		var values []string
		typ, err := c.Type(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		switch typ {
		case "string":
			values = []string{c.Get(ctx, k).Val()}
		case "hash":
			for f, v := range c.HGetAll(ctx, k).Val() {
				values = append(values, f, v)
			}
		case "list":
			values = c.LRange(ctx, k, 0, -1).Val()
		case "set":
			values = c.SMembers(ctx, k).Val()
		case "zset":
			values = c.ZRange(ctx, k, 0, -1).Val()
		case "stream":
			for _, m := range c.XRange(ctx, k, "-", "+").Val() {
				values = append(values, fmt.Sprint(m.Values))
			}
		case "none": // expired meanwhile
		default:
			t.Errorf("key %s has type %s the test cannot read", k, typ)
		}
		values = append(values, c.Dump(ctx, k).Val())
		for _, v := range values {
			if strings.Contains(v, key) {
				t.Errorf("the key is in Redis, under %s (%s)", k, typ)
				break
			}
		}
	}
}

// TestRunStdin reads the file from stdin with "-", CSV and JSON sniffed.
func TestRunStdin(t *testing.T) {
	t.Parallel()
	f := newMessyFile(5, 300)
	for _, format := range []string{fmtCSV, fmtJSON} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			sim, url := startSim(t, f.simOptions())
			data, lines := f.render(format)
			want := f.expect(format, lines)
			out := t.TempDir()
			args := append([]string{"run", "--api-url", url, "--api-key", "k", "--out", out}, fastFlags()...)
			res := runCLI(t, bytes.NewReader(data), append(args, "-")...)
			r := messyRun{res: res, sim: sim, out: out, dir: reportDir(t, out), want: want}
			r.check(t, true)
		})
	}
}
