package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/hibiken/asynq"
)

// DeferError asks asynq to run the task again later without using up an
// attempt: the batch is still importing, another worker holds the
// contact, or the API asked for a long wait (429).
type DeferError struct {
	RetryIn time.Duration
	Why     string
	// batch: the whole batch waits (it is importing), not only the
	// contact.
	batch bool
}

func (e *DeferError) Error() string { return fmt.Sprintf("deferred %s: %s", e.RetryIn, e.Why) }

// TransientError is a failed call that will be tried again.
type TransientError struct {
	// Attempt is how many calls this row has had.
	Attempt int
	// RetryAfter is the wait the API asked for, if any, within the cap.
	RetryAfter time.Duration
	Err        error
}

func (e *TransientError) Error() string {
	return fmt.Sprintf("attempt %d: %v", e.Attempt, e.Err)
}

func (e *TransientError) Unwrap() error { return e.Err }

// IsFailure tells asynq which errors count as a failed attempt: a deferral
// does not.
func IsFailure(err error) bool {
	var de *DeferError
	return !errors.As(err, &de)
}

// RetryDelay returns asynq's RetryDelayFunc: a deferral waits what it asks;
// a transient failure waits base·2^(attempt-1), at most max, with jitter,
// and at least the Retry-After the API gave.
func RetryDelay(base, max time.Duration) asynq.RetryDelayFunc {
	return func(n int, err error, _ *asynq.Task) time.Duration {
		var de *DeferError
		if errors.As(err, &de) {
			return de.RetryIn
		}
		attempt := n + 1
		var te *TransientError
		if errors.As(err, &te) {
			attempt = te.Attempt
		}
		return backoff(base, max, attempt, te)
	}
}

func backoff(base, max time.Duration, attempt int, te *TransientError) time.Duration {
	d := base
	for i := 1; i < attempt && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	// Equal jitter: half fixed, half random, so retries of many rows that
	// failed together spread out.
	d = d/2 + rand.N(d/2+1)
	if te != nil && te.RetryAfter > 0 {
		// asynq keeps retry times in whole seconds and runs a task as
		// soon as its second has come, up to 1s before the time asked:
		// end the wait on a whole second so Retry-After is honoured.
		now := time.Now()
		if wait := now.Add(te.RetryAfter).Truncate(time.Second).Add(time.Second).Sub(now); wait > d {
			d = wait
		}
	}
	return d
}

// HandlerOptions configures a Handler; the zero value means defaults.
type HandlerOptions struct {
	// MaxAttempts is the calls a row gets for transient failures before it
	// is dead-lettered; default 5.
	MaxAttempts int
	// PausedRetry is how soon a task of a batch still importing is looked
	// at again; default 2s.
	PausedRetry time.Duration
	// MaxRetryAfter caps the wait a Retry-After asks for; default 15m.
	MaxRetryAfter time.Duration
	// WatchEvery is how often this process checks the status of a batch
	// whose tasks it runs: a pause or cancel stops them before their next
	// call within about that time (plus a call in flight). Default 500ms.
	WatchEvery time.Duration
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Observe, if set, is told the outcome and duration of every API call
	// (for metrics).
	Observe func(out Outcome, took time.Duration)
	// Concurrency caps the calls in flight in this process, over all its
	// tasks (one chunk runs many contacts); default 16.
	Concurrency int
	// Tasks queues a contact of a chunk on its own (its retry, or a
	// contact another execution holds) and archives a chunk's dead
	// letters; chunks cannot run without it.
	Tasks *jobs.Tasks
	// RetryBase and RetryMax bound the backoff of a contact of a chunk
	// retried on its own, as the server's do for tasks; defaults 1s, 1m.
	RetryBase, RetryMax time.Duration
	// Ended, if set, is told when this process saw a batch end: its last
	// row settled here, or the CRM refused the key and the batch paused
	// (for notices).
	Ended func(batch string)
	// Settled, if set, is told the final result of every row this
	// process's calls decided, once the ledger kept it (for metrics); dead
	// means the row ran out of attempts.
	Settled func(res jobs.Result, dead bool)
}

// Handler is the asynq handler of jobs.TypeAssign tasks.
type Handler struct {
	store   *jobs.Store
	client  *Client
	limiter Limiter
	opts    HandlerOptions
	watch   *watcher
	ledger  *ledger
	// draining: the process is shutting down; chunks start no contact
	// more.
	draining atomic.Bool
	// calls holds a token per call in flight in this process (at most
	// Concurrency); active one per contact being applied, a few more, so
	// that the ledger writes of contacts starting and ending overlap the
	// calls of the others.
	calls, active chan struct{}
	// refusedIn holds, by batch, the epoch in which the CRM refused the
	// key: the batch was paused for it, and only a later start or resume
	// of a batch tries the key again.
	refusedIn sync.Map
	// after, in tests, is called after each write to the ledger, named.
	after func(point string)
}

// NewHandler returns a Handler recording outcomes in store.
func NewHandler(store *jobs.Store, client *Client, limiter Limiter, opts HandlerOptions) *Handler {
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 5
	}
	if opts.PausedRetry <= 0 {
		opts.PausedRetry = 2 * time.Second
	}
	if opts.MaxRetryAfter <= 0 {
		opts.MaxRetryAfter = 15 * time.Minute
	}
	if opts.WatchEvery <= 0 {
		opts.WatchEvery = 500 * time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 16
	}
	if opts.RetryBase <= 0 {
		opts.RetryBase = time.Second
	}
	if opts.RetryMax <= 0 {
		opts.RetryMax = time.Minute
	}
	return &Handler{store: store, client: client, limiter: limiter, opts: opts, after: func(string) {},
		watch: newWatcher(store, opts.WatchEvery, opts.Logger), ledger: newLedger(store, opts.MaxAttempts),
		calls: make(chan struct{}, opts.Concurrency), active: make(chan struct{}, opts.Concurrency+opts.Concurrency/4+1)}
}

const (
	// maxRateLimited bounds the 429s one execution absorbs before its
	// task steps aside and lets asynq bring it back later.
	maxRateLimited = 20
	// inSlotWait is the longest wait for a 429 spent in a worker slot; a
	// longer Retry-After sends the task back to the queue for that long.
	inSlotWait = 10 * time.Second
	// busyRetry is how soon a task whose contact another worker holds is
	// looked at again.
	busyRetry = 5 * time.Second
)

// ProcessTask applies the rows of the task's contacts, each contact's in
// file order, skipping rows that already have a result (a retry or a
// duplicate delivery).
func (h *Handler) ProcessTask(ctx context.Context, t *asynq.Task) error {
	p, err := jobs.ParseAssignPayload(t.Payload())
	if err != nil {
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	err = h.process(ctx, p)
	if id, ok := asynq.GetTaskID(ctx); ok && err == nil {
		// Done for good: delete need not look for this task any more.
		if ferr := h.store.ForgetTask(context.WithoutCancel(ctx), p.Batch, id); ferr != nil {
			h.opts.Logger.Warn("the batch's list of its tasks keeps a finished one", slog.String("batch", p.Batch), slog.Any("error", ferr))
		}
	}
	return err
}

// process applies the contacts of a task's payload.
func (h *Handler) process(ctx context.Context, p jobs.AssignPayload) error {
	if p.Chunk() {
		return h.processChunk(ctx, p.Batch, p.Contacts)
	}
	select {
	case h.active <- struct{}{}:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	defer func() { <-h.active }()
	err := h.processContact(ctx, p.Batch, p.Contact)
	switch {
	case errors.Is(err, errGone):
		h.opts.Logger.Warn("dropping task of a batch that no longer exists", slog.String("batch", p.Batch), slog.String("contact", p.Contact))
		return nil
	case errors.Is(err, errNotRunning):
		return nil
	}
	return err
}

// Drain makes the handler start no contact of a chunk any more, so that
// a shutdown lets the calls in flight finish and sends the rest of each
// chunk back to the queue. Call it before the asynq server's Shutdown.
func (h *Handler) Drain() { h.draining.Store(true) }

var (
	// errDraining: the process is shutting down.
	errDraining = errors.New("the worker is shutting down")
	// errGone: the contact's batch no longer exists.
	errGone = errors.New("the batch no longer exists")
	// errNotRunning: the contact's batch is not running: paused (the
	// contact is parked), finished or cancelled.
	errNotRunning = errors.New("the batch is not running")
)

// processContact applies one contact's rows. Besides the errors a task
// returns to asynq, it returns errGone or errNotRunning when the batch is
// gone or does not run.
func (h *Handler) processContact(ctx context.Context, batch, contact string) (err error) {
	var e *execution
	defer func() {
		if err == nil || errors.Is(err, errGone) || errors.Is(err, errNotRunning) {
			return
		}
		h.awaitRedis(ctx, batch)
		if e != nil && !e.ended {
			// The last write failed (Redis restarting?): now that Redis
			// answers, give the contact up, so that the task's next run
			// need not wait for the claim to expire.
			_ = e.release(-1, false, nil)
		}
	}()
	if err := ctx.Err(); err != nil {
		return context.Cause(ctx)
	}
	b, err := h.ledger.begins.call(batch, contact)
	if err == nil {
		err = b.Err
	}
	if err != nil {
		return err
	}
	h.after("begin")
	switch b.Verdict {
	case jobs.Gone:
		return errGone
	case jobs.Over:
		if jobs.Finished(b.Status) {
			return errNotRunning
		}
		return nil
	case jobs.Parked:
		return errNotRunning
	case jobs.Hold:
		return &DeferError{RetryIn: h.opts.PausedRetry, Why: "batch is " + b.Status, batch: true}
	case jobs.Busy:
		return &DeferError{RetryIn: busyRetry, Why: "another worker is applying this contact"}
	case jobs.Settled:
		h.contactLog(batch, contact).Warn("row dead-lettered: the worker making its call stopped each time", slog.Int("attempts", h.opts.MaxAttempts))
		h.completed(b.Completed, batch)
		return fmt.Errorf("contact %s dead-lettered: its worker died in the middle of every attempt: %w", contact, asynq.SkipRetry)
	}
	x := b.Exec
	if h.client.refusedNow() {
		if e, ok := h.refusedIn.Load(x.Batch); !ok || e.(int64) != x.Epoch {
			h.client.Reprobe()
		}
	}
	held, release := h.watch.hold(ctx, x)
	defer release()
	e = &execution{h: h, x: x, held: held}
	defer e.free()
	if err := e.run(ctx); !errors.Is(err, errEnded) {
		return err
	}
	return errNotRunning
}

// processChunk applies the contacts of a chunk, as many at once as the
// process has room for (calls in flight stay within Concurrency). A
// contact that is not done when its execution ends gets a task of its
// own: a transient failure is retried there, with backoff, and so is a
// contact another execution holds; a dead letter goes to asynq's archive
// as one. The chunk itself ends once its contacts are settled or handed
// over; it is retried as a whole when a write to Redis failed or a
// contact panicked, and deferred when the process is shutting down (its
// settled contacts are skipped then). When the batch stops running, the
// contacts not started yet are parked with the others (paused) or dropped
// (cancelled, gone).
func (h *Handler) processChunk(ctx context.Context, batch string, contacts []string) error {
	if h.opts.Tasks == nil {
		return fmt.Errorf("chunk of batch %s: this worker cannot queue contacts on their own (no Tasks): %w", batch, asynq.SkipRetry)
	}
	var (
		wg sync.WaitGroup
		mu sync.Mutex
		// failed is an error that retries the chunk; halt, why no more
		// contacts start.
		failed, halt error
	)
	next := 0
	for ; next < len(contacts); next++ {
		acquired := false
		select {
		case h.active <- struct{}{}:
			acquired = true
		case <-ctx.Done():
		}
		mu.Lock()
		if failed == nil && halt == nil && ctx.Err() != nil {
			failed = context.Cause(ctx)
		}
		if failed == nil && halt == nil && h.draining.Load() {
			halt = errDraining
		}
		stop := failed != nil || halt != nil
		mu.Unlock()
		if stop {
			if acquired {
				<-h.active
			}
			break
		}
		c := contacts[next]
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := h.guarded(ctx, batch, c)
			<-h.active
			err = h.handOff(ctx, batch, c, err)
			mu.Lock()
			defer mu.Unlock()
			var de *DeferError
			switch {
			case err == nil:
			case errors.Is(err, errGone), errors.Is(err, errNotRunning), errors.As(err, &de):
				if halt == nil {
					halt = err
				}
			case failed == nil:
				failed = err
			}
		}()
	}
	wg.Wait()
	var de *DeferError
	switch {
	case errors.Is(halt, errGone):
		h.opts.Logger.Warn("dropping task of a batch that no longer exists", slog.String("batch", batch), slog.Int("contacts", len(contacts)))
		return nil
	case errors.As(halt, &de):
		return halt // the batch is importing: all its contacts wait
	case errors.Is(halt, errDraining) && failed == nil:
		// The contacts started are done or handed over; the rest go
		// back to the queue, with the chunk, for another worker.
		return &DeferError{RetryIn: time.Second, Why: "the worker is shutting down"}
	case failed != nil:
		return failed
	case errors.Is(halt, errNotRunning) && next < len(contacts):
		return h.parkRest(ctx, batch, contacts[next:])
	}
	return nil
}

// guarded runs one contact of a chunk; a panic in it ends the chunk as a
// crash would, with the contact's claim left to expire.
func (h *Handler) guarded(ctx context.Context, batch, contact string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic applying contact %s: %v", contact, r)
		}
	}()
	return h.processContact(ctx, batch, contact)
}

// handOff gives a contact of a chunk whose execution ended unfinished a
// task of its own, and returns what is left of err for the chunk: nil once
// the contact is handed over.
func (h *Handler) handOff(ctx context.Context, batch, contact string, err error) error {
	var (
		de *DeferError
		te *TransientError
	)
	ctx = context.WithoutCancel(ctx) // a shutdown must not lose the contact
	switch {
	case err == nil:
		return nil
	case errors.As(err, &de) && !de.batch:
		return h.opts.Tasks.Later(ctx, batch, contact, de.RetryIn)
	case errors.As(err, &te):
		return h.opts.Tasks.Later(ctx, batch, contact, RetryDelay(h.opts.RetryBase, h.opts.RetryMax)(te.Attempt-1, err, nil))
	case errors.Is(err, asynq.SkipRetry):
		return h.opts.Tasks.Bury(ctx, batch, contact)
	}
	return err
}

// parkRest parks the contacts of a chunk that never started because their
// batch stopped running: a paused batch queues them again on resume.
func (h *Handler) parkRest(ctx context.Context, batch string, rest []string) error {
	status, _, err := h.store.Status(ctx, batch)
	switch {
	case errors.Is(err, jobs.ErrNotFound):
		return nil
	case err != nil:
		return err
	case status != jobs.BatchPaused && status != jobs.BatchRunning:
		return nil // cancelled or done: nothing more is sent
	}
	// Resumed already while this chunk's last calls ended: parked all the
	// same, the sweep queues them within seconds.
	return h.store.Unpark(ctx, batch, rest)
}

// redisWait bounds how long a failed task waits for Redis to answer again,
// within asynq's 30s lease.
const redisWait = 20 * time.Second

// awaitRedis returns at once if Redis answers; else once it answers again
// and a little more (or after redisWait, or when ctx ends). A task returns
// its error only then: asynq writes the task's retry to Redis as the
// handler returns, and when that write fails asynq v0.26 retries it with a
// context it has already cancelled, so the task would sit in the active
// list until the recoverer reclaims it a minute or two later: a Redis
// restart would stall every task in flight that long.
func (h *Handler) awaitRedis(ctx context.Context, batch string) {
	ctx, cancel := context.WithTimeout(ctx, redisWait)
	defer cancel()
	for down := false; ; down = true {
		if _, _, err := h.store.Status(ctx, batch); err == nil || errors.Is(err, jobs.ErrNotFound) {
			if down {
				// asynq has connections of its own, whose pool, after
				// failed dials, probes Redis once a second before it
				// dials again.
				_ = sleep(ctx, 2*time.Second)
			}
			return
		}
		if sleep(ctx, 100*time.Millisecond) != nil {
			return
		}
	}
}

// contactLog is the logger of what happens to a contact: made when there
// is something to say, not for every contact.
func (h *Handler) contactLog(batch, contact string) *slog.Logger {
	return h.opts.Logger.With(slog.String("batch", batch), slog.String("contact", contact))
}

func (h *Handler) completed(completed bool, batch string) {
	if completed {
		h.opts.Logger.Info("batch complete", slog.String("batch", batch))
		h.ended(batch)
	}
}

func (h *Handler) ended(batch string) {
	if h.opts.Ended != nil {
		h.opts.Ended(batch)
	}
}

// execution is one run of a contact's task that holds the contact.
type execution struct {
	h *Handler
	x *jobs.Execution
	// held ends when the batch stops running (paused, cancelled, gone).
	held context.Context
	// st counts the calls not yet written to the ledger; they travel with
	// the next write.
	st jobs.Stats
	// ended: the execution gave its contact up in the ledger.
	ended bool
	// slot: the execution holds a call slot of the process (Handler.calls).
	slot bool
}

// take waits for a call slot of the process, unless the execution holds
// one; false when the batch stopped running (or ctx ended) first.
func (e *execution) take() bool {
	if e.slot {
		return true
	}
	select {
	case e.h.calls <- struct{}{}:
		e.slot = true
		return true
	case <-e.held.Done():
		return false
	}
}

// free gives the call slot back. An execution keeps it from its call
// until the call's outcome is in the ledger, so that the calls made and
// not yet recorded never exceed Concurrency: a crash repeats at most that
// many.
func (e *execution) free() {
	if e.slot {
		<-e.h.calls
		e.slot = false
	}
}

// run makes the calls of the contact's ops that are not settled, in file
// order, until they are all settled or one of them stops the execution.
func (e *execution) run(ctx context.Context) error {
	var pending []int
	for i, done := range e.x.Done {
		if !done {
			pending = append(pending, i)
		}
	}
	if e.x.RecordPrevious && len(pending) == len(e.x.Ops) {
		if stop, err := e.previous(ctx); stop || err != nil {
			return err
		}
	}
	for k, i := range pending {
		op := e.x.Ops[i]
		out, err := e.call(ctx, func(ctx context.Context) Outcome {
			return e.h.client.Assign(ctx, e.x.Contact, op.MemberID, op.Replace)
		})
		if err != nil {
			return err
		}
		stop, err := e.conclude(ctx, i, out, k == len(pending)-1, false)
		e.free()
		if stop || err != nil {
			return err
		}
	}
	return nil
}

// errStopped is the cause of an execution's held context when the batch
// stopped running.
var errStopped = errors.New("the batch stopped running")

// errEnded ends an execution between calls whose state is written (its
// contact parked, or its batch gone): its task is over, without error.
var errEnded = errors.New("execution ended")

// call makes one call under the rate limiter until it is answered with
// anything but a 429; an error means the execution ended (its task steps
// aside, the batch stopped, or the process is shutting down) and was
// written to the ledger.
func (e *execution) call(ctx context.Context, do func(context.Context) Outcome) (Outcome, error) {
	for limited := 0; ; {
		// A call slot of the process, then a rate slot: the wait for
		// either ends when the batch is paused or cancelled, and so does a
		// rate slot reserved before that.
		if !e.take() {
			return Outcome{}, e.interrupted(ctx, context.Cause(e.held))
		}
		if err := e.h.limiter.Wait(e.held); err != nil || e.held.Err() != nil {
			e.free()
			return Outcome{}, e.interrupted(ctx, err)
		}
		start := time.Now()
		out := do(ctx)
		if e.h.opts.Observe != nil {
			e.h.opts.Observe(out, time.Since(start))
		}
		if ctx.Err() != nil && out.Kind != OK {
			// Shutting down: this call does not count against the row.
			return out, e.interrupted(ctx, nil)
		}
		if !out.NotSent {
			e.st.Calls++
		}
		if out.Kind != RateLimited {
			return out, nil
		}
		limited++
		e.st.RateLimited++
		e.free() // a 429 applied nothing: no slot while it waits
		e.h.limiter.Slow(ctx)
		wait := rateLimitedWait(out, limited, e.h.opts.MaxRetryAfter)
		if wait > inSlotWait || limited >= maxRateLimited {
			// The row waits in the queue, not in a worker slot.
			return out, e.release(-1, false, &DeferError{RetryIn: max(wait, time.Second), Why: "the API answered 429"})
		}
		if err := sleep(e.held, wait); err != nil {
			return out, e.interrupted(ctx, err)
		}
	}
}

// rateLimitedWait is how long to wait after the limited-th 429 in a row:
// the Retry-After asked for, within max, else a wait that grows with
// limited, up to 5s.
func rateLimitedWait(out Outcome, limited int, max time.Duration) time.Duration {
	if wait := min(out.RetryAfter, max); wait > 0 {
		return wait
	}
	return min(time.Duration(limited)*250*time.Millisecond, 5*time.Second)
}

// interrupted ends an execution stopped between calls: by the process
// shutting down (the task is retried), or by the batch no longer running
// (the contact is parked if the batch is paused; the task ends).
func (e *execution) interrupted(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return e.release(-1, false, context.Cause(ctx))
	}
	if e.held.Err() == nil {
		return e.release(-1, false, err) // the limiter failed: Redis trouble
	}
	return e.release(-1, true, errEnded)
}

// decision is what becomes of a row after a call.
type decision int

const (
	succeed      decision = iota // the row succeeded
	refuse                       // refused for good: the row failed, the contact stops
	retry                        // transient, attempts left: the task is retried
	giveUp                       // transient, out of attempts: dead letter
	unauthorized                 // the key was refused: the batch pauses
)

// decide maps a call's outcome, on the given attempt of the row, to what
// becomes of the row: the one place where outcomes become decisions.
func decide(kind Kind, attempt, maxAttempts int) decision {
	switch kind {
	case OK:
		return succeed
	case Permanent:
		return refuse
	case Unauthorized:
		return unauthorized
	}
	if attempt < maxAttempts {
		return retry
	}
	return giveUp
}

// conclude writes what becomes of op i after out; read says the call was
// the read of the contact's agents before its first op. stop means the
// execution is over.
func (e *execution) conclude(ctx context.Context, i int, out Outcome, last, read bool) (stop bool, err error) {
	attempt := e.x.Attempts[i] + 1
	res := jobs.Result{HTTPStatus: out.HTTPStatus, Attempts: attempt, Reason: out.Reason}
	reading := ""
	if read {
		reading = " to read the contact's current agents (--record-previous)"
	}
	switch decide(out.Kind, attempt, e.h.opts.MaxAttempts) {
	case succeed:
		res.Status = jobs.StatusSucceeded
		return e.settle(i, res, false, last)
	case refuse:
		res.Status, res.Error = jobs.StatusFailed, out.Err.Error()
		if read {
			res.Error = fmt.Sprintf("not sent: the contact's current agents could not be read (--record-previous): %v", out.Err)
		}
		return e.settle(i, res, false, true)
	case giveUp:
		res.Status = jobs.StatusFailed
		res.Error = fmt.Sprintf("gave up after %d attempts%s: %v", attempt, reading, out.Err)
		if read {
			res.Error = "not sent: " + res.Error
		}
		e.h.contactLog(e.x.Batch, e.x.Contact).Warn("row dead-lettered", slog.Int("line", e.x.Ops[i].Lines[0]), slog.String("reason", out.Reason), slog.Int("attempts", attempt))
		if _, err := e.settle(i, res, true, true); err != nil {
			return true, err
		}
		return true, fmt.Errorf("line %d dead-lettered after %d attempts%s: %v: %w", e.x.Ops[i].Lines[0], attempt, reading, out.Err, asynq.SkipRetry)
	case unauthorized:
		return true, e.unauthorized(ctx, out)
	}
	e.st.Retries++
	err = fmt.Errorf("call%s: %w", reading, out.Err)
	return true, e.release(i, false, &TransientError{Attempt: attempt, RetryAfter: min(out.RetryAfter, e.h.opts.MaxRetryAfter), Err: err})
}

// ledgerTimeout bounds a write to the ledger. Writes use a context of
// their own: a call that went through is recorded even when the process is
// shutting down.
const ledgerTimeout = 10 * time.Second

// settle writes op i's final result and the calls counted so far; stop
// when the execution is over.
func (e *execution) settle(i int, res jobs.Result, dead, release bool) (stop bool, err error) {
	r, err := e.h.ledger.settles.call(e.x.Batch, jobs.Settlement{Exec: e.x, Op: i, Result: res, Dead: dead, Release: release, Stats: e.st})
	if err != nil {
		return true, err
	}
	if e.h.opts.Settled != nil && !r.Gone && !r.Stale {
		e.h.opts.Settled(res, dead)
	}
	e.st = jobs.Stats{}
	e.ended = release || r.Gone || r.Stale
	e.h.after("settle")
	e.h.completed(r.Completed, e.x.Batch)
	if r.Stale {
		e.h.contactLog(e.x.Batch, e.x.Contact).Warn("another worker took this contact over (this one stalled past its claim): stopping")
		return true, nil
	}
	return release || r.Gone, nil
}

// release ends the execution with the contact's rows unsettled and the
// calls counted so far, and returns ret: attemptOp >= 0 counts a failed
// attempt of that op; park keeps the contact for resume if the batch is
// paused.
func (e *execution) release(attemptOp int, park bool, ret error) error {
	ctx, cancel := context.WithTimeout(context.Background(), ledgerTimeout)
	defer cancel()
	if _, _, err := e.h.store.Release(ctx, e.x, attemptOp, park, e.st); err != nil {
		if errors.Is(ret, errEnded) {
			return err // the state is not written: the task is retried
		}
		return errors.Join(ret, err)
	}
	e.st = jobs.Stats{}
	e.ended = true
	e.h.after("release")
	return ret
}

// ResumeHint ends the pause reason of a batch whose key the CRM refused:
// what to do once the key is right. A command that knows better (run on
// a queue that ends with it) replaces it.
const ResumeHint = ", then resume the batch"

// unauthorized pauses the batch after the CRM refused the key and parks
// the contact; only a resume (or another batch) tries the key again.
func (e *execution) unauthorized(ctx context.Context, out Outcome) error {
	reason := fmt.Sprintf("the CRM refused the API key (HTTP %d): check --api-key / BULKASSIGN_API_KEY", out.HTTPStatus) + ResumeHint
	e.h.refusedIn.Store(e.x.Batch, e.x.Epoch)
	changed, err := e.h.store.SetStatus(context.WithoutCancel(ctx), e.x.Batch, jobs.BatchPaused, jobs.PauseUnauthorized, reason)
	var te *jobs.TransitionError
	if err != nil && !errors.As(err, &te) {
		return e.release(-1, false, err)
	}
	if changed {
		e.h.contactLog(e.x.Batch, e.x.Contact).Error("batch paused: API key refused", slog.Int("http_status", out.HTTPStatus))
		e.h.ended(e.x.Batch)
	}
	return e.release(-1, true, nil)
}

// previous reads and records the contact's current agents before the
// batch's first call for it, when the batch records previous agents. The
// record is written once (a retry or a duplicate delivery finds it and
// reads nothing), and only while none of the contact's rows has a result:
// once a call was made, what the contact has is no longer what it had.
//
// The read is an API call like the assign calls: it waits for the rate
// limiter, is counted in apiCalls, and its failures count against the
// contact's first row. A 404 records nothing (the contact is unknown, its
// assign calls will fail with 404 too).
func (e *execution) previous(ctx context.Context) (stop bool, err error) {
	has, err := e.h.store.HasPrevious(ctx, e.x.Batch, e.x.Contact)
	if err != nil {
		return true, e.release(-1, false, err)
	}
	if has {
		return false, nil
	}
	var agents []string
	out, err := e.call(ctx, func(ctx context.Context) Outcome {
		var out Outcome
		agents, out = e.h.client.contactAgents(ctx, e.x.Contact)
		return out
	})
	switch {
	case err != nil:
		return true, err
	case out.Kind == OK:
		_, err := e.h.store.SavePrevious(context.WithoutCancel(ctx), e.x.Batch, e.x.Contact, agents)
		switch {
		case errors.Is(err, jobs.ErrNotFound):
			return true, errEnded // deleted meanwhile: no call more
		case err != nil:
			return true, e.release(-1, false, err)
		}
		e.h.after("previous")
		return false, nil
	case out.HTTPStatus == http.StatusNotFound:
		e.h.contactLog(e.x.Batch, e.x.Contact).Debug("contact unknown: no previous agents to record")
		return false, nil
	}
	return e.conclude(ctx, 0, out, false, true)
}
