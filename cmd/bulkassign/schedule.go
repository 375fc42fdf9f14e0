package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/bulkassign/bulkassign/config"
	"github.com/bulkassign/bulkassign/jobs"
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
is not finished does nothing but log, and a tick runs once however many
scheduler processes fire it.

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

--once NAME runs one tick of that entry now, in this process (it reads
the files here), and prints the batch id as the last line on stdout; the
workers apply it.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if len(args) > 0 {
				return fmt.Errorf("schedule: unexpected arguments %q: the schedule file is --config", args)
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
			var entry schedule.Entry
			if once != "" {
				e, ok := sc.Entry(once)
				if !ok {
					return fmt.Errorf("schedule --once %q: %s has no such entry; it has %s", once, file, strings.Join(sc.Names(), ", "))
				}
				entry = e
			}
			q, err := openQueue(ctx, cfg, false)
			if err != nil {
				return err
			}
			defer q.close()
			if once != "" {
				return a.scheduleOnce(ctx, q, cfg, log, entry)
			}
			for _, e := range sc.Entries {
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
		fs.DurationVar(&heartbeat, "heartbeat", 0, "how often the scheduler shows its entries to the monitor (default 10s)")
		cfg.RegisterInput(fs)
	})
	flagGroup(cmd.Flags(), groupQueue, func(fs *pflag.FlagSet) { cfg.RegisterRedis(fs, false) })
	flagGroup(cmd.Flags(), groupOutput, registerLogLevel(&cfg))
	return cmd
}

// scheduleOnce runs one tick of e now, in this process.
func (a *app) scheduleOnce(ctx context.Context, q *queue, cfg config.Config, log *slog.Logger, e schedule.Entry) error {
	r := schedule.NewRunner(q.rdb, q.store, q.importer(cfg), schedule.RunnerOptions{Namespace: cfg.Namespace, Logger: log})
	var b [4]byte
	_, _ = rand.Read(b[:])
	p := jobs.PlanPayload{Name: e.Name, Contacts: e.Contacts, Rules: e.Rules, Timezone: e.Timezone, IDFormat: cfg.IDFormat}
	out, err := r.Tick(ctx, p, time.Now(), "once-"+hex.EncodeToString(b[:]))
	if err != nil {
		return err
	}
	for _, w := range out.Warnings {
		fmt.Fprintln(a.stderr, "plan: warning:", w)
	}
	if out.Skipped != "" {
		fmt.Fprintf(a.stderr, "schedule %s: no batch: %s\n", e.Name, out.Skipped)
		return nil
	}
	printImport(a.stderr, out.Summary)
	fmt.Fprintf(a.stderr, "schedule %s: batch %q queued; follow it with: bulkassign report --wait %s\n", e.Name, schedule.BatchName(p, out.Tick), out.BatchID)
	fmt.Fprintln(a.stdout, out.BatchID)
	return nil
}
