package jobs_test

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/bulkassign/bulkassign/jobs"
)

// model is the ledger's rules for one batch, written as plainly as
// possible, for TestLedgerMatchesModel to hold the scripts to.
type model struct {
	status   string
	rows     int
	plan     map[string][]jobs.Op
	result   map[int]jobs.Result // by line; absent: pending
	attempts map[int]int         // by an op's first line
	claim    map[string]*jobs.Execution
	expired  map[string]bool // the claim of c ran out: its holder died, or was slow
	parked   map[string]bool
	dead     map[string]bool
}

func (m *model) count(status jobs.Status) int64 {
	n := int64(0)
	for _, r := range m.result {
		if r.Status == status {
			n++
		}
	}
	return n
}

func (m *model) errors() map[string]int64 {
	out := map[string]int64{}
	for _, r := range m.result {
		if r.Reason != "" {
			out[r.Reason]++
		}
	}
	return out
}

func (m *model) final(l int) bool { _, ok := m.result[l]; return ok }

func (m *model) complete() {
	if (m.status == jobs.BatchRunning || m.status == jobs.BatchPaused) && len(m.result) == m.rows {
		m.status = jobs.BatchDone
	}
}

func (m *model) settleOp(contact string, i int, res jobs.Result, dead bool) {
	ops := m.plan[contact]
	if res.Status == jobs.StatusSucceeded {
		for _, l := range ops[i].Lines {
			if !m.final(l) {
				m.result[l] = res
			}
		}
		return
	}
	if r, ok := m.result[ops[i].Lines[0]]; ok && r.Status == jobs.StatusSucceeded {
		return // another execution's call of it went through: nothing is blocked
	}
	blocked := jobs.Result{Status: jobs.StatusFailed, Reason: jobs.ReasonBlocked}
	for k, l := range ops[i].Lines {
		if !m.final(l) {
			if k == 0 {
				m.result[l] = res
			} else {
				m.result[l] = blocked
			}
		}
	}
	for _, op := range ops[i+1:] {
		for _, l := range op.Lines {
			if !m.final(l) {
				m.result[l] = blocked
			}
		}
	}
	if dead {
		m.dead[contact] = true
	}
}

// TestLedgerMatchesModel runs random sequences of executions (begun,
// settled, released, lost), redeliveries, pauses, resumes, cancels and
// dead-letter retries against the real ledger on Redis and against the
// model, and compares them after every step.
func TestLedgerMatchesModel(t *testing.T) { onTopologies(t, testLedgerMatchesModel) }

func testLedgerMatchesModel(t *testing.T, b *bundle) {
	const maxAttempts = 3
	for seed := range 60 {
		rng := rand.New(rand.NewPCG(uint64(seed), 99))
		id := fmt.Sprintf("m%d", seed)
		var rows []jobs.Row
		m := &model{status: jobs.BatchRunning, plan: map[string][]jobs.Op{}, result: map[int]jobs.Result{},
			attempts: map[int]int{}, claim: map[string]*jobs.Execution{}, expired: map[string]bool{}, parked: map[string]bool{}, dead: map[string]bool{}}
		line := 2
		contacts := []string{"a", "b", "c"}
		for _, c := range contacts {
			for range 1 + rng.IntN(3) {
				op := jobs.Op{MemberID: fmt.Sprint("m", rng.IntN(4)), Replace: rng.IntN(3) == 0}
				for range 1 + rng.IntN(2) {
					op.Lines = append(op.Lines, line)
					rows = append(rows, jobs.Row{Line: line, ContactID: c, MemberID: op.MemberID, Replace: op.Replace})
					line++
				}
				m.plan[c] = append(m.plan[c], op)
			}
		}
		rows = append(rows, jobs.Row{Line: line, ContactID: "z", Reason: "invalid_member_id"})
		m.result[line] = jobs.Result{Status: jobs.StatusInvalid, Reason: "invalid_member_id"}
		m.rows = len(rows)
		if err := b.store.Create(b.ctx, id, "", ""); err != nil {
			t.Fatal(err)
		}
		if err := b.store.AddRows(b.ctx, id, rows); err != nil {
			t.Fatal(err)
		}
		var plan []jobs.Contact
		for _, c := range contacts {
			plan = append(plan, jobs.Contact{ID: c, Ops: m.plan[c]})
		}
		if err := b.store.AddContacts(b.ctx, id, plan); err != nil {
			t.Fatal(err)
		}
		if err := b.store.Start(b.ctx, id, len(rows), len(plan), nil); err != nil {
			t.Fatal(err)
		}

		var live []*jobs.Execution // executions the test may still write with
		var trace []string
		for step := range 120 {
			c := contacts[rng.IntN(len(contacts))]
			var what string
			switch k := rng.IntN(100); {
			case k < 30: // an execution begins
				what = "begin " + c
				got, err := b.store.Begin(b.ctx, id, c, maxAttempts)
				if err != nil {
					t.Fatal(err)
				}
				want := m.begin(c, maxAttempts)
				if got.Verdict != want {
					t.Fatalf("seed %d step %d %s: verdict %v, model %v\n%s", seed, step, what, got.Verdict, want, strings.Join(trace, "\n"))
				}
				if got.Verdict == jobs.Run {
					m.claim[c] = got.Exec
					delete(m.expired, c)
					live = append(live, got.Exec)
				}
			case k < 60 && len(live) > 0: // an execution settles an op
				x := live[rng.IntN(len(live))]
				i := rng.IntN(len(x.Ops))
				res := jobs.Result{Status: jobs.StatusSucceeded, HTTPStatus: 200, Attempts: 1}
				dead := false
				switch rng.IntN(4) {
				case 0:
					res = jobs.Result{Status: jobs.StatusFailed, HTTPStatus: 404, Attempts: 1, Reason: "http_404"}
				case 1:
					res = jobs.Result{Status: jobs.StatusFailed, HTTPStatus: 503, Attempts: maxAttempts, Reason: "http_503"}
					dead = true
				}
				release := rng.IntN(2) == 0
				what = fmt.Sprintf("settle %s op %d %s dead=%v release=%v", x.Contact, i, res.Status, dead, release)
				r, err := b.store.Settle(b.ctx, x, i, res, dead, release, jobs.Stats{})
				if err != nil {
					t.Fatal(err)
				}
				if stale := m.settle(x, i, res, dead, release); r.Stale != stale {
					t.Fatalf("seed %d step %d %s: stale %v, model %v\n%s", seed, step, what, r.Stale, stale, strings.Join(trace, "\n"))
				}
			case k < 70 && len(live) > 0: // an execution gives its contact up
				x := live[rng.IntN(len(live))]
				op := rng.IntN(len(x.Ops)+1) - 1
				what = fmt.Sprintf("release %s attempt-op %d", x.Contact, op)
				if _, _, err := b.store.Release(b.ctx, x, op, true, jobs.Stats{}); err != nil {
					t.Fatal(err)
				}
				m.release(x, op)
			case k < 76: // the holder of c dies: its claim runs out
				what = "lose " + c
				if v, err := b.rdb.HGet(b.ctx, b.ns+":batch:{"+id+"}:claims", c).Result(); err == nil {
					tok, _, _ := strings.Cut(v, "|")
					if err := b.rdb.HSet(b.ctx, b.ns+":batch:{"+id+"}:claims", c, tok+"|1").Err(); err != nil {
						t.Fatal(err)
					}
				}
				m.lose(c)
			case k < 90: // an operator: pause, resume or cancel
				// A cancel ends the sequence's interest: rarely.
				to := []string{jobs.BatchPaused, jobs.BatchRunning}[rng.IntN(2)]
				if rng.IntN(20) == 0 {
					to = jobs.BatchCancelled
				}
				what = "status " + to
				_, err := b.store.SetStatus(b.ctx, id, to, "", "")
				var te *jobs.TransitionError
				legal := m.setStatus(to)
				if legal != (err == nil) || (err != nil && !errors.As(err, &te)) {
					t.Fatalf("seed %d step %d %s from %s: %v, model legal %v\n%s", seed, step, what, m.status, err, legal, strings.Join(trace, "\n"))
				}
			default: // dlq retry
				what = "reopen dead"
				deadIDs := slices.Sorted(maps.Keys(m.dead))
				n, _, err := b.store.Reopen(b.ctx, id, deadIDs)
				wantN, legal := m.reopen(deadIDs)
				if legal != (err == nil) || (legal && n != wantN) {
					t.Fatalf("seed %d step %d %s: %d, %v; model %d legal %v\n%s", seed, step, what, n, err, wantN, legal, strings.Join(trace, "\n"))
				}
			}
			trace = append(trace, what)
			b.compare(t, id, m, fmt.Sprintf("seed %d step %d (%s)\n%s", seed, step, what, strings.Join(trace, "\n")))
		}
	}
}

// begin is Begin's verdict on the model, and its effects.
func (m *model) begin(c string, maxAttempts int) jobs.Verdict {
	switch m.status {
	case jobs.BatchRunning:
	case jobs.BatchPaused:
		m.parked[c] = true
		return jobs.Parked
	default:
		return jobs.Over
	}
	_, held := m.claim[c]
	if held && !m.expired[c] {
		return jobs.Busy
	}
	first := -1
	for i, op := range m.plan[c] {
		if !m.final(op.Lines[0]) {
			first = i
			break
		}
	}
	if first < 0 {
		delete(m.claim, c)
		delete(m.expired, c)
		return jobs.Over
	}
	if held { // claimed by an execution that was lost
		l := m.plan[c][first].Lines[0]
		m.attempts[l]++
		if m.attempts[l] >= maxAttempts {
			m.settleOp(c, first, jobs.Result{Status: jobs.StatusFailed, Reason: "worker_lost"}, true)
			delete(m.claim, c)
			delete(m.expired, c)
			m.complete()
			return jobs.Settled
		}
	}
	return jobs.Run
}

func (m *model) settle(x *jobs.Execution, i int, res jobs.Result, dead, release bool) (stale bool) {
	if m.claim[x.Contact] != x {
		if res.Status == jobs.StatusSucceeded {
			for _, l := range m.plan[x.Contact][i].Lines {
				if r, ok := m.result[l]; !ok || r.Status == jobs.StatusFailed {
					m.result[l] = res
				}
			}
			// A success kept this way may be the batch's last row.
			m.complete()
		}
		return true
	}
	m.settleOp(x.Contact, i, res, dead)
	if release || res.Status != jobs.StatusSucceeded {
		delete(m.claim, x.Contact)
		delete(m.expired, x.Contact)
	}
	m.complete()
	return false
}

func (m *model) release(x *jobs.Execution, op int) {
	if m.claim[x.Contact] == x {
		delete(m.claim, x.Contact)
		delete(m.expired, x.Contact)
		if op >= 0 {
			m.attempts[m.plan[x.Contact][op].Lines[0]]++
		}
	}
	if m.status == jobs.BatchPaused || m.status == jobs.BatchRunning {
		m.parked[x.Contact] = true
	}
}

// lose lets the claim of c's holder, if any, run out: the holder died, or
// was too slow to renew it. It still holds c until another execution
// takes it over.
func (m *model) lose(c string) {
	if _, ok := m.claim[c]; ok {
		m.expired[c] = true
	}
}

func (m *model) setStatus(to string) (legal bool) {
	switch {
	case m.status == to:
		return true
	case m.status == jobs.BatchRunning && (to == jobs.BatchPaused || to == jobs.BatchCancelled),
		m.status == jobs.BatchPaused && (to == jobs.BatchRunning || to == jobs.BatchCancelled):
		m.status = to
		return true
	}
	return false
}

func (m *model) reopen(contacts []string) (int, bool) {
	if m.status != jobs.BatchRunning && m.status != jobs.BatchPaused && m.status != jobs.BatchDone {
		return 0, false
	}
	n := 0
	for _, c := range contacts {
		if !m.dead[c] {
			continue
		}
		delete(m.dead, c)
		for _, op := range m.plan[c] {
			for _, l := range op.Lines {
				if r, ok := m.result[l]; ok && r.Status == jobs.StatusFailed {
					delete(m.result, l)
					delete(m.attempts, l)
					n++
				}
			}
		}
	}
	if n > 0 && m.status == jobs.BatchDone {
		m.status = jobs.BatchRunning
	}
	return n, true
}

// compare fails the test where the ledger and the model disagree.
func (b *bundle) compare(t *testing.T, id string, m *model, where string) {
	t.Helper()
	got := b.get(t, id)
	if got.Status != m.status || got.Succeeded != m.count(jobs.StatusSucceeded) || got.Failed != m.count(jobs.StatusFailed) ||
		got.Invalid != m.count(jobs.StatusInvalid) || !maps.Equal(got.Errors, m.errors()) {
		t.Fatalf("%s\nbatch %s %d/%d/%d %v; model %s %d/%d/%d %v", where, got.Status, got.Succeeded, got.Failed, got.Invalid, got.Errors,
			m.status, m.count(jobs.StatusSucceeded), m.count(jobs.StatusFailed), m.count(jobs.StatusInvalid), m.errors())
	}
	for _, e := range b.entries(t, id) {
		want, ok := m.result[e.Row.Line]
		if !ok {
			want = jobs.Result{}
		}
		if e.Result.Status != want.Status || e.Result.Reason != want.Reason {
			t.Fatalf("%s\nline %d: %+v, model %+v", where, e.Row.Line, e.Result, want)
		}
	}
	for key, want := range map[string]map[string]bool{"parked": m.parked, "dead": m.dead} {
		members, err := b.rdb.SMembers(b.ctx, b.ns+":batch:{"+id+"}:"+key).Result()
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(members)
		if w := slices.Sorted(maps.Keys(want)); !slices.Equal(members, w) {
			t.Fatalf("%s\n%s = %v, model %v", where, key, members, w)
		}
	}
}
