package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/hibiken/asynq"
)

// DeferError asks asynq to run the task again later without using up an
// attempt: the batch is paused or still importing, or the API kept
// answering 429.
type DeferError struct {
	RetryIn time.Duration
	Why     string
}

func (e *DeferError) Error() string { return fmt.Sprintf("deferred %s: %s", e.RetryIn, e.Why) }

// TransientError is a failed call that will be tried again.
type TransientError struct {
	// Attempt is how many calls this row has had.
	Attempt int
	// RetryAfter is the wait the API asked for, if any.
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
	// at again, default 2s; a paused batch's tasks wait 2.5 to 5 times as
	// long.
	PausedRetry time.Duration
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Observe, if set, is told the outcome and duration of every API call
	// (for metrics).
	Observe func(out Outcome, took time.Duration)
}

// Handler is the asynq handler of jobs.TypeAssign tasks.
type Handler struct {
	store   *jobs.Store
	client  *Client
	limiter Limiter
	opts    HandlerOptions
	// recording caches, by batch id, whether a batch records previous
	// agents: fixed at import, read once per batch.
	recording sync.Map
}

// NewHandler returns a Handler recording outcomes in store.
func NewHandler(store *jobs.Store, client *Client, limiter Limiter, opts HandlerOptions) *Handler {
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 5
	}
	if opts.PausedRetry <= 0 {
		opts.PausedRetry = 2 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Handler{store: store, client: client, limiter: limiter, opts: opts}
}

// holdFor is how long a task of a batch that is not running waits before
// it is looked at again: an import ends in seconds, a pause lasts until an
// operator acts, so its tasks come back less often (with jitter, so a large
// paused batch does not keep every worker cycling its tasks in step).
func (h *Handler) holdFor(status string) time.Duration {
	if status == jobs.BatchImporting {
		return h.opts.PausedRetry
	}
	d := 5 * h.opts.PausedRetry
	return d/2 + rand.N(d/2+1)
}

// maxRateLimited bounds the 429s one task absorbs before it steps aside and
// lets asynq bring it back later.
const maxRateLimited = 20

// ProcessTask applies one contact's rows in file order, skipping rows that
// already have a result (a retry or a duplicate delivery).
func (h *Handler) ProcessTask(ctx context.Context, t *asynq.Task) (err error) {
	p, err := jobs.ParseAssignPayload(t.Payload())
	if err != nil {
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	defer func() {
		if err != nil {
			h.awaitRedis(ctx, p.Batch)
		}
	}()
	log := h.opts.Logger.With(slog.String("batch", p.Batch), slog.String("contact", p.Contact))
	first := make([]int, len(p.Ops))
	for i, op := range p.Ops {
		first[i] = op.Lines[0]
	}
	prog, err := h.store.Progress(ctx, p.Batch, first)
	switch {
	case errors.Is(err, jobs.ErrNotFound):
		log.Warn("dropping task of a batch that no longer exists")
		return nil
	case err != nil:
		return err
	case jobs.Finished(prog.Status):
		// Done (a duplicate delivery) or cancelled: nothing left to send.
		return nil
	case prog.Status != jobs.BatchRunning:
		return &DeferError{RetryIn: h.holdFor(prog.Status), Why: "batch is " + prog.Status}
	}
	if settled, err := h.previous(ctx, log, p, prog); settled || err != nil {
		return err
	}
	for i, op := range p.Ops {
		if prog.Done[op.Lines[0]] {
			continue
		}
		if err := h.apply(ctx, log, p, i, prog.Attempts[op.Lines[0]]); err != nil {
			return err
		}
	}
	return nil
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

// apply makes the calls for op i until it has a final result, or returns
// the error that sends the task back to asynq.
func (h *Handler) apply(ctx context.Context, log *slog.Logger, p jobs.AssignPayload, i int, attempts int) error {
	op := p.Ops[i]
	var st jobs.Stats
	for limited := 0; ; {
		if err := h.limiter.Wait(ctx); err != nil {
			return h.abandon(p, st, err)
		}
		start := time.Now()
		out := h.client.Assign(ctx, p.Contact, op.MemberID, op.Replace)
		if h.opts.Observe != nil {
			h.opts.Observe(out, time.Since(start))
		}
		if ctx.Err() != nil && out.Kind != OK {
			// Shutting down: this call does not count against the row.
			return h.abandon(p, st, context.Cause(ctx))
		}
		if !out.NotSent {
			st.Calls++
		}
		if out.Kind == RateLimited {
			limited++
			if err := h.onRateLimited(ctx, p, &st, out, limited); err != nil {
				return err
			}
			continue
		}
		attempts++
		res := jobs.Result{HTTPStatus: out.HTTPStatus, Attempts: attempts, Reason: out.Reason}
		switch out.Kind {
		case OK:
			res.Status = jobs.StatusSucceeded
			return h.record(ctx, p.Batch, op.Lines, res, st)
		case Permanent:
			res.Status, res.Error = jobs.StatusFailed, out.Err.Error()
			return h.record(ctx, p.Batch, op.Lines, res, st)
		case Unauthorized:
			return h.unauthorized(ctx, log, p, st, out)
		}
		// Transient.
		if attempts < h.opts.MaxAttempts {
			st.Retries++
			if err := h.store.NoteAttempt(ctx, p.Batch, op.Lines[0], st); err != nil {
				return err
			}
			return &TransientError{Attempt: attempts, RetryAfter: out.RetryAfter, Err: out.Err}
		}
		res.Status = jobs.StatusFailed
		res.Error = fmt.Sprintf("gave up after %d attempts: %v", attempts, out.Err)
		log.Warn("row dead-lettered", slog.Int("line", op.Lines[0]), slog.String("reason", out.Reason), slog.Int("attempts", attempts))
		// Keep the task for `dlq retry` before any row is final, so a crash
		// in between cannot leave failed rows that cannot be retried.
		if err := h.store.MarkDead(ctx, p); err != nil {
			return err
		}
		if err := h.record(ctx, p.Batch, op.Lines, res, st); err != nil {
			return err
		}
		if err := h.blockRest(ctx, p, i); err != nil {
			return err
		}
		return fmt.Errorf("line %d dead-lettered after %d attempts: %v: %w", op.Lines[0], attempts, out.Err, asynq.SkipRetry)
	}
}

// unauthorized pauses the batch after the CRM refused the key.
func (h *Handler) unauthorized(ctx context.Context, log *slog.Logger, p jobs.AssignPayload, st jobs.Stats, out Outcome) error {
	reason := fmt.Sprintf("the CRM refused the API key (HTTP %d): check --api-key / BULKASSIGN_API_KEY, then resume the batch", out.HTTPStatus)
	if err := h.store.SetStatus(ctx, p.Batch, jobs.BatchPaused, jobs.PauseUnauthorized, reason); err != nil {
		return err
	}
	log.Error("batch paused: API key refused", slog.Int("http_status", out.HTTPStatus))
	return h.abandon(p, st, &DeferError{RetryIn: h.holdFor(jobs.BatchPaused), Why: "API key refused"})
}

func (h *Handler) record(ctx context.Context, batch string, lines []int, res jobs.Result, st jobs.Stats) error {
	completed, err := h.store.Record(ctx, batch, lines, res, st)
	if err != nil {
		return err
	}
	if completed {
		h.opts.Logger.Info("batch complete", slog.String("batch", batch))
	}
	return nil
}

// blockRest fails the contact's rows after op i, which ran out of
// attempts: applying them without it would leave the contact in a state
// the file never described.
func (h *Handler) blockRest(ctx context.Context, p jobs.AssignPayload, i int) error {
	for _, op := range p.Ops[i+1:] {
		res := jobs.Result{
			Status: jobs.StatusFailed,
			Reason: "blocked",
			Error:  fmt.Sprintf("not sent: line %d for the same contact failed first; re-import failed.csv, which keeps the order", p.Ops[i].Lines[0]),
		}
		if err := h.record(ctx, p.Batch, op.Lines, res, jobs.Stats{}); err != nil {
			return err
		}
	}
	return nil
}

// abandon keeps the counters of calls made so far and returns err.
func (h *Handler) abandon(p jobs.AssignPayload, st jobs.Stats, err error) error {
	if st != (jobs.Stats{}) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if serr := h.store.AddStats(ctx, p.Batch, st); serr != nil {
			h.opts.Logger.Warn("counters not saved", slog.String("batch", p.Batch), slog.Any("error", serr))
		}
	}
	return err
}

// onRateLimited handles the limited-th 429 in a row of one call: every
// caller slows down, and this call waits what the API asked (or a growing
// backoff). An error means the task steps aside or ctx ended.
func (h *Handler) onRateLimited(ctx context.Context, p jobs.AssignPayload, st *jobs.Stats, out Outcome, limited int) error {
	st.RateLimited++
	h.limiter.Slow(ctx)
	if limited >= maxRateLimited {
		return h.defer429(p, *st, out)
	}
	wait := out.RetryAfter
	if wait <= 0 {
		wait = min(time.Duration(limited)*250*time.Millisecond, 5*time.Second)
	}
	if err := sleep(ctx, wait); err != nil {
		return h.abandon(p, *st, err)
	}
	return nil
}

// defer429 steps a task aside after many 429s in a row.
func (h *Handler) defer429(p jobs.AssignPayload, st jobs.Stats, out Outcome) error {
	return h.abandon(p, st, &DeferError{RetryIn: max(out.RetryAfter, time.Second), Why: "the API keeps answering 429"})
}
