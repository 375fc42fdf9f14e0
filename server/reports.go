package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/report"
	"github.com/prometheus/client_golang/prometheus"
)

// The report of a finished batch is written once, into ReportDir/<id>/
// (the same folder `bulkassign report` writes), and every later download
// is served from there without reading the batch's rows again. It is
// written again only when the batch changed since: its status or end time
// differs from the summary.json on disk (retried dead letters reopen a
// done batch, which then ends again). A batch still running is written to
// a temporary folder for each download, since its rows still change.

// reportCache writes report folders, one writer per batch at a time.
type reportCache struct {
	dir    string
	builds prometheus.Counter

	mu      sync.Mutex
	writing map[string]*sync.Mutex
}

func newReportCache(dir string) *reportCache {
	return &reportCache{
		dir: dir,
		builds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bulkassign_serve_report_writes_total",
			Help: "Report folders serve wrote from a batch's rows in Redis (a finished batch's report is written once, then served from disk).",
		}),
		writing: map[string]*sync.Mutex{},
	}
}

// lock serialises the writers of one batch's report.
func (c *reportCache) lock(id string) func() {
	c.mu.Lock()
	m, ok := c.writing[id]
	if !ok {
		m = &sync.Mutex{}
		c.writing[id] = m
	}
	c.mu.Unlock()
	m.Lock()
	return m.Unlock
}

// folder returns the folder holding b's report files, written if needed,
// and a function to call once the files are read (it removes a temporary
// folder).
func (s *Server) reportFolder(ctx context.Context, b jobs.Batch) (string, func(), error) {
	c := s.reports
	if !jobs.Finished(b.Status) {
		tmp, err := os.MkdirTemp(s.opts.TempDir, "bulkassign-report-")
		if err != nil {
			return "", nil, err
		}
		dir := filepath.Join(tmp, "r")
		c.builds.Inc()
		if _, err := report.WriteBatch(ctx, s.deps.Store, b.ID, dir); err != nil {
			os.RemoveAll(tmp)
			return "", nil, err
		}
		return dir, func() { os.RemoveAll(tmp) }, nil
	}
	dir := report.Dir(c.dir, b.ID)
	if dir == "" {
		return "", nil, fmt.Errorf("batch id %q cannot name a folder", b.ID)
	}
	unlock := c.lock(b.ID)
	defer unlock()
	if current(dir, b) {
		return dir, func() {}, nil
	}
	c.builds.Inc()
	if _, err := report.WriteBatch(ctx, s.deps.Store, b.ID, dir); err != nil {
		return "", nil, err
	}
	return dir, func() {}, nil
}

// current reports whether dir holds the report of b as it is now.
func current(dir string, b jobs.Batch) bool {
	data, err := os.ReadFile(filepath.Join(dir, report.SummaryFile))
	if err != nil {
		return false
	}
	var sum struct {
		Status     string    `json:"status"`
		FinishedAt time.Time `json:"finishedAt"`
	}
	if json.Unmarshal(data, &sum) != nil {
		return false
	}
	if sum.Status != b.Status || !sum.FinishedAt.Equal(b.FinishedAt) {
		return false
	}
	if b.RecordPrevious {
		if _, err := os.Stat(filepath.Join(dir, report.RollbackFile)); errors.Is(err, fs.ErrNotExist) {
			return false
		}
	}
	return true
}
