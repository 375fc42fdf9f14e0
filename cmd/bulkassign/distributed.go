package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/bulkassign/bulkassign/config"
	"github.com/bulkassign/bulkassign/importer"
	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/metrics"
	"github.com/bulkassign/bulkassign/report"
	"github.com/bulkassign/bulkassign/schedule"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func (a *app) importCommand() *cobra.Command {
	cfg := config.Default()
	var (
		format, name                  string
		dryRun, recordPrevious, again bool
		members                       *memberFlags
		notice                        *notifyFlags
	)
	cmd := &cobra.Command{
		Use:   "import FILE",
		Short: "validate a file and queue it as a batch; the batch id is the last line on stdout",
		Long: `Validates the whole file and queues it as a batch in Redis for the workers
(bulkassign worker); the batch id is the last line on stdout. FILE may be -
for stdin. --dry-run validates only and prints what would be queued. A file
queued already (the same content, for the same --api-url) within --retention
is refused, naming its batch, unless --again.`,
		Example: `  id=$(bulkassign import --redis redis://localhost:6379/0 assignments.csv)
  bulkassign report "$id" --wait --redis redis://localhost:6379/0`,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if len(args) != 1 {
				return fmt.Errorf("import: want one FILE argument (or - for stdin), got %d", len(args))
			}
			defer limitImportMemory()()
			f, err := importer.ParseFormat(format)
			if err != nil {
				return err
			}
			opts, err := members.options(importer.Options{File: args[0], Format: f, IDFormat: cfg.IDFormat, Name: name, DryRun: dryRun, RecordPrevious: recordPrevious}, cfg, false)
			if err != nil {
				return err
			}
			target, notifies, err := notice.target()
			if err != nil {
				return err
			}
			open := func() (io.ReadCloser, error) { return a.open(args[0]) }
			if dryRun {
				in, err := open()
				if err != nil {
					return err
				}
				defer in.Close()
				sum, err := importer.New(nil, nil, "").Import(ctx, in, opts)
				if err != nil {
					return err
				}
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(sum)
			}
			fp, open, cleanup, err := fingerprinted(args[0], open, cfg.APIURL)
			if err != nil {
				return err
			}
			defer cleanup()
			q, err := openQueue(ctx, cfg, false)
			if err != nil {
				return err
			}
			defer q.close()
			if !again {
				if err := q.store.CheckFile(ctx, fp); err != nil {
					return duplicate(err)
				}
			}
			in, err := open()
			if err != nil {
				return err
			}
			defer in.Close()
			sum, err := q.importer(cfg).Import(ctx, in, opts)
			if err != nil {
				return err
			}
			a.remember(ctx, q, fp, sum.BatchID, cliOrigin("import", nil))
			printImport(a.stderr, sum)
			if notifies {
				attachNotify(ctx, a.stderr, q.notifier(cfg, a.warnLogger()), sum.BatchID, target)
			}
			fmt.Fprintln(a.stdout, sum.BatchID)
			return nil
		},
	}
	flagGroup(cmd.Flags(), groupInput, func(fs *pflag.FlagSet) {
		fs.StringVar(&format, "format", "", formatHelp)
		cfg.RegisterInput(fs)
		fs.StringVar(&name, "name", "", "`LABEL` of the batch")
		fs.BoolVar(&dryRun, "dry-run", false, "validate and print what would be queued, queue nothing")
		members = registerMemberFlags(fs)
		fs.BoolVar(&recordPrevious, "record-previous", false, recordPreviousHelp)
		notice = registerNotifyFlags(fs)
		fs.BoolVar(&again, "again", false, "queue the file even if the same file (same content, same --api-url) was queued within --retention")
	})
	flagGroup(cmd.Flags(), groupQueue, func(fs *pflag.FlagSet) { cfg.RegisterRedis(fs, false) })
	// The team member list, for member emails and --preflight.
	flagGroup(cmd.Flags(), groupAPI, cfg.RegisterAPI)
	return cmd
}

// importMemoryLimit is the soft memory limit of a command that only imports
// a file: a plan of 1,000,000 UUID contacts is some 60 MB live, and the GC
// pace of main (gcPercent) would let the heap grow to five times that
// before it collects; with this limit `import` of 1,000,000 rows peaks at
// about 175 MiB of RSS. Past the limit the GC runs more often (the runtime
// caps it at about half the CPU), so a larger file imports more slowly
// rather than fails.
const importMemoryLimit = 128 << 20

// limitImportMemory sets importMemoryLimit as the soft memory limit unless
// GOMEMLIMIT sets one, and returns a func that restores the limit before
// (tests call run many times in one process). The restore collects the
// import's garbage first: the GC would otherwise let the heap grow to
// gcPercent of the plan just dropped before it looked again (run: 270 MB
// of heap after 500,000 rows).
func limitImportMemory() (restore func()) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return func() {}
	}
	prev := debug.SetMemoryLimit(importMemoryLimit)
	return func() {
		runtime.GC()
		debug.SetMemoryLimit(prev)
	}
}

func (a *app) workerCommand() *cobra.Command {
	cfg := config.Default()
	cfg.LogLevel = "info"
	var metricsAddr string
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "process queued batches until stopped (SIGTERM drains in-flight calls)",
		Long: `Runs an asynq server that applies every queued batch. Start as many as
you like, on as many machines: --rate is the total for the API key across
all of them. The API key comes from this process's own settings
(BULKASSIGN_API_KEY) and is never written to Redis.

With --metrics-addr the worker serves, without a token (keep the address
private):
  /metrics  Prometheus metrics: calls, latency, waits, rows, tasks in flight
  /healthz  200 while the process answers
  /readyz   200 while Redis answers and the CRM has not refused the key; else 503`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
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
			var m *metrics.Metrics
			if metricsAddr != "" {
				m = metrics.New()
			}
			w, err := newWorker(q, cfg, log, m, 0)
			if err != nil {
				return err
			}
			if m != nil {
				stop, err := serveMetrics(ctx, metricsAddr, metrics.NewHandler(m, metrics.Probes{Redis: q.rdb, Refused: w.client.Refused()}), log)
				if err != nil {
					return err
				}
				// After w.stop: the probes answer while in-flight calls drain.
				defer stop()
			}
			if err := w.start(ctx); err != nil {
				return err
			}
			log.Info("worker started", slog.String("redis", cfg.RedisDisplay()), slog.String("queue", cfg.Namespace),
				slog.Int("concurrency", cfg.Concurrency), slog.Float64("rate", cfg.Rate))
			select {
			case <-ctx.Done():
				log.Info("stopping: letting in-flight calls finish")
			case <-w.client.Refused():
				log.Error("the CRM refused the API key: stopping")
			}
			w.stop()
			log.Info("worker stopped")
			select {
			case <-w.client.Refused():
				return errors.New("the CRM refused the API key (HTTP 401/403): fix BULKASSIGN_API_KEY, restart the workers, then `bulkassign resume ID` each paused batch (see `bulkassign batches`)")
			default:
				return nil
			}
		},
	}
	flagGroup(cmd.Flags(), groupAPI, cfg.RegisterAPI)
	flagGroup(cmd.Flags(), groupQueue, func(fs *pflag.FlagSet) { cfg.RegisterRedis(fs, false) })
	flagGroup(cmd.Flags(), groupWorker, cfg.RegisterWorker)
	flagGroup(cmd.Flags(), groupWorker, func(fs *pflag.FlagSet) {
		fs.StringVar(&metricsAddr, "metrics-addr", "", "`ADDRESS` (host:port, :9090 for every interface) to serve /metrics, /healthz and /readyz on; empty serves none")
	})
	flagGroup(cmd.Flags(), groupOutput, registerLogLevel(&cfg))
	return cmd
}

// serveMetrics serves h on addr until stop is called.
func serveMetrics(ctx context.Context, addr string, h http.Handler, log *slog.Logger) (stop func(), err error) {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr: %w", err)
	}
	hs := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", slog.Any("error", err))
		}
	}()
	log.Info("serving metrics and health checks", slog.String("addr", ln.Addr().String()))
	return func() {
		_ = hs.Close()
		<-served
	}, nil
}

func (a *app) reportCommand() *cobra.Command {
	cfg := config.Default()
	var (
		wait  bool
		every time.Duration
		out   *outputFlags
	)
	cmd := &cobra.Command{
		Use:   "report ID",
		Short: "write a batch's report; exit 0 all succeeded, 2 some failed, 1 fatal",
		Long: `Writes summary.json, succeeded.csv and failed.csv of the batch to
OUT/<batch id>/, and prints the summary (with --json: summary.json, and the
report folder as reportDir). --wait first follows the batch until it is
finished. Exit 0 when every row succeeded, 2 when some failed or were
invalid, 1 for an unknown batch or another fatal error.`,
		Example: `  bulkassign report 01JB2X... --wait --out reports --redis redis://localhost:6379/0`,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			asJSON, err := out.isJSON()
			if err != nil {
				return err
			}
			q, b, err := a.openBatch(ctx, cfg, args)
			if err != nil {
				return err
			}
			defer q.close()
			var werr error
			if wait {
				b, werr = watch(ctx, q.store, b.ID, a.stderr, every)
			}
			summarize := printSummary
			if asJSON {
				summarize = printSummaryJSON
			}
			return a.finish(q, cfg, b, werr, summarize, "")
		},
	}
	flagGroup(cmd.Flags(), groupOutput, func(fs *pflag.FlagSet) {
		fs.BoolVar(&wait, "wait", false, "wait until the batch is finished, showing progress")
		registerProgressFlag(fs, &every)
		cfg.RegisterOutput(fs)
		out = registerOutputFlags(fs)
	})
	flagGroup(cmd.Flags(), groupQueue, func(fs *pflag.FlagSet) { cfg.RegisterRedis(fs, false) })
	return cmd
}

// registerLogLevel returns a flagGroup register func for --log-level
// alone, with cfg's level as its default.
func registerLogLevel(cfg *config.Config) func(*pflag.FlagSet) {
	return func(fs *pflag.FlagSet) {
		fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "`LEVEL` of the logs: debug, info, warn or error")
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

func (a *app) batchesCommand() *cobra.Command {
	cfg := config.Default()
	var out *outputFlags
	cmd := &cobra.Command{
		Use:   "batches",
		Short: "list batches with status, progress, rate and age",
		Long: `Lists every batch: status, progress, rate, age and who started it. A
running batch no worker has touched yet (no row done, no call made) shows
as queued. After the table come the schedule ticks that queued no batch,
skipped or failed, with the reason: up to 3 of each schedule's last 10
(bulkassign schedule --runs N lists every tick). --json prints the
batches alone, one array, each with the status the serve API gives it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			asJSON, err := out.isJSON()
			if err != nil {
				return err
			}
			q, err := openQueue(ctx, cfg, false)
			if err != nil {
				return err
			}
			defer q.close()
			ids, err := q.store.IDs(ctx)
			if err != nil {
				return err
			}
			var batches []jobs.Batch
			for _, id := range ids {
				b, err := q.store.Get(ctx, id)
				if errors.Is(err, jobs.ErrNotFound) {
					continue // expired after its retention
				}
				if err != nil {
					return err
				}
				batches = append(batches, b)
			}
			if asJSON {
				return writeBatchesJSON(a.stdout, batches, time.Now())
			}
			// The ticks are an extra: the batches are shown without them.
			ticks, err := unqueuedTicks(ctx, q.rdb, cfg.Namespace)
			if err != nil {
				fmt.Fprintf(a.stderr, "warning: the schedule ticks are not shown: %v\n", err)
			}
			if err := writeBatchesTable(a.stdout, batches, time.Now()); err != nil {
				return err
			}
			return writeUnqueuedTicks(a.stdout, ticks)
		},
	}
	flagGroup(cmd.Flags(), groupOutput, func(fs *pflag.FlagSet) { out = registerOutputFlags(fs) })
	flagGroup(cmd.Flags(), groupQueue, func(fs *pflag.FlagSet) { cfg.RegisterRedis(fs, false) })
	return cmd
}

// writeBatchesTable writes batches as an aligned table.
func writeBatchesTable(w io.Writer, batches []jobs.Batch, now time.Time) error {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tSTATUS\tDONE\tSUCCEEDED\tFAILED\tINVALID\tROWS/S\tAGE\tSTARTED BY")
	for _, b := range batches {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d (%.0f%%)\t%d\t%d\t%d\t%.1f\t%s\t%s\n",
			b.ID, cell(b.Name), tableStatus(b), b.Done(), b.Rows, b.Percent(),
			b.Succeeded, b.Failed, b.Invalid, b.RowsPerSecond(now), now.Sub(b.CreatedAt).Round(time.Second), cell(b.Origin.String()))
	}
	return tw.Flush()
}

// tableStatus is a batch's status as the batches table shows it: a
// paused batch with its pause code when it has one (an operator's pause
// has none); a running batch no worker has touched yet, no row applied
// or failed (invalid rows are final from the import on) and no call made,
// as queued.
func tableStatus(b jobs.Batch) string {
	switch {
	case b.Status == jobs.BatchPaused && b.PauseCode != "":
		return b.Status + " (" + b.PauseCode + ")"
	case b.Status == jobs.BatchRunning && b.Succeeded+b.Failed == 0 && b.APICalls == 0:
		return "queued"
	}
	return b.Status
}

// The schedule ticks `batches` shows after its table: of each schedule's
// newest ticksRead records, the skipped and failed ones, at most
// ticksShown.
const (
	ticksRead  = 10
	ticksShown = 3
)

// unqueuedTicks reads the recent ticks that queued no batch (skipped or
// failed) of every schedule with records in namespace: schedules by name,
// each's ticks newest first.
func unqueuedTicks(ctx context.Context, rdb redis.UniversalClient, namespace string) ([]schedule.Run, error) {
	names, err := schedule.Recorded(ctx, rdb, namespace)
	if err != nil {
		return nil, err
	}
	var out []schedule.Run
	for _, name := range names {
		runs, err := schedule.Runs(ctx, rdb, namespace, name, ticksRead)
		if err != nil {
			return nil, err
		}
		runs = slices.DeleteFunc(runs, func(r schedule.Run) bool { return r.Outcome == schedule.RunQueued })
		out = append(out, runs[:min(len(runs), ticksShown)]...)
	}
	return out, nil
}

// writeUnqueuedTicks writes ticks, from unqueuedTicks, as a second table;
// nothing when there are none.
func writeUnqueuedTicks(w io.Writer, ticks []schedule.Run) error {
	if len(ticks) == 0 {
		return nil
	}
	fmt.Fprintf(w, "\nSchedule ticks that queued no batch (up to %d of each schedule's last %d; every tick: bulkassign schedule --runs %d):\n",
		ticksShown, ticksRead, 2*ticksRead)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCHEDULE\tTICK\tOUTCOME\tREASON")
	for _, r := range ticks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Schedule, r.Tick.UTC().Format(time.RFC3339), r.Label(), cell(r.Reason))
	}
	return tw.Flush()
}

// batchJSON is a batch as `batches --json` prints it; the names are those
// of the serve API's batch object.
type batchJSON struct {
	ID          string           `json:"batchId"`
	Name        string           `json:"name"`
	Source      string           `json:"source"`
	Status      string           `json:"status"`
	PauseCode   string           `json:"pauseCode,omitempty"`
	PauseReason string           `json:"pauseReason,omitempty"`
	Rows        int64            `json:"rows"`
	Done        int64            `json:"done"`
	Succeeded   int64            `json:"succeeded"`
	Failed      int64            `json:"failed"`
	Invalid     int64            `json:"invalid"`
	Contacts    int64            `json:"contacts"`
	APICalls    int64            `json:"apiCalls"`
	Retries     int64            `json:"retries"`
	RateLimited int64            `json:"rateLimited"`
	Percent     float64          `json:"percent"`
	RowsPerSec  float64          `json:"rowsPerSecond"`
	CreatedAt   time.Time        `json:"createdAt"`
	StartedAt   *time.Time       `json:"startedAt"`
	FinishedAt  *time.Time       `json:"finishedAt"`
	Errors      map[string]int64 `json:"errors"`

	// Origin says who started the batch and how; absent when unknown.
	Origin *jobs.Origin `json:"origin,omitempty"`
}

// writeBatchesJSON writes batches as one JSON array.
func writeBatchesJSON(w io.Writer, batches []jobs.Batch, now time.Time) error {
	out := make([]batchJSON, 0, len(batches))
	for _, b := range batches {
		v := batchJSON{
			ID: b.ID, Name: b.Name, Source: b.Source, Status: b.Status, PauseCode: b.PauseCode, PauseReason: b.PauseReason,
			Rows: b.Rows, Done: b.Done(), Succeeded: b.Succeeded, Failed: b.Failed, Invalid: b.Invalid, Contacts: b.Contacts,
			APICalls: b.APICalls, Retries: b.Retries, RateLimited: b.RateLimited,
			Percent: b.Percent(), RowsPerSec: b.RowsPerSecond(now),
			CreatedAt: b.CreatedAt, StartedAt: timeOrNil(b.StartedAt), FinishedAt: timeOrNil(b.FinishedAt),
			Errors: b.Errors,
		}
		if v.Errors == nil {
			v.Errors = map[string]int64{}
		}
		if !b.Origin.IsZero() {
			v.Origin = &b.Origin
		}
		out = append(out, v)
	}
	return writeJSON(w, out)
}

func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// writeJSON writes v indented, as the commands' --json does.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// cell makes s safe in a table cell: a tab or line break would break the
// columns.
func cell(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

// onBatch is the RunE of a command that acts on the one batch its ID
// argument names: it opens the queue, reads the batch and runs act. cfg is
// read when the command runs, after its flags are parsed.
func (a *app) onBatch(cfg *config.Config, act func(context.Context, *queue, jobs.Batch) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		q, b, err := a.openBatch(cmd.Context(), *cfg, args)
		if err != nil {
			return err
		}
		defer q.close()
		return act(cmd.Context(), q, b)
	}
}

// controlCommand is pause, resume or cancel.
func (a *app) controlCommand(name, help, status string) *cobra.Command {
	cfg := config.Default()
	cmd := &cobra.Command{
		Use:   name + " ID",
		Short: help,
		RunE: a.onBatch(&cfg, func(ctx context.Context, q *queue, b jobs.Batch) error {
			id := b.ID
			var err error
			switch status {
			case jobs.BatchRunning:
				_, err = q.tasks().Resume(ctx, id)
			case jobs.BatchPaused:
				_, err = q.store.SetStatus(ctx, id, status, "", "paused by an operator")
			default:
				_, err = q.store.SetStatus(ctx, id, status, "", "")
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "batch %s %s\n", id, status)
			if status == jobs.BatchCancelled {
				q.notifier(cfg, a.warnLogger()).Ended(id)
				fmt.Fprintf(a.stdout, "rows not yet sent will not be; `bulkassign report %s` lists them as not processed\n", id)
			}
			return nil
		}),
	}
	flagGroup(cmd.Flags(), groupQueue, func(fs *pflag.FlagSet) { cfg.RegisterRedis(fs, false) })
	return cmd
}

func (a *app) deleteCommand() *cobra.Command {
	cfg := config.Default()
	cmd := &cobra.Command{
		Use:   "delete ID",
		Short: "remove a batch and its queued tasks, in any state (e.g. an import that died)",
		Long: `Removes the batch's queued tasks, then every key of it in Redis: its
record, rows and results. A task running at that moment ends without
another call. Nothing of the batch can be reported afterwards: write its
report first (bulkassign report ID) if you want to keep it.`,
		RunE: a.onBatch(&cfg, func(ctx context.Context, q *queue, b jobs.Batch) error {
			n, err := q.tasks().Delete(ctx, b.ID)
			if err != nil {
				return fmt.Errorf("delete batch %s: %w (run the command again to finish)", b.ID, err)
			}
			fmt.Fprintf(a.stdout, "batch %s deleted: it was %s with %d of %d rows done; %d queued tasks removed\n",
				b.ID, b.Status, b.Done(), b.Rows, n)
			return nil
		}),
	}
	flagGroup(cmd.Flags(), groupQueue, func(fs *pflag.FlagSet) { cfg.RegisterRedis(fs, false) })
	return cmd
}

func (a *app) dlqCommand() *cobra.Command {
	cfg := config.Default()
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "list, retry and export a batch's dead-lettered rows",
		Long: `Rows that ran out of attempts are dead-lettered (asynq's archive) and
reported as failed. dlq lists them, queues them again (the counters move
back with them), or exports them as a CSV that can be imported again.`,
		Example: `  bulkassign dlq list ID --redis redis://localhost:6379/0
  bulkassign dlq export ID > dead.csv`,
	}
	// The subcommands share the Redis flags: `dlq --redis URL list ID`
	// works as well as `dlq list ID --redis URL`.
	flagGroup(cmd.PersistentFlags(), groupQueue, func(fs *pflag.FlagSet) { cfg.RegisterRedis(fs, false) })
	sub := func(name, short string, exec func(context.Context, *queue, jobs.Batch) error) *cobra.Command {
		return &cobra.Command{Use: name + " ID", Short: short, RunE: a.onBatch(&cfg, exec)}
	}
	var out *outputFlags
	list := sub("list", "list the rows that ran out of attempts", func(ctx context.Context, q *queue, b jobs.Batch) error {
		asJSON, err := out.isJSON()
		if err != nil {
			return err
		}
		return a.dlqList(ctx, q, b.ID, asJSON)
	})
	flagGroup(list.Flags(), groupOutput, func(fs *pflag.FlagSet) { out = registerOutputFlags(fs) })
	cmd.AddCommand(
		list,
		sub("retry", "queue dead-lettered rows again (the counters move back with them)", func(ctx context.Context, q *queue, b jobs.Batch) error {
			id := b.ID
			n, err := q.tasks().Retry(ctx, id)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "batch %s: %d rows queued again; follow with: bulkassign report --wait %s\n", id, n, id)
			return nil
		}),
		sub("export", "write dead-lettered rows as a CSV that can be imported again", func(ctx context.Context, q *queue, b jobs.Batch) error {
			return a.dlqExport(ctx, q, b)
		}),
	)
	return cmd
}

// deadEntries reads the dead-lettered rows of a batch, in line order.
func deadEntries(ctx context.Context, q *queue, id string) ([]jobs.Entry, error) {
	dead, err := q.store.Dead(ctx, id)
	if err != nil {
		return nil, err
	}
	var lines []int
	for _, c := range dead {
		for _, op := range c.Ops {
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

// deadRowJSON is a dead-lettered row as `dlq list --json` prints it.
type deadRowJSON struct {
	Line       int    `json:"line"`
	ContactID  string `json:"aiContactId"`
	MemberID   string `json:"teamMemberId"`
	Replace    bool   `json:"removeExistingAgents"`
	Attempts   int    `json:"attempts"`
	HTTPStatus int    `json:"httpStatus,omitempty"`
	Reason     string `json:"reason"`
	Error      string `json:"error"`
}

func (a *app) dlqList(ctx context.Context, q *queue, id string, asJSON bool) error {
	entries, err := deadEntries(ctx, q, id)
	if err != nil {
		return err
	}
	if asJSON {
		rows := make([]deadRowJSON, len(entries))
		for i, e := range entries {
			rows[i] = deadRowJSON{Line: e.Row.Line, ContactID: e.Row.ContactID, MemberID: e.Row.MemberID, Replace: e.Row.Replace,
				Attempts: e.Result.Attempts, HTTPStatus: e.Result.HTTPStatus, Reason: e.Result.Reason, Error: e.Result.Error}
		}
		return writeJSON(a.stdout, rows)
	}
	if len(entries) == 0 {
		fmt.Fprintf(a.stdout, "batch %s has no dead-lettered rows\n", id)
		return nil
	}
	tw := tabwriter.NewWriter(a.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LINE\tCONTACT\tMEMBER\tREPLACE\tATTEMPTS\tREASON\tERROR")
	for _, e := range entries {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\n", e.Row.Line, e.Row.ContactID, e.Row.MemberID,
			cell(e.Row.ReplaceCell()), e.Result.Attempts, e.Result.Reason, cell(e.Result.Error))
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
