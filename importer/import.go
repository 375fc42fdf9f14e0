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
	BatchID  string   `json:"batchId,omitempty"`
	File     string   `json:"file"`
	Format   Format   `json:"format"`
	Rows     int      `json:"rows"`
	Valid    int      `json:"valid"`
	Invalid  int      `json:"invalid"`
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

// Import reads the whole file, and only if all of it is usable queues one
// task per contact. On a file-level problem it returns a *FileError and
// leaves nothing behind: no batch, no task, no call.
func (im *Importer) Import(ctx context.Context, r io.Reader, opts Options) (Summary, error) {
	sum := Summary{File: opts.File, Reasons: map[string]int{}}
	if opts.Preflight && opts.Directory == nil {
		return sum, fmt.Errorf("import %s: preflight: %w", displayName(opts.File), ErrNoDirectory)
	}
	dec, err := NewMappedDecoder(r, opts.File, opts.Format, opts.Mapping, opts.MappingName)
	if err != nil {
		return sum, err
	}
	sum.Format = dec.Format()
	if !opts.DryRun {
		sum.BatchID = NewBatchID(time.Now())
		if err := im.store.Create(ctx, sum.BatchID, opts.Name, opts.File); err != nil {
			return sum, err
		}
	}
	plan := NewPlan()
	err = im.read(ctx, dec, sum.BatchID, plan, &sum, opts)
	if err == nil && plan.Rows == 0 {
		err = &FileError{File: displayName(opts.File), Err: errors.New("no data rows: the file has a header but nothing under it")}
	}
	if err == nil && !opts.DryRun && opts.RecordPrevious {
		err = im.store.SetRecordPrevious(ctx, sum.BatchID)
	}
	if err == nil && !opts.DryRun {
		err = im.enqueue(ctx, plan, sum.BatchID)
	}
	if err == nil && !opts.DryRun {
		err = im.store.Start(ctx, sum.BatchID, plan.Rows, plan.Contacts(), dec.Extras())
	}
	if err != nil {
		if !opts.DryRun {
			if aerr := im.abort(sum.BatchID); aerr != nil {
				err = fmt.Errorf("%w (the unfinished batch %s could not be removed either: %v; workers will not run it: it stays importing)", err, sum.BatchID, aerr)
			}
		}
		return sum, err
	}
	sum.Rows, sum.Valid, sum.Merged = plan.Rows, plan.Valid, plan.Merged
	sum.Invalid = plan.Rows - plan.Valid
	sum.Contacts, sum.Calls = plan.Contacts(), plan.Valid-plan.Merged
	sum.Extras = dec.Extras()
	return sum, nil
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
		if err := ctx.Err(); err != nil {
			return err
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
		plan.Add(row)
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

// enqueue queues the plan's tasks from a few goroutines: each enqueue is a
// round trip to Redis.
func (im *Importer) enqueue(ctx context.Context, plan *Plan, batch string) error {
	g, ctx := errgroup.WithContext(ctx)
	payloads := make(chan jobs.AssignPayload)
	for range 8 {
		g.Go(func() error {
			for p := range payloads {
				t, err := jobs.NewAssignTask(p, asynq.Queue(im.queue))
				if err != nil {
					return err
				}
				_, err = im.client.EnqueueContext(ctx, t)
				if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
					return fmt.Errorf("queue contact %s: %w", p.Contact, err)
				}
			}
			return nil
		})
	}
	g.Go(func() error {
		defer close(payloads)
		for p := range plan.Payloads(batch) {
			select {
			case payloads <- p:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
	return g.Wait()
}

// abort removes a batch whose import failed. Tasks already queued for it
// are dropped by the workers, which hold tasks of an importing batch and
// drop those of a batch that no longer exists: none of its rows is sent.
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
