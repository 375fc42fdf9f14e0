package main

import (
	"bytes"
	"context"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bulkassign/bulkassign/report"
	"github.com/bulkassign/bulkassign/simulator"
)

// control changes a contact in the simulator behind bulkassign's back,
// through its control endpoint, as someone editing the CRM by hand would.
func control(t *testing.T, api, method, contact, member, body string) {
	t.Helper()
	u := api + strings.Replace(simulator.ContactAgentsPattern, "{contact}", contact, 1)
	if member != "" {
		u += "/" + member
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %s", method, u, resp.Status)
	}
}

// TestVerify: a batch verifies clean; contacts changed behind the tool's
// back drift (exactly those; an extra agent of an add-only contact is
// not drift); the --fix file, run, brings the drift back to none. The
// same holds for verifying the file itself.
func TestVerify(t *testing.T) {
	d := newDist(t, simulator.Options{})
	c, m := simulator.ContactID, simulator.MemberID
	var rows []assignment
	for i := 1; i <= 40; i++ {
		switch i % 3 {
		case 0: // add, then replace, then add: exactly [m2, m3]
			rows = append(rows, assignment{c(i), m(1), false}, assignment{c(i), m(2), true}, assignment{c(i), m(3), false})
		case 1: // adds only: contains [m4, m5]
			rows = append(rows, assignment{c(i), m(4), false}, assignment{c(i), m(5), false})
		default: // one replace: exactly [m6]
			rows = append(rows, assignment{c(i), m(6), true})
		}
	}
	file := writeAssignments(t, d.dir, "assignments.csv", rows)
	api := []string{"--api-url", d.api, "--api-key", d.key, "--out", d.dir}
	res := d.cli(t, "run", append(append(api, fastFlags()...), file)...)
	if res.code != exitOK {
		t.Fatalf("run: exit %d: %s\n%s", res.code, res.errText(), res.stderr)
	}
	id := readSummary(t, reportDir(t, d.dir)).BatchID

	verifyCLI := func(arg string, flags ...string) cliResult {
		t.Helper()
		return d.cli(t, "verify", append(append(append(api, "--progress-every", "1h"), flags...), arg)...)
	}
	for _, arg := range []string{id, file} {
		if r := verifyCLI(arg, "--drift", filepath.Join(t.TempDir(), "drift.csv")); r.code != exitOK {
			t.Fatalf("verify %s before any change: exit %d: %s\n%s\n%s", arg, r.code, r.errText(), r.stdout, r.stderr)
		}
	}

	control(t, d.api, http.MethodPost, c(3), m(9), "")   // exact [m2 m3] gets m9: unexpected
	control(t, d.api, http.MethodDelete, c(4), m(4), "") // contains [m4 m5] loses m4: missing
	control(t, d.api, http.MethodPut, c(5), "", "[]")    // exact [m6] loses everything
	control(t, d.api, http.MethodPost, c(7), m(9), "")   // contains [m4 m5] gets m9: still contains them
	// expected, actual, missing, unexpected
	want := map[string][4]string{
		c(3): {m(2) + ";" + m(3), m(2) + ";" + m(3) + ";" + m(9), "", m(9)},
		c(4): {m(4) + ";" + m(5), m(5), m(4), ""},
		c(5): {m(6), "", m(6), ""},
	}

	fix := filepath.Join(t.TempDir(), "fix.csv")
	r := verifyCLI(id, "--fix", fix)
	if r.code != exitPartial {
		t.Fatalf("verify %s after the changes: exit %d, want 2: %s\n%s", id, r.code, r.errText(), r.stderr)
	}
	driftPath := filepath.Join(report.Dir(d.dir, id), report.DriftFile)
	checkDrift(t, driftPath, want)
	fileDrift := filepath.Join(t.TempDir(), "drift.csv")
	if r := verifyCLI(file, "--drift", fileDrift); r.code != exitPartial {
		t.Fatalf("verify %s after the changes: exit %d, want 2: %s\n%s", file, r.code, r.errText(), r.stderr)
	}
	checkDrift(t, fileDrift, want)

	fixOut := t.TempDir()
	if r := runCLI(t, nil, append(append([]string{"run", "--api-url", d.api, "--api-key", d.key, "--out", fixOut}, fastFlags()...), fix)...); r.code != exitOK {
		t.Fatalf("run the fix: exit %d: %s\n%s", r.code, r.errText(), r.stderr)
	}
	for _, arg := range []string{id, file} {
		if r := verifyCLI(arg, "--drift", filepath.Join(t.TempDir(), "drift.csv")); r.code != exitOK {
			t.Fatalf("verify %s after the fix: exit %d: %s\n%s", arg, r.code, r.errText(), r.stdout)
		}
	}
	if got := d.sim.Agents(c(7)); !slices.Equal(got, []string{m(4), m(5), m(9)}) {
		t.Errorf("the fix touched a contact that had not drifted: %s has %v", c(7), got)
	}
}

// checkDrift compares drift.csv with want, by contact.
func checkDrift(t *testing.T, path string, want map[string][4]string) {
	t.Helper()
	header, rows := readReportCSV(t, path)
	if wantHeader := []string{"aiContactId", "expected", "actual", "missing", "unexpected", "match", "error"}; !slices.Equal(header, wantHeader) {
		t.Errorf("%s header %v, want %v", path, header, wantHeader)
	}
	got := map[string][4]string{}
	for _, r := range rows {
		c := r.cells
		got[c["aiContactId"]] = [4]string{c["expected"], c["actual"], c["missing"], c["unexpected"]}
	}
	if len(got) != len(want) {
		var b bytes.Buffer
		for k := range got {
			b.WriteString(k + " ")
		}
		t.Errorf("%s names %d contacts (%s), want exactly %d", path, len(got), b.String(), len(want))
	}
	for contact, w := range want {
		if g, ok := got[contact]; !ok {
			t.Errorf("%s: %s missing", path, contact)
		} else if g != w {
			t.Errorf("%s: %s: expected, actual, missing, unexpected = %q, want %q", path, contact, g, w)
		}
	}
}
