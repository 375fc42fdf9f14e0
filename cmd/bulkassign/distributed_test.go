package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkassign/bulkassign/importer"
	"github.com/bulkassign/bulkassign/internal/redistest"
	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/report"
	"github.com/bulkassign/bulkassign/simulator"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// syncBuffer is a bytes.Buffer that a command may write to from many
// goroutines while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// assignment is one input row of a generated file.
type assignment struct {
	contact, member string
	replace         bool
}

// oneEach is n assignments, one per contact: prefix-00001 … with members
// m-1 … m-7 in turn.
func oneEach(prefix string, n int) []assignment {
	rows := make([]assignment, n)
	for i := range rows {
		rows[i] = assignment{contact: fmt.Sprintf("%s-%05d", prefix, i+1), member: fmt.Sprintf("m-%d", i%7+1)}
	}
	return rows
}

// writeAssignments writes rows as a CSV file in dir; row i is on line i+2.
func writeAssignments(t *testing.T, dir, name string, rows []assignment) string {
	t.Helper()
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	_ = w.Write([]string{"aiContactId", "teamMemberId", "removeExistingAgents"})
	for _, r := range rows {
		_ = w.Write([]string{r.contact, r.member, strconv.FormatBool(r.replace)})
	}
	w.Flush()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// wantState is the CRM state rows leave behind when every one is applied
// in file order on contacts that had no agents.
func wantState(rows []assignment) map[string][]string {
	st := map[string][]string{}
	for _, r := range rows {
		c, m := strings.ToLower(r.contact), strings.ToLower(r.member)
		switch {
		case r.replace:
			st[c] = []string{m}
		case !slices.Contains(st[c], m):
			st[c] = append(st[c], m)
		}
	}
	return st
}

// checkState compares the simulator's assignments with want.
func checkState(t *testing.T, got, want map[string][]string) {
	t.Helper()
	var diffs []string
	for c, w := range want {
		if g := got[c]; !slices.Equal(g, w) {
			diffs = append(diffs, fmt.Sprintf("%s: %v, want %v", c, g, w))
		}
	}
	for c, g := range got {
		if _, ok := want[c]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: %v, want no agents", c, g))
		}
	}
	if len(diffs) > 0 {
		slices.Sort(diffs)
		t.Errorf("CRM state differs in %d contacts, e.g.:\n%s", len(diffs), strings.Join(diffs[:min(len(diffs), 10)], "\n"))
	}
}

// dist is a distributed setup: a Redis namespace, a simulator and the
// batch store the commands share.
type dist struct {
	target redisTarget
	sim    *simulator.Simulator
	api    string
	key    string
	store  *jobs.Store
	rdb    redis.UniversalClient
	insp   *asynq.Inspector
	dir    string
}

func newDist(t *testing.T, opts simulator.Options) *dist {
	t.Helper()
	return newDistOn(t, redistest.Single, opts)
}

// newDistOn is newDist on the shared Redis of topology tp.
func newDistOn(t *testing.T, tp redistest.Topology, opts simulator.Options) *dist {
	t.Helper()
	d := &dist{target: newRedisTargetOn(t, tp), key: "k-test", dir: t.TempDir()}
	if opts.APIKey != "" {
		d.key = opts.APIKey
	}
	d.sim, d.api = startSim(t, opts)
	d.rdb = d.target.client(t)
	d.store = jobs.NewStore(d.rdb, jobs.StoreOptions{Namespace: d.target.ns})
	d.insp = asynq.NewInspectorFromRedisClient(d.rdb) // closed with d.rdb
	return d
}

// cli runs one command with the setup's --redis and --namespace; flags go
// before the last argument (the command's positional one, if any).
func (d *dist) cli(t *testing.T, command string, args ...string) cliResult {
	t.Helper()
	all := append(strings.Fields(command), d.target.flags()...)
	return runCLI(t, nil, append(all, args...)...)
}

// importRows writes rows to a file and imports it, returning the batch id.
// The generated rows have short ids of the older form, which read well in
// a failure, so they are imported with --id-format any: the tests that use
// them are about the queue, not ids.
func (d *dist) importRows(t *testing.T, name string, rows []assignment) string {
	t.Helper()
	return d.importFile(t, writeAssignments(t, d.dir, name, rows), "--id-format", "any")
}

func (d *dist) importFile(t *testing.T, path string, flags ...string) string {
	t.Helper()
	r := d.cli(t, "import", append(flags, path)...)
	if r.code != exitOK {
		t.Fatalf("import %s: exit %d: %s\n%s", path, r.code, r.errText(), r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	id := strings.TrimSpace(lines[len(lines)-1])
	if !report.ValidBatchID(id) {
		t.Fatalf("import: last stdout line %q is not a batch id", id)
	}
	return id
}

// startWorker runs `bulkassign worker` in this process until the test ends
// or stop is called; stop returns what it logged.
func (d *dist) startWorker(t *testing.T, flags ...string) (stop func() string) {
	t.Helper()
	_, stop = d.startWorkerLog(t, flags...)
	return stop
}

// startWorkerLog is startWorker that also gives what the worker logs, as
// it logs it.
func (d *dist) startWorkerLog(t *testing.T, flags ...string) (out *syncBuffer, stop func() string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	args := append([]string{"worker", "--api-url", d.api, "--api-key", d.key}, d.target.flags()...)
	args = append(args, flags...)
	out = &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, strings.NewReader(""), out, out) }()
	var once sync.Once
	stop = func() string {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("worker: %v\n%s", err, out.String())
				}
			case <-time.After(time.Minute):
				t.Errorf("worker did not stop within a minute\n%s", out.String())
			}
		})
		return out.String()
	}
	t.Cleanup(func() { stop() })
	return out, stop
}

func (d *dist) batch(t *testing.T, id string) jobs.Batch {
	t.Helper()
	b, err := d.store.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// waitBatch polls the batch until cond holds.
func (d *dist) waitBatch(t *testing.T, id string, timeout time.Duration, what string, cond func(jobs.Batch) bool) jobs.Batch {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		b := d.batch(t, id)
		if cond(b) {
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("batch %s: not within %s: %s (status %s, %d/%d done)", id, timeout, what, b.Status, b.Done(), b.Rows)
		}
		<-tick.C
	}
}

// waitSteady polls the batch until its done count has not moved over
// several polls, and returns it.
func (d *dist) waitSteady(t *testing.T, id string) jobs.Batch {
	t.Helper()
	const polls = 6
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	last, same := d.batch(t, id), 0
	for same < polls {
		if time.Now().After(deadline) {
			t.Fatalf("batch %s kept moving for 30s: %d/%d done, status %s", id, last.Done(), last.Rows, last.Status)
		}
		<-tick.C
		b := d.batch(t, id)
		if b.Done() == last.Done() {
			same++
		} else {
			same = 0
		}
		last = b
	}
	return last
}

// reportWait runs `report --wait --out OUT ID` and returns the result and
// the batch's report folder.
func (d *dist) reportWait(t *testing.T, id string) (cliResult, string) {
	t.Helper()
	out := t.TempDir()
	r := d.cli(t, "report", "--wait", "--progress-every", "1h", "--out", out, id)
	return r, filepath.Join(out, id)
}

// ledger is a batch report read back: every row by line.
type ledger struct {
	summary   report.Summary
	succeeded []reportRow
	failed    []reportRow
}

func readLedger(t *testing.T, dir string) ledger {
	t.Helper()
	l := ledger{summary: readSummary(t, dir)}
	_, l.succeeded = readReportCSV(t, filepath.Join(dir, "succeeded.csv"))
	_, l.failed = readReportCSV(t, filepath.Join(dir, "failed.csv"))
	return l
}

// checkExact checks that the report accounts for lines 2..rows+1 exactly
// once and that its files agree with its summary.
func (l ledger) checkExact(t *testing.T, rows int) {
	t.Helper()
	s := l.summary
	if s.Rows != int64(rows) || s.Succeeded+s.Failed+s.Invalid != s.Rows {
		t.Errorf("summary: rows %d = %d succeeded + %d failed + %d invalid, want %d rows", s.Rows, s.Succeeded, s.Failed, s.Invalid, rows)
	}
	seen := map[int]int{}
	var invalid int64
	for _, set := range [][]reportRow{l.succeeded, l.failed} {
		for _, r := range set {
			n, err := strconv.Atoi(r.cells["line"])
			if err != nil {
				t.Fatalf("report line cell %q: %v", r.cells["line"], err)
			}
			seen[n]++
			if r.cells["status"] == string(jobs.StatusInvalid) {
				invalid++
			}
		}
	}
	for line := 2; line < rows+2; line++ {
		if seen[line] != 1 {
			t.Errorf("line %d is in the report files %d times, want once", line, seen[line])
		}
	}
	if len(seen) != rows {
		t.Errorf("report files list %d distinct lines, want %d", len(seen), rows)
	}
	if int64(len(l.succeeded)) != s.Succeeded || int64(len(l.failed)) != s.Failed+s.Invalid || invalid != s.Invalid {
		t.Errorf("report files: %d succeeded, %d failed (%d invalid); summary.json: %d succeeded, %d failed, %d invalid",
			len(l.succeeded), len(l.failed), invalid, s.Succeeded, s.Failed, s.Invalid)
	}
}

// smallCSV is a small file with every kind of row: a contact's rows in
// order, padding and case, an exact duplicate, invalid rows, extras. Its
// ids are the simulator's (simulator.ContactID and MemberID).
const smallCSV = `aiContactId,teamMemberId,removeExistingAgents,note
c0000000-0000-8000-8000-000000000001,a0000000-0000-8000-8000-000000000001,false,new lead
c0000000-0000-8000-8000-000000000001,a0000000-0000-8000-8000-000000000002,true,member 2 replaces member 1
c0000000-0000-8000-8000-000000000001,a0000000-0000-8000-8000-000000000003,false,add a second owner
C0000000-0000-8000-8000-000000000002 , A0000000-0000-8000-8000-000000000001 ,no,mixed case and padding
c0000000-0000-8000-8000-000000000003,a0000000-0000-8000-8000-000000000002,yes,
c0000000-0000-8000-8000-000000000003,a0000000-0000-8000-8000-000000000002,yes,exact duplicate
c0000000-0000-8000-8000-000000000004,a0000000-0000-8000-8000-000000000009,false,
c0000000-0000-8000-8000-000000000005,not an id,false,malformed member id
c0000000-0000-8000-8000-000000000006,a0000000-0000-8000-8000-000000000003,maybe,bad boolean
c0000000-0000-8000-8000-000000000007,a0000000-0000-8000-8000-000000000004,0,
c0000000-0000-8000-8000-000000000008,a0000000-0000-8000-8000-000000000001,1,"quoted, with a comma"
`

// smallState is what smallCSV leaves in an open CRM.
var smallState = map[string][]string{
	simulator.ContactID(1): {simulator.MemberID(2), simulator.MemberID(3)},
	simulator.ContactID(2): {simulator.MemberID(1)},
	simulator.ContactID(3): {simulator.MemberID(2)},
	simulator.ContactID(4): {simulator.MemberID(9)},
	simulator.ContactID(7): {simulator.MemberID(4)},
	simulator.ContactID(8): {simulator.MemberID(1)},
}

func TestDistributedImportWorkerReport(t *testing.T) {
	t.Parallel()
	d := newDist(t, simulator.Options{Latency: 5 * time.Millisecond})
	small := filepath.Join(d.dir, "small.csv")
	if err := os.WriteFile(small, []byte(smallCSV), 0o600); err != nil {
		t.Fatal(err)
	}

	// A dry run validates, prints the plan and queues nothing.
	r := d.cli(t, "import --dry-run", small)
	if r.code != exitOK {
		t.Fatalf("import --dry-run: exit %d: %s", r.code, r.errText())
	}
	var plan importer.Summary
	if err := json.Unmarshal([]byte(r.stdout), &plan); err != nil {
		t.Fatalf("import --dry-run stdout is not one JSON summary: %v\n%s", err, r.stdout)
	}
	if plan.BatchID != "" || plan.Rows != 11 || plan.Valid != 9 || plan.Invalid != 2 || plan.Merged != 1 || plan.Contacts != 6 || plan.Calls != 8 {
		t.Errorf("dry-run summary %+v, want 11 rows, 9 valid, 2 invalid, 1 merged, 6 contacts, 8 calls and no batch id", plan)
	}
	if keys := d.target.keys(t); len(keys) != 0 {
		t.Fatalf("import --dry-run wrote Redis keys: %v", keys)
	}

	id := d.importFile(t, small, "--name", "examples")
	if b := d.batch(t, id); b.Status != jobs.BatchRunning || b.Rows != 11 || b.Invalid != 2 || b.Succeeded != 0 {
		t.Errorf("before any worker: %+v, want running with 11 rows, the 2 invalid ones done", b)
	}
	d.startWorker(t, "--retry-base", "10ms", "--retry-max", "50ms")

	r, dir := d.reportWait(t, id)
	if r.code != exitPartial {
		t.Fatalf("report --wait: exit %d (%s), want %d: 2 rows are invalid\n%s", r.code, r.errText(), exitPartial, r.stderr)
	}
	l := readLedger(t, dir)
	l.checkExact(t, 11)
	if s := l.summary; s.Status != jobs.BatchDone || s.Succeeded != 9 || s.Invalid != 2 || s.Failed != 0 || s.APICalls != 8 {
		t.Errorf("summary %+v, want done: 9 succeeded, 2 invalid, 8 API calls", s)
	}
	checkState(t, d.sim.State(), smallState)

	// A batch where every row succeeds exits 0.
	clean := oneEach("ok", 40)
	clean = append(clean, assignment{contact: "ok-00001", member: "m-9", replace: true})
	id2 := d.importRows(t, "clean.csv", clean)
	r, dir = d.reportWait(t, id2)
	if r.code != exitOK {
		t.Fatalf("report --wait on a clean batch: exit %d (%s)", r.code, r.errText())
	}
	readLedger(t, dir).checkExact(t, len(clean))
	want := wantState(clean)
	for c, a := range smallState {
		want[c] = a
	}
	checkState(t, d.sim.State(), want)

	// batches lists both, done.
	r = d.cli(t, "batches")
	if r.code != exitOK {
		t.Fatalf("batches: exit %d: %s", r.code, r.errText())
	}
	status := map[string][]string{}
	for _, line := range strings.Split(r.stdout, "\n") {
		if f := strings.Fields(line); len(f) > 2 {
			status[f[0]] = f[1:]
		}
	}
	if f := status[id]; len(f) < 3 || f[0] != "examples" || f[1] != jobs.BatchDone || f[2] != "11/11" {
		t.Errorf("batches: %s shows %v, want name examples, done, 11/11\n%s", id, f, r.stdout)
	}
	if f := status[id2]; len(f) < 2 || f[0] != jobs.BatchDone {
		t.Errorf("batches: %s shows %v, want done\n%s", id2, f, r.stdout)
	}

	// Unknown and malformed ids are fatal, and write nothing.
	out := t.TempDir()
	r = d.cli(t, "report", "--out", out, "20000101-000000-00000000")
	if r.code != exitFatal || !errors.Is(r.err, jobs.ErrNotFound) {
		t.Errorf("report on an unknown id: exit %d, error %v; want %d and batch not found", r.code, r.err, exitFatal)
	}
	for _, bad := range []string{"../" + id, id + "/x", "a/b", ""} {
		r = d.cli(t, "report", "--out", out, bad)
		if r.code != exitFatal || !strings.Contains(r.errText(), "batch id") {
			t.Errorf("report %q: exit %d, error %q; want %d naming the batch id", bad, r.code, r.errText(), exitFatal)
		}
	}
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Errorf("failed reports wrote %d entries to --out", len(entries))
	}
}

func TestDistributedPauseResumeCancel(t *testing.T) {
	t.Parallel()
	d := newDist(t, simulator.Options{Latency: 20 * time.Millisecond})
	rowsA, rowsB := oneEach("a", 300), oneEach("b", 300)
	idA := d.importRows(t, "a.csv", rowsA)
	d.startWorker(t, "--concurrency", "2", "--retry-base", "10ms", "--retry-max", "50ms")

	d.waitBatch(t, idA, 30*time.Second, "10 rows done", func(b jobs.Batch) bool { return b.Done() >= 10 })
	if r := d.cli(t, "pause", idA); r.code != exitOK || !strings.Contains(r.stdout, "paused") {
		t.Fatalf("pause: exit %d (%s): %s", r.code, r.errText(), r.stdout)
	}
	held := d.waitSteady(t, idA)
	if held.Status != jobs.BatchPaused || held.Done() >= held.Rows {
		t.Fatalf("after pause: status %s, %d/%d done; want paused part-way", held.Status, held.Done(), held.Rows)
	}
	if got := d.sim.Stats().Assigned; got != held.Succeeded {
		t.Errorf("paused: the CRM applied %d calls, the ledger has %d succeeded", got, held.Succeeded)
	}
	if r := d.cli(t, "resume", idA); r.code != exitOK {
		t.Fatalf("resume: exit %d: %s", r.code, r.errText())
	}
	r, dir := d.reportWait(t, idA)
	if r.code != exitOK {
		t.Fatalf("report --wait after resume: exit %d (%s)", r.code, r.errText())
	}
	readLedger(t, dir).checkExact(t, len(rowsA))
	checkState(t, d.sim.State(), wantState(rowsA))

	// Cancel stops a batch for good; unsent rows are reported.
	idB := d.importRows(t, "b.csv", rowsB)
	d.waitBatch(t, idB, 30*time.Second, "10 rows done", func(b jobs.Batch) bool { return b.Done() >= 10 })
	if r := d.cli(t, "cancel", idB); r.code != exitOK || !strings.Contains(r.stdout, "cancelled") {
		t.Fatalf("cancel: exit %d (%s): %s", r.code, r.errText(), r.stdout)
	}
	r, dir = d.reportWait(t, idB)
	if r.code != exitPartial {
		t.Fatalf("report --wait on a cancelled batch: exit %d (%s), want %d", r.code, r.errText(), exitPartial)
	}
	l := readLedger(t, dir)
	l.checkExact(t, len(rowsB))
	s := l.summary
	if s.Status != jobs.BatchCancelled || s.Failed == 0 || s.Errors[report.NotProcessed] != s.Failed || s.Invalid != 0 {
		t.Errorf("cancelled summary %+v: want status cancelled and every failed row not_processed", s)
	}
	for _, row := range l.failed {
		if !strings.Contains(row.cells["error"], "not processed") {
			t.Errorf("failed.csv line %s: error %q, want not processed", row.cells["line"], row.cells["error"])
		}
	}
	state := d.sim.State()
	for _, row := range l.succeeded {
		if c := row.cells["aiContactId"]; !slices.Equal(state[c], []string{row.cells["teamMemberId"]}) {
			t.Errorf("succeeded.csv has %s, the CRM has %v for it", c, state[c])
		}
	}
	// The cancelled batch's tasks drain from the queue without calls.
	waitUntil(t, 30*time.Second, "queue drained", func() bool {
		qi, err := d.insp.GetQueueInfo(d.target.ns)
		return err == nil && qi.Size == 0
	})
	if r := d.cli(t, "resume", idB); r.code != exitFatal {
		t.Errorf("resume of a cancelled batch: exit %d, want %d", r.code, exitFatal)
	}
}

func TestDistributedDLQ(t *testing.T) {
	t.Parallel()
	// Every pair fails its first 3 calls; rows get 2 attempts, so all fail,
	// and a retry's first call (the pair's 3rd) succeeds.
	d := newDist(t, simulator.Options{Transient: 1, TransientAttempts: 3})
	rows := oneEach("d", 20)
	// One contact with two rows: the second is blocked behind the first,
	// and after the retry its own pair has had only 2 calls: it fails again.
	rows = append(rows,
		assignment{contact: "d-pair", member: "m-a"},
		assignment{contact: "d-pair", member: "m-b", replace: true})
	id := d.importRows(t, "dlq.csv", rows)
	d.startWorker(t, "--max-attempts", "2", "--retry-base", "10ms", "--retry-max", "50ms")

	r, dir := d.reportWait(t, id)
	if r.code != exitPartial {
		t.Fatalf("report --wait: exit %d (%s), want %d", r.code, r.errText(), exitPartial)
	}
	l := readLedger(t, dir)
	l.checkExact(t, len(rows))
	if s := l.summary; s.Failed != int64(len(rows)) || s.Errors["blocked"] != 1 {
		t.Fatalf("summary %+v: want all %d rows failed, 1 of them blocked", s, len(rows))
	}
	if n := len(d.archived(t)); n != 21 {
		t.Errorf("asynq archive holds %d tasks, want 21 (one per contact)", n)
	}

	r = d.cli(t, "dlq list", id)
	if r.code != exitOK {
		t.Fatalf("dlq list: exit %d: %s", r.code, r.errText())
	}
	listed := dlqLines(t, r.stdout)
	if len(listed) != len(rows) {
		t.Errorf("dlq list shows lines %v, want all %d rows\n%s", listed, len(rows), r.stdout)
	}

	r = d.cli(t, "dlq export", id)
	if r.code != exitOK {
		t.Fatalf("dlq export: exit %d: %s", r.code, r.errText())
	}
	dead := filepath.Join(d.dir, "dead.csv")
	if err := os.WriteFile(dead, []byte(r.stdout), 0o600); err != nil {
		t.Fatal(err)
	}
	r = d.cli(t, "import --dry-run", "--id-format", "any", dead)
	var plan importer.Summary
	if err := json.Unmarshal([]byte(r.stdout), &plan); r.code != exitOK || err != nil {
		t.Fatalf("import --dry-run of the dlq export: exit %d (%s), %v\n%s", r.code, r.errText(), err, r.stdout)
	}
	if plan.Rows != len(rows) || plan.Valid != len(rows) || plan.Contacts != 21 {
		t.Errorf("dlq export re-imports as %+v, want %d valid rows over 21 contacts", plan, len(rows))
	}

	r = d.cli(t, "dlq retry", id)
	if r.code != exitOK || !strings.Contains(r.stdout, fmt.Sprintf("%d rows queued again", len(rows))) {
		t.Fatalf("dlq retry: exit %d (%s): %s", r.code, r.errText(), r.stdout)
	}
	r, dir = d.reportWait(t, id)
	if r.code != exitPartial {
		t.Fatalf("report --wait after dlq retry: exit %d (%s), want %d (the pair's second row fails again)", r.code, r.errText(), exitPartial)
	}
	l = readLedger(t, dir)
	l.checkExact(t, len(rows))
	b := d.batch(t, id)
	if b.Status != jobs.BatchDone || b.Succeeded != int64(len(rows)-1) || b.Failed != 1 || b.Errors["blocked"] != 0 {
		t.Errorf("after retry: %+v, want done, %d succeeded, 1 failed, none blocked", b, len(rows)-1)
	}
	if len(l.failed) != 1 || l.failed[0].cells["aiContactId"] != "d-pair" || l.failed[0].cells["teamMemberId"] != "m-b" {
		t.Errorf("failed.csv after retry: %v, want only d-pair → m-b", l.failed)
	}
	want := wantState(rows[:len(rows)-1])
	checkState(t, d.sim.State(), want)
	// The archive no longer holds the retried tasks, only the one that
	// died again.
	arch := d.archived(t)
	if len(arch) != 1 || arch[0].ID != jobs.TaskID(id, "d-pair") {
		var ids []string
		for _, a := range arch {
			ids = append(ids, a.ID)
		}
		t.Errorf("asynq archive after retry: %v, want only %s", ids, jobs.TaskID(id, "d-pair"))
	}
	r = d.cli(t, "dlq list", id)
	if got := dlqLines(t, r.stdout); !slices.Equal(got, []int{len(rows) + 1}) {
		t.Errorf("dlq list after retry: lines %v, want [%d]\n%s", got, len(rows)+1, r.stdout)
	}
}

func (d *dist) archived(t *testing.T) []*asynq.TaskInfo {
	t.Helper()
	ts, err := d.insp.ListArchivedTasks(d.target.ns, asynq.PageSize(1000))
	if err != nil && !errors.Is(err, asynq.ErrQueueNotFound) {
		t.Fatalf("list archived tasks: %v", err)
	}
	return ts
}

// dlqLines are the line numbers `dlq list` shows.
func dlqLines(t *testing.T, out string) []int {
	t.Helper()
	var lines []int
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || f[0] == "LINE" {
			continue
		}
		n, err := strconv.Atoi(f[0])
		if err != nil {
			t.Fatalf("dlq list: unexpected line %q", l)
		}
		lines = append(lines, n)
	}
	return lines
}

// waitUntil fails the test unless cond becomes true within timeout.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", timeout, what)
		}
		<-tick.C
	}
}

// leakKey is an API key distinctive enough to search for.
const leakKey = "sk-LEAK-CHECK-9f8e"

func TestDistributedKeyNeverInRedis(t *testing.T) {
	t.Parallel()
	// 429s (shared pause), a global rate limit, retries and dead letters:
	// every kind of key the system writes.
	d := newDist(t, simulator.Options{APIKey: leakKey, Rate: 40, Burst: 5, Transient: 0.2, TransientAttempts: 5})
	rows := oneEach("leak", 60)
	id := d.importRows(t, "leak.csv", rows)
	stop1 := d.startWorker(t, "--rate", "100", "--concurrency", "4", "--max-attempts", "2", "--retry-base", "10ms", "--retry-max", "50ms", "--log-level", "debug")
	stop2 := d.startWorker(t, "--rate", "100", "--concurrency", "4", "--max-attempts", "2", "--retry-base", "10ms", "--retry-max", "50ms", "--log-level", "debug")
	// Scan while the batch runs too: the rate limit and 429-pause keys
	// expire within seconds of the last call.
	d.waitBatch(t, id, time.Minute, "20 rows done", func(b jobs.Batch) bool { return b.Done() >= 20 })
	hits := scanDB(t, d.rdb, leakKey)
	r, dir := d.reportWait(t, id)
	if r.code != exitPartial {
		t.Fatalf("report --wait: exit %d (%s), want %d: some pairs fail 5 times", r.code, r.errText(), exitPartial)
	}
	t.Logf("sim stats %+v", d.sim.Stats())
	if st := d.sim.Stats(); st.ByStatus[429] == 0 || st.ByStatus[401] != 0 {
		t.Errorf("simulator answered %v: want some 429s (so the shared pause was used) and no 401", st.ByStatus)
	}
	exp := d.cli(t, "dlq export", id)
	logs := stop1() + stop2()

	hits = append(hits, scanDB(t, d.rdb, leakKey)...)
	for _, h := range hits {
		t.Errorf("the API key is in Redis: %s", h)
	}
	for name, text := range map[string]string{"worker logs": logs, "report stderr": r.stderr, "dlq export": exp.stdout} {
		if strings.Contains(text, leakKey) {
			t.Errorf("the API key is in the %s", name)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	for _, f := range files {
		if b, err := os.ReadFile(f); err != nil || bytes.Contains(b, []byte(leakKey)) {
			t.Errorf("the API key is in %s (read error %v)", f, err)
		}
	}
}

// scanDB looks for needle in every key of the client's DB: names, string
// values, hash fields and values, list, set and sorted-set members and
// stream entries. Keys that vanish while it reads (other tests clean up)
// are skipped.
func scanDB(t *testing.T, c redis.UniversalClient, needle string) []string {
	t.Helper()
	ctx := context.Background()
	var hits []string
	check := func(key, where, s string) {
		if strings.Contains(s, needle) {
			hits = append(hits, fmt.Sprintf("key %q %s", key, where))
		}
	}
	n := 0
	it := c.Scan(ctx, 0, "*", 1000).Iterator()
	for it.Next(ctx) {
		key := it.Val()
		n++
		check(key, "name", key)
		typ, err := c.Type(ctx, key).Result()
		if err != nil {
			t.Fatalf("TYPE %s: %v", key, err)
		}
		var vals []string
		switch typ {
		case "string":
			v, err := c.Get(ctx, key).Result()
			if err != nil && !errors.Is(err, redis.Nil) {
				t.Fatalf("GET %s: %v", key, err)
			}
			vals = []string{v}
		case "hash":
			m, err := c.HGetAll(ctx, key).Result()
			if err != nil {
				t.Fatalf("HGETALL %s: %v", key, err)
			}
			for f, v := range m {
				vals = append(vals, f, v)
			}
		case "list":
			vals, err = c.LRange(ctx, key, 0, -1).Result()
		case "set":
			vals, err = c.SMembers(ctx, key).Result()
		case "zset":
			vals, err = c.ZRange(ctx, key, 0, -1).Result()
		case "stream":
			var xs []redis.XMessage
			xs, err = c.XRange(ctx, key, "-", "+").Result()
			for _, x := range xs {
				for f, v := range x.Values {
					vals = append(vals, f, fmt.Sprint(v))
				}
			}
		case "none":
		default:
			t.Errorf("key %s has type %s, which the scan does not read", key, typ)
		}
		if err != nil {
			t.Fatalf("read %s %s: %v", typ, key, err)
		}
		for _, v := range vals {
			check(key, "("+typ+") value", v)
		}
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("scan found no keys at all: the check would prove nothing")
	}
	return hits
}

func TestDistributedReportWhileRunning(t *testing.T) {
	t.Parallel()
	d := newDist(t, simulator.Options{Latency: 5 * time.Millisecond})
	rows := oneEach("run", 2000)
	id := d.importRows(t, "running.csv", rows)
	d.startWorker(t, "--concurrency", "16")
	d.waitBatch(t, id, time.Minute, "some rows done", func(b jobs.Batch) bool { return b.Done() > 0 })
	// A report of a batch still running is a snapshot, but one whose files
	// and summary.json agree, and that adds up to the batch's rows.
	for i := 0; i < 5; i++ {
		out := t.TempDir()
		r := d.cli(t, "report", "--out", out, id)
		if r.code == exitOK {
			break // finished already
		}
		l := readLedger(t, filepath.Join(out, id))
		l.checkExact(t, len(rows))
		if l.summary.Status != jobs.BatchRunning {
			break
		}
	}
}

// TestDistributedTopologies runs a batch with every kind of row through
// import, two workers sharing a rate and report --wait, through Sentinel
// and on a 3-master Redis Cluster: the report is exact and the CRM ends
// in the state the file describes.
func TestDistributedTopologies(t *testing.T) {
	t.Parallel()
	for _, tp := range []redistest.Topology{redistest.Sentinel, redistest.Cluster} {
		t.Run(string(tp), func(t *testing.T) {
			t.Parallel()
			d := newDistOn(t, tp, simulator.Options{Latency: 2 * time.Millisecond})
			more := oneEach("t", 300)
			var file bytes.Buffer
			file.WriteString(smallCSV)
			for _, r := range more {
				fmt.Fprintf(&file, "%s,%s,%t,\n", r.contact, r.member, r.replace)
			}
			path := filepath.Join(d.dir, "topology.csv")
			if err := os.WriteFile(path, file.Bytes(), 0o600); err != nil {
				t.Fatal(err)
			}
			rows := 11 + len(more)

			id := d.importFile(t, path, "--id-format", "any")
			for range 2 {
				d.startWorker(t, "--concurrency", "4", "--rate", "400", "--retry-base", "10ms", "--retry-max", "50ms")
			}
			r, dir := d.reportWait(t, id)
			if r.code != exitPartial {
				t.Fatalf("report --wait: exit %d (%s), want %d: 2 rows are invalid\n%s", r.code, r.errText(), exitPartial, r.stderr)
			}
			l := readLedger(t, dir)
			l.checkExact(t, rows)
			if s := l.summary; s.Status != jobs.BatchDone || s.Succeeded != int64(rows-2) || s.Invalid != 2 || s.Failed != 0 {
				t.Errorf("summary %+v, want done: %d succeeded, 2 invalid", s, rows-2)
			}
			want := wantState(more)
			for c, a := range smallState {
				want[c] = a
			}
			checkState(t, d.sim.State(), want)

			r = d.cli(t, "batches")
			if r.code != exitOK || !strings.Contains(r.stdout, id) {
				t.Errorf("batches: exit %d (%s), want %s listed\n%s", r.code, r.errText(), id, r.stdout)
			}
		})
	}
}
