package server

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/bulkassign/bulkassign/jobs"
	"golang.org/x/sync/singleflight"
)

// FailedRow is a failed or invalid row as the batch page lists it.
type FailedRow struct {
	Line      int    `json:"line"`
	ContactID string `json:"aiContactId"`
	MemberID  string `json:"teamMemberId"`
	// MemberEmail is the member's email when the row named it so.
	MemberEmail string `json:"teamMemberEmail,omitempty"`
	Status      string `json:"status"` // failed or invalid
	Reason      string `json:"reason"`
	HTTPStatus  int    `json:"httpStatus,omitempty"`
	Attempts    int    `json:"attempts,omitempty"`
	Error       string `json:"error"`
}

// Failures is the answer to GET /api/v1/batches/{id}/failures.
type Failures struct {
	BatchID string `json:"batchId"`
	// Reasons counts the batch's failed and invalid rows by reason code
	// (the batch's counters, always current).
	Reasons map[string]int64 `json:"reasons"`
	// Reason is the filter asked for; "" for every reason.
	Reason string `json:"reason,omitempty"`
	// Rows are the first failed and invalid rows (with Reason, of that
	// reason), in line order, at most MaxFailedRows.
	Rows []FailedRow `json:"rows"`
	// Matching is how many rows of the filter the scan found; more than
	// len(Rows) when the list is cut.
	Matching int64 `json:"matching"`
	// AsOf is when the rows were read from Redis: while a batch runs they
	// are read again at most every few seconds (longer for big batches).
	AsOf time.Time `json:"asOf"`
}

// MaxFailedRows bounds the rows the failures list shows.
const MaxFailedRows = 200

// failureSnap is one scan of a batch's rows: the first MaxFailedRows
// failed rows overall and of each reason.
type failureSnap struct {
	finishedAt time.Time // of a finished batch: the scan is final
	status     string
	takenAt    time.Time
	took       time.Duration
	all        []FailedRow
	byReason   map[string][]FailedRow
	counts     map[string]int64
	total      int64
}

// failureCache keeps the scans of recent batches.
type failureCache struct {
	group singleflight.Group
	mu    sync.Mutex
	snaps map[string]*failureSnap
}

// maxFailureSnaps bounds the batches whose scans are kept.
const maxFailureSnaps = 64

// minRescan is the shortest time between two scans of a running batch; a
// big batch, slow to scan, is scanned less often (10 times its scan time).
const minRescan = 2 * time.Second

func (c *failureCache) get(id string) *failureSnap {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.snaps[id]
}

func (c *failureCache) put(id string, s *failureSnap) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.snaps == nil {
		c.snaps = map[string]*failureSnap{}
	}
	if _, ok := c.snaps[id]; !ok && len(c.snaps) >= maxFailureSnaps {
		var oldest string
		for k, v := range c.snaps {
			if oldest == "" || v.takenAt.Before(c.snaps[oldest].takenAt) {
				oldest = k
			}
		}
		delete(c.snaps, oldest)
	}
	c.snaps[id] = s
}

// fresh reports whether snap still describes b.
func (snap *failureSnap) fresh(b jobs.Batch, now time.Time) bool {
	if snap == nil {
		return false
	}
	if jobs.Finished(b.Status) {
		return snap.status == b.Status && snap.finishedAt.Equal(b.FinishedAt)
	}
	return now.Sub(snap.takenAt) < max(minRescan, 10*snap.took)
}

// failureScan returns a scan of b's rows that is fresh enough.
func (s *Server) failureScan(ctx context.Context, b jobs.Batch) (*failureSnap, error) {
	if snap := s.failures.get(b.ID); snap.fresh(b, s.opts.Now()) {
		return snap, nil
	}
	v, err, _ := s.failures.group.Do(b.ID, func() (any, error) {
		if snap := s.failures.get(b.ID); snap.fresh(b, s.opts.Now()) {
			return snap, nil
		}
		start := time.Now()
		snap := &failureSnap{status: b.Status, byReason: map[string][]FailedRow{}, counts: map[string]int64{}}
		if jobs.Finished(b.Status) {
			snap.finishedAt = b.FinishedAt
		}
		for e, err := range s.deps.Store.Entries(ctx, b.ID) {
			if err != nil {
				return nil, err
			}
			status := e.Result.Status
			if status == "" && !e.Row.Valid() {
				status = jobs.StatusInvalid
			}
			if status != jobs.StatusFailed && status != jobs.StatusInvalid {
				continue
			}
			r := FailedRow{Line: e.Row.Line, ContactID: e.Row.ContactID, MemberID: e.Row.MemberID, MemberEmail: e.Row.MemberEmail, Status: string(status),
				Reason: e.Result.Reason, HTTPStatus: e.Result.HTTPStatus, Attempts: e.Result.Attempts, Error: e.Result.Error}
			if r.Reason == "" {
				r.Reason = e.Row.Reason
			}
			if r.Error == "" {
				r.Error = e.Row.Error
			}
			if r.Error == "" {
				r.Error = r.Reason
			}
			snap.total++
			snap.counts[r.Reason]++
			if len(snap.all) < MaxFailedRows {
				snap.all = append(snap.all, r)
			}
			if len(snap.byReason[r.Reason]) < MaxFailedRows {
				snap.byReason[r.Reason] = append(snap.byReason[r.Reason], r)
			}
		}
		snap.took = time.Since(start)
		snap.takenAt = s.opts.Now()
		s.failures.put(b.ID, snap)
		return snap, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*failureSnap), nil
}

func (s *Server) listFailures(w http.ResponseWriter, r *http.Request) {
	b, ok := s.batch(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	limit := MaxFailedRows
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxFailedRows {
			writeError(w, http.StatusBadRequest, "limit: want 1 to "+strconv.Itoa(MaxFailedRows))
			return
		}
		limit = n
	}
	snap, err := s.failureScan(r.Context(), b)
	if err != nil {
		s.internal(w, "read failed rows", err)
		return
	}
	out := Failures{BatchID: b.ID, Reasons: b.Errors, Reason: q.Get("reason"), AsOf: snap.takenAt, Rows: snap.all, Matching: snap.total}
	if out.Reasons == nil {
		out.Reasons = map[string]int64{}
	}
	if out.Reason != "" {
		out.Rows, out.Matching = snap.byReason[out.Reason], snap.counts[out.Reason]
	}
	out.Rows = append([]FailedRow{}, out.Rows[:min(limit, len(out.Rows))]...)
	writeJSON(w, http.StatusOK, out)
}
