package worker

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/redis/go-redis/v9"
)

// SweeperOptions configures a Sweeper; the zero value means defaults.
type SweeperOptions struct {
	// Every is the time between sweeps, shared by every worker process of
	// the namespace: one of them sweeps each time; default 5s.
	Every time.Duration
	// Stall is how long a running batch may go without a row settling,
	// and with no contact held by any worker, before its tasks are
	// checked and those lost queued again; default 2m. It must exceed the
	// longest retry delay, or tasks waiting for their retry are checked
	// for nothing (harmless, but wasted work).
	Stall time.Duration
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Sweeper keeps every batch moving whatever happened to its tasks: it
// ends imports whose process died (abandoned), queues again the contacts
// parked while a batch was paused once it runs (a resume that died
// half-way), and queues the tasks a running batch lost (deleted by hand,
// gone with a Redis that failed over without persistence, never queued by
// an importer that died), so that every batch ends.
type Sweeper struct {
	tasks jobs.Tasks
	rdb   redis.UniversalClient
	lock  string
	opts  SweeperOptions
}

// NewSweeper returns a Sweeper of the batches of tasks.Store.
func NewSweeper(rdb redis.UniversalClient, namespace string, tasks jobs.Tasks, opts SweeperOptions) *Sweeper {
	if opts.Every <= 0 {
		opts.Every = 5 * time.Second
	}
	if opts.Stall <= 0 {
		opts.Stall = 2 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Sweeper{tasks: tasks, rdb: rdb, lock: namespace + ":sweep", opts: opts}
}

// Run sweeps until ctx ends.
func (s *Sweeper) Run(ctx context.Context) {
	for {
		// Jitter, so that processes started together do not race for the
		// lock in step.
		if sleep(ctx, s.opts.Every/2+rand.N(s.opts.Every/2+1)) != nil {
			return
		}
		ok, err := s.rdb.SetNX(ctx, s.lock, 1, s.opts.Every*9/10).Result()
		if err != nil || !ok {
			continue // another process sweeps this time, or Redis is down
		}
		if err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
			s.opts.Logger.Warn("sweep", slog.Any("error", err))
		}
	}
}

// Sweep looks at every batch once.
func (s *Sweeper) Sweep(ctx context.Context) error {
	ids, err := s.tasks.Store.IDs(ctx)
	if err != nil {
		return err
	}
	for _, id := range ids {
		sw, err := s.tasks.Store.Sweep(ctx, id, s.opts.Stall.Milliseconds())
		if err != nil {
			return err
		}
		log := s.opts.Logger.With(slog.String("batch", id))
		switch {
		case sw.Status == jobs.BatchAbandoned:
			log.Warn("import abandoned: the process importing it stopped before it finished; nothing of it is sent")
		case sw.Status != jobs.BatchRunning:
		case sw.Requeue:
			n, err := s.tasks.Requeue(ctx, id)
			if err != nil {
				return err
			}
			if n > 0 {
				log.Warn("queued the contacts whose tasks were lost", slog.Int("contacts", n))
			}
		case sw.Parked > 0:
			if err := s.tasks.Unpark(ctx, id); err != nil {
				return err
			}
		}
	}
	return nil
}
