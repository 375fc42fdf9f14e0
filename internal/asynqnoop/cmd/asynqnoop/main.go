// Command asynqnoop enqueues and processes tasks that do nothing through
// asynq on a Redis, and prints one JSON line: tasks, enqueuePerSecond,
// processPerSecond. scripts/bench runs it beside `bulkassign run` to show
// asynq's own pace on the same machine.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/bulkassign/bulkassign/internal/asynqnoop"
	"github.com/hibiken/asynq"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "asynqnoop:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("asynqnoop", flag.ContinueOnError)
	redisURL := fs.String("redis", "", "redis:// URL of a Redis nobody else uses (its queue is deleted afterwards)")
	n := fs.Int("tasks", 20000, "tasks to enqueue and process")
	conc := fs.Int("concurrency", 64, "the asynq server's concurrency")
	queue := fs.String("queue", "asynqnoop", "queue name")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *redisURL == "" || fs.NArg() != 0 {
		return fmt.Errorf("usage: asynqnoop -redis URL [-tasks N] [-concurrency C] [-queue NAME]")
	}
	opt, err := asynq.ParseRedisURI(*redisURL)
	if err != nil {
		return fmt.Errorf("-redis: %w", err)
	}
	res, err := asynqnoop.Run(ctx, opt, *queue, *n, *conc)
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]any{
		"tasks": res.Tasks, "enqueuePerSecond": res.EnqueuePerSecond(), "processPerSecond": res.ProcessPerSecond(),
	})
}
