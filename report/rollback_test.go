package report_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bulkassign/bulkassign/internal/jobstest"
	"github.com/bulkassign/bulkassign/internal/redistest"
	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/report"
	"github.com/redis/go-redis/v9"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

// ledgerBatch is a batch written straight into a real Redis ledger.
type ledgerBatch struct {
	ctx   context.Context
	store *jobs.Store
	id    string
	// op is, by line, the line's contact and the index of its op.
	op map[int][2]any
}

// newLedgerBatch creates a running batch of rows; record says whether it
// records previous agents.
func newLedgerBatch(t *testing.T, record bool, rows []jobs.Row) *ledgerBatch {
	t.Helper()
	url := redistest.URL(t)
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { _ = rdb.Close() })
	b := &ledgerBatch{ctx: t.Context(), store: jobs.NewStore(rdb, jobs.StoreOptions{Namespace: redistest.Namespace(t, url)}), id: "b1"}
	if err := b.store.Create(b.ctx, b.id, "", "test.csv"); err != nil {
		t.Fatal(err)
	}
	if record {
		if err := b.store.SetRecordPrevious(b.ctx, b.id); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.store.AddRows(b.ctx, b.id, rows); err != nil {
		t.Fatal(err)
	}
	plan := jobstest.Plan(rows)
	b.op = map[int][2]any{}
	for _, c := range plan {
		for i, op := range c.Ops {
			b.op[op.Lines[0]] = [2]any{c.ID, i}
		}
	}
	if err := b.store.AddContacts(b.ctx, b.id, plan); err != nil {
		t.Fatal(err)
	}
	if err := b.store.Start(b.ctx, b.id, len(rows), len(plan), nil); err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *ledgerBatch) result(t *testing.T, line int, status jobs.Status) {
	t.Helper()
	res := jobs.Result{Status: status, HTTPStatus: 200, Attempts: 1}
	if status == jobs.StatusFailed {
		res.HTTPStatus, res.Reason = 404, "http_404"
	}
	at := b.op[line]
	got, err := b.store.Begin(b.ctx, b.id, at[0].(string), 5)
	if err != nil || got.Verdict != jobs.Run {
		t.Fatalf("Begin %v: %+v, %v", at[0], got, err)
	}
	if _, err := b.store.Settle(b.ctx, got.Exec, at[1].(int), res, false, false, jobs.Stats{Calls: 1}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.store.Release(b.ctx, got.Exec, -1, false, jobs.Stats{}); err != nil {
		t.Fatal(err)
	}
}

func (b *ledgerBatch) previous(t *testing.T, contact string, agents ...string) {
	t.Helper()
	if _, err := b.store.SavePrevious(b.ctx, b.id, contact, agents); err != nil {
		t.Fatal(err)
	}
}

func (b *ledgerBatch) report(t *testing.T) (string, report.Summary, map[string]any) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), b.id)
	s, err := report.WriteBatch(b.ctx, b.store, b.id, dir)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(dir, report.SummaryFile))), &raw); err != nil {
		t.Fatal(err)
	}
	return dir, s, raw
}

func vrow(line int, contact, member string, replace bool) jobs.Row {
	return jobs.Row{Line: line, ContactID: contact, MemberID: member, Replace: replace}
}

func TestWriteBatchRollback(t *testing.T) {
	t.Parallel()
	rows := []jobs.Row{
		vrow(2, "erin", "x", true),  // succeeded: erin comes first
		vrow(3, "alice", "x", true), // succeeded
		vrow(4, "alice", "y", false),
		vrow(5, "bob", "x", false),  // succeeded, had no agents
		vrow(6, "carol", "x", true), // failed: nothing changed
		vrow(7, "dave", "x", true),  // succeeded, not recorded
		vrow(8, "alice", "z", false),
		{Line: 9, ContactID: "bad id", MemberID: "x", Reason: "invalid_contact_id", Error: "malformed"},
	}
	b := newLedgerBatch(t, true, rows)
	b.previous(t, "erin", "e1")
	b.previous(t, "alice", "a1", "a2", "a3")
	b.previous(t, "bob")
	b.previous(t, "carol", "c1")
	for _, l := range []int{2, 3, 5, 7, 8} {
		b.result(t, l, jobs.StatusSucceeded)
	}
	b.result(t, 4, jobs.StatusFailed)
	b.result(t, 6, jobs.StatusFailed)

	dir, s, raw := b.report(t)
	wantRollback := "aiContactId,teamMemberId,removeExistingAgents\n" +
		"erin,e1,true\n" +
		"alice,a1,true\nalice,a2,false\nalice,a3,false\n"
	if got := readFile(t, filepath.Join(dir, report.RollbackFile)); got != wantRollback {
		t.Errorf("rollback.csv:\n%s\nwant:\n%s", got, wantRollback)
	}
	wantBad := "aiContactId,reason\n" +
		"bob," + report.UnrestorableNoAgents + "\n" +
		"dave," + report.UnrestorableNotRecorded + "\n"
	if got := readFile(t, filepath.Join(dir, report.RollbackUnrestorableFile)); got != wantBad {
		t.Errorf("rollback-unrestorable.csv:\n%s\nwant:\n%s", got, wantBad)
	}
	if s.RollbackUnrestorable == nil || *s.RollbackUnrestorable != 2 {
		t.Errorf("Summary.RollbackUnrestorable = %v, want 2", s.RollbackUnrestorable)
	}
	if raw["rollbackUnrestorable"] != 2.0 {
		t.Errorf("summary.json rollbackUnrestorable = %v, want 2", raw["rollbackUnrestorable"])
	}
	if s.Succeeded != 5 || s.Failed != 2 || s.Invalid != 1 {
		t.Errorf("summary = %+v", s)
	}
	assertNoTemp(t, dir)
}

func TestWriteBatchRollbackAllRestorable(t *testing.T) {
	t.Parallel()
	b := newLedgerBatch(t, true, []jobs.Row{vrow(2, "alice", "x", true)})
	b.previous(t, "alice", "a1")
	b.result(t, 2, jobs.StatusSucceeded)
	dir, _, raw := b.report(t)
	if v, ok := raw["rollbackUnrestorable"]; !ok || v != 0.0 {
		t.Errorf("summary.json rollbackUnrestorable = %v (present %v), want 0", v, ok)
	}
	if got := readFile(t, filepath.Join(dir, report.RollbackUnrestorableFile)); got != "aiContactId,reason\n" {
		t.Errorf("rollback-unrestorable.csv = %q, want the header only", got)
	}
}

func TestWriteBatchNoRollbackWithoutRecord(t *testing.T) {
	t.Parallel()
	b := newLedgerBatch(t, false, []jobs.Row{vrow(2, "alice", "x", true)})
	b.result(t, 2, jobs.StatusSucceeded)
	dir, s, raw := b.report(t)
	for _, name := range []string{report.RollbackFile, report.RollbackUnrestorableFile} {
		if _, err := os.Stat(filepath.Join(dir, name)); !os.IsNotExist(err) {
			t.Errorf("%s written for a batch that did not record previous agents (%v)", name, err)
		}
	}
	if _, ok := raw["rollbackUnrestorable"]; ok || s.RollbackUnrestorable != nil {
		t.Errorf("summary has rollbackUnrestorable: %v", raw)
	}
}

// TestWriteBatchRollbackChunks checks order and content across the chunks
// the previous agents are read in.
func TestWriteBatchRollbackChunks(t *testing.T) {
	t.Parallel()
	const n = 2500
	rows := make([]jobs.Row, n)
	for i := range rows {
		rows[i] = vrow(i+2, fmt.Sprintf("c%05d", i), "m", true)
	}
	b := newLedgerBatch(t, true, rows)
	var want strings.Builder
	want.WriteString("aiContactId,teamMemberId,removeExistingAgents\n")
	for i, r := range rows {
		switch i % 5 {
		case 0: // failed: left out
			b.previous(t, r.ContactID, "p")
			b.result(t, r.Line, jobs.StatusFailed)
			continue
		case 1: // had none
			b.previous(t, r.ContactID)
		default:
			b.previous(t, r.ContactID, "p"+r.ContactID, "q")
			fmt.Fprintf(&want, "%s,p%s,true\n%s,q,false\n", r.ContactID, r.ContactID, r.ContactID)
		}
		b.result(t, r.Line, jobs.StatusSucceeded)
	}
	dir, s, _ := b.report(t)
	if got := readFile(t, filepath.Join(dir, report.RollbackFile)); got != want.String() {
		t.Errorf("rollback.csv differs: %d bytes, want %d", len(got), want.Len())
	}
	if s.RollbackUnrestorable == nil || *s.RollbackUnrestorable != n/5 {
		t.Errorf("RollbackUnrestorable = %v, want %d", s.RollbackUnrestorable, n/5)
	}
}

func assertNoTemp(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	want := []string{report.FailedFile, report.RollbackUnrestorableFile, report.RollbackFile, report.SucceededFile, report.SummaryFile}
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Errorf("report folder holds %v, want %v", names, want)
	}
}
