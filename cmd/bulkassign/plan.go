package main

import (
	"bytes"
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
	"github.com/bulkassign/bulkassign/planner"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func (a *app) planCommand() *cobra.Command {
	cfg := config.Default()
	var (
		contacts, rules, out, name string
		apply, simulate            bool
		progress                   time.Duration
		sim                        *simFlags
	)
	cmd := &cobra.Command{
		Use:   "plan --contacts FILE --rules FILE",
		Short: "territory rules -> an assignment plan; write it as a CSV or apply it",
		Long: `Gives each contact an owner from the first rule it matches: the rule's
contacts are shared over its pool by weight, within each member's cap,
moving as few contacts as possible (a contact whose owner is in the pool
stays while that owner is under target); what matches no rule or does not
fit goes to the fallback. The output is deterministic: the same files give
the same bytes, whatever the order of the contacts.

Only contacts whose owner changes get a row (removeExistingAgents=true),
with the rule, the previous agent and the reason as extra columns. The
preview (counts per member before and after, moves, warnings) goes to
stderr.

Rules file:

  rules:
    - name: north-enterprise
      match: {region: [north], segment: [enterprise]}   # empty or absent: any
      pool:
        - {member: m-ana, weight: 2, cap: 500}           # weight 1, cap 0 (none) by default
        - {member: m-ben}
  fallback: m-triage     # no rule, or the caps are full; absent: left unassigned
  maxShare: 0.4          # warn when one member gets more than 40% of the planned contacts`,
		Example: `  bulkassign plan --contacts contacts.csv --rules territories.yaml --out plan.csv
  bulkassign plan --contacts contacts.csv --rules territories.yaml --apply --simulate`,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			switch {
			case len(args) > 0:
				return fmt.Errorf("plan: unexpected arguments %q: the files are --contacts and --rules", args)
			case contacts == "" || rules == "":
				return errors.New("plan: want --contacts FILE and --rules FILE")
			case contacts == "-" && rules == "-":
				return errors.New("plan: --contacts and --rules cannot both be stdin")
			}
			local := apply && (!cfg.RedisGiven() || simulate) // apply in this process
			if apply && local && !simulate && cfg.APIKey == "" {
				return errors.New("plan --apply: no API key: set BULKASSIGN_API_KEY (or --api-key), give --redis (or --redis-cluster) to queue the batch for workers, or try --simulate")
			}
			if simulate && !apply {
				return errors.New("plan: --simulate applies the plan: add --apply")
			}

			p, err := a.plan(contacts, rules, cfg.IDFormat)
			if err != nil {
				return err
			}
			if err := p.WritePreview(a.stderr); err != nil {
				return err
			}
			var buf bytes.Buffer
			if err := p.WriteCSV(&buf); err != nil {
				return err
			}
			if !apply || out != "" {
				if err := a.writePlan(out, buf.Bytes(), len(p.Assignments)); err != nil {
					return err
				}
			}
			if !apply {
				return nil
			}
			if len(p.Assignments) == 0 {
				fmt.Fprintln(a.stderr, "plan: nothing to apply: every contact already has its planned owner")
				return nil
			}

			file := out
			if file == "" || file == "-" {
				file = fmt.Sprintf("plan of %s by %s", argName(contacts), argName(rules))
			}
			opts := importer.Options{File: file, Format: importer.FormatCSV, IDFormat: cfg.IDFormat, Name: name}
			if opts.Name == "" {
				opts.Name = "plan " + filepath.Base(rules)
			}
			if !local {
				return a.queuePlan(ctx, cfg, buf.Bytes(), opts)
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
			open := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil }
			return a.run(ctx, cfg, open, opts, runOptions{format: string(importer.FormatCSV), every: progress})
		},
	}
	flagGroup(cmd.Flags(), "Plan", func(fs *pflag.FlagSet) {
		fs.StringVar(&contacts, "contacts", "", "contacts CSV `FILE`: contact id, region and/or segment, current agent (optional); - for stdin")
		fs.StringVar(&rules, "rules", "", "territory rules YAML `FILE`: ordered rules (match region/segment -> pool of members with weight and cap), fallback, maxShare")
		cfg.RegisterInput(fs)
		fs.StringVar(&out, "out", "", "`FILE` to write the assignment CSV to, - for stdout (default: stdout; with --apply: no file)")
		fs.BoolVar(&apply, "apply", false, "apply the plan as a batch: with --redis or --redis-cluster queue it for the workers (the batch id is the last line on stdout); without, import, apply and report in this process like run")
		fs.StringVar(&name, "name", "", "`LABEL` of the batch (default: plan <rules file>)")
	})
	flagGroup(cmd.Flags(), groupAPI, cfg.RegisterAPI)
	flagGroup(cmd.Flags(), groupQueue, func(fs *pflag.FlagSet) { cfg.RegisterRedis(fs, true) })
	flagGroup(cmd.Flags(), groupWorker, cfg.RegisterWorker)
	flagGroup(cmd.Flags(), groupOutput, func(fs *pflag.FlagSet) {
		fs.StringVar(&cfg.Out, "report-dir", cfg.Out, "with --apply in this process: `DIR` of the reports; the report goes to DIR/<batch id>/")
		registerLogLevel(&cfg)(fs)
		registerProgressFlag(fs, &progress)
	})
	flagGroup(cmd.Flags(), groupSimulator, func(fs *pflag.FlagSet) {
		fs.BoolVar(&simulate, "simulate", false, "with --apply: start the built-in CRM simulator in-process and send the calls to it")
		sim = simulatorFlags(fs, "sim-")
	})
	return cmd
}

// plan reads the two files, their ids by the rule ids, and computes the
// plan.
func (a *app) plan(contactsFile, rulesFile string, ids jobs.IDFormat) (*planner.Plan, error) {
	rf, err := a.openPlanInput(rulesFile, "rules")
	if err != nil {
		return nil, err
	}
	defer rf.Close()
	rules, err := planner.ParseRules(rf, rulesFile, ids)
	if err != nil {
		return nil, err
	}
	cf, err := a.openPlanInput(contactsFile, "contacts")
	if err != nil {
		return nil, err
	}
	defer cf.Close()
	cs, err := planner.ReadContacts(cf, contactsFile, ids)
	if err != nil {
		return nil, err
	}
	return planner.Compute(rules, cs)
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

// writePlan writes the CSV to file: "" or "-" is stdout. A file is
// written whole or not at all.
func (a *app) writePlan(file string, data []byte, rows int) error {
	if file == "" || file == "-" {
		_, err := a.stdout.Write(data)
		return err
	}
	if fi, err := os.Stat(file); err == nil && fi.IsDir() {
		return fmt.Errorf("--out %s is a folder: plan's --out names the assignment file (the report folder of --apply is --report-dir)", file)
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".*")
	if err != nil {
		return fmt.Errorf("write plan: %w", err)
	}
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(0o644) // as os.Create would, not CreateTemp's 0600
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), file)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write plan: %w", err)
	}
	fmt.Fprintf(a.stderr, "plan: %d assignments written to %s\n", rows, file)
	return nil
}

// queuePlan imports the plan's CSV as a batch for the workers, as import
// does; the batch id is the last line on stdout.
func (a *app) queuePlan(ctx context.Context, cfg config.Config, data []byte, opts importer.Options) error {
	defer limitImportMemory()()
	q, err := openQueue(ctx, cfg, false)
	if err != nil {
		return err
	}
	defer q.close()
	sum, err := q.importer(cfg).Import(ctx, bytes.NewReader(data), opts)
	if err != nil {
		return err
	}
	printImport(a.stderr, sum)
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
