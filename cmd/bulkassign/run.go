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
	"strings"
	"time"

	"github.com/bulkassign/bulkassign/config"
	"github.com/bulkassign/bulkassign/examples"
	"github.com/bulkassign/bulkassign/importer"
	"github.com/bulkassign/bulkassign/internal/redisproc"
	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/notify"
	"github.com/bulkassign/bulkassign/report"
	"github.com/bulkassign/bulkassign/worker"
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
		notice         *notifyFlags
		noticeWait     time.Duration
		rf             runFlags
	)
	cmd := &cobra.Command{
		Use:   "run FILE",
		Short: "import, process and report a file in one process",
		Long: `Validates the whole file, queues its contacts in chunks, applies them with
rate-limited workers, and writes summary.json, succeeded.csv and failed.csv
to OUT/<batch id>/. Exit 0 when every row succeeded, 2 when some failed or
were invalid, 1 on a fatal error (unusable file, refused API key, ...).

FILE may be - for stdin; with --simulate and no FILE, the built-in sample.
Without --redis or --redis-cluster the queue is embedded in this process: a
private redis-server keeping its state under --state, so that the same
command, after a crash or Ctrl-C, resumes the batch where it stopped (rows
already final are not sent again); --fresh starts a new batch instead. With
--redis the same command resumes the file's unfinished batch in that Redis,
and refuses a file already applied within --retention unless --again.`,
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
			ro := runOptions{format: format, every: progress, noticeWait: noticeWait, runFlags: rf}
			ro.via, ro.simulated = "run", simulate
			if ro.notice, ro.notify, err = notice.target(); err != nil {
				return err
			}
			if ro.notify {
				if err := requireSecret(ro.notice); err != nil {
					return err
				}
			}
			return a.run(ctx, cfg, open, opts, ro)
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
	flagGroup(cmd.Flags(), groupQueue, func(fs *pflag.FlagSet) {
		cfg.RegisterRedis(fs, true)
		rf.register(fs)
	})
	flagGroup(cmd.Flags(), groupWorker, cfg.RegisterWorker)
	flagGroup(cmd.Flags(), groupOutput, func(fs *pflag.FlagSet) {
		cfg.RegisterOutput(fs)
		registerProgressFlag(fs, &progress)
		notice = registerNotifyFlags(fs)
		registerNotifyWait(fs, &noticeWait)
	})
	flagGroup(cmd.Flags(), groupSimulator, func(fs *pflag.FlagSet) {
		fs.BoolVar(&simulate, "simulate", false, "start the built-in CRM simulator in-process and send the calls to it (no CRM, key or Redis needed)")
		sim = simulatorFlags(fs, "sim-")
	})
	return cmd
}

// runPoll is how often run's idle workers look for tasks.
const runPoll = 50 * time.Millisecond

// runOptions are run's settings besides the import's.
type runOptions struct {
	format string
	every  time.Duration
	// notice is --notify's target, when notify is set; noticeWait how
	// long run waits for its delivery.
	notice     notify.Target
	notify     bool
	noticeWait time.Duration
	// summarize prints the summary, handed the report's folder; default
	// printSummary.
	summarize func(io.Writer, report.Summary, string) error
	runFlags
}

// runFlags are run's settings about the file's earlier batches.
type runFlags struct {
	// state is --state: the folder of the embedded queue's state.
	state string
	// fresh starts a new batch even when the file's last one is
	// unfinished (it is cancelled); again sends a file already applied.
	fresh, again bool
	// via names the command in the batch's origin.
	via string
	// simulated: the CRM is the simulator of this process, whose state
	// dies with it: there is nothing to resume.
	simulated bool
}

func (f *runFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.state, "state", "", "`DIR` of the embedded queue's state, which lets the same command resume after a crash (default $XDG_STATE_HOME/bulkassign, else ~/.local/state/bulkassign)")
	fs.BoolVar(&f.fresh, "fresh", false, "start a new batch even if the file's last run did not finish (that batch is cancelled)")
	fs.BoolVar(&f.again, "again", false, "with --redis: apply the file even if the same file (same content, same --api-url) was applied within --retention")
}

// run imports, applies and reports one file in this process, or resumes
// the file's unfinished batch; open gives the input.
func (a *app) run(ctx context.Context, cfg config.Config, open func() (io.ReadCloser, error), opts importer.Options, ro runOptions) error {
	rf := ro.runFlags
	if ro.summarize == nil {
		ro.summarize = printSummary
	}
	log, err := newLogger(a.stderr, cfg.LogLevel)
	if err != nil {
		return err
	}
	if opts.Format, err = importer.ParseFormat(ro.format); err != nil {
		return err
	}
	// A run that can be resumed finds the file's earlier batch by the
	// file's fingerprint.
	var (
		fp    string
		state *runState
	)
	durable := !cfg.RedisGiven() && cfg.Embedded != "memory" && !rf.simulated && redisproc.Installed()
	if cfg.RedisGiven() || durable {
		var cleanup func()
		if fp, open, cleanup, err = fingerprinted(opts.File, open, cfg.APIURL); err != nil {
			return err
		}
		defer cleanup()
	}
	queueDir := ""
	if durable {
		root, err := stateRoot(rf.state)
		if err != nil {
			return err
		}
		if state, err = openState(root, fp, cfg.Retention); err != nil {
			return err
		}
		defer state.close() // after q.close: redis-server stops first
		queueDir = state.queueDir()
	}
	q, err := openQueueIn(ctx, cfg, true, queueDir)
	if err != nil {
		return err
	}
	defer q.close()
	switch {
	case q.durable:
		fmt.Fprintf(a.stderr, "queue: embedded, %s keeping its state in %s (stopped or killed, the same command resumes; --fresh starts over)\n", q.embedded, state.dir)
	case !cfg.RedisGiven():
		why := "redis-server is not installed: install it, or use --redis"
		switch {
		case rf.simulated:
			why = "--simulate: the simulated CRM ends with it too"
		case cfg.Embedded == "memory":
			why = "--embedded memory"
		}
		fmt.Fprintf(a.stderr, "queue: embedded, %s: nothing outlives this command, it cannot resume if it stops (%s)\n", q.embedded, why)
	}

	prev, resume, err := a.earlier(ctx, q, fp, rf)
	if err != nil {
		return err
	}
	if prev.ID != "" && !resume {
		// The batch ended before the last run could write its report.
		fmt.Fprintf(a.stderr, "batch %s of this file had ended (%s) when the last run stopped; writing its report\n", prev.ID, prev.Status)
		return a.finish(q, cfg, prev, nil, a.reported(q, state, fp, prev, ro.summarize), "")
	}
	if state != nil {
		if err := state.started(); err != nil {
			return err
		}
	}

	// The workers start first: a batch runs as soon as the file is read
	// whole, while its tasks are still being queued.
	// Its server looks for tasks often: the batch is the only work it
	// waits for, from the moment the file is read.
	w, err := newWorker(q, cfg, log, nil, runPoll)
	if err != nil {
		return err
	}
	if err := w.start(ctx); err != nil {
		return err
	}
	id := prev.ID
	if !resume {
		in, err := open()
		if err != nil {
			w.stop()
			return err
		}
		defer in.Close()
		// The plan of a large file is held while it is read: the same
		// memory bound as import's (the workers, running meanwhile, need
		// little).
		restore := limitImportMemory()
		sum, err := q.importer(cfg).Import(ctx, in, opts)
		restore()
		if err != nil {
			w.stop()
			return err
		}
		a.remember(ctx, q, fp, sum.BatchID, cliOrigin(rf.via, &cfg))
		printImport(a.stderr, sum)
		id = sum.BatchID
	}
	if ro.notify {
		attachNotify(ctx, a.stderr, w.notifier, id, ro.notice)
	}
	b, werr := watch(ctx, q.store, id, a.stderr, ro.every)
	if ro.notify && werr == nil {
		a.awaitNotice(ctx, q, w.notifier, b.ID, ro.noticeWait)
	}
	w.stop()
	resumable := (q.durable || cfg.RedisGiven()) && !rf.simulated
	if werr != nil && !errors.Is(werr, errBatchLost) && resumable {
		werr = fmt.Errorf("%w; the same command resumes it", werr)
	}
	next := "nothing of this queue outlives the command: fix the key and run the file again"
	if resumable {
		next = "once the key is right, the same command resumes it"
	}
	return a.finish(q, cfg, b, werr, a.reported(q, state, fp, b, ro.summarize), next)
}

// earlier looks for the file's last batch. It returns the batch to
// resume (resume true), a batch that ended but whose report the last run
// did not write (resume false), or no batch (a new one is to be
// imported). A batch the last run left half-imported is deleted (nothing
// of it was sent), and with --fresh an unfinished one is cancelled. With
// --redis a file applied already is refused unless --again or --fresh.
func (a *app) earlier(ctx context.Context, q *queue, fp string, rf runFlags) (jobs.Batch, bool, error) {
	if fp == "" {
		return jobs.Batch{}, false, nil
	}
	b, ok, err := q.store.FileBatch(ctx, fp)
	if err == nil && !ok && q.durable {
		b, ok, err = a.unfinished(ctx, q, fp)
	}
	if err != nil || !ok {
		return jobs.Batch{}, false, err
	}
	switch {
	case b.Status == jobs.BatchImporting && q.durable:
		// This process holds the state: the importer that left it is dead.
		if _, err := q.tasks().Delete(ctx, b.ID); err != nil {
			return jobs.Batch{}, false, err
		}
		fmt.Fprintf(a.stderr, "batch %s of this file was still being imported when the last run stopped: nothing of it was sent; importing the file again\n", b.ID)
		return jobs.Batch{}, false, nil
	case rf.fresh && !jobs.Finished(b.Status) && b.Status != jobs.BatchImporting:
		if _, err := q.store.SetStatus(ctx, b.ID, jobs.BatchCancelled, "", ""); err != nil {
			return jobs.Batch{}, false, err
		}
		fmt.Fprintf(a.stderr, "batch %s of this file cancelled with %d of %d rows done: --fresh starts a new batch\n", b.ID, b.Done(), b.Rows)
		return jobs.Batch{}, false, nil
	case rf.fresh:
		return jobs.Batch{}, false, nil
	case b.Status == jobs.BatchImporting:
		return jobs.Batch{}, false, fmt.Errorf("batch %s of this file (same content, same API URL) is being imported by another process: follow it with `bulkassign report --wait %s`, or pass --fresh to start another batch", b.ID, b.ID)
	case b.Status == jobs.BatchPaused && b.PauseCode != jobs.PauseUnauthorized:
		return jobs.Batch{}, false, fmt.Errorf("batch %s of this file is paused (%d of %d rows done): `bulkassign resume %s` lets it go on, --fresh starts a new batch", b.ID, b.Done(), b.Rows, b.ID)
	case !jobs.Finished(b.Status):
		return b, true, a.resume(ctx, q, b)
	case q.durable:
		return b, false, nil
	case rf.again:
		return jobs.Batch{}, false, nil
	}
	return jobs.Batch{}, false, duplicate(&jobs.DuplicateError{Batch: b})
}

// unfinished finds an unfinished batch on the embedded queue, whose every
// batch is of one file: the last run may have died before it recorded
// the file of the batch it was importing.
func (a *app) unfinished(ctx context.Context, q *queue, fp string) (jobs.Batch, bool, error) {
	ids, err := q.store.IDs(ctx)
	if err != nil {
		return jobs.Batch{}, false, err
	}
	for _, id := range ids {
		b, err := q.store.Get(ctx, id)
		if errors.Is(err, jobs.ErrNotFound) {
			continue
		}
		if err != nil {
			return jobs.Batch{}, false, err
		}
		if !jobs.Finished(b.Status) {
			return b, true, q.store.RememberFile(ctx, fp, id)
		}
	}
	return jobs.Batch{}, false, nil
}

// resume lets the file's unfinished batch go on: a batch paused because
// the CRM refused the key runs again, and the tasks the last run had in
// flight are queued again (the ledger skips every row already final).
func (a *app) resume(ctx context.Context, q *queue, b jobs.Batch) error {
	if b.Status == jobs.BatchPaused {
		if _, err := q.tasks().Resume(ctx, b.ID); err != nil {
			return err
		}
	}
	// On the embedded queue nothing else runs: the contacts the dead run
	// held are free once their claims run out. In a shared Redis, workers
	// may hold them: the tasks are queued again only if none does, else
	// the sweep and asynq's recoverer take care of them.
	requeue := q.durable
	if !requeue {
		sw, err := q.store.Sweep(ctx, b.ID, 0)
		if err != nil {
			return err
		}
		requeue = sw.Requeue
	}
	if requeue {
		if _, err := q.tasks().Requeue(ctx, b.ID); err != nil {
			return err
		}
	}
	fmt.Fprintf(a.stderr, "resuming batch %s: %d of %d rows done\n", b.ID, b.Done(), b.Rows)
	if q.durable {
		fmt.Fprintf(a.stderr, "resume: the rows in flight when the last run stopped go on once its hold on their contacts runs out (within %s)\n", q.store.ClaimTTL())
	}
	return nil
}

// reported is the summary printer of run: once the report of a batch that
// ended is written, the embedded queue's state of it is no longer needed
// (it goes after the retention) and its file is forgotten, so that the
// same command starts a new batch.
func (a *app) reported(q *queue, state *runState, fp string, b jobs.Batch, summarize func(io.Writer, report.Summary, string) error) func(io.Writer, report.Summary, string) error {
	if state == nil || !jobs.Finished(b.Status) {
		return summarize
	}
	return func(w io.Writer, s report.Summary, dir string) error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := errors.Join(q.store.ForgetFile(ctx, fp, b.ID), state.finished()); err != nil {
			fmt.Fprintf(a.stderr, "warning: %v\n", err)
		}
		return summarize(w, s, dir)
	}
}

// finish writes the report of a batch that ended, or stopped, prints its
// summary on stdout with summarize, and returns the command's outcome.
// keyNext, if set, is what the operator does after the CRM refused the
// key; else the batch's pause reason says it.
func (a *app) finish(q *queue, cfg config.Config, b jobs.Batch, werr error, summarize func(io.Writer, report.Summary, string) error, keyNext string) error {
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
	case b.Status == jobs.BatchPaused && b.PauseCode == jobs.PauseUnauthorized && keyNext != "":
		return fmt.Errorf("batch %s stopped: %s; %s", b.ID, strings.TrimSuffix(b.PauseReason, worker.ResumeHint), keyNext)
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
