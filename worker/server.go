package worker

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/hibiken/asynq"
)

// ServerOptions configures the asynq server; the zero value means defaults.
type ServerOptions struct {
	// Queue is the asynq queue to serve; default jobs.Queue.
	Queue string
	// Concurrency caps the calls in flight in this process; default 16.
	Concurrency int
	// RetryBase and RetryMax bound the backoff between attempts; default
	// 1s and 1m.
	RetryBase, RetryMax time.Duration
	// PollInterval is how often an idle server looks for work and for
	// retries that are due; default 1s.
	PollInterval time.Duration
	// ShutdownTimeout is how long in-flight calls get to finish on
	// shutdown; default 30s.
	ShutdownTimeout time.Duration
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// NewServer returns an asynq server that runs h on the assignment queue.
func NewServer(r asynq.RedisConnOpt, h *Handler, opts ServerOptions) (*asynq.Server, *asynq.ServeMux) {
	if opts.Queue == "" {
		opts.Queue = jobs.Queue
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
	if opts.PollInterval <= 0 {
		opts.PollInterval = time.Second
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	srv := asynq.NewServer(r, asynq.Config{
		Concurrency:              opts.Concurrency,
		Queues:                   map[string]int{opts.Queue: 1},
		IsFailure:                IsFailure,
		RetryDelayFunc:           RetryDelay(opts.RetryBase, opts.RetryMax),
		TaskCheckInterval:        opts.PollInterval,
		DelayedTaskCheckInterval: opts.PollInterval,
		ShutdownTimeout:          opts.ShutdownTimeout,
		Logger:                   AsynqLogger(opts.Logger),
		LogLevel:                 asynq.WarnLevel,
		ErrorHandler: asynq.ErrorHandlerFunc(func(ctx context.Context, t *asynq.Task, err error) {
			opts.Logger.Debug("task returned", slog.String("type", t.Type()), slog.Any("error", err))
		}),
	})
	mux := asynq.NewServeMux()
	mux.Handle(jobs.TypeAssign, h)
	return srv, mux
}

// AsynqLogger adapts slog to asynq's Logger, for asynq's servers and
// schedulers.
func AsynqLogger(l *slog.Logger) asynq.Logger { return asynqLogger{l} }

type asynqLogger struct{ l *slog.Logger }

func (a asynqLogger) Debug(args ...any) {
	a.l.Debug(fmt.Sprint(args...), slog.String("component", "asynq"))
}
func (a asynqLogger) Info(args ...any) {
	a.l.Info(fmt.Sprint(args...), slog.String("component", "asynq"))
}
func (a asynqLogger) Warn(args ...any) {
	a.l.Warn(fmt.Sprint(args...), slog.String("component", "asynq"))
}
func (a asynqLogger) Error(args ...any) {
	a.l.Error(fmt.Sprint(args...), slog.String("component", "asynq"))
}

// Fatal logs at error level: only main exits, and asynq's server reports
// its fatal conditions as errors from Run/Start as well.
func (a asynqLogger) Fatal(args ...any) {
	a.l.Error(fmt.Sprint(args...), slog.String("component", "asynq"))
}
