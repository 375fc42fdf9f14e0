package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/bulkassign/bulkassign/config"
	"github.com/bulkassign/bulkassign/examples"
	"github.com/bulkassign/bulkassign/importer"
	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/report"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func (a *app) runCommand() *cobra.Command {
	cfg := config.Default()
	var (
		format, name   string
		recordPrevious bool
		simulate       bool
		progress       time.Duration
		members        *memberFlags
		sim            *simFlags
	)
	cmd := &cobra.Command{
		Use:   "run FILE",
		Short: "import, process and report a file in one process",
		Long: `Validates the whole file, queues one task per contact, applies them with
rate-limited workers, and writes summary.json, succeeded.csv and failed.csv
to OUT/<batch id>/. Exit 0 when every row succeeded, 2 when some failed or
were invalid, 1 on a fatal error (unusable file, refused API key, ...).

FILE may be - for stdin; with --simulate and no FILE, the built-in sample.
Without --redis or --redis-cluster the queue is embedded in this process.`,
		Example: `  bulkassign run --simulate
  BULKASSIGN_API_KEY=... bulkassign run assignments.csv --rate 20`,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			var file string
			open := func() (io.ReadCloser, error) { return a.open(file) }
			switch {
			case len(args) == 1:
				file = args[0]
			case len(args) == 0 && simulate:
				// The demo: the embedded sample against the simulator.
				file = examples.AssignmentsName
				open = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(examples.Assignments)), nil }
			default:
				return fmt.Errorf("run: want one FILE argument (or - for stdin), got %d", len(args))
			}
			if simulate {
				url, stop, err := sim.startInProcess(ctx, a.stderr)
				if err != nil {
					return err
				}
				defer stop()
				cfg.APIURL = url
			} else if cfg.APIKey == "" {
				return errors.New("no API key: set BULKASSIGN_API_KEY (or --api-key), or try --simulate")
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			opts, err := members.options(importer.Options{File: file, IDFormat: cfg.IDFormat, Name: name, RecordPrevious: recordPrevious}, cfg, simulate)
			if err != nil {
				return err
			}
			return a.run(ctx, cfg, open, opts, format, progress)
		},
	}
	flagGroup(cmd.Flags(), groupInput, func(fs *pflag.FlagSet) {
		fs.StringVar(&format, "format", "", formatHelp)
		cfg.RegisterInput(fs)
		fs.StringVar(&name, "name", "", "`LABEL` of the batch")
		members = registerMemberFlags(fs)
		fs.BoolVar(&recordPrevious, "record-previous", false, recordPreviousHelp)
	})
	flagGroup(cmd.Flags(), groupAPI, cfg.RegisterAPI)
	flagGroup(cmd.Flags(), groupQueue, func(fs *pflag.FlagSet) { cfg.RegisterRedis(fs, true) })
	flagGroup(cmd.Flags(), groupWorker, cfg.RegisterWorker)
	flagGroup(cmd.Flags(), groupOutput, func(fs *pflag.FlagSet) {
		cfg.RegisterOutput(fs)
		registerProgressFlag(fs, &progress)
	})
	flagGroup(cmd.Flags(), groupSimulator, func(fs *pflag.FlagSet) {
		fs.BoolVar(&simulate, "simulate", false, "start the built-in CRM simulator in-process and send the calls to it (no CRM, key or Redis needed)")
		sim = simulatorFlags(fs, "sim-")
	})
	return cmd
}

// run imports, applies and reports one file in this process; open gives
// the input.
func (a *app) run(ctx context.Context, cfg config.Config, open func() (io.ReadCloser, error), opts importer.Options, format string, every time.Duration) error {
	return a.runWith(ctx, cfg, open, opts, format, every, printSummary)
}

// runWith is run that prints the summary with summarize, which is also
// handed the report's folder.
func (a *app) runWith(ctx context.Context, cfg config.Config, open func() (io.ReadCloser, error), opts importer.Options, format string, every time.Duration,
	summarize func(io.Writer, report.Summary, string) error) error {
	log, err := newLogger(a.stderr, cfg.LogLevel)
	if err != nil {
		return err
	}
	if opts.Format, err = importer.ParseFormat(format); err != nil {
		return err
	}
	in, err := open()
	if err != nil {
		return err
	}
	defer in.Close()

	q, err := openQueue(ctx, cfg, true)
	if err != nil {
		return err
	}
	defer q.close()
	if !cfg.RedisGiven() {
		fmt.Fprintf(a.stderr, "queue: embedded, %s (nothing outlives this command; use --redis for a durable queue)\n", q.embedded)
	}

	// The workers start first: a batch runs as soon as the file is read
	// whole, while its tasks are still being queued.
	w, err := newWorker(q, cfg, log, nil)
	if err != nil {
		return err
	}
	if err := w.start(ctx); err != nil {
		return err
	}
	sum, err := q.importer(cfg).Import(ctx, in, opts)
	if err != nil {
		w.stop()
		return err
	}
	printImport(a.stderr, sum)
	b, werr := watch(ctx, q.store, sum.BatchID, a.stderr, every)
	w.stop()
	return a.finish(q, cfg, b, werr, summarize)
}

// finish writes the report of a batch that ended, or stopped, prints its
// summary on stdout with summarize, and returns the command's outcome.
func (a *app) finish(q *queue, cfg config.Config, b jobs.Batch, werr error, summarize func(io.Writer, report.Summary, string) error) error {
	if errors.Is(werr, errBatchLost) {
		return werr // nothing left in Redis to report
	}
	// The report is written even when the command was interrupted: what was
	// applied is known exactly, and the rest is reported as not processed.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := report.Dir(cfg.Out, b.ID)
	s, err := report.WriteBatch(ctx, q.store, b.ID, dir)
	if err != nil {
		return errors.Join(werr, err)
	}
	if err := summarize(a.stdout, s, dir); err != nil {
		return errors.Join(werr, err)
	}
	switch {
	case werr != nil:
		return werr
	case b.Status == jobs.BatchPaused && b.PauseCode == jobs.PauseUnauthorized:
		return fmt.Errorf("batch %s stopped: %s", b.ID, b.PauseReason)
	case s.Failed+s.Invalid > 0:
		return &exitError{code: exitPartial, err: fmt.Errorf("%d of %d rows failed or were invalid: see %s", s.Failed+s.Invalid, s.Rows, dir)}
	}
	return nil
}

// open opens the input file; "-" is stdin.
func (a *app) open(file string) (io.ReadCloser, error) {
	if file == "-" {
		return io.NopCloser(a.stdin), nil
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("open input: %w", err)
	}
	return f, nil
}

func printImport(w io.Writer, s importer.Summary) {
	fmt.Fprintf(w, "import: %s (%s): %d rows, %d valid, %d invalid, %d duplicates merged; %d contacts, %d calls to make\n",
		s.File, s.Format, s.Rows, s.Valid, s.Invalid, s.Merged, s.Contacts, s.Calls)
}

// printSummary writes the summary of a batch for people.
func printSummary(w io.Writer, s report.Summary, dir string) error {
	fmt.Fprintf(w, "batch %s %s: %d rows: %d succeeded, %d failed, %d invalid; %d API calls, %d retries, %d rate-limited, %.1fs\n",
		s.BatchID, s.Status, s.Rows, s.Succeeded, s.Failed, s.Invalid, s.APICalls, s.Retries, s.RateLimited, s.DurationSeconds)
	fmt.Fprintf(w, "report: %s\n", dir)
	if s.RollbackUnrestorable != nil {
		rollback := filepath.Join(dir, report.RollbackFile)
		if hasRows(rollback) {
			fmt.Fprintf(w, "rollback: `bulkassign run %s` restores the agents the changed contacts had before", rollback)
		} else {
			fmt.Fprint(w, "rollback: nothing to roll back: no contact the batch changed had an agent before")
		}
		if n := *s.RollbackUnrestorable; n > 0 {
			fmt.Fprintf(w, "; %d contacts cannot be restored: see %s", n, report.RollbackUnrestorableFile)
		}
		fmt.Fprintln(w)
	}
	return nil
}

// hasRows reports whether the CSV file at path has a line under its header.
func hasRows(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.FieldsPerRecord = -1
	_, err = r.Read() // the header
	if err == nil {
		_, err = r.Read()
	}
	return err == nil
}

// printSummaryJSON writes the summary of a batch as summary.json has it,
// with the report folder as reportDir.
func printSummaryJSON(w io.Writer, s report.Summary, dir string) error {
	return writeJSON(w, struct {
		report.Summary
		ReportDir string `json:"reportDir"`
	}{s, dir})
}

// Help of flags that more than one command has.
const (
	recordPreviousHelp = "read each contact's agents (GET .../contact/{id}/info, one more API call per contact) before changing them, so the report has a rollback.csv that restores them"
	formatHelp         = "`FORMAT` of the input: csv, json or jsonl (default: from the extension, else sniffed)"
)

// registerProgressFlag adds --progress-every to fs.
func registerProgressFlag(fs *pflag.FlagSet, every *time.Duration) {
	fs.DurationVar(every, "progress-every", 5*time.Second, "how often to print a progress line when stderr is not a terminal")
}
