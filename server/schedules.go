package server

import (
	"cmp"
	"context"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/notify"
	"github.com/bulkassign/bulkassign/schedule"
	"github.com/hibiken/asynq"
)

// ScheduleEntry is a schedule as the schedules page shows it: what a
// running `bulkassign schedule` registered, with the newest batch one of
// its ticks queued and the records of its recent ticks. A schedule no
// running scheduler has is listed by its records alone.
type ScheduleEntry struct {
	Name string `json:"name"`
	// Registered says a running scheduler has the entry; a schedule known
	// by its tick records alone has no cron, files or next tick.
	Registered bool   `json:"registered"`
	Cron       string `json:"cron"`
	Contacts   string `json:"contacts"`
	Rules      string `json:"rules"`
	Timezone   string `json:"timezone,omitempty"`
	// Notify is where the ticks' batches announce their end, and where a
	// tick held up by a paused batch is announced, its URL redacted, with
	// the format: "https://hooks.example.com/… (slack)".
	Notify string `json:"notify,omitempty"`
	// Next is the next tick; Prev the last one the scheduler queued (null
	// if none yet).
	Next *time.Time `json:"next"`
	Prev *time.Time `json:"prev"`
	// LastBatch is the newest batch of the schedule among the recent
	// batches, null if none.
	LastBatch *Batch `json:"lastBatch"`
	// Runs are the records of its newest ticks (at most scheduleRuns),
	// newest first: queued, skipped or failed, and why.
	Runs []schedule.Run `json:"runs"`
}

// scheduleRuns is how many tick records the schedules page shows of each
// schedule.
const scheduleRuns = 10

// schedules lists the schedule entries of the queue's namespace that
// running schedulers registered (asynq's scheduler heartbeats them to
// Redis; a scheduler stopped for long is not listed), and the schedules
// that left tick records, each with its newest records.
func (s *Server) schedules(ctx context.Context) ([]ScheduleEntry, error) {
	entries, err := s.deps.Inspector.SchedulerEntries()
	if err != nil {
		return nil, err
	}
	out := []ScheduleEntry{}
	seen := map[string]bool{}
	for _, e := range entries {
		if e.Task == nil || e.Task.Type() != jobs.TypePlan || queueOf(e.Opts) != s.deps.Queue {
			continue
		}
		p, err := jobs.ParsePlanPayload(e.Task.Payload())
		if err != nil || seen[p.Name] { // two schedulers of one file list it twice
			continue
		}
		seen[p.Name] = true
		cron := e.Spec
		if p.Timezone != "" {
			cron = strings.TrimPrefix(cron, "CRON_TZ="+p.Timezone+" ")
		}
		se := ScheduleEntry{Name: p.Name, Registered: true, Cron: cron, Contacts: p.Contacts, Rules: p.Rules, Timezone: p.Timezone,
			Next: timePtr(e.Next), Prev: timePtr(e.Prev)}
		if p.Notify != "" {
			se.Notify = notify.Redact(p.Notify) + " (" + cmp.Or(p.NotifyFormat, notify.FormatJSON) + ")"
		}
		out = append(out, se)
	}
	// The tick records are an extra: the entries are shown without them.
	recorded, err := schedule.Recorded(ctx, s.deps.Redis, s.deps.Queue)
	if err != nil {
		s.deps.Logger.Warn("schedules: the tick records are not shown", slog.Any("error", err))
	}
	for _, name := range recorded {
		if !seen[name] {
			out = append(out, ScheduleEntry{Name: name})
		}
	}
	for i := range out {
		runs, err := schedule.Runs(ctx, s.deps.Redis, s.deps.Queue, out[i].Name, scheduleRuns)
		if err != nil {
			s.deps.Logger.Warn("schedules: the tick records are not shown", slog.String("schedule", out[i].Name), slog.Any("error", err))
		}
		out[i].Runs = runs
		if out[i].Runs == nil {
			out[i].Runs = []schedule.Run{}
		}
	}
	// A name whose records expired since it was listed has nothing to show.
	out = slices.DeleteFunc(out, func(e ScheduleEntry) bool { return !e.Registered && len(e.Runs) == 0 })
	slices.SortFunc(out, func(a, b ScheduleEntry) int { return strings.Compare(a.Name, b.Name) })
	if len(out) == 0 {
		return out, nil
	}
	// A tick's batch is named "<schedule> <tick>".
	recent, err := s.recent(ctx, 1000, listFilter{})
	if err != nil {
		return nil, err
	}
	for i := range out {
		for j := range recent {
			if strings.HasPrefix(recent[j].Name, out[i].Name+" ") {
				out[i].LastBatch = &recent[j]
				break
			}
		}
	}
	return out, nil
}

// queueOf is the queue a task's options put it on.
func queueOf(opts []asynq.Option) string {
	q := jobs.Queue
	for _, o := range opts {
		if o.Type() == asynq.QueueOpt {
			if v, ok := o.Value().(string); ok {
				q = v
			}
		}
	}
	return q
}

func (s *Server) listSchedules(w http.ResponseWriter, r *http.Request) {
	out, err := s.schedules(r.Context())
	if err != nil {
		s.internal(w, "list schedules", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"schedules": out})
}

func (s *Server) schedulesPage(w http.ResponseWriter, r *http.Request) {
	out, err := s.schedules(r.Context())
	if err != nil {
		s.deps.Logger.Error("list schedules", slogBy(r.Context()), slog.Any("error", err))
		http.Error(w, "the schedules could not be read from Redis: "+err.Error(), http.StatusInternalServerError)
		return
	}
	s.render(w, http.StatusOK, "schedules.html", map[string]any{"Schedules": out, "Who": principal(r.Context())})
}
