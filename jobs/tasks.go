package jobs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"golang.org/x/sync/errgroup"
)

// Tasks queues a batch's contacts as asynq tasks, from the plan the ledger
// keeps: at import, on resume, for `dlq retry`, when tasks were lost, and
// removes them with the batch. Contacts travel in chunks, many to a task;
// a contact retried on its own (a transient failure) has a task of its own.
type Tasks struct {
	Store     *Store
	Client    *asynq.Client
	Inspector *asynq.Inspector
	// Queue is the asynq queue; default Queue.
	Queue string
	// ChunkRows is how many calls a chunk carries at most (a contact with
	// more goes alone); default DefaultChunkRows.
	ChunkRows int
}

// DefaultChunkRows is how many calls a chunk task carries at most.
const DefaultChunkRows = 200

func (t Tasks) queue() string {
	if t.Queue == "" {
		return Queue
	}
	return t.Queue
}

func (t Tasks) chunkRows() int {
	if t.ChunkRows <= 0 {
		return DefaultChunkRows
	}
	return t.ChunkRows
}

// Chunker numbers the chunks of a batch's contacts as its import queues
// them, in the plan's order: a chunk holds contacts until it has rows
// calls.
type Chunker struct {
	rows, n, in int
}

// NewChunker returns a Chunker of chunks of at most rows calls.
func NewChunker(rows int) *Chunker { return &Chunker{rows: max(rows, 1), n: -1} }

// Add returns the chunk of the next contact, which has calls calls.
func (c *Chunker) Add(calls int) int {
	if c.n < 0 || c.in+calls > c.rows {
		c.n++
		c.in = 0
	}
	c.in += calls
	return c.n
}

// Chunker returns the chunker of t's chunk size.
func (t Tasks) Chunker() *Chunker { return NewChunker(t.chunkRows()) }

// enqueuers is how many enqueues are in flight at once: each is a round
// trip to Redis.
const enqueuers = 8

// EnqueueChunk queues chunk n of a batch as its import numbered it. A
// chunk queued already is left alone.
func (t Tasks) EnqueueChunk(ctx context.Context, batch string, n int, contacts []string) error {
	task, err := NewChunkTask(batch, contacts, ChunkTaskID(batch, n), asynq.Queue(t.queue()))
	if err != nil {
		return err
	}
	if _, err := t.Client.EnqueueContext(ctx, task); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return fmt.Errorf("queue chunk %d of batch %s: %w", n, batch, err)
	}
	return nil
}

// Enqueue queues the contacts of a batch again, in chunks of their own
// (resume, dlq retry, lost tasks). A contact that has a task already runs
// once all the same: whichever execution comes second finds its rows
// settled, or its contact held and hands it to the contact's own task.
func (t Tasks) Enqueue(ctx context.Context, batch string, contacts []string) error {
	type chunk struct {
		id       string
		contacts []string
	}
	var (
		chunks []chunk
		ids    []string
	)
	for c := range slices.Chunk(contacts, t.chunkRows()) {
		chunks = append(chunks, chunk{id: batch + ":again:" + newToken(), contacts: c})
		ids = append(ids, chunks[len(chunks)-1].id)
	}
	if err := t.Store.NoteTasks(ctx, batch, ids...); err != nil {
		return err
	}
	return each(ctx, chunks, func(ctx context.Context, c chunk) error {
		cs := c.contacts
		task, err := NewChunkTask(batch, cs, c.id, asynq.Queue(t.queue()))
		if err != nil {
			return err
		}
		if _, err := t.Client.EnqueueContext(ctx, task); err != nil {
			return fmt.Errorf("queue %d contacts of batch %s: %w", len(cs), batch, err)
		}
		return nil
	})
}

// Later queues a contact's own task to run in d: a contact of a chunk
// that is retried, or that another execution holds. A contact whose own
// task exists already is left to it.
func (t Tasks) Later(ctx context.Context, batch, contact string, d time.Duration) error {
	task, err := NewAssignTask(AssignPayload{Batch: batch, Contact: contact}, asynq.Queue(t.queue()), asynq.ProcessIn(d))
	if err != nil {
		return err
	}
	if err := t.Store.NoteTasks(ctx, batch, TaskID(batch, contact)); err != nil {
		return err
	}
	if _, err := t.Client.EnqueueContext(ctx, task); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return fmt.Errorf("queue contact %s of batch %s: %w", contact, batch, err)
	}
	return nil
}

// Bury puts a contact dead-lettered in a chunk into asynq's archive, as a
// task of its own, so that the archive shows every dead letter; the
// ledger has it already (the archive is capped, the ledger is not).
func (t Tasks) Bury(ctx context.Context, batch, contact string) error {
	task, err := NewAssignTask(AssignPayload{Batch: batch, Contact: contact}, asynq.Queue(t.queue()), asynq.ProcessIn(24*time.Hour))
	if err != nil {
		return err
	}
	if err := t.Store.NoteTasks(ctx, batch, TaskID(batch, contact)); err != nil {
		return err
	}
	_, err = t.Client.EnqueueContext(ctx, task)
	switch {
	case errors.Is(err, asynq.ErrTaskIDConflict):
		return nil // its own task has it: archived already, or about to end
	case err != nil:
		return fmt.Errorf("archive contact %s of batch %s: %w", contact, batch, err)
	}
	if err := t.Inspector.ArchiveTask(t.queue(), TaskID(batch, contact)); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
		return fmt.Errorf("archive contact %s of batch %s: %w", contact, batch, err)
	}
	return nil
}

// each runs fn for every item, enqueuers at a time: each call is a round
// trip to Redis.
func each[T any](ctx context.Context, items []T, fn func(context.Context, T) error) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(enqueuers)
	for _, it := range items {
		g.Go(func() error { return fn(ctx, it) })
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
// whose execution has not ended yet (it parked itself and is about to end)
// is handed by its new execution to a task of its own.
func (t Tasks) Unpark(ctx context.Context, id string) error {
	for {
		cs, err := t.Store.TakeParked(ctx, id, 10*t.chunkRows())
		if err != nil || len(cs) == 0 {
			return err
		}
		if err := t.Enqueue(ctx, id, cs); err != nil {
			// Which of cs were queued is unknown: park them all again; a
			// second task of a contact finds its rows settled.
			return errors.Join(err, t.Store.Unpark(context.WithoutCancel(ctx), id, cs))
		}
	}
}

// Requeue queues every contact of a running batch that has rows without a
// result and no task that will run them: tasks lost with a Redis that
// failed over without persistence, deleted by hand, never queued by an
// importer that died, or stranded in asynq's active list (a write that
// failed while Redis restarted leaves a task there until asynq's recoverer
// takes it back, minutes later). A contact's import chunk tells where to
// look: a chunk whose task is gone, or stranded, has its pending contacts
// queued again, in chunks of their own; whichever execution runs second
// finds the rows settled. It returns the number of contacts queued.
//
// Call it only for a batch no execution holds a contact of (Sweep says
// when): a task that runs now holds its contact, and this would queue it
// twice for nothing. A pending contact whose chunk is gone but whose own
// retry task waits may run before its retry is due.
func (t Tasks) Requeue(ctx context.Context, id string) (int, error) {
	// First the chunks with pending contacts, and which of them have no
	// task that will run.
	lost := map[int]bool{}
	for page, err := range t.Store.Contacts(ctx, id, true) {
		if err != nil {
			return 0, err
		}
		for _, c := range page {
			lost[c.Chunk] = false
		}
	}
	for n := range lost {
		info, err := t.Inspector.GetTaskInfo(t.queue(), ChunkTaskID(id, n))
		switch {
		case errors.Is(err, asynq.ErrTaskNotFound), errors.Is(err, asynq.ErrQueueNotFound):
			lost[n] = true
		case err != nil:
			return 0, fmt.Errorf("look up chunk %d of batch %s: %w", n, id, err)
		default:
			// An active one is stranded: no execution holds its contacts.
			lost[n] = info.State == asynq.TaskStateActive || info.State == asynq.TaskStateArchived || info.State == asynq.TaskStateCompleted
		}
	}
	n := 0
	for page, err := range t.Store.Contacts(ctx, id, true) {
		if err != nil {
			return n, err
		}
		var ids []string
		for _, c := range page {
			if lost[c.Chunk] {
				ids = append(ids, c.ID)
			}
		}
		if err := t.Enqueue(ctx, id, ids); err != nil {
			return n, err
		}
		n += len(ids)
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
	if err := t.Enqueue(context.WithoutCancel(ctx), id, reopened); err != nil {
		errs = append(errs, err)
	}
	return n, errors.Join(errs...)
}

// Delete removes a batch in any state: its tasks first (a task running
// now, or one queued again under an id of its own, finds the batch gone
// and ends without another call), then every key. It returns the number of
// tasks removed.
func (t Tasks) Delete(ctx context.Context, id string) (int, error) {
	if err := t.Store.markDeleting(ctx, id); err != nil {
		return 0, err
	}
	var n atomic.Int64
	chunks := map[int]bool{}
	drop := func(ctx context.Context, task string) error {
		err := t.Inspector.DeleteTask(t.queue(), task)
		switch {
		case err == nil:
			n.Add(1)
		case errors.Is(err, asynq.ErrTaskNotFound), errors.Is(err, asynq.ErrQueueNotFound):
		default:
			// A running task cannot be deleted; it ends on its own.
			if info, ierr := t.Inspector.GetTaskInfo(t.queue(), task); ierr != nil || info.State != asynq.TaskStateActive {
				return fmt.Errorf("delete task %s: %w", task, err)
			}
		}
		return nil
	}
	// The import's chunks, by the numbers the plan keeps; then every task
	// queued since (a contact's own, a chunk queued again), as noted.
	for page, err := range t.Store.Contacts(ctx, id, false) {
		if err != nil {
			return int(n.Load()), err
		}
		var ids []string
		for _, c := range page {
			if !chunks[c.Chunk] {
				chunks[c.Chunk] = true
				ids = append(ids, ChunkTaskID(id, c.Chunk))
			}
		}
		if err := each(ctx, ids, drop); err != nil {
			return int(n.Load()), err
		}
	}
	for page, err := range t.Store.NotedTasks(ctx, id) {
		if err == nil {
			err = each(ctx, page, drop)
		}
		if err != nil {
			return int(n.Load()), err
		}
	}
	// A dead letter's own task stays in asynq's archive; one buried by a
	// version that noted nothing is found by its contact.
	dead, err := t.Store.Dead(ctx, id)
	if err != nil {
		return int(n.Load()), err
	}
	ids := make([]string, len(dead))
	for i, c := range dead {
		ids[i] = TaskID(id, c.ID)
	}
	if err := each(ctx, ids, drop); err != nil {
		return int(n.Load()), err
	}
	return int(n.Load()), t.Store.Delete(ctx, id)
}
