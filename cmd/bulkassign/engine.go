package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/bulkassign/bulkassign/config"
	"github.com/bulkassign/bulkassign/importer"
	"github.com/bulkassign/bulkassign/internal/redisproc"
	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/metrics"
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
}

// openQueue checks the settings and connects to the Redis of --redis or
// --redis-cluster (one server, Sentinel or a cluster: asynq and the ledger
// share the connection's kind), or, without either, when embedded is allowed, starts an embedded queue that lives as long
// as the command (see startEmbedded).
func openQueue(ctx context.Context, cfg config.Config, embedded bool) (*queue, error) {
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
		addr, what, close, err := startEmbedded(cfg.Embedded)
		if err != nil {
			return nil, err
		}
		opt, stop = asynq.RedisClientOpt{Addr: addr}, close
		q.embedded = what
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
// private redis-server in a temporary folder when one is installed (asynq
// on miniredis spends its time interpreting Lua: about half the pace), else
// miniredis in this process. kind is auto, redis-server or memory.
func startEmbedded(kind string) (addr, what string, stop func(), err error) {
	if kind == "auto" || kind == "redis-server" {
		dir, err := os.MkdirTemp("", "bulkassign-queue-")
		if err != nil {
			return "", "", nil, fmt.Errorf("start the embedded queue: %w", err)
		}
		p, err := redisproc.Start(dir, redisproc.Options{})
		if err == nil {
			return p.Addr(), "a private redis-server", func() { p.Stop(); _ = os.RemoveAll(dir) }, nil
		}
		_ = os.RemoveAll(dir)
		if kind == "redis-server" || !errors.Is(err, redisproc.ErrNotInstalled) {
			return "", "", nil, fmt.Errorf("start the embedded queue: %w", err)
		}
	}
	m := miniredis.NewMiniRedis()
	if err := m.Start(); err != nil {
		return "", "", nil, fmt.Errorf("start the embedded queue: %w", err)
	}
	return m.Addr(), "an in-process miniredis", m.Close, nil
}

// tasks queues and removes the tasks of the queue's batches.
func (q *queue) tasks() jobs.Tasks {
	return jobs.Tasks{Store: q.store, Client: q.client, Inspector: q.inspector, Queue: q.queueName}
}

func (q *queue) importer(cfg config.Config) *importer.Importer {
	return importer.New(q.store, q.client, cfg.Namespace)
}

// workerProc is an asynq server that applies rows, the API client it
// calls through, and the sweeper that keeps every batch moving.
type workerProc struct {
	srv     *asynq.Server
	mux     *asynq.ServeMux
	client  *worker.Client
	sweeper *worker.Sweeper
	cancel  context.CancelFunc
	swept   chan struct{}
}

// start starts the asynq server and the sweeper.
func (w *workerProc) start(ctx context.Context) error {
	if err := w.srv.Start(w.mux); err != nil {
		return fmt.Errorf("start workers: %w", err)
	}
	ctx, w.cancel = context.WithCancel(context.WithoutCancel(ctx))
	w.swept = make(chan struct{})
	go func() {
		defer close(w.swept)
		w.sweeper.Run(ctx)
	}()
	return nil
}

// stop stops the sweeper and drains the asynq server.
func (w *workerProc) stop() {
	w.cancel()
	<-w.swept
	w.srv.Shutdown()
}

// newWorker builds the asynq server that applies rows, with its API client
// and rate limiter; m, if not nil, records its calls, rows and tasks.
func newWorker(q *queue, cfg config.Config, log *slog.Logger, m *metrics.Metrics) (*workerProc, error) {
	client, err := worker.NewClient(cfg.ClientOptions())
	if err != nil {
		return nil, err
	}
	var limiter worker.Limiter = worker.NewSharedLimiter(q.rdb, worker.SharedLimiterOptions{
		Namespace: cfg.Namespace, APIURL: cfg.APIURL, APIKey: cfg.APIKey, Rate: cfg.Rate, Burst: cfg.Burst, Logger: log,
	})
	hopts := worker.HandlerOptions{
		MaxAttempts:   cfg.MaxAttempts,
		MaxRetryAfter: cfg.MaxRetryAfter,
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
		PollInterval: min(cfg.RetryBase, time.Second),
		Logger:       log,
	})
	// Scheduled plans run on the workers too; their handler is wired here
	// because it needs the importer, which the worker package may not import.
	crm := &schedule.CRM{Client: client, Limiter: limiter, Read: worker.ReadOptions{Concurrency: cfg.Concurrency, MaxAttempts: cfg.MaxAttempts, MaxRetryAfter: cfg.MaxRetryAfter}}
	mux.Handle(jobs.TypePlan, schedule.NewRunner(q.rdb, q.store, q.importer(cfg), crm, schedule.RunnerOptions{Namespace: cfg.Namespace, Logger: log}))
	if m != nil {
		mux.Use(m.InFlight)
	}
	sweeper := worker.NewSweeper(q.rdb, cfg.Namespace, q.tasks(), worker.SweeperOptions{
		Stall:  cfg.Stall,
		Logger: log,
	})
	return &workerProc{srv: srv, mux: mux, client: client, sweeper: sweeper}, nil
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
