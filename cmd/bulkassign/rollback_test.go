package main

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bulkassign/bulkassign/report"
	"github.com/bulkassign/bulkassign/simulator"
)

// rbFresh is the contact that gets its first agent in the second batch of
// rollbackFiles.
var rbFresh = simulator.ContactID(199)

// rollbackFiles are a first batch that sets contacts' agents, and a second
// one that changes them (replacing, adding, replacing with the agent a
// contact had) and gives one contact, rbFresh, its first agents. The ids
// are UUIDs, so that rollback.csv, written from what the CRM answers, is
// read back by the default rule: contacts 100 to 129, old members 0 to 4
// and new ones 11 to 14.
func rollbackFiles(t *testing.T, dir string) (first, second string) {
	t.Helper()
	old := func(k int) string { return simulator.MemberID(k % 5) }
	n1, n2, n3, n4 := simulator.MemberID(11), simulator.MemberID(12), simulator.MemberID(13), simulator.MemberID(14)
	var a, b []assignment
	for i := range 30 {
		c := simulator.ContactID(100 + i)
		for j := range i%3 + 1 {
			a = append(a, assignment{contact: c, member: old(i + j), replace: j == 0})
		}
		switch i % 4 {
		case 0: // adds only: the old agents stay, new ones join
			b = append(b, assignment{contact: c, member: n1}, assignment{contact: c, member: n2})
		case 1: // replace, then add
			b = append(b, assignment{contact: c, member: n1, replace: true}, assignment{contact: c, member: n3})
		case 2: // replace with the first agent it had: only the order and the others change
			b = append(b, assignment{contact: c, member: old(i), replace: true}, assignment{contact: c, member: n4})
		case 3: // not in the second batch
		}
	}
	b = append(b, assignment{contact: rbFresh, member: n1})
	return writeAssignments(t, dir, "first.csv", a), writeAssignments(t, dir, "second.csv", b)
}

// runFile runs one file against the simulator and returns its report folder.
func runFile(t *testing.T, target redisTarget, api, file string, flags ...string) (cliResult, string) {
	t.Helper()
	out := t.TempDir()
	args := append([]string{"run", "--api-url", api, "--api-key", "k-test", "--out", out}, fastFlags()...)
	args = append(args, target.flags()...)
	args = append(args, flags...)
	r := runCLI(t, nil, append(args, file)...)
	if r.code != exitOK {
		t.Fatalf("run %s: exit %d: %s\n%s", file, r.code, r.errText(), r.stderr)
	}
	return r, reportDir(t, out)
}

func TestRunRollbackRestoresPreviousAgents(t *testing.T) {
	t.Parallel()
	target := newRedisTarget(t)
	sim, api := startSim(t, simulator.Options{})
	first, second := rollbackFiles(t, t.TempDir())

	runFile(t, target, api, first)
	before := sim.State()
	callsBefore := sim.Stats().Requests

	r, dir := runFile(t, target, api, second, "--record-previous")
	changed := sim.State()
	if maps.EqualFunc(before, changed, slices.Equal) {
		t.Fatal("the second batch changed nothing")
	}
	s := readSummary(t, dir)
	// One info call per contact of the second batch, before its first row.
	if calls := sim.Stats().Requests - callsBefore; s.APICalls != calls || calls != s.Rows+24 {
		t.Errorf("second batch: %d API calls counted, the CRM got %d, want %d rows + 24 reads", s.APICalls, calls, s.Rows)
	}
	if s.RollbackUnrestorable == nil || *s.RollbackUnrestorable != 1 {
		t.Errorf("summary rollbackUnrestorable = %v, want 1", s.RollbackUnrestorable)
	}
	if !strings.Contains(r.stdout, report.RollbackFile) {
		t.Errorf("run does not point at the rollback file:\n%s", r.stdout)
	}
	_, bad := readReportCSV(t, filepath.Join(dir, report.RollbackUnrestorableFile))
	if len(bad) != 1 || bad[0].cells["aiContactId"] != rbFresh || bad[0].cells["reason"] != report.UnrestorableNoAgents {
		t.Errorf("rollback-unrestorable.csv = %+v", bad)
	}

	// rollback.csv is an input file like any other.
	runFile(t, target, api, filepath.Join(dir, report.RollbackFile))
	after := sim.State()
	if got := after[rbFresh]; !slices.Equal(got, []string{simulator.MemberID(11)}) {
		t.Errorf("%s = %v: a contact that had no agents keeps the new one", rbFresh, got)
	}
	delete(after, rbFresh)
	checkState(t, after, before)
}

func TestDistributedRollback(t *testing.T) {
	t.Parallel()
	d := newDist(t, simulator.Options{})
	first, second := rollbackFiles(t, d.dir)
	d.startWorker(t, "--retry-base", "10ms", "--retry-max", "50ms")
	waitReport := func(id string) string {
		t.Helper()
		r, dir := d.reportWait(t, id)
		if r.code != exitOK {
			t.Fatalf("report %s: exit %d: %s\n%s", id, r.code, r.errText(), r.stderr)
		}
		return dir
	}
	waitReport(d.importFile(t, first))
	before := d.sim.State()
	dir := waitReport(d.importFile(t, second, "--record-previous"))
	if _, err := os.Stat(filepath.Join(dir, report.RollbackFile)); err != nil {
		t.Fatalf("no rollback file: %v", err)
	}
	waitReport(d.importFile(t, filepath.Join(dir, report.RollbackFile)))
	after := d.sim.State()
	delete(after, rbFresh)
	checkState(t, after, before)

	// A batch imported without the flag has no rollback file. The same
	// file again is refused unless --again says it is meant.
	dir = waitReport(d.importFile(t, first, "--again"))
	if _, err := os.Stat(filepath.Join(dir, report.RollbackFile)); !os.IsNotExist(err) {
		t.Errorf("rollback file of a batch without --record-previous: %v", err)
	}
}
