package schedule

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/worker"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// SchedulerOptions configures a Scheduler; the zero value means defaults.
type SchedulerOptions struct {
	// Namespace is the asynq queue the ticks go to and the prefix of the
	// keys; default jobs.Queue.
	Namespace string
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// HeartbeatInterval is how often the scheduler writes its entries to
	// Redis for the monitor; default asynq's (10s).
	HeartbeatInterval time.Duration
	// IDFormat is the rule the entries' files' ids must follow; each tick's
	// task carries it to the worker that plans it. Default jobs.IDUUID.
	IDFormat jobs.IDFormat
}

// Scheduler queues a TypePlan task for each tick of each entry, with
// asynq's Scheduler. Any number may run on one Redis: a tick yields one
// batch (asynq.Unique drops the second scheduler's copy while the first is
// queued, and the Runner's tick claim drops any copy that gets through).
type Scheduler struct {
	cfg   *Config
	rdb   redis.UniversalClient
	sched *asynq.Scheduler
	opts  SchedulerOptions
}

// NewScheduler returns a Scheduler for cfg's entries on the Redis that r
// and rdb connect to: asynq's scheduler keeps its entries and history
// there, rdb records which tick each task stands for.
//
// The task names the entry's files, it does not carry them: the worker
// that runs the tick reads them then (so an edit between ticks is picked
// up), and every worker must see the same paths, through a shared volume
// or the same image. Copying the files into Redis at each tick would let
// workers run anywhere, but puts whole contact files in Redis, which the
// design rules out (payloads carry ids, not files).
func NewScheduler(r asynq.RedisConnOpt, rdb redis.UniversalClient, cfg *Config, opts SchedulerOptions) (*Scheduler, error) {
	if opts.Namespace == "" {
		opts.Namespace = jobs.Queue
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Scheduler{cfg: cfg, rdb: rdb, opts: opts}
	s.sched = asynq.NewScheduler(r, &asynq.SchedulerOpts{
		HeartbeatInterval: opts.HeartbeatInterval,
		Logger:            worker.AsynqLogger(opts.Logger),
		LogLevel:          asynq.WarnLevel,
		Location:          time.UTC, // an entry's zone is its CRON_TZ
		PostEnqueueFunc:   s.enqueued,
		// Deprecated in favour of PostEnqueueFunc, which is not given the
		// task when the enqueue fails: this one is, so a skipped tick's
		// log line can name its schedule.
		EnqueueErrorHandler: s.notEnqueued,
	})
	for _, e := range cfg.Entries {
		task, opts, err := s.Task(e)
		if err != nil {
			return nil, err
		}
		if _, err := s.sched.Register(e.Spec(), task, opts...); err != nil {
			return nil, &ConfigError{File: cfg.File, Line: e.Line, Entry: fmt.Sprintf("schedule %q", e.Name), Err: fmt.Errorf("cron %q: %w", e.Cron, err)}
		}
	}
	return s, nil
}

// Task is the task and the options an entry's ticks are queued with:
// TypePlan on the namespace's queue, unique while a copy of it is queued
// or running, for at most half the schedule's period (1s to 12h). asynq
// keeps the lock of a task it archived until the TTL ends: half a period
// lets the next tick of a schedule whose run failed go ahead.
func (s *Scheduler) Task(e Entry) (*asynq.Task, []asynq.Option, error) {
	task, err := jobs.NewPlanTask(e.Payload(s.opts.IDFormat))
	if err != nil {
		return nil, nil, err
	}
	ttl := min(max(interval(e.Spec(), s.opts.Now())/2, time.Second), 12*time.Hour)
	return task, []asynq.Option{asynq.Queue(s.opts.Namespace), asynq.Unique(ttl)}, nil
}

// Run runs the scheduler until ctx is done.
func (s *Scheduler) Run(ctx context.Context) error {
	if err := s.sched.Start(); err != nil {
		return fmt.Errorf("start scheduler: %w", err)
	}
	for _, e := range s.cfg.Entries {
		s.opts.Logger.Info("schedule registered", slog.String("schedule", e.Name), slog.String("cron", e.Spec()),
			slog.String("contacts", e.Contacts), slog.String("rules", e.Rules))
	}
	<-ctx.Done()
	s.sched.Shutdown()
	return nil
}

// enqueued is asynq's PostEnqueueFunc: it runs in the tick's own
// goroutine right after the enqueue, and records which tick the task
// stands for. The cron fires on a whole second, so the second it is now is
// the tick.
func (s *Scheduler) enqueued(info *asynq.TaskInfo, err error) {
	if err != nil {
		return // notEnqueued says it
	}
	tick := s.opts.Now().Truncate(time.Second)
	name := ""
	if p, perr := jobs.ParsePlanPayload(info.Payload); perr == nil {
		name = p.Name
	}
	log := s.opts.Logger.With(slog.String("schedule", name), slog.Time("tick", tick))
	if err := s.RecordTick(context.Background(), info.ID, tick); err != nil {
		log.Warn("could not record the tick of a queued task; the worker will use the time it runs it", slog.Any("error", err))
		return
	}
	log.Info("tick queued", slog.String("task_id", info.ID))
}

// notEnqueued is asynq's EnqueueErrorHandler. A tick that could not be
// queued is recorded as failed. One dropped as a duplicate is only logged:
// it is this tick queued by another scheduler, whose run records it, or
// the schedule's previous task still queued or running, whose run does;
// which of the two asynq does not say.
func (s *Scheduler) notEnqueued(task *asynq.Task, _ []asynq.Option, err error) {
	name := ""
	if p, perr := jobs.ParsePlanPayload(task.Payload()); perr == nil {
		name = p.Name
	}
	now := s.opts.Now()
	log := s.opts.Logger.With(slog.String("schedule", name), slog.Time("tick", now.Truncate(time.Second)))
	if errors.Is(err, asynq.ErrDuplicateTask) {
		log.Info("tick skipped: this schedule's previous task is still queued or running (or another scheduler queued this tick)")
		return
	}
	log.Error("tick lost: could not queue its task", slog.Any("error", err))
	if name == "" {
		return
	}
	rec := Run{Schedule: name, Tick: now.Truncate(time.Second), At: now, Outcome: RunFailed, Reason: fmt.Sprintf("could not queue the tick's task: %v", err)}
	if rerr := record(context.Background(), s.rdb, s.opts.Namespace, rec); rerr != nil {
		log.Warn("could not record the tick", slog.Any("error", rerr))
	}
}

// RecordTick records that the task with id stands for tick, for the
// Runner that runs it.
func (s *Scheduler) RecordTick(ctx context.Context, id string, tick time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return s.rdb.Set(ctx, TaskTickKey(s.opts.Namespace, id), tick.Unix(), 24*time.Hour).Err()
}
