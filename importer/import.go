package importer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/hibiken/asynq"
	"golang.org/x/sync/errgroup"
)

// Options describes one import.
type Options struct {
	// File names the input in messages and in the batch record ("-" for stdin).
	File string
	// Format of the input; FormatAuto detects it.
	Format Format
	// IDFormat is the rule every contact and member id must follow (the
	// member list's ids too); the zero value is jobs.IDUUID. A row with an
	// id that breaks it is invalid and never sent.
	IDFormat jobs.IDFormat
	// Name labels the batch.
	Name string
	// DryRun validates and plans without writing anything.
	DryRun bool
	// RecordPrevious makes the workers read and keep each contact's agents
	// before its first call, so that the report can write a rollback file.
	RecordPrevious bool
	// Progress, if set, is called with the number of rows read so far.
	Progress func(rows int)
	// Mapping, if set, names the file's column (JSON key) for each of our
	// fields: our field name -> their header (see LoadMapping).
	Mapping map[string]string
	// MappingName names the mapping (its file) in messages.
	MappingName string
	// Directory returns the CRM's team members. Import calls it at most
	// once, and only when a row names its member by email and not by id,
	// or for a Preflight. If it fails, the file is not imported.
	Directory func(ctx context.Context) ([]Member, error)
	// Preflight checks every member id against Directory as well: an
	// unknown or inactive member makes the row invalid before any call.
	Preflight bool
}

// Summary says what an import read and queued.
type Summary struct {
	BatchID string `json:"batchId,omitempty"`
	File    string `json:"file"`
	Format  Format `json:"format"`
	Rows    int    `json:"rows"`
	Valid   int    `json:"valid"`
	Invalid int    `json:"invalid"`
	// Blocked counts the valid rows never sent because an earlier row of
	// their contact is invalid.
	Blocked  int      `json:"blocked"`
	Merged   int      `json:"duplicatesMerged"`
	Contacts int      `json:"contacts"`
	Calls    int      `json:"calls"`
	Extras   []string `json:"extraColumns"`
	// Resolved counts the valid rows whose member was found by email.
	Resolved int `json:"membersResolvedByEmail,omitempty"`
	// Reasons counts invalid rows by reason.
	Reasons map[string]int `json:"invalidReasons,omitempty"`
}

// Importer validates files and queues them as batches.
type Importer struct {
	store  *jobs.Store
	client *asynq.Client
	queue  string
	// ChunkRows is how many calls one task carries at most; default
	// jobs.DefaultChunkRows.
	ChunkRows int
}

// New returns an Importer writing batches to store and tasks to queue
// through client. Both may be nil for dry runs only.
func New(store *jobs.Store, client *asynq.Client, queue string) *Importer {
	if queue == "" {
		queue = jobs.Queue
	}
	return &Importer{store: store, client: client, queue: queue}
}

// chunk is how many rows go to Redis in one round trip.
const chunk = 2000

// Import reads the whole file and, only if all of it is usable, stores the
// batch and queues its contacts, in chunks of many to a task. On a file-level problem it
// returns a *FileError and leaves nothing behind: no batch, no task, no
// call. The import holds a lease on its batch until every task is queued:
// if the process dies before, the batch is abandoned (while reading) or
// its missing tasks are queued by a worker's sweep (after Start).
func (im *Importer) Import(ctx context.Context, r io.Reader, opts Options) (Summary, error) {
	sum := Summary{File: opts.File, Reasons: map[string]int{}}
	if opts.Preflight && opts.Directory == nil {
		return sum, fmt.Errorf("import %s: preflight: %w", displayName(opts.File), ErrNoDirectory)
	}
	dec, err := NewMappedDecoder(r, opts.File, opts.Format, opts.IDFormat, opts.Mapping, opts.MappingName)
	if err != nil {
		return sum, err
	}
	sum.Format = dec.Format()
	if !opts.DryRun {
		sum.BatchID = NewBatchID(time.Now())
		if err := im.store.Create(ctx, sum.BatchID, opts.Name, opts.File); err != nil {
			return sum, err
		}
		var stop func()
		ctx, stop = im.holdLease(ctx, sum.BatchID)
		defer stop()
	}
	plan := NewPlan()
	err = im.read(ctx, dec, sum.BatchID, plan, &sum, opts)
	if err == nil && plan.Rows == 0 {
		err = &FileError{File: displayName(opts.File), Err: errors.New("no data rows: the file has a header but nothing under it")}
	}
	started := false
	if err == nil && !opts.DryRun {
		started, err = im.commit(ctx, plan, sum.BatchID, dec.Extras(), opts)
	}
	if err != nil {
		if !opts.DryRun && !started {
			if aerr := im.abort(sum.BatchID); aerr != nil {
				err = fmt.Errorf("%w (the unfinished batch %s could not be removed either: %v; it shows as abandoned once its lease runs out, and `bulkassign delete %s` removes it)", err, sum.BatchID, aerr, sum.BatchID)
			}
		}
		return sum, err
	}
	sum.Rows, sum.Valid, sum.Blocked, sum.Merged = plan.Rows, plan.Valid+plan.Blocked, plan.Blocked, plan.Merged
	sum.Invalid = plan.Rows - sum.Valid
	sum.Contacts, sum.Calls = plan.Contacts(), plan.Valid-plan.Merged
	sum.Extras = dec.Extras()
	return sum, nil
}

// holdLease renews the import's lease on its batch until stop is called;
// the context it returns ends if the lease is lost (the batch was
// deleted, or Redis did not answer for the lease's whole life).
func (im *Importer) holdLease(ctx context.Context, batch string) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(im.store.LeaseTTL() / 4)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			ok, err := im.store.RenewLease(ctx, batch)
			if err == nil && !ok {
				cancel(fmt.Errorf("import of batch %s: the batch was deleted or its lease ran out", batch))
				return
			}
		}
	}()
	return ctx, func() {
		close(done)
		cancel(nil)
	}
}

// commit stores the plan, starts the batch and queues its tasks, then
// ends the lease. started says whether the batch got to run: after that,
// an error leaves it to the workers' sweep, which queues what is missing
// once the lease runs out.
func (im *Importer) commit(ctx context.Context, plan *Plan, batch string, extras []string, opts Options) (started bool, err error) {
	if opts.RecordPrevious {
		if err := im.store.SetRecordPrevious(ctx, batch); err != nil {
			return false, err
		}
	}
	tasks := jobs.Tasks{Store: im.store, Client: im.client, Queue: im.queue, ChunkRows: im.ChunkRows}
	page := make([]jobs.Contact, 0, chunk)
	chunks := tasks.Chunker()
	for c := range plan.All() {
		c.Chunk = chunks.Add(len(c.Ops))
		page = append(page, c)
		if len(page) == chunk {
			if err := im.store.AddContacts(ctx, batch, page); err != nil {
				return false, err
			}
			page = page[:0]
		}
	}
	if err := im.store.AddContacts(ctx, batch, page); err != nil {
		return false, err
	}
	if err := im.store.Start(ctx, batch, plan.Rows, plan.Contacts(), extras); err != nil {
		return false, err
	}
	// The chunks again, in the same order, each queued as it is complete.
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	var ids []string
	n := 0
	chunks = tasks.Chunker()
	for c := range plan.All() {
		if k := chunks.Add(len(c.Ops)); k != n {
			queue, cs := n, ids
			g.Go(func() error { return tasks.EnqueueChunk(gctx, batch, queue, cs) })
			n, ids = k, nil
		}
		ids = append(ids, c.ID)
	}
	if len(ids) > 0 {
		g.Go(func() error { return tasks.EnqueueChunk(gctx, batch, n, ids) })
	}
	if err := g.Wait(); err != nil {
		return true, err
	}
	return true, im.store.EndLease(ctx, batch)
}

// read decodes every row into the plan and, unless this is a dry run, the
// ledger.
func (im *Importer) read(ctx context.Context, dec *Decoder, batch string, plan *Plan, sum *Summary, opts Options) error {
	buf := make([]jobs.Row, 0, chunk)
	flush := func() error { // a dry run empties buf too: it must not keep the file's rows
		var err error
		if !opts.DryRun && len(buf) > 0 {
			err = im.store.AddRows(ctx, batch, buf)
		}
		buf = buf[:0]
		return err
	}
	members := newResolver(opts)
	for {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		row, err := dec.Next()
		if errors.Is(err, io.EOF) {
			return flush()
		}
		if err != nil {
			return err
		}
		if err := members.resolve(ctx, &row); err != nil {
			return err
		}
		sum.Resolved = members.resolved
		plan.Add(&row)
		if !row.Valid() {
			sum.Reasons[row.Reason]++
		}
		buf = append(buf, row)
		if len(buf) == chunk {
			if err := flush(); err != nil {
				return err
			}
			if opts.Progress != nil {
				opts.Progress(plan.Rows)
			}
		}
	}
}

// abort removes a batch whose import failed before it started: no task of
// it was queued, none of its rows is sent.
func (im *Importer) abort(batch string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return im.store.Delete(ctx, batch)
}

// NewBatchID returns a new batch id: sortable by time, unique by a random
// suffix, and safe in a path or URL.
func NewBatchID(now time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return now.UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b[:])
}
