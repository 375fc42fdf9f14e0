package schedule

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/bulkassign/bulkassign/importer"
	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/notify"
	"github.com/bulkassign/bulkassign/planner"
	"github.com/bulkassign/bulkassign/worker"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// RunnerOptions configures a Runner; the zero value means defaults.
type RunnerOptions struct {
	// Namespace prefixes the Runner's keys; default "bulkassign", as the
	// batch store's.
	Namespace string
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// PendingTTL bounds how long a tick may plan and import before its
	// claim on the schedule lapses (a worker that died mid-way must not
	// block the schedule for good); default 30 minutes.
	PendingTTL time.Duration
	// LockTTL bounds how long a run's batch holds the schedule; a finished
	// batch frees it at once. Default 7 days, the batches' retention.
	LockTTL time.Duration
	// TickWait is how long a task waits for the scheduler to record which
	// tick it is (written just after the enqueue); default 5 seconds,
	// after which the time the task runs stands for its tick.
	TickWait time.Duration
	// Notifier announces, for entries with notify, the ends of the ticks'
	// batches and the ticks a paused batch holds up. Without it such a
	// tick records a warning that nothing will be announced.
	Notifier *notify.Notifier
}

// Runner runs ticks: it claims the tick and the schedule, plans, and
// imports the plan as a batch, and records what each tick did (Runs). As
// an asynq.Handler it runs the TypePlan tasks the scheduler queues.
type Runner struct {
	rdb   redis.UniversalClient
	store *jobs.Store
	imp   *importer.Importer
	crm   *CRM
	opts  RunnerOptions
	// draining ends when Drain is called: a tick planning then stops.
	draining context.Context
	drain    context.CancelCauseFunc
}

// ErrDraining ends a tick that was planning when its worker began to shut
// down: the tick is retried later, by this worker once it is back or by
// another.
var ErrDraining = errors.New("the worker is shutting down: the tick runs again later")

// Drain stops the ticks planning now (reading the CRM's owners may take
// long under a low rate), so that a worker's shutdown does not wait for
// them; a tick queueing its batch finishes that. Call it before the asynq
// server's Shutdown.
func (r *Runner) Drain() { r.drain(ErrDraining) }

// NewRunner returns a Runner that keeps its locks and records in rdb,
// reads batch statuses from store, checks every tick's pools against (and
// reads live owners from) crm, and queues batches through imp.
func NewRunner(rdb redis.UniversalClient, store *jobs.Store, imp *importer.Importer, crm *CRM, opts RunnerOptions) *Runner {
	if opts.Namespace == "" {
		opts.Namespace = "bulkassign"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.PendingTTL <= 0 {
		opts.PendingTTL = 30 * time.Minute
	}
	if opts.LockTTL <= 0 {
		opts.LockTTL = jobs.DefaultRetention
	}
	if opts.TickWait <= 0 {
		opts.TickWait = 5 * time.Second
	}
	draining, drain := context.WithCancelCause(context.Background())
	return &Runner{rdb: rdb, store: store, imp: imp, crm: crm, opts: opts, draining: draining, drain: drain}
}

// Redis keys, all under the namespace:
//
//	NS:schedule:{<name>}:tick     "<tick> <owner>": the newest tick claimed
//	NS:schedule:{<name>}:running  "<tick> <owner> <batch id>": the run that
//	                              holds the schedule ("" batch while it plans)
//	NS:schedule-task:<task id>    "<tick>": the tick a queued task stands for
//	NS:schedule:{<name>}:runs     the records of the newest MaxRuns ticks (runs.go)
//	NS:schedules                  the names of the schedules with records, by
//	                              the time of each one's newest (runs.go)
//
// A tick is Unix seconds; an owner is the asynq task id, or once-… for
// `schedule --once`. claimScript takes both keys of a schedule: the
// {<name>} hash tag keeps them in one Redis Cluster slot.
func (r *Runner) tickKey(name string) string    { return r.scheduleKey(name) + ":tick" }
func (r *Runner) runningKey(name string) string { return r.scheduleKey(name) + ":running" }
func (r *Runner) scheduleKey(name string) string {
	return r.opts.Namespace + ":schedule:{" + name + "}"
}

// TaskTickKey is where the scheduler records the tick of a task it queued.
func TaskTickKey(namespace, taskID string) string {
	return namespace + ":schedule-task:" + taskID
}

// claimScript claims a tick of a schedule: it refuses a tick older than
// the newest claimed (stale), the same tick claimed by another owner
// (duplicate: a second scheduler, a second delivery), and a schedule that
// a run holds (busy: Go then checks whether that run's batch is finished).
// The same owner claiming again (asynq retrying its task) passes.
//
// KEYS[1] tick key, KEYS[2] running key
// ARGV[1] tick, ARGV[2] owner, ARGV[3] pending TTL ms, ARGV[4] tick key TTL ms
var claimScript = redis.NewScript(`
local tick = tonumber(ARGV[1])
local last = redis.call('GET', KEYS[1])
if last then
  local sp = string.find(last, ' ', 1, true)
  local t = tonumber(string.sub(last, 1, sp - 1))
  local owner = string.sub(last, sp + 1)
  if t > tick then return {'stale', last} end
  if t == tick and owner ~= ARGV[2] then return {'duplicate', last} end
end
local run = redis.call('GET', KEYS[2])
if run then return {'busy', run} end
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[2], 'PX', ARGV[4])
redis.call('SET', KEYS[2], ARGV[1] .. ' ' .. ARGV[2] .. ' ', 'PX', ARGV[3])
return {'ok', ''}
`)

// swapScript replaces (or, with ARGV[2] empty, deletes) KEYS[1] if it
// still holds ARGV[1]. ARGV[3] is the new value's TTL in ms.
var swapScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return 1
`)

// tickKeyTTL keeps the newest claimed tick long after any duplicate of it
// could arrive.
const tickKeyTTL = 30 * 24 * time.Hour

// Outcome is what one tick did: queued a batch, or skipped and why.
type Outcome struct {
	Schedule string
	Tick     time.Time
	// BatchID is the batch the tick queued; "" when it skipped.
	BatchID string
	// Summary is the import's summary when a batch was queued.
	Summary importer.Summary
	// Skipped says why no batch was queued: the tick was run already, the
	// previous run is still going or is paused, or the plan changes
	// nothing. SkipCode says it for a program (the Skip* constants).
	Skipped  string
	SkipCode string
	// Warnings are the plan's warnings (a member over maxShare, ...), and
	// what the tick could not do once its batch was queued (record who
	// started it, attach its notify target).
	Warnings []string
	// HeldBy is the previous run's batch that a tick skipped because of it
	// is waiting for (SkipRunning, SkipPaused, SkipRefused).
	HeldBy string
	// Notify is where the batch's end will be announced, its URL redacted;
	// "" when it will not be.
	Notify string
}

// Why a tick queued no batch: Outcome.SkipCode and Run.Code.
const (
	// SkipDuplicate: another scheduler or delivery ran this tick, or a
	// later one ran already.
	SkipDuplicate = "duplicate"
	// SkipRunning: the previous run's batch is still running (or its tick
	// still planning).
	SkipRunning = "previous-running"
	// SkipPaused: the previous run's batch is paused; nothing runs until
	// it is resumed or cancelled.
	SkipPaused = "previous-paused"
	// SkipRefused: the previous run's batch was paused because the CRM
	// refused the API key.
	SkipRefused = "previous-refused"
	// SkipNothing: every contact already has its planned owner.
	SkipNothing = "nothing-to-change"
)

// run is a parsed value of the running key.
type run struct {
	tick  int64
	owner string
	batch string
}

func parseRun(v string) run {
	f := strings.SplitN(v, " ", 3)
	var r run
	if len(f) == 3 {
		r.tick, _ = strconv.ParseInt(f[0], 10, 64)
		r.owner, r.batch = f[1], f[2]
	}
	return r
}

func (x run) String() string { return strconv.FormatInt(x.tick, 10) + " " + x.owner + " " + x.batch }

// Tick runs one tick of schedule p at tick (whole seconds count) for
// owner: unless the tick was run already or the previous run's batch is
// not finished, it plans p's files and queues the plan as a batch named
// "<name> <tick>". owner names the caller (the task id) so that a retry of
// the same task may claim the same tick again; it has no spaces.
//
// A problem with the files is returned as it is (a *planner.FileError, a
// *fs.PathError, ...): retrying will not help.
func (r *Runner) Tick(ctx context.Context, p jobs.PlanPayload, tick time.Time, owner string) (Outcome, error) {
	tick = tick.Truncate(time.Second)
	out := Outcome{Schedule: p.Name, Tick: tick}
	if owner == "" || strings.ContainsAny(owner, " \t\n") {
		return out, fmt.Errorf("schedule %s: owner %q: want a word", p.Name, owner)
	}
	mine := run{tick: tick.Unix(), owner: owner}
	for attempt := 0; ; attempt++ {
		res, err := claimScript.Run(ctx, r.rdb, []string{r.tickKey(p.Name), r.runningKey(p.Name)},
			mine.tick, owner, r.opts.PendingTTL.Milliseconds(), tickKeyTTL.Milliseconds()).StringSlice()
		if err != nil {
			return out, fmt.Errorf("schedule %s: claim tick: %w", p.Name, err)
		}
		if len(res) != 2 {
			return out, fmt.Errorf("schedule %s: claim tick: unexpected reply %q", p.Name, res)
		}
		switch res[0] {
		case "ok":
		case "stale":
			out.Skipped, out.SkipCode = fmt.Sprintf("a later tick (%s) ran already", tickTime(res[1])), SkipDuplicate
			return out, nil
		case "duplicate":
			out.Skipped, out.SkipCode = "this tick ran already (another scheduler or delivery claimed it)", SkipDuplicate
			return out, nil
		case "busy":
			held := parseRun(res[1])
			if held.tick == mine.tick && held.owner == owner {
				if held.batch != "" { // a retry after the batch was queued
					out.BatchID = held.batch
					return out, nil
				}
				break // a retry of a claim of ours that did not get as far
			}
			free, code, why, err := r.finished(ctx, held)
			if err != nil {
				return out, fmt.Errorf("schedule %s: %w", p.Name, err)
			}
			if !free {
				out.Skipped, out.SkipCode, out.HeldBy = why, code, held.batch
				return out, nil
			}
			if attempt > 0 {
				out.Skipped, out.SkipCode = "another tick took the schedule first", SkipDuplicate
				return out, nil
			}
			if _, err := swapScript.Run(ctx, r.rdb, []string{r.runningKey(p.Name)}, res[1], "", 0).Result(); err != nil {
				return out, fmt.Errorf("schedule %s: free the finished run: %w", p.Name, err)
			}
			continue
		default:
			return out, fmt.Errorf("schedule %s: claim tick: unexpected reply %q", p.Name, res)
		}
		break
	}

	release := func() {
		// Not ctx: a cancelled tick must still let the next one run.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := swapScript.Run(cctx, r.rdb, []string{r.runningKey(p.Name)}, mine.String(), "", 0).Err(); err != nil {
			r.opts.Logger.Warn("schedule: could not free the schedule; it frees itself after the pending TTL",
				slog.String("schedule", p.Name), slog.Any("error", err))
		}
	}
	// Planning stops when the worker drains; what comes after (queueing
	// the batch) is not cut short.
	pctx, cancel := context.WithCancelCause(ctx)
	if r.draining.Err() != nil {
		cancel(context.Cause(r.draining)) // already: plan nothing
	}
	stop := context.AfterFunc(r.draining, func() { cancel(context.Cause(r.draining)) })
	plan, err := r.plan(pctx, p)
	stop()
	if cause := context.Cause(pctx); err != nil && errors.Is(cause, ErrDraining) {
		err = fmt.Errorf("schedule %s: %w", p.Name, cause)
	}
	cancel(nil)
	if err != nil {
		release()
		return out, err
	}
	out.Warnings = plan.Warnings
	if len(plan.Assignments) == 0 {
		release()
		out.Skipped, out.SkipCode = "nothing to change: every contact already has its planned owner", SkipNothing
		if !p.Live {
			out.Skipped += " (by the contacts file's owners; live: true reads them from the CRM)"
		}
		return out, nil
	}
	var csv bytes.Buffer
	if err := plan.WriteCSV(&csv); err != nil {
		release()
		return out, fmt.Errorf("schedule %s: write plan: %w", p.Name, err)
	}
	sum, err := r.imp.Import(ctx, &csv, importer.Options{
		File:           fmt.Sprintf("schedule %s: plan of %s by %s", p.Name, p.Contacts, p.Rules),
		Format:         importer.FormatCSV,
		Name:           BatchName(p, tick),
		IDFormat:       p.IDFormat,
		RecordPrevious: p.RecordPrevious,
	})
	if err != nil {
		release()
		return out, fmt.Errorf("schedule %s: %w", p.Name, err)
	}
	out.BatchID, out.Summary = sum.BatchID, sum
	r.started(ctx, p, &out)
	held := mine
	held.batch = sum.BatchID
	ok, err := swapScript.Run(ctx, r.rdb, []string{r.runningKey(p.Name)}, mine.String(), held.String(), r.opts.LockTTL.Milliseconds()).Int()
	switch {
	case err != nil:
		// The batch is queued; only the lock lags. It lapses after the
		// pending TTL, and the next tick checks that batch no more.
		r.opts.Logger.Warn("schedule: batch queued, but the schedule's lock could not name it",
			slog.String("schedule", p.Name), slog.String("batch_id", sum.BatchID), slog.Any("error", err))
	case ok == 0:
		r.opts.Logger.Warn("schedule: the claim lapsed while planning (see PendingTTL); the next tick will not wait for this batch",
			slog.String("schedule", p.Name), slog.String("batch_id", sum.BatchID))
	}
	return out, nil
}

// started records, for the batch a tick queued, that the schedule
// started it, and attaches the entry's notify target. Neither is needed to
// apply the batch: a failure is a warning of the tick.
func (r *Runner) started(ctx context.Context, p jobs.PlanPayload, out *Outcome) {
	warn := func(msg string) {
		out.Warnings = append(out.Warnings, msg)
		r.opts.Logger.Warn("schedule: "+msg, slog.String("schedule", p.Name), slog.String("batch_id", out.BatchID))
	}
	if err := r.store.SetOrigin(ctx, out.BatchID, jobs.Origin{Via: "schedule", By: p.Name}); err != nil {
		warn(err.Error())
	}
	if p.Notify == "" {
		return
	}
	t, err := r.target(p)
	if err == nil {
		err = r.opts.Notifier.Attach(ctx, out.BatchID, t)
	}
	if err != nil {
		warn(fmt.Sprintf("notify: %v: the end of batch %s will not be announced", err, out.BatchID))
		return
	}
	out.Notify = t.String()
}

// target is the notify target of p, which has one.
func (r *Runner) target(p jobs.PlanPayload) (notify.Target, error) {
	if r.opts.Notifier == nil {
		return notify.Target{}, errors.New("this process queues no notices")
	}
	return notify.ParseTarget(p.Notify, p.NotifyFormat)
}

// finished reports whether the run holding a schedule is over: its batch
// is finished or gone. code and why say what holds it when it is not.
func (r *Runner) finished(ctx context.Context, held run) (free bool, code, why string, err error) {
	if held.batch == "" {
		return false, SkipRunning, fmt.Sprintf("the run of tick %s is still planning or importing", time.Unix(held.tick, 0).UTC().Format(time.RFC3339)), nil
	}
	b, err := r.store.Get(ctx, held.batch)
	if errors.Is(err, jobs.ErrNotFound) {
		return true, "", "", nil
	}
	if err != nil {
		return false, "", "", fmt.Errorf("read the previous run's batch %s: %w", held.batch, err)
	}
	switch {
	case jobs.Finished(b.Status):
		return true, "", "", nil
	case b.Status == jobs.BatchPaused && b.PauseCode == jobs.PauseUnauthorized:
		return false, SkipRefused, fmt.Sprintf("the previous run, batch %s, is paused because the CRM refused the API key (%s): fix the workers' key, then `bulkassign resume %s` (or cancel it); no tick runs until then",
			b.ID, b.PauseReason, b.ID), nil
	case b.Status == jobs.BatchPaused:
		return false, SkipPaused, fmt.Sprintf("the previous run, batch %s, is paused (%d/%d rows done): `bulkassign resume %s` or cancel it; no tick runs until then",
			b.ID, b.Done(), b.Rows, b.ID), nil
	}
	return false, SkipRunning, fmt.Sprintf("the previous run, batch %s, is still %s (%d/%d rows done)", b.ID, b.Status, b.Done(), b.Rows), nil
}

// plan reads p's files, checks the pools against the CRM's members, reads
// the live owners if p asks for them, and computes the plan.
func (r *Runner) plan(ctx context.Context, p jobs.PlanPayload) (*planner.Plan, error) {
	open := func(what, path string) func() (io.ReadCloser, error) {
		return func() (io.ReadCloser, error) {
			f, err := os.Open(path)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", what, err)
			}
			return f, nil
		}
	}
	if r.crm == nil {
		return nil, fmt.Errorf("schedule %s: no CRM client to check the pools against its team members", p.Name)
	}
	plan, err := MakePlan(ctx, Inputs{
		Contacts: p.Contacts, Rules: p.Rules,
		OpenContacts: open("contacts", p.Contacts), OpenRules: open("rules", p.Rules),
		IDFormat: p.IDFormat, Live: p.Live, Check: true,
	}, r.crm)
	if err != nil {
		return nil, fmt.Errorf("schedule %s: %w", p.Name, err)
	}
	return plan, nil
}

// BatchName is the name of the batch a tick queues: the schedule's name
// and the tick in the schedule's zone.
func BatchName(p jobs.PlanPayload, tick time.Time) string {
	loc := time.UTC
	if p.Timezone != "" {
		if l, err := time.LoadLocation(p.Timezone); err == nil {
			loc = l
		}
	}
	return p.Name + " " + tick.In(loc).Format(time.RFC3339)
}

// tickTime shows the tick of a "<tick> <owner>" value.
func tickTime(v string) string {
	t, err := strconv.ParseInt(strings.SplitN(v, " ", 2)[0], 10, 64)
	if err != nil {
		return v
	}
	return time.Unix(t, 0).UTC().Format(time.RFC3339)
}

// ProcessTask runs the tick a TypePlan task stands for. A problem with
// the schedule's files fails the task for good (it is archived, and the
// next tick tries again); Redis trouble is retried.
func (r *Runner) ProcessTask(ctx context.Context, t *asynq.Task) error {
	p, err := jobs.ParsePlanPayload(t.Payload())
	if err != nil {
		r.opts.Logger.Error("schedule: bad task", slog.Any("error", err))
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	id, _ := asynq.GetTaskID(ctx)
	tick := r.taskTick(ctx, p, id)
	retried, _ := asynq.GetRetryCount(ctx)
	maxRetry, _ := asynq.GetMaxRetry(ctx)
	out, err := r.RunTick(ctx, p, tick, id, retried >= maxRetry)
	log := r.opts.Logger.With(slog.String("schedule", p.Name), slog.Time("tick", out.Tick))
	if err != nil {
		if permanent(err) {
			log.Error("scheduled run failed: no batch for this tick", slog.Any("error", err))
			return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
		}
		log.Warn("scheduled run failed; retrying", slog.Any("error", err))
		return err
	}
	for _, w := range out.Warnings {
		log.Warn("plan warning", slog.String("warning", w))
	}
	switch out.SkipCode {
	case "":
	case SkipPaused, SkipRefused:
		// Every tick until someone acts is skipped: say it loudly.
		log.Error("scheduled run skipped: the schedule is stalled", slog.String("reason", out.Skipped))
		return nil
	default:
		log.Info("scheduled run skipped", slog.String("reason", out.Skipped))
		return nil
	}
	log.Info("scheduled run queued a batch", slog.String("batch_id", out.BatchID),
		slog.Int("rows", out.Summary.Rows), slog.Int("contacts", out.Summary.Contacts))
	return nil
}

// taskTick is the tick task id stands for, as the scheduler recorded it;
// if it recorded none in time, the time the task runs.
func (r *Runner) taskTick(ctx context.Context, p jobs.PlanPayload, id string) time.Time {
	key := TaskTickKey(r.opts.Namespace, id)
	deadline := time.Now().Add(r.opts.TickWait)
	for {
		v, err := r.rdb.Get(ctx, key).Int64()
		if err == nil {
			return time.Unix(v, 0)
		}
		if !errors.Is(err, redis.Nil) || time.Now().After(deadline) {
			r.opts.Logger.Warn("schedule: the scheduler recorded no tick for this task; using the time it runs",
				slog.String("schedule", p.Name), slog.String("task_id", id), slog.Any("error", err))
			return r.opts.Now()
		}
		select {
		case <-ctx.Done():
			return r.opts.Now()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// permanent reports whether a tick's error is in its files or the key, not
// in Redis or the network.
func permanent(err error) bool {
	var pe *planner.FileError
	var ie *importer.FileError
	return errors.As(err, &pe) || errors.As(err, &ie) ||
		errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) || errors.Is(err, worker.ErrUnauthorized)
}
