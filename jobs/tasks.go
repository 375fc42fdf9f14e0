package jobs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/hibiken/asynq"
	"golang.org/x/sync/errgroup"
)

// Tasks queues a batch's contacts as asynq tasks, from the plan the ledger
// keeps: at import, on resume, for `dlq retry`, when tasks were lost, and
// removes them with the batch.
type Tasks struct {
	Store     *Store
	Client    *asynq.Client
	Inspector *asynq.Inspector
	// Queue is the asynq queue; default Queue.
	Queue string
}

func (t Tasks) queue() string {
	if t.Queue == "" {
		return Queue
	}
	return t.Queue
}

// enqueuers is how many enqueues are in flight at once: each is a round
// trip to Redis.
const enqueuers = 8

// Enqueue queues a task for each contact of the batch. A contact whose
// task exists already (pending, scheduled, retrying, running or archived)
// is left alone and returned in exists.
func (t Tasks) Enqueue(ctx context.Context, batch string, contacts []string) (exists []string, err error) {
	var mu sync.Mutex
	err = each(ctx, contacts, func(ctx context.Context, c string) error {
		task, err := NewAssignTask(AssignPayload{Batch: batch, Contact: c}, asynq.Queue(t.queue()))
		if err != nil {
			return err
		}
		_, err = t.Client.EnqueueContext(ctx, task)
		switch {
		case errors.Is(err, asynq.ErrTaskIDConflict):
			mu.Lock()
			exists = append(exists, c)
			mu.Unlock()
		case err != nil:
			return fmt.Errorf("queue contact %s of batch %s: %w", c, batch, err)
		}
		return nil
	})
	return exists, err
}

// each runs fn for every contact, enqueuers at a time: each call is a
// round trip to Redis.
func each(ctx context.Context, contacts []string, fn func(context.Context, string) error) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(enqueuers)
	for _, c := range contacts {
		g.Go(func() error { return fn(ctx, c) })
	}
	return g.Wait()
}

// Resume lets a paused batch run again and queues the contacts parked
// while it was paused. It reports whether the batch was paused.
func (t Tasks) Resume(ctx context.Context, id string) (bool, error) {
	changed, err := t.Store.SetStatus(ctx, id, BatchRunning, "", "")
	if err != nil {
		return false, err
	}
	return changed, t.Unpark(ctx, id)
}

// Unpark queues the parked contacts of a running batch again. A contact
// whose task still runs (it parked itself and is about to end) goes back
// to the parked set for the next sweep; one whose task exists otherwise
// needs nothing.
func (t Tasks) Unpark(ctx context.Context, id string) error {
	for {
		cs, err := t.Store.TakeParked(ctx, id, 1000)
		if err != nil || len(cs) == 0 {
			return err
		}
		exists, err := t.Enqueue(ctx, id, cs)
		if err != nil {
			// Which of cs were queued is unknown: park them all again; a
			// second task of a contact finds its rows settled.
			return errors.Join(err, t.Store.Unpark(context.WithoutCancel(ctx), id, cs))
		}
		var again []string
		for _, c := range exists {
			info, err := t.Inspector.GetTaskInfo(t.queue(), TaskID(id, c))
			if err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
				return errors.Join(err, t.Store.Unpark(context.WithoutCancel(ctx), id, exists))
			}
			if err != nil || info.State == asynq.TaskStateActive {
				again = append(again, c)
			}
		}
		if err := t.Store.Unpark(ctx, id, again); err != nil {
			return err
		}
		if len(again) > 0 {
			return nil // the next sweep takes them
		}
	}
}

// Requeue queues every contact of a running batch that has rows without a
// result and no task that will run them: tasks lost with a Redis that
// failed over without persistence, deleted by hand, never queued by an
// importer that died, or stranded in asynq's active list (a write that
// failed while Redis restarted leaves a task there until asynq's recoverer
// takes it back, minutes later). A stranded task gets a twin with a task
// id of its own; whichever runs second finds the rows settled. A contact
// whose task is archived although it has rows to send (a retry cut short)
// gets a fresh one. It returns the number of contacts queued.
//
// Call it only for a batch no execution holds a contact of (Sweep says
// when): a task that runs now holds its contact, and this would queue it
// twice for nothing.
func (t Tasks) Requeue(ctx context.Context, id string) (int, error) {
	n := 0
	for page, err := range t.Store.Contacts(ctx, id, true) {
		if err != nil {
			return n, err
		}
		ids := make([]string, len(page))
		for i, c := range page {
			ids[i] = c.ID
		}
		exists, err := t.Enqueue(ctx, id, ids)
		if err != nil {
			return n, err
		}
		n += len(ids) - len(exists)
		for _, c := range exists {
			info, err := t.Inspector.GetTaskInfo(t.queue(), TaskID(id, c))
			if err != nil {
				continue // gone since: the next sweep queues it
			}
			var again *asynq.Task
			switch info.State {
			case asynq.TaskStateArchived:
				if err := t.Inspector.DeleteTask(t.queue(), info.ID); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
					return n, fmt.Errorf("drop the archived task of contact %s: %w", c, err)
				}
				again, err = NewAssignTask(AssignPayload{Batch: id, Contact: c}, asynq.Queue(t.queue()))
			case asynq.TaskStateActive:
				again, err = NewAssignTask(AssignPayload{Batch: id, Contact: c}, asynq.Queue(t.queue()),
					asynq.TaskID(TaskID(id, c)+":"+newToken()))
			default:
				continue // pending, scheduled or retrying: it will run
			}
			if err != nil {
				return n, err
			}
			if _, err := t.Client.EnqueueContext(ctx, again); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
				return n, fmt.Errorf("queue contact %s of batch %s again: %w", c, id, err)
			}
			n++
		}
	}
	return n, nil
}

// Retry sends a batch's dead-lettered contacts back to the queue: their
// failed rows are reopened (the counters move back with them) and their
// tasks queued again, whether or not asynq's archive still holds them — the
// archive is capped, the ledger is not. A paused batch stays paused: the
// contacts wait for resume. It returns the number of rows reopened.
func (t Tasks) Retry(ctx context.Context, id string) (int, error) {
	dead, err := t.Store.Dead(ctx, id)
	if err != nil {
		return 0, err
	}
	ids := make([]string, len(dead))
	for i, c := range dead {
		ids[i] = c.ID
	}
	n, reopened, err := t.Store.Reopen(ctx, id, ids)
	if err != nil {
		return 0, err
	}
	// The archived copy, if asynq still has it, holds the task id. One
	// that cannot go (still running: it is about to be archived) leaves the
	// contact to the sweep, which gives a stranded task a twin.
	var errs []error
	for _, c := range reopened {
		err := t.Inspector.DeleteTask(t.queue(), TaskID(id, c))
		if err != nil && !errors.Is(err, asynq.ErrTaskNotFound) && !errors.Is(err, asynq.ErrQueueNotFound) {
			if info, ierr := t.Inspector.GetTaskInfo(t.queue(), TaskID(id, c)); ierr != nil || info.State != asynq.TaskStateActive {
				errs = append(errs, fmt.Errorf("drop archived task of contact %s: %w", c, err))
			}
		}
	}
	// A crash from here on leaves pending rows without a task: the
	// workers' sweep queues them.
	if _, err := t.Enqueue(context.WithoutCancel(ctx), id, reopened); err != nil {
		errs = append(errs, err)
	}
	return n, errors.Join(errs...)
}

// Delete removes a batch in any state: its tasks first (a task running
// now finds the batch gone and ends without another call), then every
// key. It returns the number of tasks removed.
func (t Tasks) Delete(ctx context.Context, id string) (int, error) {
	if err := t.Store.markDeleting(ctx, id); err != nil {
		return 0, err
	}
	var n atomic.Int64
	for page, err := range t.Store.Contacts(ctx, id, false) {
		if err != nil {
			return int(n.Load()), err
		}
		ids := make([]string, len(page))
		for i, c := range page {
			ids[i] = c.ID
		}
		err := each(ctx, ids, func(ctx context.Context, c string) error {
			err := t.Inspector.DeleteTask(t.queue(), TaskID(id, c))
			switch {
			case err == nil:
				n.Add(1)
			case errors.Is(err, asynq.ErrTaskNotFound), errors.Is(err, asynq.ErrQueueNotFound):
			default:
				// A running task cannot be deleted; it ends on its own.
				if info, ierr := t.Inspector.GetTaskInfo(t.queue(), TaskID(id, c)); ierr != nil || info.State != asynq.TaskStateActive {
					return fmt.Errorf("delete the task of contact %s: %w", c, err)
				}
			}
			return nil
		})
		if err != nil {
			return int(n.Load()), err
		}
	}
	return int(n.Load()), t.Store.Delete(ctx, id)
}
