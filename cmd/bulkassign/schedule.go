package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bulkassign/bulkassign/config"
	"github.com/bulkassign/bulkassign/notify"
	"github.com/bulkassign/bulkassign/schedule"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func (a *app) scheduleCommand() *cobra.Command {
	cfg := config.Default()
	cfg.LogLevel = "info"
	var (
		file, once string
		heartbeat  time.Duration
		runs       int
		progress   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "schedule --config FILE",
		Short: "plan and apply territory rebalancing on a timetable (cron), one batch per run",
		Long: `Runs asynq's scheduler until stopped (SIGTERM). At each tick of an entry
it queues a task that a worker (bulkassign worker) runs: plan the entry's
contacts by its rules, as bulkassign plan does, and queue the changes as a
normal batch named "<name> <tick>", with its own report (bulkassign
report --wait ID; bulkassign batches lists them).

Runs of one schedule never overlap: a tick while the previous run's batch
is not finished queues nothing, and a tick runs once however many
scheduler processes fire it. Every tick leaves a record of what it did
(queued, skipped or failed, and why): --runs N lists them, without
--config those of every schedule that has records, and bulkassign
batches shows the recent skipped and failed ones. A paused previous
batch, or one the CRM refused the key for, stalls the schedule until it
is resumed or cancelled: each tick it skips is recorded and logged as an
error.

Each tick checks the pools against the CRM's team members (an unknown or
inactive member fails the tick, nothing moves) and, with live: true,
reads every contact's current agents from the CRM first, so that a tick
moves only what really differs.

The workers read the contacts and rules files when the tick runs: every
worker must see the same paths (a shared volume, or files baked into the
image). Relative paths are taken from the schedule file's folder.

Schedule file:

  schedules:
    - name: nightly-rebalance        # letters, digits, . - _
      cron: "0 2 * * *"              # minute hour day month weekday, or @daily, @every 1h
      timezone: America/Santiago     # optional; default UTC
      contacts: /data/contacts.csv   # as for bulkassign plan --contacts
      rules: /data/territories.yaml  # as for bulkassign plan --rules
      live: true                     # optional: owners from the CRM (plan --live)
      recordPrevious: true           # optional: a rollback.csv in each batch's report
      notify: https://hooks.example.com/bulkassign  # optional: POST each batch's end, and each
                                     # tick a paused batch holds up (signed with the workers'
                                     # BULKASSIGN_NOTIFY_SECRET)
      notifyFormat: json             # optional: json (default) or slack

--once NAME runs one tick of that entry now, in this process (it reads
the files here and needs the API key), and prints the batch id as the
last line on stdout; the workers apply it. It exits 1, saying why, when
the tick queued nothing.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if len(args) > 0 {
				return fmt.Errorf("schedule: unexpected arguments %q: the schedule file is --config", args)
			}
			if file == "" && runs > 0 && once == "" {
				// The records name their schedules: no file is needed.
				if err := cfg.Validate(); err != nil {
					return err
				}
				q, err := openQueue(ctx, cfg, false)
				if err != nil {
					return err
				}
				defer q.close()
				names, err := schedule.Recorded(ctx, q.rdb, cfg.Namespace)
				if err != nil {
					return err
				}
				if len(names) == 0 {
					fmt.Fprintf(a.stderr, "no schedule has left a tick record in namespace %s\n", cfg.Namespace)
					return nil
				}
				return a.scheduleRuns(ctx, q, cfg, names, runs)
			}
			if file == "" {
				return errors.New("schedule: want --config FILE (see bulkassign schedule --help for its format)")
			}
			sc, err := schedule.LoadFile(file)
			if err != nil {
				return err
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			log, err := newLogger(a.stderr, cfg.LogLevel)
			if err != nil {
				return err
			}
			if runs > 0 {
				if once != "" {
					return errors.New("schedule: --runs lists the records and --once runs a tick: give one of them")
				}
				q, err := openQueue(ctx, cfg, false)
				if err != nil {
					return err
				}
				defer q.close()
				return a.scheduleRuns(ctx, q, cfg, sc.Names(), runs)
			}
			var entry schedule.Entry
			if once != "" {
				e, ok := sc.Entry(once)
				if !ok {
					return fmt.Errorf("schedule --once %q: %s has no such entry; it has %s", once, file, strings.Join(sc.Names(), ", "))
				}
				entry = e
				if cfg.APIKey == "" {
					return fmt.Errorf("schedule --once %s: no API key: the tick plans in this process and checks the pools against the CRM's team members: set BULKASSIGN_API_KEY (or --api-key) and --api-url", once)
				}
			}
			q, err := openQueue(ctx, cfg, false)
			if err != nil {
				return err
			}
			defer q.close()
			if once != "" {
				return a.scheduleOnce(ctx, q, cfg, log, entry, progress)
			}
			for _, e := range sc.Entries {
				if !e.Live {
					log.Info("the ticks trust the contacts file's owners: keep it up to date, or set live: true to read them from the CRM",
						slog.String("schedule", e.Name))
				}
				if e.Notify != "" {
					t, _ := notify.ParseTarget(e.Notify, e.NotifyFormat) // checked by LoadFile
					log.Info("the ticks' batches announce their end, and a tick a paused batch holds up is announced; the workers send the notices, signed with their "+notify.SecretEnv,
						slog.String("schedule", e.Name), slog.String("notify", t.String()))
				}
				for _, f := range []string{e.Contacts, e.Rules} {
					if _, err := os.Stat(f); err != nil {
						log.Warn("file not readable here; the workers must see it when the tick runs",
							slog.String("schedule", e.Name), slog.String("file", f), slog.Any("error", err))
					}
				}
			}
			s, err := schedule.NewScheduler(q.opt, q.rdb, sc, schedule.SchedulerOptions{
				Namespace: cfg.Namespace, Logger: log, HeartbeatInterval: heartbeat, IDFormat: cfg.IDFormat,
			})
			if err != nil {
				return err
			}
			log.Info("scheduler started", slog.String("redis", cfg.RedisDisplay()), slog.String("queue", cfg.Namespace),
				slog.String("config", file), slog.Int("schedules", len(sc.Entries)))
			err = s.Run(ctx)
			log.Info("scheduler stopped")
			return err
		},
	}
	flagGroup(cmd.Flags(), "Schedule", func(fs *pflag.FlagSet) {
		fs.StringVar(&file, "config", "", "schedule `FILE` (YAML): schedules: [{name, cron, contacts, rules, timezone}]")
		fs.StringVar(&once, "once", "", "run one tick of the schedule `NAME` now, in this process, and print its batch id")
		fs.IntVar(&runs, "runs", 0, "list the newest `N` ticks of each schedule of --config, or without it of every schedule with records (queued, skipped or failed, and why), and exit")
		fs.DurationVar(&heartbeat, "heartbeat", 0, "how often the scheduler shows its entries to the monitor (default 10s)")
		cfg.RegisterInput(fs)
	})
	flagGroup(cmd.Flags(), groupAPI, cfg.RegisterAPI)
	flagGroup(cmd.Flags(), groupQueue, func(fs *pflag.FlagSet) { cfg.RegisterRedis(fs, false) })
	flagGroup(cmd.Flags(), groupOutput, func(fs *pflag.FlagSet) {
		registerLogLevel(&cfg)(fs)
		registerProgressFlag(fs, &progress)
	})
	return cmd
}

// scheduleOnce runs one tick of e now, in this process; a tick that
// queues nothing is an error that says why.
func (a *app) scheduleOnce(ctx context.Context, q *queue, cfg config.Config, log *slog.Logger, e schedule.Entry, every time.Duration) error {
	crm, err := a.planCRM(cfg, q, false, every)
	if err != nil {
		return err
	}
	r := schedule.NewRunner(q.rdb, q.store, q.importer(cfg), crm, schedule.RunnerOptions{Namespace: cfg.Namespace, Logger: log,
		Notifier: q.notifier(cfg, log)})
	var b [4]byte
	_, _ = rand.Read(b[:])
	p := e.Payload(cfg.IDFormat)
	out, err := r.RunTick(ctx, p, time.Now(), "once-"+hex.EncodeToString(b[:]), true)
	if err != nil {
		return err
	}
	for _, w := range out.Warnings {
		fmt.Fprintln(a.stderr, "plan: warning:", w)
	}
	if out.Skipped != "" {
		return fmt.Errorf("schedule %s: no batch queued: %s", e.Name, out.Skipped)
	}
	printImport(a.stderr, out.Summary)
	if out.Notify != "" {
		fmt.Fprintf(a.stderr, "notify: the end of batch %s will be posted to %s\n", out.BatchID, out.Notify)
	}
	fmt.Fprintf(a.stderr, "schedule %s: batch %q queued; follow it with: bulkassign report --wait %s\n", e.Name, schedule.BatchName(p, out.Tick), out.BatchID)
	fmt.Fprintln(a.stdout, out.BatchID)
	return nil
}

// scheduleRuns prints the newest n records of each of the schedules
// names.
func (a *app) scheduleRuns(ctx context.Context, q *queue, cfg config.Config, names []string, n int) error {
	tw := tabwriter.NewWriter(a.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCHEDULE\tTICK\tOUTCOME\tBATCH\tROWS\tREASON")
	for _, name := range names {
		runs, err := schedule.Runs(ctx, q.rdb, cfg.Namespace, name, n)
		if err != nil {
			return err
		}
		if len(runs) == 0 {
			fmt.Fprintf(tw, "%s\t-\tno tick yet\t\t\t\n", name)
		}
		for _, r := range runs {
			rows := ""
			if r.Outcome == schedule.RunQueued {
				rows = strconv.Itoa(r.Rows)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Schedule, r.Tick.UTC().Format(time.RFC3339), r.Label(), r.BatchID, rows, cell(r.Reason))
		}
	}
	return tw.Flush()
}
