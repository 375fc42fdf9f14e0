package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/bulkassign/bulkassign/config"
	"github.com/bulkassign/bulkassign/importer"
	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/report"
	"github.com/hibiken/asynq"
	"github.com/peterbourgon/ff/v3/ffcli"
)

func (a *app) importCommand() *ffcli.Command {
	cfg := config.Default()
	fs := newFlagSet("bulkassign import", a.stderr)
	cfg.RegisterRedis(fs, false)
	cfg.RegisterAPI(fs) // the team member list, for member emails and --preflight
	format := fs.String("format", "", "input format: csv, json or jsonl (default: from the extension, else sniffed)")
	name := fs.String("name", "", "label of the batch")
	dryRun := fs.Bool("dry-run", false, "validate and print what would be queued, queue nothing")
	members := registerMemberFlags(fs)
	recordPrevious := fs.Bool("record-previous", false, recordPreviousHelp)
	return &ffcli.Command{
		Name:       "import",
		ShortUsage: "bulkassign import --redis URL [flags] FILE",
		ShortHelp:  "validate a file and queue it as a batch; the batch id is the last line on stdout",
		FlagSet:    fs,
		Options:    envOptions,
		Exec: func(ctx context.Context, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("import: want one FILE argument (or - for stdin), got %d", len(args))
			}
			defer limitImportMemory()()
			f, err := importer.ParseFormat(*format)
			if err != nil {
				return err
			}
			in, err := a.open(args[0])
			if err != nil {
				return err
			}
			defer in.Close()
			opts, err := members.options(importer.Options{File: args[0], Format: f, Name: *name, DryRun: *dryRun, RecordPrevious: *recordPrevious}, cfg, false)
			if err != nil {
				return err
			}
			if *dryRun {
				sum, err := importer.New(nil, nil, "").Import(ctx, in, opts)
				if err != nil {
					return err
				}
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(sum)
			}
			q, err := openQueue(ctx, cfg, false)
			if err != nil {
				return err
			}
			defer q.close()
			sum, err := q.importer(cfg).Import(ctx, in, opts)
			if err != nil {
				return err
			}
			printImport(a.stderr, sum)
			fmt.Fprintln(a.stdout, sum.BatchID)
			return nil
		},
	}
}

// importMemoryLimit is the soft memory limit of a command that only imports
// a file: a plan is about 106 MB live for 1,000,000 contacts, and without a
// limit GOGC=100 lets the heap grow to twice the live heap before it
// collects: 240 MiB peak RSS; with this limit 169 MiB (docs/bench.md,
// "Import memory"). Past the limit the GC runs more often (the runtime caps
// it at about half the CPU), so a larger file imports more slowly rather
// than fails.
const importMemoryLimit = 160 << 20

// limitImportMemory sets importMemoryLimit as the soft memory limit unless
// GOMEMLIMIT sets one, and returns a func that restores the limit before
// (tests call run many times in one process).
func limitImportMemory() (restore func()) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return func() {}
	}
	prev := debug.SetMemoryLimit(importMemoryLimit)
	return func() { debug.SetMemoryLimit(prev) }
}

func (a *app) workerCommand() *ffcli.Command {
	cfg := config.Default()
	fs := newFlagSet("bulkassign worker", a.stderr)
	cfg.RegisterAPI(fs)
	cfg.RegisterRedis(fs, false)
	cfg.RegisterWorker(fs)
	fs.StringVar(&cfg.LogLevel, "log-level", "info", "debug, info, warn or error")
	return &ffcli.Command{
		Name:       "worker",
		ShortUsage: "bulkassign worker --redis URL [flags]",
		ShortHelp:  "process queued batches until stopped (SIGTERM drains in-flight calls)",
		LongHelp: `Runs an asynq server that applies every queued batch. Start as many as
you like, on as many machines: --rate is the total for the API key across
all of them. The API key comes from this process's own settings
(BULKASSIGN_API_KEY) and is never written to Redis.`,
		FlagSet: fs,
		Options: envOptions,
		Exec: func(ctx context.Context, args []string) error {
			if cfg.APIKey == "" {
				return errors.New("no API key: set BULKASSIGN_API_KEY (or --api-key)")
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			log, err := newLogger(a.stderr, cfg.LogLevel)
			if err != nil {
				return err
			}
			q, err := openQueue(ctx, cfg, false)
			if err != nil {
				return err
			}
			defer q.close()
			w, err := newWorker(q, cfg, log, nil)
			if err != nil {
				return err
			}
			if err := w.srv.Start(w.mux); err != nil {
				return fmt.Errorf("start worker: %w", err)
			}
			log.Info("worker started", slog.String("redis", cfg.RedisDisplay()), slog.String("queue", cfg.Namespace),
				slog.Int("concurrency", cfg.Concurrency), slog.Float64("rate", cfg.Rate))
			select {
			case <-ctx.Done():
				log.Info("stopping: letting in-flight calls finish")
			case <-w.client.Refused():
				log.Error("the CRM refused the API key: stopping")
			}
			w.srv.Shutdown()
			log.Info("worker stopped")
			select {
			case <-w.client.Refused():
				return errors.New("the CRM refused the API key (HTTP 401/403): fix BULKASSIGN_API_KEY, restart the workers, then `bulkassign resume ID` each paused batch (see `bulkassign batches`)")
			default:
				return nil
			}
		},
	}
}

func (a *app) reportCommand() *ffcli.Command {
	cfg := config.Default()
	fs := newFlagSet("bulkassign report", a.stderr)
	cfg.RegisterRedis(fs, false)
	cfg.RegisterOutput(fs)
	wait := fs.Bool("wait", false, "wait until the batch is finished, showing progress")
	every := fs.Duration("progress-every", 5*time.Second, "how often to print a progress line when stderr is not a terminal")
	return &ffcli.Command{
		Name:       "report",
		ShortUsage: "bulkassign report --redis URL [--wait] [--out DIR] ID",
		ShortHelp:  "write a batch's report; exit 0 all succeeded, 2 some failed or invalid, 1 unknown batch",
		FlagSet:    fs,
		Options:    envOptions,
		Exec: func(ctx context.Context, args []string) error {
			q, b, err := a.openBatch(ctx, cfg, args)
			if err != nil {
				return err
			}
			defer q.close()
			var werr error
			if *wait {
				b, werr = watch(ctx, q.store, b.ID, a.stderr, *every)
			}
			return a.finish(q, cfg, b, werr)
		},
	}
}

// openBatch checks the one ID argument, opens the queue and reads the
// batch; the caller closes the queue.
func (a *app) openBatch(ctx context.Context, cfg config.Config, args []string) (*queue, jobs.Batch, error) {
	if len(args) != 1 {
		return nil, jobs.Batch{}, fmt.Errorf("want one batch ID argument, got %d", len(args))
	}
	if !report.ValidBatchID(args[0]) {
		return nil, jobs.Batch{}, fmt.Errorf("batch id %q: ids are letters, digits, - and _ (see bulkassign batches)", args[0])
	}
	q, err := openQueue(ctx, cfg, false)
	if err != nil {
		return nil, jobs.Batch{}, err
	}
	b, err := q.store.Get(ctx, args[0])
	if err != nil {
		q.close()
		return nil, jobs.Batch{}, err
	}
	return q, b, nil
}

func (a *app) batchesCommand() *ffcli.Command {
	cfg := config.Default()
	fs := newFlagSet("bulkassign batches", a.stderr)
	cfg.RegisterRedis(fs, false)
	return &ffcli.Command{
		Name:       "batches",
		ShortUsage: "bulkassign batches --redis URL",
		ShortHelp:  "list batches with status, progress, rate and age",
		FlagSet:    fs,
		Options:    envOptions,
		Exec: func(ctx context.Context, args []string) error {
			q, err := openQueue(ctx, cfg, false)
			if err != nil {
				return err
			}
			defer q.close()
			ids, err := q.store.IDs(ctx)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(a.stdout, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tSTATUS\tDONE\tSUCCEEDED\tFAILED\tINVALID\tROWS/S\tAGE")
			now := time.Now()
			for _, id := range ids {
				b, err := q.store.Get(ctx, id)
				if errors.Is(err, jobs.ErrNotFound) {
					continue // expired after its retention
				}
				if err != nil {
					return err
				}
				status := b.Status
				if b.PauseReason != "" && b.Status == jobs.BatchPaused {
					status += " (" + b.PauseCode + ")"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d (%.0f%%)\t%d\t%d\t%d\t%.1f\t%s\n",
					b.ID, b.Name, status, b.Done(), b.Rows, b.Percent(),
					b.Succeeded, b.Failed, b.Invalid, b.RowsPerSecond(now), now.Sub(b.CreatedAt).Round(time.Second))
			}
			return tw.Flush()
		},
	}
}

// controlCommand is pause, resume or cancel.
func (a *app) controlCommand(name, help, status string) *ffcli.Command {
	cfg := config.Default()
	fs := newFlagSet("bulkassign "+name, a.stderr)
	cfg.RegisterRedis(fs, false)
	return &ffcli.Command{
		Name:       name,
		ShortUsage: "bulkassign " + name + " --redis URL ID",
		ShortHelp:  help,
		FlagSet:    fs,
		Options:    envOptions,
		Exec: func(ctx context.Context, args []string) error {
			q, b, err := a.openBatch(ctx, cfg, args)
			if err != nil {
				return err
			}
			defer q.close()
			id := b.ID
			if jobs.Finished(b.Status) {
				return fmt.Errorf("batch %s is already %s", id, b.Status)
			}
			if b.Status == jobs.BatchImporting {
				return fmt.Errorf("batch %s is still importing; try again when it runs", id)
			}
			reason := ""
			if status == jobs.BatchPaused {
				reason = "paused by an operator"
			}
			if err := q.store.SetStatus(ctx, id, status, "", reason); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "batch %s %s\n", id, status)
			if status == jobs.BatchCancelled {
				fmt.Fprintf(a.stdout, "rows not yet sent will not be; `bulkassign report %s` lists them as not processed\n", id)
			}
			return nil
		},
	}
}

func (a *app) dlqCommand() *ffcli.Command {
	cfg := config.Default()
	fs := newFlagSet("bulkassign dlq", a.stderr)
	cfg.RegisterRedis(fs, false)
	sub := func(name, usage, help string, exec func(context.Context, *queue, jobs.Batch) error) *ffcli.Command {
		sfs := newFlagSet("bulkassign dlq "+name, a.stderr)
		cfg.RegisterRedis(sfs, false)
		return &ffcli.Command{
			Name: name, ShortUsage: usage, ShortHelp: help, FlagSet: sfs, Options: envOptions,
			Exec: func(ctx context.Context, args []string) error {
				q, b, err := a.openBatch(ctx, cfg, args)
				if err != nil {
					return err
				}
				defer q.close()
				return exec(ctx, q, b)
			},
		}
	}
	return &ffcli.Command{
		Name:       "dlq",
		ShortUsage: "bulkassign dlq list|retry|export --redis URL ID",
		ShortHelp:  "list, retry and export a batch's dead-lettered rows",
		FlagSet:    fs,
		Options:    envOptions,
		Subcommands: []*ffcli.Command{
			sub("list", "bulkassign dlq list --redis URL ID", "list the contacts whose rows ran out of attempts", func(ctx context.Context, q *queue, b jobs.Batch) error {
				return a.dlqList(ctx, q, b.ID)
			}),
			sub("retry", "bulkassign dlq retry --redis URL ID", "queue dead-lettered rows again (the counters move back with them)", func(ctx context.Context, q *queue, b jobs.Batch) error {
				id := b.ID
				n, err := jobs.Retry(ctx, q.store, q.client, asynq.NewInspector(q.opt), cfg.Namespace, id)
				if err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "batch %s: %d rows queued again; follow with: bulkassign report --wait %s\n", id, n, id)
				return nil
			}),
			sub("export", "bulkassign dlq export --redis URL ID > dead.csv", "write dead-lettered rows as a CSV that can be imported again", func(ctx context.Context, q *queue, b jobs.Batch) error {
				return a.dlqExport(ctx, q, b)
			}),
		},
		Exec: func(context.Context, []string) error { return flag.ErrHelp },
	}
}

// deadEntries reads the dead-lettered rows of a batch, in line order.
func deadEntries(ctx context.Context, q *queue, id string) ([]jobs.Entry, error) {
	dead, err := q.store.Dead(ctx, id)
	if err != nil {
		return nil, err
	}
	var lines []int
	for _, p := range dead {
		for _, op := range p.Ops {
			lines = append(lines, op.Lines...)
		}
	}
	if len(lines) == 0 {
		return nil, nil // and no HMGET without fields, which Redis refuses
	}
	slices.Sort(lines)
	entries, err := q.store.Lookup(ctx, id, lines)
	if err != nil {
		return nil, err
	}
	// Rows of a dead contact that succeeded before it failed stay out.
	return slices.DeleteFunc(entries, func(e jobs.Entry) bool { return e.Result.Status != jobs.StatusFailed }), nil
}

func (a *app) dlqList(ctx context.Context, q *queue, id string) error {
	entries, err := deadEntries(ctx, q, id)
	if err != nil {
		return err
	}
	if len(entries) == 0 {
		fmt.Fprintf(a.stdout, "batch %s has no dead-lettered rows\n", id)
		return nil
	}
	tw := tabwriter.NewWriter(a.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LINE\tCONTACT\tMEMBER\tREPLACE\tATTEMPTS\tREASON\tERROR")
	for _, e := range entries {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\n", e.Row.Line, e.Row.ContactID, e.Row.MemberID,
			e.Row.ReplaceCell(), e.Result.Attempts, e.Result.Reason, e.Result.Error)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(a.stderr, "%d dead-lettered rows; `bulkassign dlq retry %s` queues them again\n", len(entries), id)
	return nil
}

func (a *app) dlqExport(ctx context.Context, q *queue, b jobs.Batch) error {
	entries, err := deadEntries(ctx, q, b.ID)
	if err != nil {
		return err
	}
	return report.WriteFailed(a.stdout, b.Extras, seqOf(entries))
}

// seqOf yields entries as report.WriteFailed takes them.
func seqOf(entries []jobs.Entry) func(func(jobs.Entry, error) bool) {
	return func(yield func(jobs.Entry, error) bool) {
		for _, e := range entries {
			if !yield(e, nil) {
				return
			}
		}
	}
}
