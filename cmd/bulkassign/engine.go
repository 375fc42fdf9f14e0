package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/bulkassign/bulkassign/config"
	"github.com/bulkassign/bulkassign/importer"
	"github.com/bulkassign/bulkassign/internal/redisproc"
	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/metrics"
	"github.com/bulkassign/bulkassign/notify"
	"github.com/bulkassign/bulkassign/schedule"
	"github.com/bulkassign/bulkassign/worker"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// queue is an open connection to the queue's Redis: the ledger, the asynq
// client and the connection options workers use.
type queue struct {
	opt    asynq.RedisConnOpt
	rdb    redis.UniversalClient
	store  *jobs.Store
	client *asynq.Client
	// inspector reads and removes tasks; queueName is the asynq queue.
	inspector *asynq.Inspector
	queueName string
	close     func()
	// embedded says what the embedded queue is; "" for --redis and
	// --redis-cluster.
	embedded string
	// durable: the embedded queue keeps its data after the command.
	durable bool
}

// openQueue checks the settings and connects to the Redis of --redis or
// --redis-cluster (one server, Sentinel or a cluster: asynq and the ledger
// share the connection's kind), or, without either, when embedded is allowed, starts an embedded queue that lives as long
// as the command (see startEmbedded).
func openQueue(ctx context.Context, cfg config.Config, embedded bool) (*queue, error) {
	return openQueueIn(ctx, cfg, embedded, "")
}

// openQueueIn is openQueue whose embedded redis-server, if it starts one,
// keeps its data in dir when dir is not "".
func openQueueIn(ctx context.Context, cfg config.Config, embedded bool, dir string) (*queue, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var (
		opt  asynq.RedisConnOpt
		stop = func() {}
		q    = &queue{}
	)
	switch {
	case cfg.RedisGiven():
		o, err := cfg.RedisOpt()
		if err != nil {
			return nil, err
		}
		opt = o
	case embedded:
		addr, what, durable, close, err := startEmbedded(cfg.Embedded, dir)
		if err != nil {
			return nil, err
		}
		opt, stop = asynq.RedisClientOpt{Addr: addr}, close
		q.embedded, q.durable = what, durable
	default:
		return nil, errNoRedis
	}
	rdb, ok := opt.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		stop()
		return nil, fmt.Errorf("%s: unsupported connection type", cfg.RedisDisplay())
	}
	if err := rdb.Ping(ctx).Err(); err != nil {
		rdb.Close()
		stop()
		return nil, fmt.Errorf("connect to Redis at %s: %w (is it running? start one with: redis-server)", cfg.RedisDisplay(), err)
	}
	q.opt, q.rdb = opt, rdb
	q.store = jobs.NewStore(rdb, jobs.StoreOptions{Namespace: cfg.Namespace, Retention: retention(cfg.Retention)})
	q.client = asynq.NewClient(opt)
	q.inspector = asynq.NewInspector(opt)
	q.queueName = cfg.Namespace
	q.close = func() {
		q.inspector.Close()
		q.client.Close()
		rdb.Close()
		stop()
	}
	return q, nil
}

// errNoRedis is the error of a command that needs a Redis and was given none.
var errNoRedis = errors.New("no Redis: pass --redis redis://host:6379/0 (or redis-sentinel://host:26379?master=NAME), or --redis-cluster redis://host:7000?addr=host:7001, or set BULKASSIGN_REDIS or BULKASSIGN_REDIS_CLUSTER")

// startEmbedded starts the queue of a command run without --redis: a
// private redis-server when one is installed (asynq on miniredis spends
// its time interpreting Lua: about half the pace), else miniredis in this
// process. kind is auto, redis-server or memory. The redis-server keeps
// its data in dir, in an append-only file that outlives it, or, when dir
// is "", in a temporary folder removed when it stops; durable says which.
func startEmbedded(kind, dir string) (addr, what string, durable bool, stop func(), err error) {
	if kind == "auto" || kind == "redis-server" {
		opts, remove := redisproc.Options{AppendOnly: true, FsyncEverySec: true}, func() {}
		if dir == "" {
			if dir, err = os.MkdirTemp("", "bulkassign-queue-"); err != nil {
				return "", "", false, nil, fmt.Errorf("start the embedded queue: %w", err)
			}
			opts, remove = redisproc.Options{}, func() { _ = os.RemoveAll(dir) }
		}
		p, err := redisproc.Start(dir, opts)
		if err == nil {
			return p.Addr(), "a private redis-server", opts.AppendOnly, func() { p.Stop(); remove() }, nil
		}
		remove()
		if kind == "redis-server" || !errors.Is(err, redisproc.ErrNotInstalled) {
			return "", "", false, nil, fmt.Errorf("start the embedded queue: %w", err)
		}
	}
	m := miniredis.NewMiniRedis()
	if err := m.Start(); err != nil {
		return "", "", false, nil, fmt.Errorf("start the embedded queue: %w", err)
	}
	return m.Addr(), "an in-process miniredis", false, m.Close, nil
}

// tasks queues and removes the tasks of the queue's batches.
func (q *queue) tasks() jobs.Tasks {
	return jobs.Tasks{Store: q.store, Client: q.client, Inspector: q.inspector, Queue: q.queueName}
}

func (q *queue) importer(cfg config.Config) *importer.Importer {
	im := importer.New(q.store, q.client, cfg.Namespace)
	im.ChunkRows = cfg.ChunkRows
	return im
}

// workerProc is an asynq server that applies rows, the API client it
// calls through, and the sweeper that keeps every batch moving.
type workerProc struct {
	srv     *asynq.Server
	mux     *asynq.ServeMux
	handler *worker.Handler
	runner  *schedule.Runner
	client  *worker.Client
	// limiter paces the calls (and serve's verify reads) of this process.
	limiter worker.Limiter
	sweeper *worker.Sweeper
	// notifier fires the notices of ends nobody fired.
	notifier *notify.Notifier
	cancel   context.CancelFunc
	swept    sync.WaitGroup
}

// start starts the asynq server and the sweeper.
func (w *workerProc) start(ctx context.Context) error {
	if err := w.srv.Start(w.mux); err != nil {
		return fmt.Errorf("start workers: %w", err)
	}
	ctx, w.cancel = context.WithCancel(context.WithoutCancel(ctx))
	w.swept.Go(func() { w.sweeper.Run(ctx) })
	w.swept.Go(func() { w.notifier.Run(ctx) })
	return nil
}

// stop stops the sweeper and the notifier, drains the contacts' and the
// ticks' handlers, and shuts the asynq server down.
func (w *workerProc) stop() {
	w.cancel()
	w.swept.Wait()
	w.handler.Drain()
	w.runner.Drain()
	w.srv.Shutdown()
}

// newWorker builds the asynq server that applies rows, with its API client
// and rate limiter; m, if not nil, records its calls, rows and tasks. poll
// is how often an idle server looks for tasks (0: every second or
// --retry-base, whichever is shorter).
func newWorker(q *queue, cfg config.Config, log *slog.Logger, m *metrics.Metrics, poll time.Duration) (*workerProc, error) {
	client, err := worker.NewClient(cfg.ClientOptions())
	if err != nil {
		return nil, err
	}
	var limiter worker.Limiter = sharedLimiter(q, cfg, log)
	tasks := q.tasks()
	notifier := q.notifier(cfg, log)
	hopts := worker.HandlerOptions{
		MaxAttempts:   cfg.MaxAttempts,
		MaxRetryAfter: cfg.MaxRetryAfter,
		Concurrency:   cfg.Concurrency,
		Tasks:         &tasks,
		RetryBase:     cfg.RetryBase,
		RetryMax:      cfg.RetryMax,
		Ended:         notifier.Ended,
		Logger:        log,
	}
	if m != nil {
		limiter = m.Limiter(limiter)
		hopts.Observe, hopts.Settled = m.Observe, m.Settled
	}
	h := worker.NewHandler(q.store, client, limiter, hopts)
	srv, mux := worker.NewServer(q.opt, h, worker.ServerOptions{
		Queue:        cfg.Namespace,
		Concurrency:  cfg.Concurrency,
		RetryBase:    cfg.RetryBase,
		RetryMax:     cfg.RetryMax,
		PollInterval: cmp.Or(poll, min(cfg.RetryBase, time.Second)),
		Logger:       log,
	})
	// Scheduled plans run on the workers too; their handler is wired here
	// because it needs the importer, which the worker package may not import.
	crm := &schedule.CRM{Client: client, Limiter: limiter, Read: readOptions(cfg)}
	runner := schedule.NewRunner(q.rdb, q.store, q.importer(cfg), crm, schedule.RunnerOptions{Namespace: cfg.Namespace, Logger: log, Notifier: notifier})
	mux.Handle(jobs.TypePlan, runner)
	mux.Handle(notify.TypeNotify, newNotifySender(q, log))
	if m != nil {
		mux.Use(m.InFlight)
	}
	sweeper := worker.NewSweeper(q.rdb, cfg.Namespace, tasks, worker.SweeperOptions{
		Stall:  cfg.Stall,
		Logger: log,
	})
	return &workerProc{srv: srv, mux: mux, handler: h, runner: runner, client: client, limiter: limiter, sweeper: sweeper, notifier: notifier}, nil
}

// sharedLimiter is the rate limiter of cfg's key and API URL, shared
// through q's Redis with every process calling with them; log, if not
// nil, gets its notes.
func sharedLimiter(q *queue, cfg config.Config, log *slog.Logger) *worker.SharedLimiter {
	return worker.NewSharedLimiter(q.rdb, worker.SharedLimiterOptions{
		Namespace: cfg.Namespace, APIURL: cfg.APIURL, APIKey: cfg.APIKey, Rate: cfg.Rate, Burst: cfg.Burst, Logger: log,
	})
}

// readOptions are the settings of reads back from the CRM (live owners,
// verify): the calls' concurrency, attempts and Retry-After cap.
func readOptions(cfg config.Config) worker.ReadOptions {
	return worker.ReadOptions{Concurrency: cfg.Concurrency, MaxAttempts: cfg.MaxAttempts, MaxRetryAfter: cfg.MaxRetryAfter}
}

// retention maps --retention to the store's option, where 0 means the
// default and a negative value keeps batches forever.
func retention(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}

// newLogger writes text logs to w at the configured level.
func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}
