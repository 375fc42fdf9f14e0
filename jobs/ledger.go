package jobs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// The ledger as a state machine. A task names a contact; each run of it is
// an execution that Begin lets run, or not, and that claims the contact
// while it runs. Every later write of the execution goes through Settle or
// Release, each one Lua script that checks the claim and the batch before
// it changes anything, so a row settles once, a failure and the rows it
// blocks settle together, and a stale execution (its claim expired and
// another took over) cannot overwrite what the holder decided.

// Verdict is what Begin decided about an execution.
type Verdict int

// The verdicts of Begin.
const (
	// Run: the execution holds the contact; Execution says what is left.
	Run Verdict = iota
	// Gone: the batch no longer exists (deleted, or expired).
	Gone
	// Over: nothing to send: the batch or the contact is final.
	Over
	// Hold: the batch is still importing; look again soon.
	Hold
	// Parked: the batch is paused; the contact waits in the ledger until
	// the batch is resumed, which queues it again.
	Parked
	// Busy: another execution, alive, holds the contact.
	Busy
	// Settled: the executions before this one died in the middle of a call
	// until the row ran out of attempts; Begin dead-lettered it.
	Settled
)

// Execution is one run of a contact's task that holds the contact.
type Execution struct {
	Batch, Contact string
	// Token identifies the execution in its claim.
	Token string
	// Ops are the contact's calls in file order; Done and Attempts say,
	// per op, whether it is settled and how many failed attempts it had.
	Ops      []Op
	Done     []bool
	Attempts []int
	// RecordPrevious: the batch keeps each contact's earlier agents.
	RecordPrevious bool
	// Epoch counts the batch's starts and resumes.
	Epoch int64
}

// Begun is what Begin returns.
type Begun struct {
	Verdict Verdict
	// Status is the batch's status, for Over and Hold.
	Status string
	// Completed: a Settled verdict completed the batch.
	Completed bool
	// Exec is set for Run.
	Exec *Execution
	// Err says the contact could not begin: the ledger's answer for it
	// could not be read (its plan entry, or its members). Its claim is
	// given up again; the other contacts of the same call are not held
	// back.
	Err error
}

// Begin decides whether an execution of the contact's task runs and, if
// it does, claims the contact for it. maxAttempts bounds the executions
// that die in the middle of a call (found by their expired claim) before
// the row is dead-lettered.
func (s *Store) Begin(ctx context.Context, batch, contact string, maxAttempts int) (Begun, error) {
	bs, err := s.BeginMany(ctx, batch, []string{contact}, maxAttempts)
	if err != nil {
		return Begun{}, err
	}
	return bs[0], bs[0].Err
}

// BeginMany is Begin for many contacts of a batch at once, in one call:
// it returns their Begun in the same order.
func (s *Store) BeginMany(ctx context.Context, batch string, contacts []string, maxAttempts int) ([]Begun, error) {
	args := make([]any, 0, 3+2*len(contacts))
	args = append(args, s.claimTTL.Milliseconds(), maxAttempts, s.now().UnixMilli())
	tokens := make([]string, len(contacts))
	for i, c := range contacts {
		tokens[i] = newToken()
		args = append(args, c, tokens[i])
	}
	v, err := beginScript.Run(ctx, s.rdb, s.keys(batch), args...).Slice()
	if err != nil {
		return nil, fmt.Errorf("begin %d contacts of batch %s: %w", len(contacts), batch, err)
	}
	out := make([]Begun, len(contacts))
	head, _ := strings_(v[:min(len(v), 2)], nil)
	if head[0] != "each" {
		b := Begun{Verdict: Gone}
		switch head[0] {
		case "finished":
			b = Begun{Verdict: Over, Status: head[1]}
		case "hold":
			b = Begun{Verdict: Hold, Status: head[1]}
		}
		for i := range out {
			out[i] = b
		}
		return out, nil
	}
	if len(v) != 1+len(contacts) {
		return nil, fmt.Errorf("begin contacts of batch %s: %d answers for %d contacts", batch, len(v)-1, len(contacts))
	}
	for i, c := range contacts {
		each, _ := v[1+i].([]any)
		if out[i], err = s.begun(ctx, batch, c, tokens[i], each); err != nil {
			// Claimed for an execution that will not run: give the claim
			// up, so that the contact's next execution neither waits for
			// it to expire nor counts it as a worker lost.
			x := &Execution{Batch: batch, Contact: c, Token: tokens[i]}
			if _, _, rerr := s.Release(ctx, x, -1, false, Stats{}); rerr != nil {
				err = errors.Join(err, rerr)
			}
			out[i] = Begun{Err: err}
		}
	}
	return out, nil
}

// begun reads Begin's verdict on one contact.
func (s *Store) begun(ctx context.Context, batch, contact, token string, each []any) (Begun, error) {
	v, _ := strings_(each, nil)
	if len(v) == 0 {
		return Begun{}, fmt.Errorf("begin contact %s of batch %s: empty answer", contact, batch)
	}
	switch v[0] {
	case "finished":
		return Begun{Verdict: Over, Status: v[1]}, nil
	case "parked":
		return Begun{Verdict: Parked, Status: BatchPaused}, nil
	case "busy":
		return Begun{Verdict: Busy, Status: BatchRunning}, nil
	case "settled":
		return Begun{Verdict: Settled, Completed: v[1] == "1"}, nil
	}
	c, err := s.decodeEntry(ctx, batch, contact, v[1])
	if err != nil {
		return Begun{}, fmt.Errorf("batch %s: %w", batch, err)
	}
	x := &Execution{Batch: batch, Contact: contact, Token: token, Ops: c.Ops, RecordPrevious: v[4] == "1"}
	x.Epoch, _ = strconv.ParseInt(v[5], 10, 64)
	for d := range strings.SplitSeq(v[2], ",") {
		x.Done = append(x.Done, d == "1")
	}
	for a := range strings.SplitSeq(v[3], ",") {
		n, _ := strconv.Atoi(a)
		x.Attempts = append(x.Attempts, n)
	}
	if len(x.Done) != len(c.Ops) || len(x.Attempts) != len(c.Ops) {
		return Begun{}, fmt.Errorf("batch %s contact %s: ledger answer does not match its plan", batch, contact)
	}
	return Begun{Verdict: Run, Status: BatchRunning, Exec: x}, nil
}

// strings_ reads a script's answer as strings, whatever type each value
// came back as: a string of digits may come back as an integer from an
// embedded queue's interpreter.
func strings_(v []any, err error) ([]string, error) {
	if err != nil {
		return nil, err
	}
	out := make([]string, len(v))
	for i, x := range v {
		out[i] = fmt.Sprint(x)
	}
	return out, nil
}

func newToken() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// SettleResult is what Settle did.
type SettleResult struct {
	// Completed: this write completed the batch, true for exactly one
	// writer.
	Completed bool
	// Stale: the execution no longer held the contact: only a success was
	// kept (the call was made, so the row succeeded), the holder decides
	// the rest, and the execution must stop.
	Stale bool
	// Gone: the batch no longer exists.
	Gone bool
}

// Settle gives op i of the execution its final result, with the counters
// of the calls it took. A result that is not a success blocks the
// contact's later ops; dead keeps the contact for `dlq retry`; release
// ends the claim (it always ends with a failure).
func (s *Store) Settle(ctx context.Context, x *Execution, i int, res Result, dead, release bool, st Stats) (SettleResult, error) {
	rs, err := s.SettleMany(ctx, x.Batch, []Settlement{{Exec: x, Op: i, Result: res, Dead: dead, Release: release, Stats: st}})
	if err != nil {
		return SettleResult{}, err
	}
	return rs[0], nil
}

// Settlement is one Settle of SettleMany.
type Settlement struct {
	Exec          *Execution
	Op            int
	Result        Result
	Dead, Release bool
	Stats         Stats
}

// SettleMany is Settle for many executions of one batch at once, in one
// call, in order; at most one of the results is Completed.
func (s *Store) SettleMany(ctx context.Context, batch string, ss []Settlement) ([]SettleResult, error) {
	args := make([]any, 0, 1+12*len(ss))
	args = append(args, s.now().UnixMilli())
	for _, t := range ss {
		b, _ := json.Marshal(t.Result) // a Result always encodes
		lines := make([]byte, 0, 8*len(t.Exec.Ops[t.Op].Lines))
		for i, l := range t.Exec.Ops[t.Op].Lines {
			if i > 0 {
				lines = append(lines, ',')
			}
			lines = strconv.AppendInt(lines, int64(l), 10)
		}
		args = append(args, t.Exec.Contact, t.Exec.Token, t.Op+1, b, string(t.Result.Status), t.Result.Reason,
			flag(t.Dead), flag(t.Release), t.Stats.Calls, t.Stats.Retries, t.Stats.RateLimited, lines)
	}
	v, err := settleScript.Run(ctx, s.rdb, s.keys(batch), args...).Int64Slice()
	if err != nil {
		return nil, fmt.Errorf("settle %d rows of batch %s (lines %v...): %w", len(ss), batch, ss[0].Exec.Ops[ss[0].Op].Lines, err)
	}
	if len(v) != 1+len(ss) {
		return nil, fmt.Errorf("settle rows of batch %s: %d answers for %d", batch, len(v)-1, len(ss))
	}
	out := make([]SettleResult, len(ss))
	for i, n := range v[1:] {
		out[i] = SettleResult{Gone: n == -1, Stale: n == -2}
	}
	out[0].Completed = v[0] == 1
	return out, nil
}

// Release ends an execution that leaves rows unsettled, with the counters
// of the calls it made: attemptOp >= 0 counts a failed attempt of that op
// (a transient failure the task is retried for); park, when the batch is
// paused, keeps the contact for resume. It returns the batch's status
// ("" when it is gone) and the op's attempts so far.
func (s *Store) Release(ctx context.Context, x *Execution, attemptOp int, park bool, st Stats) (status string, attempts int, err error) {
	line := ""
	if attemptOp >= 0 {
		line = strconv.Itoa(x.Ops[attemptOp].Lines[0])
	}
	v, err := releaseScript.Run(ctx, s.rdb, s.keys(x.Batch), x.Contact, x.Token, line, flag(park),
		st.Calls, st.Retries, st.RateLimited).Slice()
	if err != nil {
		return "", 0, fmt.Errorf("release contact %s of batch %s: %w", x.Contact, x.Batch, err)
	}
	status, _ = v[0].(string)
	n, _ := v[1].(int64)
	return status, int(n), nil
}

// BatchState is what a worker process watches of a batch it runs tasks of.
type BatchState struct {
	// Status is "" when the batch is gone.
	Status, PauseCode string
	Epoch             int64
}

// Watch reads the state of a batch and renews the claims of the given
// executions of it, in one call.
func (s *Store) Watch(ctx context.Context, batch string, renew []*Execution) (BatchState, error) {
	args := make([]any, 0, 1+2*len(renew))
	args = append(args, s.claimTTL.Milliseconds())
	for _, x := range renew {
		args = append(args, x.Token, x.Contact)
	}
	v, err := strings_(watchScript.Run(ctx, s.rdb, s.keys(batch), args...).Slice())
	if err != nil {
		return BatchState{}, fmt.Errorf("watch batch %s: %w", batch, err)
	}
	epoch, _ := strconv.ParseInt(v[2], 10, 64)
	return BatchState{Status: v[0], PauseCode: v[1], Epoch: epoch}, nil
}

func flag(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Reopen takes dead-lettered contacts back for a retry: their failed rows
// lose their results (the counters move back with them), and a done batch
// runs again; a paused batch stays paused. It returns the rows reopened
// and the contacts to queue again.
func (s *Store) Reopen(ctx context.Context, id string, contacts []string) (int, []string, error) {
	args := make([]any, len(contacts))
	for i, c := range contacts {
		args[i] = c
	}
	v, err := reopenScript.Run(ctx, s.rdb, s.keys(id), args...).Slice()
	if err != nil {
		return 0, nil, fmt.Errorf("reopen dead letters of batch %s: %w", id, scriptError(err, id, "retried"))
	}
	n, _ := v[0].(int64)
	out := make([]string, 0, len(v)-1)
	for _, c := range v[1:] {
		out = append(out, c.(string))
	}
	return int(n), out, nil
}

// Dead returns the dead-lettered contacts of a batch with their calls, by
// first line.
func (s *Store) Dead(ctx context.Context, id string) ([]Contact, error) {
	ids, err := s.rdb.SMembers(ctx, s.deadKey(id)).Result()
	if err != nil {
		return nil, fmt.Errorf("read dead letters of batch %s: %w", id, err)
	}
	out, err := s.contacts(ctx, id, ids)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b Contact) int { return a.Ops[0].Lines[0] - b.Ops[0].Lines[0] })
	return out, nil
}

// contacts reads the plan of the given contacts; one the plan lacks is
// left out.
func (s *Store) contacts(ctx context.Context, id string, ids []string) ([]Contact, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	vals, err := s.rdb.HMGet(ctx, s.planKey(id), ids...).Result()
	if err != nil {
		return nil, fmt.Errorf("read the plan of batch %s: %w", id, err)
	}
	out := make([]Contact, 0, len(ids))
	for i, v := range vals {
		str, ok := v.(string)
		if !ok {
			continue
		}
		c, err := s.decodeEntry(ctx, id, ids[i], str)
		if err != nil {
			return nil, fmt.Errorf("batch %s: %w", id, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// Contacts yields the batch's plan in pages: every contact with calls to
// make, in no particular order. With pending, only the contacts that still
// have a row without a result.
func (s *Store) Contacts(ctx context.Context, id string, pending bool) iter.Seq2[[]Contact, error] {
	return func(yield func([]Contact, error) bool) {
		var cursor uint64
		for {
			kv, next, err := s.rdb.HScan(ctx, s.planKey(id), cursor, "", 1000).Result()
			if err != nil {
				yield(nil, fmt.Errorf("scan the plan of batch %s: %w", id, err))
				return
			}
			page := make([]Contact, 0, len(kv)/2)
			for i := 0; i+1 < len(kv); i += 2 {
				c, err := s.decodeEntry(ctx, id, kv[i], kv[i+1])
				if err != nil {
					yield(nil, fmt.Errorf("batch %s: %w", id, err))
					return
				}
				page = append(page, c)
			}
			if pending {
				if page, err = s.pending(ctx, id, page); err != nil {
					yield(nil, err)
					return
				}
			}
			if len(page) > 0 && !yield(page, nil) {
				return
			}
			if cursor = next; cursor == 0 {
				return
			}
		}
	}
}

// pending keeps the contacts with a row that has no result.
func (s *Store) pending(ctx context.Context, id string, cs []Contact) ([]Contact, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.SliceCmd, len(cs))
	for i, c := range cs {
		fields := make([]string, len(c.Ops))
		for j, op := range c.Ops {
			fields[j] = strconv.Itoa(op.Lines[0])
		}
		cmds[i] = pipe.HMGet(ctx, s.resultsKey(id), fields...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("read results of batch %s: %w", id, err)
	}
	out := cs[:0]
	for i, c := range cs {
		if slices.Contains(cmds[i].Val(), nil) {
			out = append(out, c)
		}
	}
	return out, nil
}

// Sweep is what a sweep found of a batch.
type Sweep struct {
	// Status is "" when the batch is gone.
	Status string
	// Parked is the number of contacts waiting for the batch to run.
	Parked int64
	// Requeue: the batch runs but some of its tasks may not exist: its
	// importer died before queueing them all, or it made no progress for
	// the stall time with no execution holding any of its contacts.
	Requeue bool
}

// Sweep looks at a batch for a worker's periodic sweep: an import whose
// lease ran out is abandoned, and a running batch says whether its parked
// contacts or its lost tasks need queueing.
func (s *Store) Sweep(ctx context.Context, id string, stall int64) (Sweep, error) {
	v, err := sweepScript.Run(ctx, s.rdb, s.keys(id), s.now().UnixMilli(), stall).Slice()
	if err != nil {
		return Sweep{}, fmt.Errorf("sweep batch %s: %w", id, err)
	}
	status, _ := v[0].(string)
	parked, _ := v[1].(int64)
	requeue, _ := v[2].(int64)
	return Sweep{Status: status, Parked: parked, Requeue: requeue == 1}, nil
}

// TakeParked removes up to n parked contacts of a batch and returns them;
// the caller queues them again (Unpark puts back those it could not).
func (s *Store) TakeParked(ctx context.Context, id string, n int) ([]string, error) {
	cs, err := s.rdb.SPopN(ctx, s.parkedKey(id), int64(n)).Result()
	if err != nil {
		return nil, fmt.Errorf("take parked contacts of batch %s: %w", id, err)
	}
	return cs, nil
}

// Unpark puts contacts back in the parked set.
func (s *Store) Unpark(ctx context.Context, id string, contacts []string) error {
	if len(contacts) == 0 {
		return nil
	}
	args := make([]any, len(contacts))
	for i, c := range contacts {
		args[i] = c
	}
	if err := unparkScript.Run(ctx, s.rdb, s.keys(id), args...).Err(); err != nil {
		return fmt.Errorf("park contacts of batch %s: %w", id, err)
	}
	return nil
}

// unparkLua puts contacts back in the parked set of a batch that exists.
// ARGV: contacts...
const unparkLua = `
if redis.call('EXISTS', meta) == 0 then
  return 0
end
redis.call('SADD', parked, unpack(ARGV))
touch(parked)
return 1
`

var unparkScript = script(unparkLua)

// noteTasksLua adds task ids to the tasks set of a batch that exists.
// ARGV: task ids...
const noteTasksLua = `
if redis.call('EXISTS', meta) == 0 then
  return 0
end
redis.call('SADD', KEYS[12], unpack(ARGV))
touch(KEYS[12])
return 1
`

var noteTasksScript = script(noteTasksLua)

// NoteTasks records the ids of tasks of batch id queued outside its
// import's numbered chunks (a contact's own task, a chunk queued again),
// before they are queued, so that Delete finds every task of the batch. A
// batch that is gone records nothing.
func (s *Store) NoteTasks(ctx context.Context, id string, tasks ...string) error {
	for part := range slices.Chunk(tasks, 1000) { // Lua's unpack has a limit
		args := make([]any, len(part))
		for i, t := range part {
			args[i] = t
		}
		if err := noteTasksScript.Run(ctx, s.rdb, s.keys(id), args...).Err(); err != nil {
			return fmt.Errorf("note %d tasks of batch %s: %w", len(tasks), id, err)
		}
	}
	return nil
}

// NotedTasks yields, a page at a time, the task ids NoteTasks recorded
// for batch id and ForgetTask did not drop (SSCAN: a big set never blocks
// Redis, nor fills memory).
func (s *Store) NotedTasks(ctx context.Context, id string) func(func([]string, error) bool) {
	return func(yield func([]string, error) bool) {
		var cursor uint64
		for {
			page, next, err := s.rdb.SScan(ctx, s.tasksKey(id), cursor, "", 1000).Result()
			if err != nil {
				yield(nil, fmt.Errorf("read the tasks of batch %s: %w", id, err))
				return
			}
			if len(page) > 0 && !yield(page, nil) {
				return
			}
			if cursor = next; cursor == 0 {
				return
			}
		}
	}
}

// ForgetTask drops a task of batch id that ended for good from the ones
// NoteTasks recorded, so that the set holds only tasks that may still be
// queued (and dead letters, which stay in asynq's archive).
func (s *Store) ForgetTask(ctx context.Context, id, task string) error {
	if err := s.rdb.SRem(ctx, s.tasksKey(id), task).Err(); err != nil {
		return fmt.Errorf("forget task %s of batch %s: %w", task, id, err)
	}
	return nil
}
