package server

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bulkassign/bulkassign/importer"
	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/notify"
	"github.com/bulkassign/bulkassign/report"
)

// Batch is a batch as the API shows it.
type Batch struct {
	ID          string            `json:"batchId"`
	Name        string            `json:"name"`
	Source      string            `json:"source"`
	Status      string            `json:"status"`
	PauseCode   string            `json:"pauseCode,omitempty"`
	PauseReason string            `json:"pauseReason,omitempty"`
	Rows        int64             `json:"rows"`
	Done        int64             `json:"done"`
	Pending     int64             `json:"pending"`
	Succeeded   int64             `json:"succeeded"`
	Failed      int64             `json:"failed"`
	Invalid     int64             `json:"invalid"`
	Contacts    int64             `json:"contacts"`
	APICalls    int64             `json:"apiCalls"`
	Retries     int64             `json:"retries"`
	RateLimited int64             `json:"rateLimited"`
	Percent     float64           `json:"percent"`
	RowsPerSec  float64           `json:"rowsPerSecond"`
	ETASeconds  *float64          `json:"etaSeconds"` // null when unknown or finished
	CreatedAt   time.Time         `json:"createdAt"`
	StartedAt   *time.Time        `json:"startedAt"`
	FinishedAt  *time.Time        `json:"finishedAt"`
	Errors      map[string]int64  `json:"errors"`
	Links       map[string]string `json:"links"`
	// UploadedBy is the name of the token that uploaded the batch through
	// serve; "" for a batch queued otherwise (import, schedule, plan).
	UploadedBy string `json:"uploadedBy,omitempty"`
	// Origin says who started the batch and how (serve: the token's name
	// and the client's address; schedule: the schedule's name; the CLI:
	// user@host), and the settings its calls are made with when the
	// process that started it applies it; absent when unknown.
	Origin *jobs.Origin `json:"origin,omitempty"`
	// StartedBy is Origin for people: "alice (serve; from 10.0.0.7)".
	StartedBy string `json:"startedBy,omitempty"`
	// Mapping is the saved column mapping the upload used, if any.
	Mapping string `json:"mapping,omitempty"`
}

// Who is who started the batch, for people: StartedBy, else UploadedBy.
func (b Batch) Who() string { return cmp.Or(b.StartedBy, b.UploadedBy) }

// UploadResult is the answer to POST /api/v1/batches.
type UploadResult struct {
	BatchID string           `json:"batchId,omitempty"`
	DryRun  bool             `json:"dryRun"`
	Summary importer.Summary `json:"summary"`
	// InvalidRows are the first invalid rows of the file.
	InvalidRows []InvalidRow `json:"invalidRows"`
	// DuplicateOf, in a dry run, is the batch the same file (the same
	// content, for the same API URL) became within the retention: the
	// upload itself would be refused unless again=true.
	DuplicateOf *Batch `json:"duplicateOf,omitempty"`
	// Notify is where the batch's end will be posted, its URL redacted;
	// NotifyError says why it will not be, when notify was given and
	// could not be attached (the batch is queued all the same).
	Notify      string `json:"notify,omitempty"`
	NotifyError string `json:"notifyError,omitempty"`
}

// InvalidRow is a row the importer will not send, and why.
type InvalidRow struct {
	Line      int    `json:"line"`
	ContactID string `json:"aiContactId"`
	MemberID  string `json:"teamMemberId"`
	Reason    string `json:"reason"`
	Error     string `json:"error"`
}

// maxInvalidShown bounds InvalidRows.
const maxInvalidShown = 20

// reportFiles are the downloads of a batch, with their content types.
var reportFiles = map[string]string{
	report.SucceededFile: "text/csv; charset=utf-8",
	report.FailedFile:    "text/csv; charset=utf-8",
	report.SummaryFile:   "application/json",
	// Only batches uploaded with recordPrevious=true have these.
	report.RollbackFile:             "text/csv; charset=utf-8",
	report.RollbackUnrestorableFile: "text/csv; charset=utf-8",
}

// uploadParams are an upload's settings: from the query, or from form
// fields sent before the file (the query wins).
type uploadParams map[string]string

func (p uploadParams) get(k string) string { return p[k] }

// uploadFields are the settings an upload may carry, with their size
// limits.
var uploadFields = map[string]int64{
	"name": 1024, "format": 1024, "dryRun": 1024, "recordPrevious": 1024, "filename": 1024,
	"preflight": 1024, "mappingName": 1024, "mapping": 64 << 10,
	"again": 1024, "notify": 4096, "notifyFormat": 1024,
}

// readUpload reads an upload's settings and returns the file as a stream:
// the raw body, or the multipart field "file" (fields before it are
// settings). It answers the request itself when it returns false.
func (s *Server) readUpload(w http.ResponseWriter, r *http.Request, limit int64, overLimit string) (uploadParams, string, io.Reader, bool) {
	if r.ContentLength > limit {
		tooLarge(w, overLimit)
		return nil, "", nil, false
	}
	body := &limitedBody{ReadCloser: http.MaxBytesReader(w, r.Body, limit)}
	r.Body = body
	q := r.URL.Query()
	params := uploadParams{}
	for k := range uploadFields {
		params[k] = q.Get(k)
	}
	var in io.Reader
	file := "upload"
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt == "multipart/form-data" {
		mr, err := r.MultipartReader()
		if err != nil {
			writeError(w, http.StatusBadRequest, "read the multipart form: "+err.Error())
			return nil, "", nil, false
		}
		// Small fields may come before the file; the file is read as a
		// stream straight into the importer, never held in memory.
		for {
			part, err := mr.NextPart()
			if err != nil {
				if body.hit {
					tooLarge(w, overLimit)
					return nil, "", nil, false
				}
				writeError(w, http.StatusBadRequest, `no file in the form: send the file in a field named "file"`)
				return nil, "", nil, false
			}
			field := part.FormName()
			if field == "file" {
				in = part
				if n := part.FileName(); n != "" {
					file = n
				}
				break
			}
			if max, ok := uploadFields[field]; ok {
				b, err := io.ReadAll(io.LimitReader(part, max))
				if err != nil {
					if body.hit {
						tooLarge(w, overLimit)
						return nil, "", nil, false
					}
					writeError(w, http.StatusBadRequest, "read form field "+field+": "+err.Error())
					return nil, "", nil, false
				}
				if params[field] == "" {
					params[field] = string(b)
				}
			}
		}
	} else {
		in = r.Body
		if params["format"] == "" {
			params["format"] = formatOfType(mt)
		}
	}
	if params["filename"] != "" && file == "upload" {
		file = params["filename"]
	}
	return params, cleanName(file), in, true
}

// uploadMapping is the column mapping of an upload: given inline (mapping:
// a --map file's YAML, or JSON) or by the name it was saved under
// (mappingName). It returns no mapping when neither is given.
func (s *Server) uploadMapping(ctx context.Context, p uploadParams) (map[string]string, string, error) {
	text, name := strings.TrimSpace(p.get("mapping")), strings.TrimSpace(p.get("mappingName"))
	switch {
	case text != "" && name != "":
		return nil, "", &userError{status: http.StatusBadRequest, msg: "give mapping or mappingName, not both"}
	case text != "":
		m, err := parseMapping(text, "the upload's mapping")
		return m, "the upload's mapping", err
	case name != "":
		m, err := s.savedMapping(ctx, name)
		return m, "saved mapping " + name, err
	}
	return nil, "", nil
}

func boolParam(p uploadParams, k string) (bool, error) {
	v := p.get(k)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, &userError{status: http.StatusBadRequest, msg: fmt.Sprintf("%s=%q: want true or false", k, v)}
	}
	return b, nil
}

func (s *Server) upload(w http.ResponseWriter, r *http.Request) {
	params, file, in, ok := s.readUpload(w, r, s.opts.MaxUpload, s.uploadTooLarge())
	if !ok {
		return
	}
	body := r.Body.(*limitedBody)
	ctx := r.Context()
	format, err := importer.ParseFormat(params.get("format"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	flags := map[string]bool{}
	for _, k := range []string{"dryRun", "recordPrevious", "preflight", "again"} {
		if flags[k], err = boolParam(params, k); err != nil {
			s.answerError(w, "upload", err)
			return
		}
	}
	dryRun, preflight := flags["dryRun"], flags["preflight"]
	if preflight && s.deps.Directory == nil {
		writeError(w, http.StatusBadRequest, "preflight needs the member list, and this server has no CRM API key: start serve with BULKASSIGN_API_KEY, or upload without preflight")
		return
	}
	target, notifies, err := uploadTarget(params)
	if err != nil {
		s.answerError(w, "upload", err)
		return
	}
	mapping, mappingName, err := s.uploadMapping(ctx, params)
	if err != nil {
		s.answerError(w, "upload", err)
		return
	}
	name := strings.TrimSpace(params.get("name"))
	if len(name) > 200 {
		name = name[:200]
	}

	// The whole upload first: its fingerprint decides whether it is queued.
	spool, fp, err := s.spoolUpload(in)
	if body.hit {
		tooLarge(w, s.uploadTooLarge())
		return
	}
	if err != nil {
		s.answerError(w, "upload", err)
		return
	}
	defer func() {
		spool.Close()
		_ = os.Remove(spool.Name())
	}()
	if !dryRun {
		release, err := s.claimFile(ctx, fp)
		if err != nil {
			s.answerError(w, "upload", err)
			return
		}
		defer release()
	}
	var earlier *Batch
	if dryRun || !flags["again"] {
		err := s.deps.Store.CheckFile(ctx, fp)
		var dup *jobs.DuplicateError
		switch {
		case errors.As(err, &dup) && !dryRun:
			s.deps.Logger.Info("upload refused: the same file was queued already", slog.String("file", file), slogBy(ctx), slog.String("earlier", dup.Batch.ID))
			s.duplicateAnswer(ctx, w, dup)
			return
		case errors.As(err, &dup):
			out, err := s.withUploads(ctx, []jobs.Batch{dup.Batch})
			if err != nil {
				s.internal(w, "read the earlier batch", err)
				return
			}
			earlier = &out[0]
		case err != nil:
			s.internal(w, "look up the file's earlier batches", err)
			return
		}
	}

	in, invalid := sampleInvalid(spool, file, format, s.opts.IDFormat, mapping, mappingName, maxInvalidShown)
	sum, err := s.deps.Importer.Import(ctx, in, importer.Options{File: file, Format: format, IDFormat: s.opts.IDFormat,
		Name: name, DryRun: dryRun, RecordPrevious: flags["recordPrevious"], Directory: s.deps.Directory,
		Mapping: mapping, MappingName: mappingName, Preflight: preflight})
	rows := invalid()
	var fe *importer.FileError
	switch {
	case errors.As(err, &fe):
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"error": fe.Error(), "line": fe.Line, "file": fe.File})
		return
	case err != nil:
		s.deps.Logger.Error("upload failed", slog.String("file", file), slogBy(ctx), slog.Any("error", err))
		writeError(w, http.StatusInternalServerError, "the upload could not be queued: "+err.Error())
		return
	}
	if rows == nil {
		rows = []InvalidRow{}
	}
	res := UploadResult{BatchID: sum.BatchID, DryRun: dryRun, Summary: sum, InvalidRows: rows, DuplicateOf: earlier}
	if dryRun {
		writeJSON(w, http.StatusOK, res)
		return
	}
	s.queued(r, &res, fp, uploadInfo{By: principal(ctx), Mapping: params.get("mappingName"), Preflight: preflight}, target, notifies)
	s.deps.Logger.Info("batch queued", slog.String("batch", sum.BatchID), slog.String("file", file), slogBy(ctx),
		slog.Int("rows", sum.Rows), slog.Int("invalid", sum.Invalid))
	w.Header().Set("Location", "/api/v1/batches/"+sum.BatchID)
	writeJSON(w, http.StatusCreated, res)
}

// queued records what is known of a batch an upload just queued: the
// file it came from, who started it, and where its end is announced. None
// of it is needed to apply the batch: a failure is logged (and, for the
// notice, answered), the batch runs all the same.
func (s *Server) queued(r *http.Request, res *UploadResult, fp string, u uploadInfo, t notify.Target, notifies bool) {
	ctx, id := r.Context(), res.BatchID
	log := s.deps.Logger.With(slog.String("batch", id))
	if err := s.deps.Store.RememberFile(ctx, fp, id); err != nil {
		log.Warn("the file of the batch could not be remembered: it is not recognised if sent again", slog.Any("error", err))
	}
	o := jobs.Origin{Via: "serve", By: u.By, Client: s.clientAddr(r), Settings: s.opts.Settings}
	if err := s.deps.Store.SetOrigin(ctx, id, o); err != nil {
		log.Warn("who started the batch could not be recorded", slog.Any("error", err))
	}
	if err := s.recordUpload(ctx, id, u); err != nil {
		log.Warn("who uploaded the batch could not be recorded", slog.Any("error", err))
	}
	if !notifies {
		return
	}
	if err := s.notifier.Attach(ctx, id, t); err != nil {
		log.Warn("notify: the end of the batch will not be announced", slog.Any("error", err))
		res.NotifyError = err.Error() + ": the end of batch " + id + " will not be announced"
		return
	}
	res.Notify = t.String()
}

// limitedBody notes when the upload went over the limit, however the
// error is wrapped on its way up.
type limitedBody struct {
	io.ReadCloser
	hit bool
}

func (b *limitedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		b.hit = true
	}
	return n, err
}

// tooLarge answers a body over its limit with msg.
func tooLarge(w http.ResponseWriter, msg string) {
	w.Header().Set("Connection", "close")
	writeError(w, http.StatusRequestEntityTooLarge, msg)
}

// uploadTooLarge is the message of an upload over --max-upload.
func (s *Server) uploadTooLarge() string {
	return fmt.Sprintf("upload too large: the limit is %s (serve --max-upload); nothing was queued — split the file", bytesText(s.opts.MaxUpload))
}

// sampleInvalid returns a reader that reads r and, on the side, decodes the
// same bytes (its ids by the rule ids) to keep the first n invalid rows;
// call the returned function once the reader is no longer read.
func sampleInvalid(r io.Reader, file string, format importer.Format, ids jobs.IDFormat, mapping map[string]string, mappingName string, n int) (io.Reader, func() []InvalidRow) {
	pr, pw := io.Pipe()
	done := make(chan []InvalidRow, 1)
	go func() {
		var out []InvalidRow
		if dec, err := importer.NewMappedDecoder(pr, file, format, ids, mapping, mappingName); err == nil {
			for len(out) < n {
				row, err := dec.Next()
				if err != nil {
					break
				}
				if !row.Valid() {
					out = append(out, InvalidRow{Line: row.Line, ContactID: row.ContactID, MemberID: row.MemberID, Reason: row.Reason, Error: row.Error})
				}
			}
		}
		_, _ = io.Copy(io.Discard, pr) // keep the importer's reads flowing
		done <- out
	}()
	return io.TeeReader(r, pw), func() []InvalidRow {
		_ = pw.Close()
		return <-done
	}
}

// formatOfType maps a raw upload's Content-Type to a format.
func formatOfType(mt string) string {
	switch mt {
	case "text/csv":
		return "csv"
	case "application/json":
		return "json"
	case "application/x-ndjson", "application/jsonl", "application/x-jsonlines":
		return "jsonl"
	}
	return ""
}

// cleanName keeps the base name of an uploaded file, short and printable.
func cleanName(n string) string {
	n = path.Base(strings.ReplaceAll(n, `\`, "/"))
	n = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, n)
	if len(n) > 200 {
		n = n[len(n)-200:]
	}
	if n == "" || n == "." || n == "/" {
		return "upload"
	}
	return n
}

// listFilter picks batches for the list: by status, and by a piece of
// the name or id (case ignored).
type listFilter struct {
	status string
	name   string
}

func (f listFilter) match(b jobs.Batch) bool {
	if f.status != "" && b.Status != f.status {
		return false
	}
	if f.name == "" {
		return true
	}
	n := strings.ToLower(f.name)
	return strings.Contains(strings.ToLower(b.Name), n) || strings.Contains(strings.ToLower(b.ID), n)
}

// statuses are the batch statuses a list may be filtered by.
var statuses = []string{jobs.BatchImporting, jobs.BatchRunning, jobs.BatchPaused, jobs.BatchDone, jobs.BatchCancelled, jobs.BatchAbandoned}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := s.opts.Recent
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, http.StatusBadRequest, "limit: want 1 to 1000")
			return
		}
		limit = n
	}
	f := listFilter{status: q.Get("status"), name: strings.TrimSpace(q.Get("name"))}
	if f.status != "" && !slices.Contains(statuses, f.status) {
		writeError(w, http.StatusBadRequest, "status: want one of "+strings.Join(statuses, ", "))
		return
	}
	out, err := s.recent(r.Context(), limit, f)
	if err != nil {
		s.internal(w, "list batches", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"batches": out})
}

// recent reads the newest batches that pass the filter.
func (s *Server) recent(ctx context.Context, limit int, f listFilter) ([]Batch, error) {
	ids, err := s.deps.Store.IDs(ctx)
	if err != nil {
		return nil, err
	}
	var bs []jobs.Batch
	for _, id := range ids {
		if len(bs) == limit {
			break
		}
		b, err := s.deps.Store.Get(ctx, id)
		if errors.Is(err, jobs.ErrNotFound) {
			continue // expired after its retention
		}
		if err != nil {
			return nil, err
		}
		if f.match(b) {
			bs = append(bs, b)
		}
	}
	return s.withUploads(ctx, bs)
}

// batch reads the batch named in the path, or answers 400 or 404.
func (s *Server) batch(w http.ResponseWriter, r *http.Request) (jobs.Batch, bool) {
	id := r.PathValue("id")
	if !report.ValidBatchID(id) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("batch id %q: ids are letters, digits, - and _", truncate(id, 64)))
		return jobs.Batch{}, false
	}
	b, err := s.deps.Store.Get(r.Context(), id)
	if errors.Is(err, jobs.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no batch "+id+" (it may have expired after its retention): see GET /api/v1/batches")
		return b, false
	}
	if err != nil {
		s.internal(w, "read batch", err)
		return b, false
	}
	return b, true
}

func (s *Server) get(w http.ResponseWriter, r *http.Request) {
	b, ok := s.batch(w, r)
	if !ok {
		return
	}
	out, err := s.withUploads(r.Context(), []jobs.Batch{b})
	if err != nil {
		s.internal(w, "read batch", err)
		return
	}
	writeJSON(w, http.StatusOK, out[0])
}

func (s *Server) download(w http.ResponseWriter, r *http.Request) {
	file := r.PathValue("file")
	ctype, known := reportFiles[file]
	if !known {
		writeError(w, http.StatusNotFound, "no such report file: want succeeded.csv, failed.csv, summary.json, rollback.csv, rollback-unrestorable.csv or (once verified) drift.csv")
		return
	}
	b, ok := s.batch(w, r)
	if !ok {
		return
	}
	dir, done, err := s.reportFolder(r.Context(), b)
	if err != nil {
		s.internal(w, "write report", err)
		return
	}
	defer done()
	f, err := os.Open(filepath.Join(dir, file))
	if errors.Is(err, fs.ErrNotExist) {
		writeError(w, http.StatusNotFound, file+": this batch did not record previous agents (upload with recordPrevious=true)")
		return
	}
	if err != nil {
		s.internal(w, "write report", err)
		return
	}
	defer f.Close()
	s.sendFile(w, b.ID, file, ctype, f)
}

// sendFile sends the report file of batch id as a download named
// <id>-<file>.
func (s *Server) sendFile(w http.ResponseWriter, id, file, ctype string, f *os.File) {
	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": id + "-" + file}))
	if st, err := f.Stat(); err == nil {
		h.Set("Content-Length", strconv.FormatInt(st.Size(), 10))
	}
	if _, err := io.Copy(w, f); err != nil {
		s.deps.Logger.Warn("download interrupted", slog.String("batch", id), slog.String("file", file), slog.Any("error", err))
	}
}

func (s *Server) control(w http.ResponseWriter, r *http.Request) {
	action := r.PathValue("action")
	var status string
	switch action {
	case "pause":
		status = jobs.BatchPaused
	case "resume":
		status = jobs.BatchRunning
	case "cancel":
		status = jobs.BatchCancelled
	case "retry-failed":
	default:
		writeError(w, http.StatusNotFound, "no such action: want pause, resume, cancel or retry-failed")
		return
	}
	b, ok := s.batch(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	log := s.deps.Logger.With(slog.String("batch", b.ID), slog.String("action", action))
	tasks := jobs.Tasks{Store: s.deps.Store, Client: s.deps.Client, Inspector: s.deps.Inspector, Queue: s.deps.Queue}
	var (
		n   int
		err error
	)
	switch action {
	case "retry-failed":
		n, err = tasks.Retry(ctx, b.ID)
	case "resume":
		_, err = tasks.Resume(ctx, b.ID)
	case "pause":
		_, err = s.deps.Store.SetStatus(ctx, b.ID, status, "", "paused by an operator")
	default:
		_, err = s.deps.Store.SetStatus(ctx, b.ID, status, "", "")
	}
	var te *jobs.TransitionError
	switch {
	case errors.As(err, &te):
		writeError(w, http.StatusConflict, te.Error())
		return
	case err != nil:
		s.internal(w, action, err)
		return
	}
	if action == "retry-failed" {
		log.Info("dead-lettered rows queued again", slog.Int("rows", n))
		s.answerBatch(w, r, map[string]any{"requeued": n})
		return
	}
	log.Info("batch " + status)
	s.answerBatch(w, r, nil)
}

// answerBatch answers a control action with the batch as it is now.
func (s *Server) answerBatch(w http.ResponseWriter, r *http.Request, extra map[string]any) {
	b, err := s.deps.Store.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		s.internal(w, "read batch", err)
		return
	}
	out := map[string]any{"batch": view(b, s.opts.Now())}
	for k, v := range extra {
		out[k] = v
	}
	writeJSON(w, http.StatusOK, out)
}

// view is the API's picture of a batch at now.
func view(b jobs.Batch, now time.Time) Batch {
	v := Batch{
		ID: b.ID, Name: b.Name, Source: b.Source, Status: b.Status, PauseCode: b.PauseCode, PauseReason: b.PauseReason,
		Rows: b.Rows, Done: b.Done(), Pending: max(b.Rows-b.Done(), 0),
		Succeeded: b.Succeeded, Failed: b.Failed, Invalid: b.Invalid, Contacts: b.Contacts,
		APICalls: b.APICalls, Retries: b.Retries, RateLimited: b.RateLimited,
		Percent: b.Percent(), RowsPerSec: b.RowsPerSecond(now),
		CreatedAt: b.CreatedAt, StartedAt: timePtr(b.StartedAt), FinishedAt: timePtr(b.FinishedAt),
		Errors: b.Errors,
		Links:  map[string]string{},
	}
	if v.Errors == nil {
		v.Errors = map[string]int64{}
	}
	if !b.Origin.IsZero() {
		o := b.Origin
		v.Origin, v.StartedBy = &o, o.String()
	}
	for f := range reportFiles {
		if b.RecordPrevious || (f != report.RollbackFile && f != report.RollbackUnrestorableFile) {
			v.Links[f] = "/api/v1/batches/" + b.ID + "/" + f
		}
	}
	if b.Status == jobs.BatchRunning && v.RowsPerSec > 0 && v.Pending > 0 {
		eta := float64(v.Pending) / v.RowsPerSec
		v.ETASeconds = &eta
	}
	return v
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func (s *Server) internal(w http.ResponseWriter, what string, err error) {
	s.deps.Logger.Error(what, slog.Any("error", err))
	writeError(w, http.StatusInternalServerError, what+": "+err.Error())
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func bytesText(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
