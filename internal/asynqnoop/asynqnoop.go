// Package asynqnoop measures asynq's own pace on a machine: tasks that do
// nothing, enqueued and then processed by one asynq server. It is the
// yardstick that shows why bulkassign puts many contacts in one task:
// whatever a task does, a queue of one task per contact cannot go faster
// than this.
package asynqnoop

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
)

// taskType is the type of the no-op tasks.
const taskType = "asynqnoop:noop"

// Result is what a Run measured.
type Result struct {
	// Tasks is the tasks enqueued and processed.
	Tasks int
	// Enqueue is the time the enqueues took, one Enqueue call each.
	Enqueue time.Duration
	// Process is the time from the server's start to the last task done.
	Process time.Duration
}

// EnqueuePerSecond is Tasks over Enqueue.
func (r Result) EnqueuePerSecond() float64 { return perSecond(r.Tasks, r.Enqueue) }

// ProcessPerSecond is Tasks over Process.
func (r Result) ProcessPerSecond() float64 { return perSecond(r.Tasks, r.Process) }

func perSecond(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// Run enqueues n no-op tasks on queue and processes them with an asynq
// server of the given concurrency, then deletes the queue, whatever
// happened. The queue should be one nobody else uses.
func Run(ctx context.Context, r asynq.RedisConnOpt, queue string, n, concurrency int) (Result, error) {
	if n < 1 || concurrency < 1 {
		return Result{}, fmt.Errorf("n %d, concurrency %d: want at least 1 each", n, concurrency)
	}
	client := asynq.NewClient(r)
	defer client.Close()
	start := time.Now()
	for i := range n {
		if _, err := client.EnqueueContext(ctx, asynq.NewTask(taskType, nil), asynq.Queue(queue)); err != nil {
			return Result{}, errors.Join(fmt.Errorf("enqueue task %d: %w", i+1, err), deleteQueue(r, queue))
		}
	}
	res := Result{Tasks: n, Enqueue: time.Since(start)}

	var processed atomic.Int64
	all := make(chan struct{})
	mux := asynq.NewServeMux()
	mux.HandleFunc(taskType, func(context.Context, *asynq.Task) error {
		if processed.Add(1) == int64(n) {
			close(all)
		}
		return nil
	})
	srv := asynq.NewServer(r, asynq.Config{Concurrency: concurrency, Queues: map[string]int{queue: 1}, LogLevel: asynq.WarnLevel})
	start = time.Now()
	if err := srv.Start(mux); err != nil {
		return Result{}, errors.Join(fmt.Errorf("start the asynq server: %w", err), deleteQueue(r, queue))
	}
	var err error
	select {
	case <-all:
		res.Process = time.Since(start)
	case <-ctx.Done():
		err = fmt.Errorf("%d of %d tasks processed: %w", processed.Load(), n, ctx.Err())
	}
	// The last task is still in the active list until the server has
	// stopped, and a queue with an active task cannot be deleted.
	srv.Shutdown()
	return res, errors.Join(err, deleteQueue(r, queue))
}

// deleteQueue removes queue with whatever tasks it still holds.
func deleteQueue(r asynq.RedisConnOpt, queue string) error {
	insp := asynq.NewInspector(r)
	defer insp.Close()
	if err := insp.DeleteQueue(queue, true); err != nil && !errors.Is(err, asynq.ErrQueueNotFound) {
		return fmt.Errorf("delete queue %s: %w", queue, err)
	}
	return nil
}
