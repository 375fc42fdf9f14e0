package jobs

import (
	"context"
	"errors"
	"fmt"

	"github.com/hibiken/asynq"
)

// Retry sends a batch's dead-lettered contacts back to the queue: their
// failed rows are reopened (the counters move back with them) and their
// tasks queued again, whether or not asynq's archive still holds them — the
// archive is capped, the ledger is not. It returns the number of rows
// reopened.
func Retry(ctx context.Context, store *Store, client *asynq.Client, inspector *asynq.Inspector, queue, batch string, opts ...asynq.Option) (int, error) {
	dead, err := store.Dead(ctx, batch)
	if err != nil {
		return 0, err
	}
	total := 0
	for _, p := range dead {
		var lines []int
		for _, op := range p.Ops {
			lines = append(lines, op.Lines...)
		}
		n, err := store.Reopen(ctx, batch, lines)
		if err != nil {
			return total, err
		}
		total += n
		// The archived copy, if asynq still has it, holds the task id.
		err = inspector.DeleteTask(queue, TaskID(batch, p.Contact))
		if err != nil && !errors.Is(err, asynq.ErrTaskNotFound) && !errors.Is(err, asynq.ErrQueueNotFound) {
			return total, fmt.Errorf("drop archived task of contact %s: %w", p.Contact, err)
		}
		t, err := NewAssignTask(p, append([]asynq.Option{asynq.Queue(queue)}, opts...)...)
		if err != nil {
			return total, err
		}
		if _, err := client.EnqueueContext(ctx, t); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
			return total, fmt.Errorf("queue contact %s again: %w", p.Contact, err)
		}
		if err := store.Undead(ctx, batch, p.Contact); err != nil {
			return total, err
		}
	}
	return total, nil
}
