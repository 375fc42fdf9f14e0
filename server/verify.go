package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/report"
	"github.com/bulkassign/bulkassign/verify"
	"github.com/bulkassign/bulkassign/worker"
	"github.com/redis/go-redis/v9"
)

// The Verify button of a finished batch reads each contact's agents back
// from the CRM (verify.Batch) in the background and compares them with
// what the batch's succeeded rows applied. Its state is kept in Redis, so
// that every serve process shows the same verification and only one runs
// per batch at a time, with the batch's other serve keys' expiry:
//
//	NS:serve:verify:<id>  hash: status, run (the running verification's
//	                      random id), heartbeat (unix ms), record (the
//	                      Verification as JSON, its first drift rows)
//
// The whole drift is drift.csv in ReportDir/<id>/, where `bulkassign
// verify ID --out` writes it too: a file, not a Redis value, as every
// report of a batch is.

// CRM is how serve reads the CRM back for the Verify button: with the
// client (its key probe) and limiter (the shared rate) the calls are made
// with, and their concurrency and attempts.
type CRM struct {
	Client  *worker.Client
	Limiter worker.Limiter
	Read    worker.ReadOptions
}

// Verification statuses.
const (
	// VerifyNone: the batch has not been verified; POST to start.
	VerifyNone    = "none"
	VerifyRunning = "running"
	VerifyDone    = "done"
	VerifyFailed  = "failed"
)

// Verification is a verify of a finished batch, as POST and GET
// /api/v1/batches/{id}/verify answer it.
type Verification struct {
	BatchID string `json:"batchId"`
	// Status is none (never verified: Error says how to start), running,
	// done (every contact read, or all but Unknown) or failed (Error says
	// why; nothing was written).
	Status string `json:"status"`
	// By is the name of the token that pressed Verify.
	By         string     `json:"by"`
	StartedAt  time.Time  `json:"startedAt"`
	FinishedAt *time.Time `json:"finishedAt"`
	// Contacts have an expected state (a succeeded row); Read of them
	// have been read so far. Matching are as expected, Drifted are not
	// (NotFound of them the CRM no longer knows), Unknown could not be
	// read: verify again for them.
	Contacts int `json:"contacts"`
	Read     int `json:"read"`
	Matching int `json:"matching"`
	Drifted  int `json:"drifted"`
	NotFound int `json:"notFound"`
	Unknown  int `json:"unknown"`
	// Error is why a failed verification stopped.
	Error string `json:"error,omitempty"`
	// Drift are the first contacts that drifted or could not be read, at
	// most 100, in the batch's order; drift.csv has them all.
	Drift []DriftRow `json:"drift"`
	// DriftFile is where drift.csv is downloaded, once done.
	DriftFile string `json:"driftFile,omitempty"`
}

// DriftRow is one contact of a verification's drift, as drift.csv has it.
type DriftRow struct {
	Contact    string   `json:"aiContactId"`
	Expected   []string `json:"expected"`
	Actual     []string `json:"actual"`
	Missing    []string `json:"missing"`
	Unexpected []string `json:"unexpected"`
	// Match is exact (a replace was applied: exactly Expected) or
	// contains (adds only: at least Expected).
	Match string `json:"match"`
	// Error is why the contact could not be read (or that the CRM no
	// longer knows it).
	Error string `json:"error,omitempty"`
}

// maxDriftShown bounds the drift rows a verification carries.
const maxDriftShown = 100

// verifyFlush is how often a running verification's counts are written
// to Redis; verifyStale is how long a running one may go unwritten before
// it is taken for dead (its serve process stopped).
const (
	verifyFlush = time.Second
	verifyStale = 30 * time.Second
)

// errNoCRM refuses a verify on a server without the CRM's API key.
var errNoCRM = &userError{status: http.StatusBadRequest,
	msg: "Verify reads each contact back from the CRM, and this server has no CRM API key: start serve with BULKASSIGN_API_KEY (or --api-key) and --api-url, the key and URL the workers call with"}

// verifier runs the server's verifications in the background.
type verifier struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newVerifier() *verifier {
	ctx, cancel := context.WithCancel(context.Background())
	return &verifier{ctx: ctx, cancel: cancel}
}

// close stops the verifications running and waits for them to say so.
func (v *verifier) close() {
	v.cancel()
	v.wg.Wait()
}

func (s *Server) verifyKey(id string) string { return s.deps.Queue + ":serve:verify:" + id }

// driftPath is the batch's drift.csv.
func (s *Server) driftPath(id string) string {
	return filepath.Join(report.Dir(s.opts.ReportDir, id), report.DriftFile)
}

// claimVerifyScript starts a verification unless one runs: it returns the
// running one's record, or nil once ARGV's is in place.
// KEYS[1] the verify hash; ARGV: run, now ms, stale ms, record, ttl ms (0: none).
var claimVerifyScript = redis.NewScript(`
local st = redis.call('HMGET', KEYS[1], 'status', 'heartbeat', 'record')
if st[1] == 'running' and tonumber(st[2]) + tonumber(ARGV[3]) > tonumber(ARGV[2]) then
  return st[3]
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'status', 'running', 'run', ARGV[1], 'heartbeat', ARGV[2], 'record', ARGV[4])
if tonumber(ARGV[5]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[5]) end
return false
`)

// saveVerifyScript writes a verification's record while it is still the
// batch's: a run taken over (its process was thought dead) writes nothing.
// KEYS[1] the verify hash; ARGV: run, status, now ms, record, ttl ms.
var saveVerifyScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'run') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'heartbeat', ARGV[3], 'record', ARGV[4])
if tonumber(ARGV[5]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[5]) end
return 1
`)

func (s *Server) startVerify(w http.ResponseWriter, r *http.Request) {
	b, ok := s.batch(w, r)
	if !ok {
		return
	}
	if err := verifiable(b); err != nil {
		s.answerError(w, "verify", err)
		return
	}
	crm := s.deps.CRM
	if crm == nil {
		s.answerError(w, "verify", errNoCRM)
		return
	}
	ctx := r.Context()
	now := s.opts.Now()
	v := Verification{BatchID: b.ID, Status: VerifyRunning, By: principal(ctx), StartedAt: now, Drift: []DriftRow{}}
	rec, err := json.Marshal(v)
	if err != nil {
		s.internal(w, "verify", err)
		return
	}
	var id [16]byte
	_, _ = rand.Read(id[:])
	run := hex.EncodeToString(id[:])
	cur, err := claimVerifyScript.Run(ctx, s.deps.Redis, []string{s.verifyKey(b.ID)},
		run, now.UnixMilli(), verifyStale.Milliseconds(), rec, s.infoTTL().Milliseconds()).Text()
	switch {
	case err == nil: // one runs already: it is the answer
		var running Verification
		if err := json.Unmarshal([]byte(cur), &running); err != nil {
			s.internal(w, "read the running verify", err)
			return
		}
		writeJSON(w, http.StatusOK, running)
		return
	case !errors.Is(err, redis.Nil):
		s.internal(w, "start the verify", err)
		return
	}
	s.deps.Logger.Info("verify started", slog.String("batch", b.ID), slogBy(ctx))
	// A refused key is tried again, once, for the operator who asks:
	// the calls go one at a time until it is answered.
	crm.Client.Reprobe()
	s.verifies.wg.Add(1)
	go func() {
		defer s.verifies.wg.Done()
		s.runVerify(crm, run, v)
	}()
	w.Header().Set("Location", "/api/v1/batches/"+b.ID+"/verify")
	writeJSON(w, http.StatusAccepted, v)
}

// verifiable refuses a batch that has not finished, or never sent a row.
func verifiable(b jobs.Batch) error {
	switch b.Status {
	case jobs.BatchDone, jobs.BatchCancelled:
		return nil
	case jobs.BatchAbandoned:
		return &userError{status: http.StatusConflict, msg: fmt.Sprintf("batch %s was abandoned (its import died part-way): none of its rows was sent, so there is nothing to verify", b.ID)}
	}
	return &userError{status: http.StatusConflict, msg: fmt.Sprintf("batch %s is %s: Verify compares the CRM with a finished batch (done or cancelled), as rows still to be sent would show as drift; wait for it to end, or cancel it", b.ID, b.Status)}
}

// runVerify reads the batch's contacts back, writing its progress every
// verifyFlush, then drift.csv and the result.
func (s *Server) runVerify(crm *CRM, run string, v Verification) {
	ctx := s.verifies.ctx
	log := s.deps.Logger.With(slog.String("batch", v.BatchID))
	var mu sync.Mutex
	sum := verify.Summary{}
	flushed := make(chan struct{})
	stop := make(chan struct{})
	go func() {
		defer close(flushed)
		t := time.NewTicker(verifyFlush)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			mu.Lock()
			cur := v
			cur.setCounts(sum)
			mu.Unlock()
			if err := s.saveVerify(ctx, run, cur); err != nil && ctx.Err() == nil {
				log.Warn("verify: write progress", slog.Any("error", err))
			}
		}
	}()
	got, drifts, err := verify.Batch(ctx, s.deps.Store, crm.Client, crm.Limiter, v.BatchID, verify.Options{
		Read: crm.Read,
		Progress: func(x verify.Summary) {
			mu.Lock()
			sum = x
			mu.Unlock()
		},
	})
	close(stop)
	<-flushed
	if err == nil {
		err = report.WriteDrift(s.driftPath(v.BatchID), drifts)
	}
	v.setCounts(got)
	end := s.opts.Now()
	v.FinishedAt = &end
	if err != nil {
		v.Status, v.Error = VerifyFailed, s.verifyFailure(ctx, err, got)
		log.Warn("verify failed", slog.Any("error", err), slog.Int("read", got.Read), slog.Int("contacts", got.Contacts))
	} else {
		v.Status, v.DriftFile = VerifyDone, "/api/v1/batches/"+v.BatchID+"/"+report.DriftFile
		for _, d := range drifts[:min(len(drifts), maxDriftShown)] {
			v.Drift = append(v.Drift, driftRow(d))
		}
		log.Info("verify done", slog.Int("contacts", got.Contacts), slog.Int("drifted", got.Drifted), slog.Int("unknown", got.Unknown))
	}
	// The end is written even when serve is stopping.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := s.saveVerify(wctx, run, v); err != nil {
		log.Error("verify: write the result", slog.Any("error", err))
	}
}

// verifyFailure says why a verification stopped, and what to do.
func (s *Server) verifyFailure(ctx context.Context, err error, got verify.Summary) string {
	read := fmt.Sprintf("%d of %d contacts read", got.Read, got.Contacts)
	switch {
	case errors.Is(err, worker.ErrUnauthorized):
		return "the CRM refused serve's API key (" + read + ", nothing compared): set the right BULKASSIGN_API_KEY (or --api-key) for --api-url and restart serve, then verify again"
	case ctx.Err() != nil:
		return "serve stopped before the verify finished (" + read + "): verify again"
	case errors.Is(err, jobs.ErrNotFound):
		return "the batch is gone (it expired after its retention, or was deleted): there is nothing to verify"
	}
	return "verify stopped (" + read + ", nothing written): " + err.Error() + "; verify again"
}

func (v *Verification) setCounts(x verify.Summary) {
	v.Contacts, v.Read, v.Matching, v.Drifted, v.NotFound, v.Unknown = x.Contacts, x.Read, x.Matching, x.Drifted, x.NotFound, x.Unknown
}

// driftRow is a drift as the API shows it: drift.csv's row.
func driftRow(d verify.Drift) DriftRow {
	list := func(ids []string) []string {
		if ids == nil {
			return []string{}
		}
		return ids
	}
	r := DriftRow{Contact: d.Contact, Expected: list(d.Agents), Actual: list(d.Actual), Missing: list(d.Missing),
		Unexpected: list(d.Unexpected), Match: report.MatchContains}
	if d.Exact {
		r.Match = report.MatchExact
	}
	if d.Err != nil {
		r.Error = d.Err.Error()
	}
	return r
}

// saveVerify writes v as run's record.
func (s *Server) saveVerify(ctx context.Context, run string, v Verification) error {
	rec, err := json.Marshal(v)
	if err != nil {
		return err
	}
	err = saveVerifyScript.Run(ctx, s.deps.Redis, []string{s.verifyKey(v.BatchID)},
		run, v.Status, s.opts.Now().UnixMilli(), rec, s.infoTTL().Milliseconds()).Err()
	if err != nil {
		return fmt.Errorf("write the verify of batch %s: %w", v.BatchID, err)
	}
	return nil
}

func (s *Server) getVerify(w http.ResponseWriter, r *http.Request) {
	b, ok := s.batch(w, r)
	if !ok {
		return
	}
	st, err := s.deps.Redis.HMGet(r.Context(), s.verifyKey(b.ID), "heartbeat", "record").Result()
	if err != nil {
		s.internal(w, "read the verify", err)
		return
	}
	rec, _ := st[1].(string)
	if rec == "" {
		// Not a 404: the page asks for every finished batch it shows.
		writeJSON(w, http.StatusOK, Verification{BatchID: b.ID, Status: VerifyNone, Drift: []DriftRow{},
			Error: "batch " + b.ID + " has not been verified yet: POST /api/v1/batches/" + b.ID + "/verify (the page's Verify button) reads its contacts back from the CRM"})
		return
	}
	var v Verification
	if err := json.Unmarshal([]byte(rec), &v); err != nil {
		s.internal(w, "read the verify", err)
		return
	}
	hb, _ := st[0].(string)
	beat, _ := strconv.ParseInt(hb, 10, 64)
	if v.Status == VerifyRunning && s.opts.Now().Sub(time.UnixMilli(beat)) > verifyStale {
		v.Status = VerifyFailed
		v.Error = "the serve process verifying this batch stopped before it finished: verify again"
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) downloadDrift(w http.ResponseWriter, r *http.Request) {
	b, ok := s.batch(w, r)
	if !ok {
		return
	}
	path := s.driftPath(b.ID)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		writeError(w, http.StatusNotFound, report.DriftFile+": batch "+b.ID+" has not been verified by this server yet: press Verify on its page (POST /api/v1/batches/"+b.ID+"/verify), then download it once the verify is done")
		return
	}
	if err != nil {
		s.internal(w, "read "+report.DriftFile, err)
		return
	}
	defer f.Close()
	s.sendFile(w, b.ID, report.DriftFile, "text/csv; charset=utf-8", f)
}
