package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/bulkassign/bulkassign/config"
	"github.com/bulkassign/bulkassign/importer"
	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/report"
	"github.com/bulkassign/bulkassign/verify"
	"github.com/bulkassign/bulkassign/worker"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"
)

func (a *app) verifyCommand() *cobra.Command {
	cfg := config.Default()
	var (
		format, driftPath, fixPath string
		every                      time.Duration
		members                    *memberFlags
		out                        *outputFlags
	)
	cmd := &cobra.Command{
		Use:   "verify ID|FILE",
		Short: "read contacts back from the CRM and compare them with a batch or file (drift.csv)",
		Long: `Reads each contact's agents back from the CRM (GET .../contact/{id}/info,
with the same key probe, shared --rate and --concurrency as the calls) and
compares them with the end state:
  ID    what the batch's succeeded rows applied (needs --redis)
  FILE  what the whole file describes, its rows applied in order (a
        contact's rows up to its first invalid row, as an import would)
After a replace a contact must have exactly the expected agents; a contact
with adds only must have them, and may have others.

Writes drift.csv (aiContactId, expected, actual, missing, unexpected, match,
error; agents as ;-separated ids) to OUT/<batch id>/ for an ID, to
OUT/verify-<time>/ for a FILE (--drift PATH elsewhere), and prints a
summary. --fix FILE writes an assignment file that, run, restores the
expected state of the drifted contacts.

Exit 0 when every contact is as expected, 2 when some drifted, 1 on a fatal
error or when some contacts could not be read (run verify again).`,
		Example: `  bulkassign verify 01JB2X... --redis redis://localhost:6379/0 --fix fix.csv
  bulkassign run fix.csv && bulkassign verify assignments.csv`,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if len(args) != 1 {
				return fmt.Errorf("verify: want one batch ID or FILE argument, got %d", len(args))
			}
			asJSON, err := out.isJSON()
			if err != nil {
				return err
			}
			if cfg.APIKey == "" {
				return errors.New("no API key: verify reads the CRM: set BULKASSIGN_API_KEY (or --api-key) and --api-url")
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			v := verifyRun{a: a, cfg: cfg, format: format, members: members, every: every}
			if err := v.expectations(ctx, args[0]); err != nil {
				return err
			}
			defer v.close()
			if driftPath == "" {
				driftPath = v.defaultDrift()
			}
			return v.check(ctx, driftPath, fixPath, asJSON)
		},
	}
	flagGroup(cmd.Flags(), groupInput, func(fs *pflag.FlagSet) {
		fs.StringVar(&format, "format", "", formatHelp+"; for a FILE")
		cfg.RegisterInput(fs)
		members = registerMemberFlags(fs)
		_ = fs.MarkHidden("preflight") // the file is not imported
	})
	flagGroup(cmd.Flags(), groupAPI, cfg.RegisterAPI)
	flagGroup(cmd.Flags(), groupQueue, func(fs *pflag.FlagSet) { cfg.RegisterRedis(fs, false) })
	flagGroup(cmd.Flags(), groupWorker, func(fs *pflag.FlagSet) {
		cfg.RegisterWorker(fs)
		_ = fs.MarkHidden("stall") // nothing is queued
	})
	flagGroup(cmd.Flags(), groupOutput, func(fs *pflag.FlagSet) {
		cfg.RegisterOutput(fs)
		fs.StringVar(&driftPath, "drift", "", "write drift.csv to `PATH` (default: OUT/<batch id>/drift.csv, or OUT/verify-<time>/drift.csv for a FILE)")
		fs.StringVar(&fixPath, "fix", "", "also write an assignment `FILE` that, run, restores the expected state of the drifted contacts")
		registerProgressFlag(fs, &every)
		out = registerOutputFlags(fs)
	})
	return cmd
}

// verifyRun is one verify command: what it expects and how it reads.
type verifyRun struct {
	a       *app
	cfg     config.Config
	format  string
	members *memberFlags
	every   time.Duration

	q     *queue // nil for a FILE without --redis
	batch string
	file  string
	exps  []verify.Expectation
}

func (v *verifyRun) close() {
	if v.q != nil {
		v.q.close()
	}
}

// expectations reads what the batch or file named by arg describes: a
// file that exists (or -) is a FILE, anything else a batch id.
func (v *verifyRun) expectations(ctx context.Context, arg string) error {
	if _, err := os.Stat(arg); err == nil || arg == "-" {
		return v.fromFile(ctx, arg)
	}
	if !report.ValidBatchID(arg) {
		return fmt.Errorf("verify %q: no such file, and not a batch id (ids are letters, digits, - and _; see bulkassign batches)", arg)
	}
	q, err := openQueue(ctx, v.cfg, false)
	if err != nil {
		if errors.Is(err, errNoRedis) {
			return fmt.Errorf("verify %s: no such file; to verify a batch, %w", arg, err)
		}
		return err
	}
	v.q, v.batch = q, arg
	b, err := q.store.Get(ctx, arg)
	if err == nil {
		v.exps, err = verify.FromBatch(ctx, q.store, arg)
	}
	if err != nil {
		q.close()
		v.q = nil
		return err
	}
	if !jobs.Finished(b.Status) {
		fmt.Fprintf(v.a.stderr, "verify: batch %s is %s: rows not yet applied are not expected, and a row applied while verify reads may show as drift\n", b.ID, b.Status)
	}
	fmt.Fprintf(v.a.stderr, "verify: batch %s (%s): %d contacts with succeeded rows to read\n", b.ID, b.Status, len(v.exps))
	return nil
}

func (v *verifyRun) fromFile(ctx context.Context, file string) error {
	f, err := importer.ParseFormat(v.format)
	if err != nil {
		return err
	}
	opts, err := v.members.options(importer.Options{}, v.cfg, false)
	if err != nil {
		return err
	}
	in, err := v.a.open(file)
	if err != nil {
		return err
	}
	defer in.Close()
	dec, err := importer.NewMappedDecoder(in, file, f, v.cfg.IDFormat, opts.Mapping, opts.MappingName)
	if err != nil {
		return err
	}
	exps, info, err := verify.FromFile(dec)
	if err != nil {
		return fmt.Errorf("verify %s: %w", file, err)
	}
	if v.cfg.RedisGiven() { // the shared rate limit of the workers
		if v.q, err = openQueue(ctx, v.cfg, false); err != nil {
			return err
		}
	}
	v.file, v.exps = file, exps
	fmt.Fprintf(v.a.stderr, "verify: %s: %d rows, %d invalid; %d contacts to read", file, info.Rows, info.Invalid, len(exps))
	if info.Stopped > 0 {
		fmt.Fprintf(v.a.stderr, " (%d of them up to their first invalid row)", info.Stopped)
	}
	fmt.Fprintln(v.a.stderr)
	return nil
}

func (v *verifyRun) defaultDrift() string {
	if v.batch != "" {
		return filepath.Join(report.Dir(v.cfg.Out, v.batch), report.DriftFile)
	}
	return filepath.Join(v.cfg.Out, "verify-"+time.Now().UTC().Format("20060102T150405Z"), report.DriftFile)
}

// check reads the contacts, writes the files and prints the summary.
func (v *verifyRun) check(ctx context.Context, driftPath, fixPath string, asJSON bool) error {
	client, err := worker.NewClient(v.cfg.ClientOptions())
	if err != nil {
		return err
	}
	var limiter worker.Limiter = worker.NewLocalLimiter(v.cfg.Rate, v.cfg.Burst)
	if v.q != nil {
		log, err := newLogger(v.a.stderr, v.cfg.LogLevel)
		if err != nil {
			return err
		}
		limiter = sharedLimiter(v.q, v.cfg, log)
	}
	read := readOptions(v.cfg)
	read.Backoff = v.cfg.RetryBase
	sum, drifts, err := verify.Check(ctx, client, limiter, v.exps, verify.Options{
		Read:     read,
		Progress: newVerifyProgress(v.a.stderr, v.every, len(v.exps)),
	})
	sum.Batch, sum.File = v.batch, v.file
	if err != nil {
		return fmt.Errorf("%w (%d of %d contacts read; nothing written)", err, sum.Read, sum.Contacts)
	}
	if err := report.WriteDrift(driftPath, drifts); err != nil {
		return err
	}
	var fix *report.FixCounts
	if fixPath != "" {
		n, err := report.WriteFix(fixPath, drifts)
		if err != nil {
			return err
		}
		fix = &n
	}
	if asJSON {
		err = writeJSON(v.a.stdout, struct {
			verify.Summary
			DriftFile string            `json:"driftFile"`
			FixFile   string            `json:"fixFile,omitempty"`
			Fix       *report.FixCounts `json:"fix,omitempty"`
		}{sum, driftPath, fixPath, fix})
	} else {
		printVerify(v.a.stdout, sum, driftPath, fixPath, fix)
	}
	if err != nil {
		return err
	}
	switch {
	case sum.Unknown > 0:
		return fmt.Errorf("%d of %d contacts could not be read (see the error column of %s): run verify again", sum.Unknown, sum.Contacts, driftPath)
	case sum.Drifted > 0:
		return &exitError{code: exitPartial, err: fmt.Errorf("%d of %d contacts drifted: see %s", sum.Drifted, sum.Contacts, driftPath)}
	}
	return nil
}

// printVerify writes a verification's summary for people.
func printVerify(w io.Writer, s verify.Summary, driftPath, fixPath string, fix *report.FixCounts) {
	what := "batch " + s.Batch
	if s.Batch == "" {
		what = s.File
	}
	fmt.Fprintf(w, "verify %s: %d contacts: %d as expected, %d drifted", what, s.Contacts, s.Matching, s.Drifted)
	if s.NotFound > 0 {
		fmt.Fprintf(w, " (%d no longer in the CRM)", s.NotFound)
	}
	if s.Unknown > 0 {
		fmt.Fprintf(w, ", %d could not be read", s.Unknown)
	}
	fmt.Fprintf(w, "\ndrift: %s\n", driftPath)
	if fix != nil {
		fmt.Fprintf(w, "fix: `bulkassign run %s` restores %d contacts (%d rows)", fixPath, fix.Contacts, fix.Rows)
		if n := fix.NotFound + fix.Unknown; n > 0 {
			fmt.Fprintf(w, "; %d contacts left out (gone from the CRM, or not read)", n)
		}
		fmt.Fprintln(w)
	}
}

// newVerifyProgress returns what shows a verification's progress, as run
// shows a batch's: a bar on a terminal, else a line every `every` (and
// the last one).
func newVerifyProgress(w io.Writer, every time.Duration, total int) func(verify.Summary) {
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		bar := progressbar.NewOptions(total,
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription("verifying"),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("contacts"),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
		)
		return func(s verify.Summary) { _ = bar.Set(s.Read) }
	}
	start := time.Now()
	var last time.Time
	return func(s verify.Summary) {
		now := time.Now()
		if s.Read < total && now.Sub(last) < every {
			return
		}
		last = now
		line := fmt.Sprintf("verify: %d/%d contacts read: %d drifted", s.Read, total, s.Drifted)
		if pace := float64(s.Read) / now.Sub(start).Seconds(); s.Read < total && pace > 0 {
			line += fmt.Sprintf(", ETA %s", time.Duration(float64(total-s.Read)/pace*float64(time.Second)).Round(time.Second))
		}
		fmt.Fprintln(w, line)
	}
}
