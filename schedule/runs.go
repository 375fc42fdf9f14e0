package schedule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/notify"
	"github.com/redis/go-redis/v9"
)

// Run is the record a tick leaves: what it did and why. The newest
// MaxRuns of each schedule are kept (Runs reads them), for `schedule
// --runs` and anything else that shows a schedule's history.
type Run struct {
	Schedule string    `json:"schedule"`
	Tick     time.Time `json:"tick"`
	// At is when the tick ran.
	At time.Time `json:"at"`
	// Outcome is RunQueued, RunSkipped or RunFailed.
	Outcome string `json:"outcome"`
	// Code is the Skip* code of a skipped tick.
	Code string `json:"code,omitempty"`
	// Reason says why a tick was skipped or failed.
	Reason string `json:"reason,omitempty"`
	// BatchID, Rows and Contacts describe the batch a tick queued.
	BatchID  string `json:"batchId,omitempty"`
	Rows     int    `json:"rows,omitempty"`
	Contacts int    `json:"contacts,omitempty"`
	// Warnings are the plan's warnings.
	Warnings []string `json:"warnings,omitempty"`
}

// The outcomes of a Run.
const (
	RunQueued  = "queued"
	RunSkipped = "skipped"
	RunFailed  = "failed"
)

// MaxRuns is how many records of each schedule are kept.
const MaxRuns = 100

// Stalled reports whether the tick found its schedule stalled: skipped
// because the previous run's batch is paused, or was paused because the
// CRM refused the API key. Every tick is skipped so until someone resumes
// or cancels that batch.
func (r Run) Stalled() bool {
	return r.Outcome == RunSkipped && (r.Code == SkipPaused || r.Code == SkipRefused)
}

// Label is the run's outcome with its skip code, if any:
// "skipped (previous-paused)".
func (r Run) Label() string {
	if r.Code == "" {
		return r.Outcome
	}
	return r.Outcome + " (" + r.Code + ")"
}

// namesKey is the sorted set of the names of the schedules that left
// records in namespace, each scored by the time (Unix ms) of its newest
// record: it finds the records without the schedule file.
func namesKey(namespace string) string {
	return namespace + ":schedules"
}

// runsKey is the list of a schedule's records, newest first; it shares
// the schedule's hash tag.
func runsKey(namespace, name string) string {
	return namespace + ":schedule:{" + name + "}:runs"
}

// RunTick runs one tick as Tick does and leaves its record. A tick skipped
// as a duplicate leaves none (the copy that ran leaves it); an error
// leaves a failed record when final says no retry follows, or when it is
// in the files (a retry would not help). A tick skipped because the
// previous batch is paused is announced to the entry's notify target.
func (r *Runner) RunTick(ctx context.Context, p jobs.PlanPayload, tick time.Time, owner string, final bool) (Outcome, error) {
	out, err := r.Tick(ctx, p, tick, owner)
	rec := Run{Schedule: p.Name, Tick: out.Tick, At: r.opts.Now(), Warnings: out.Warnings}
	switch {
	case err != nil && !final && !permanent(err):
		return out, err
	case err != nil:
		rec.Outcome, rec.Reason = RunFailed, err.Error()
	case out.SkipCode == SkipDuplicate:
		return out, nil
	case out.Skipped != "":
		rec.Outcome, rec.Code, rec.Reason = RunSkipped, out.SkipCode, out.Skipped
		if (out.SkipCode == SkipPaused || out.SkipCode == SkipRefused) && p.Notify != "" {
			t, nerr := r.target(p)
			if nerr == nil {
				_, nerr = r.opts.Notifier.Skipped(ctx, out.HeldBy, t, notify.Skip{Schedule: p.Name, Tick: out.Tick, Code: out.SkipCode, Reason: out.Skipped})
				if nerr != nil && !final && !errors.Is(nerr, jobs.ErrNotFound) {
					return out, nerr // Redis trouble: the retry skips the tick again and announces it
				}
			}
			if nerr != nil {
				out.Warnings = append(out.Warnings, "notify: "+nerr.Error()+": this skipped tick is not announced")
				rec.Warnings = out.Warnings
			}
		}
	default:
		rec.Outcome, rec.BatchID, rec.Rows, rec.Contacts = RunQueued, out.BatchID, out.Summary.Rows, out.Summary.Contacts
	}
	if rerr := record(ctx, r.rdb, r.opts.Namespace, rec); rerr != nil {
		r.opts.Logger.Warn("schedule: could not record the tick", slog.String("schedule", p.Name), slog.Any("error", rerr))
	}
	return out, err
}

// record adds rec to its schedule's records in namespace, and the
// schedule to the names that have records. Names whose newest record is
// older than the records are kept (tickKeyTTL) leave the set then.
//
// The names key has no hash tag of a schedule: in a Redis Cluster it is on
// another slot than the records, so it is written by a command of its
// own, after them (a reader that finds a name finds its records).
func record(ctx context.Context, rdb redis.UniversalClient, namespace string, rec Run) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	key := runsKey(namespace, rec.Schedule)
	if _, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.LPush(ctx, key, b)
		p.LTrim(ctx, key, 0, MaxRuns-1)
		p.PExpire(ctx, key, tickKeyTTL)
		return nil
	}); err != nil {
		return err
	}
	names := namesKey(namespace)
	_, err = rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		// GT: a late record from a slow clock never moves a name back.
		p.ZAddGT(ctx, names, redis.Z{Score: float64(rec.At.UnixMilli()), Member: rec.Schedule})
		p.ZRemRangeByScore(ctx, names, "-inf", strconv.FormatInt(rec.At.Add(-tickKeyTTL).UnixMilli(), 10))
		p.PExpire(ctx, names, tickKeyTTL)
		return nil
	})
	if err != nil {
		return fmt.Errorf("list schedule %s among those with records: %w", rec.Schedule, err)
	}
	return nil
}

// Recorded returns the names of the schedules in namespace that have
// records (Runs), sorted: those of schedules no running scheduler has,
// too, and without the schedule file.
func Recorded(ctx context.Context, rdb redis.UniversalClient, namespace string) ([]string, error) {
	names, err := rdb.ZRange(ctx, namesKey(namespace), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("read the names of the schedules with records: %w", err)
	}
	slices.Sort(names)
	return names, nil
}

// Runs returns the newest n records (at most MaxRuns) of the schedule
// name in namespace, newest tick first.
func Runs(ctx context.Context, rdb redis.UniversalClient, namespace, name string, n int) ([]Run, error) {
	n = min(max(n, 1), MaxRuns)
	vs, err := rdb.LRange(ctx, runsKey(namespace, name), 0, int64(n-1)).Result()
	if err != nil {
		return nil, fmt.Errorf("read the runs of schedule %s: %w", name, err)
	}
	runs := make([]Run, 0, len(vs))
	for _, v := range vs {
		var rec Run
		if err := json.Unmarshal([]byte(v), &rec); err != nil {
			return nil, fmt.Errorf("read the runs of schedule %s: %w", name, err)
		}
		runs = append(runs, rec)
	}
	// Records go in as ticks run, and a tick retried or planned late runs
	// after later ones: read them by tick.
	slices.SortStableFunc(runs, func(a, b Run) int { return b.Tick.Compare(a.Tick) })
	return runs, nil
}
