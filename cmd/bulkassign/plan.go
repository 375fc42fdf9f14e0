package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bulkassign/bulkassign/config"
	"github.com/bulkassign/bulkassign/importer"
	"github.com/bulkassign/bulkassign/planner"
	"github.com/bulkassign/bulkassign/report"
	"github.com/bulkassign/bulkassign/schedule"
	"github.com/bulkassign/bulkassign/worker"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"
)

// The files of a plan, in --out DIR (with --apply, DIR/<batch id>/).
const (
	planRowsFile     = "plan.csv"          // the rows to apply: an assignment file
	planContactsFile = "plan-contacts.csv" // every contact: before, after, action, reason
)

func (a *app) planCommand() *cobra.Command {
	cfg := config.Default()
	var (
		contacts, rules, name                      string
		apply, simulate, live, preflight, previous bool
		progress                                   time.Duration
		sim                                        *simFlags
	)
	cmd := &cobra.Command{
		Use:   "plan --contacts FILE --rules FILE",
		Short: "territory rules -> an assignment plan; write it or apply it",
		Long: `Gives each contact an owner from the first rule it matches: the rule's
contacts are shared over its pool by weight, within each member's cap,
moving as few contacts as possible (a contact whose owner is in the pool
stays while that owner is under target); what matches no rule or does not
fit goes to the fallback. The output is deterministic: the same files give
the same bytes, whatever the order of the contacts.

Only contacts whose owner changes get a row (removeExistingAgents=true),
with the rule, the previous agent and the reason as extra columns. The
preview (counts per member before and after, what happens to the contacts,
warnings) goes to stderr. Without --out the rows go to stdout; with --out
DIR, DIR/plan.csv has the rows and DIR/plan-contacts.csv every contact
with its owner before and after and why.

The owners are the contacts file's unless --live reads each contact's
agents from the CRM first (one call per contact, under --rate): then the
plan moves only what really differs in the CRM, and contacts the CRM does
not have get no row. Before anything is applied (--apply), and with
--preflight or --live, every pool member and the fallback are checked
against the CRM's team members: an unknown or inactive member fails the
plan, naming the rule's line, and nothing moves.

Rules file:

  rules:
    - name: north-enterprise
      match: {region: [north], segment: [enterprise]}   # empty or absent: any
      pool:
        - {member: m-ana, weight: 2, cap: 500}           # weight 1, cap 0 (none) by default
        - {member: ben@example.com}                      # a member by email
  fallback: m-triage     # no rule, or the caps are full; absent: they keep their owner
  maxShare: 0.4          # warn when one member would own more than 40% of the contacts`,
		Example: `  bulkassign plan --contacts contacts.csv --rules territories.yaml --out plan/
  bulkassign plan --contacts contacts.csv --rules rules.yaml --live --apply --record-previous
  bulkassign plan --contacts contacts.csv --rules rules.yaml --apply --simulate --sim-members 7`,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			switch {
			case len(args) > 0:
				return fmt.Errorf("plan: unexpected arguments %q: the files are --contacts and --rules", args)
			case contacts == "" || rules == "":
				return errors.New("plan: want --contacts FILE and --rules FILE")
			case contacts == "-" && rules == "-":
				return errors.New("plan: --contacts and --rules cannot both be stdin")
			case previous && !apply:
				return errors.New("plan: --record-previous records the agents the applied plan changes: add --apply")
			}
			if err := checkOutDir(cfg.Out); err != nil {
				return err
			}
			local := apply && (!cfg.RedisGiven() || simulate) // apply in this process
			check := apply || preflight || live
			if check && !simulate && cfg.APIKey == "" {
				what := "the pools are checked against the CRM's team members"
				if live {
					what += " and the owners read from it"
				}
				return fmt.Errorf("plan %s: no API key: %s: set BULKASSIGN_API_KEY (or --api-key), or try --simulate", checkFlags(apply, preflight, live), what)
			}
			if simulate {
				url, stop, err := sim.startInProcess(ctx, a.stderr)
				if err != nil {
					return err
				}
				defer stop()
				cfg.APIURL = url
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			var q *queue // the Redis of --redis, for the shared rate limit and the batch
			if apply && !local {
				var err error
				if q, err = openQueue(ctx, cfg, false); err != nil {
					return err
				}
				defer q.close()
			}
			crm, err := a.planCRM(cfg, q, simulate, progress)
			if err != nil {
				return err
			}
			p, err := schedule.MakePlan(ctx, schedule.Inputs{
				Contacts: contacts, Rules: rules,
				OpenContacts: func() (io.ReadCloser, error) { return a.openPlanInput(contacts, "contacts") },
				OpenRules:    func() (io.ReadCloser, error) { return a.openPlanInput(rules, "rules") },
				IDFormat:     cfg.IDFormat, Live: live, Check: check,
			}, crm)
			if err != nil {
				return err
			}
			if err := p.WritePreview(a.stderr); err != nil {
				return err
			}
			if check {
				fmt.Fprintln(a.stderr, "pools: every member checked against the CRM's team members")
			} else {
				fmt.Fprintln(a.stderr, "pools: not checked against the CRM's team members (--preflight, --live and --apply check them)")
			}
			var rows bytes.Buffer
			if err := p.WriteCSV(&rows); err != nil {
				return err
			}
			if !apply {
				if cfg.Out == "" {
					fmt.Fprintf(a.stderr, "plan: every contact's plan: --out DIR writes DIR/%s\n", planContactsFile)
					_, err := a.stdout.Write(rows.Bytes())
					return err
				}
				return a.writePlanFiles(cfg.Out, p, rows.Bytes())
			}
			if len(p.Assignments) == 0 {
				fmt.Fprintln(a.stderr, "plan: nothing to apply: every contact already has its planned owner")
				return nil
			}
			if cfg.Out == "" {
				cfg.Out = config.Default().Out
			}
			opts := importer.Options{
				File:   fmt.Sprintf("plan of %s by %s", argName(contacts), argName(rules)),
				Format: importer.FormatCSV, IDFormat: cfg.IDFormat, Name: name, RecordPrevious: previous,
			}
			if opts.Name == "" {
				opts.Name = "plan " + filepath.Base(rules)
			}
			if !local {
				return a.queuePlan(ctx, q, cfg, p, rows.Bytes(), opts)
			}
			open := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(rows.Bytes())), nil }
			return a.run(ctx, cfg, open, opts, runOptions{format: string(importer.FormatCSV), every: progress,
				runFlags: runFlags{via: "plan --apply", simulated: simulate},
				summarize: func(w io.Writer, s report.Summary, dir string) error {
					if err := a.writePlanFiles(dir, p, rows.Bytes()); err != nil {
						return err
					}
					return printSummary(w, s, dir)
				}})
		},
	}
	flagGroup(cmd.Flags(), "Plan", func(fs *pflag.FlagSet) {
		fs.StringVar(&contacts, "contacts", "", "contacts CSV `FILE`: contact id, region and/or segment, current agent (optional); - for stdin")
		fs.StringVar(&rules, "rules", "", "territory rules YAML `FILE`: ordered rules (match region/segment -> pool of members by id or email, with weight and cap), fallback, maxShare")
		cfg.RegisterInput(fs)
		fs.BoolVar(&live, "live", false, "read each contact's current agents from the CRM (one call per contact, under --rate) and plan from them instead of the file's")
		fs.BoolVar(&preflight, "preflight", false, "check every pool member and the fallback against the CRM's team members without applying (--apply and --live always check)")
		fs.BoolVar(&apply, "apply", false, "apply the plan as a batch: with --redis or --redis-cluster queue it for the workers (the batch id is the last line on stdout); without, import, apply and report in this process like run")
		fs.BoolVar(&previous, "record-previous", false, "with --apply: "+recordPreviousHelp)
		fs.StringVar(&name, "name", "", "`LABEL` of the batch (default: plan <rules file>)")
	})
	flagGroup(cmd.Flags(), groupAPI, cfg.RegisterAPI)
	flagGroup(cmd.Flags(), groupQueue, func(fs *pflag.FlagSet) { cfg.RegisterRedis(fs, true) })
	flagGroup(cmd.Flags(), groupWorker, cfg.RegisterWorker)
	flagGroup(cmd.Flags(), groupOutput, func(fs *pflag.FlagSet) {
		cfg.Out = ""
		fs.StringVar(&cfg.Out, "out", "", "`DIR` of the plan's files, "+planRowsFile+" (the rows) and "+planContactsFile+
			" (every contact); default: the rows to stdout. With --apply DIR is the report folder, as for run (default reports): the files go to DIR/<batch id>/")
		fs.StringVar(&cfg.Out, "report-dir", "", "the report folder of --apply")
		_ = fs.MarkDeprecated("report-dir", "use --out, the report folder as for run")
		registerLogLevel(&cfg)(fs)
		registerProgressFlag(fs, &progress)
	})
	flagGroup(cmd.Flags(), groupSimulator, func(fs *pflag.FlagSet) {
		fs.BoolVar(&simulate, "simulate", false, "start the built-in CRM simulator in-process and send every CRM call to it (give it members: --sim-members)")
		sim = simulatorFlags(fs, "sim-")
	})
	return cmd
}

// checkFlags names the flags that make plan call the CRM.
func checkFlags(apply, preflight, live bool) string {
	var fs []string
	for _, f := range []struct {
		on   bool
		name string
	}{{apply, "--apply"}, {preflight, "--preflight"}, {live, "--live"}} {
		if f.on {
			fs = append(fs, f.name)
		}
	}
	return strings.Join(fs, " ")
}

// checkOutDir refuses an --out that names a file, as plan's --out did
// before it became a folder like run's.
func checkOutDir(dir string) error {
	if dir == "" {
		return nil
	}
	fi, err := os.Stat(dir)
	if err == nil && !fi.IsDir() || err != nil && strings.EqualFold(filepath.Ext(dir), ".csv") {
		return fmt.Errorf("--out %s: --out is a folder, as for run: the plan goes to DIR/%s and DIR/%s (to write the rows alone to a file, leave --out out: > plan.csv)",
			dir, planRowsFile, planContactsFile)
	}
	return nil
}

// planCRM returns the CRM client a plan checks its pools with and reads
// live owners from, under the shared rate limit when q is a Redis, else
// under --rate in this process; nil without an API key (and not
// simulating): the plan then touches no CRM.
func (a *app) planCRM(cfg config.Config, q *queue, simulate bool, every time.Duration) (*schedule.CRM, error) {
	if cfg.APIKey == "" && !simulate {
		return nil, nil
	}
	client, err := worker.NewClient(cfg.ClientOptions())
	if err != nil {
		return nil, err
	}
	var limiter worker.Limiter = worker.NewLocalLimiter(cfg.Rate, cfg.Burst)
	if q != nil {
		limiter = sharedLimiter(q, cfg, nil)
	}
	return &schedule.CRM{
		Client: client, Limiter: limiter,
		Read:     readOptions(cfg),
		Progress: newReadProgress(a.stderr, every),
	}, nil
}

// newReadProgress shows the progress of a live read: a bar on a
// terminal, else a line every every and at the end.
func newReadProgress(w io.Writer, every time.Duration) func(done, total int) {
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		var bar *progressbar.ProgressBar
		return func(done, total int) {
			if bar == nil {
				bar = progressbar.NewOptions(total,
					progressbar.OptionSetWriter(w),
					progressbar.OptionSetDescription("reading owners"),
					progressbar.OptionShowCount(),
					progressbar.OptionThrottle(100*time.Millisecond),
					progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
				)
			}
			_ = bar.Set(done)
		}
	}
	last := time.Now()
	return func(done, total int) {
		if now := time.Now(); done == total || now.Sub(last) >= every {
			fmt.Fprintf(w, "live: read the agents of %d/%d contacts from the CRM\n", done, total)
			last = now
		}
	}
}

// openPlanInput opens one of plan's input files; "-" is stdin.
func (a *app) openPlanInput(file, what string) (io.ReadCloser, error) {
	if file == "-" {
		return io.NopCloser(a.stdin), nil
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", what, err)
	}
	return f, nil
}

// writePlanFiles writes the plan's rows and every contact's plan into
// dir, each file whole or not at all.
func (a *app) writePlanFiles(dir string, p *planner.Plan, rows []byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write plan: %w", err)
	}
	var all bytes.Buffer
	if err := p.WriteContactsCSV(&all); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{planRowsFile, rows}, {planContactsFile, all.Bytes()}} {
		if err := writeFileAtomic(filepath.Join(dir, f.name), f.data); err != nil {
			return fmt.Errorf("write plan: %w", err)
		}
	}
	fmt.Fprintf(a.stderr, "plan: %d assignments in %s, every contact's plan in %s\n",
		len(p.Assignments), filepath.Join(dir, planRowsFile), filepath.Join(dir, planContactsFile))
	return nil
}

// writeFileAtomic writes data to path through a temporary file renamed
// into place.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(0o644) // as os.Create would, not CreateTemp's 0600
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

// queuePlan imports the plan's rows as a batch for the workers, as import
// does, and writes the plan's files to OUT/<batch id>/, where `report`
// writes the batch's report; the batch id is the last line on stdout.
func (a *app) queuePlan(ctx context.Context, q *queue, cfg config.Config, p *planner.Plan, rows []byte, opts importer.Options) error {
	defer limitImportMemory()()
	sum, err := q.importer(cfg).Import(ctx, bytes.NewReader(rows), opts)
	if err != nil {
		return err
	}
	a.remember(ctx, q, "", sum.BatchID, cliOrigin("plan --apply", nil))
	printImport(a.stderr, sum)
	if err := a.writePlanFiles(report.Dir(cfg.Out, sum.BatchID), p, rows); err != nil {
		return err
	}
	fmt.Fprintln(a.stdout, sum.BatchID)
	return nil
}

// argName names a file argument in messages.
func argName(file string) string {
	if file == "-" {
		return "stdin"
	}
	return file
}
