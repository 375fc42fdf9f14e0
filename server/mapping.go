package server

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"slices"
	"strings"
	"unicode"

	"github.com/bulkassign/bulkassign/importer"
	"github.com/redis/go-redis/v9"
	"go.yaml.in/yaml/v3"
)

// Column mappings saved from the page live in one Redis hash, each as the
// YAML of a --map file, so that a mapping made in the page can be used on
// the command line and the other way round:
//
//	NS:serve:mappings  name -> YAML (aiContactId: "Contact Ref", ...)

func (s *Server) mappingsKey() string { return s.deps.Queue + ":serve:mappings" }

// maxMappings bounds the saved mappings.
const maxMappings = 500

// SavedMapping is a column mapping saved under a name.
type SavedMapping struct {
	Name string `json:"name"`
	// Mapping is our field -> the file's header.
	Mapping map[string]string `json:"mapping"`
	// YAML is the mapping as a --map file.
	YAML string `json:"yaml"`
}

// mappingYAML writes m as a --map file, fields in their usual order.
func mappingYAML(m map[string]string) string {
	var b strings.Builder
	for _, f := range importer.MappingFields() {
		if h, ok := m[f]; ok {
			v, _ := yaml.Marshal(h)
			fmt.Fprintf(&b, "%s: %s", f, v)
		}
	}
	return b.String()
}

// parseMapping reads a mapping given as YAML (a --map file) or as a JSON
// object {"aiContactId": "Contact Ref", ...}; JSON is YAML, so one parser
// reads both. what names it in messages.
func parseMapping(text, what string) (map[string]string, error) {
	m, err := importer.LoadMapping(strings.NewReader(text), what)
	if err != nil {
		return nil, err
	}
	return m, nil
}

func validMappingName(n string) bool {
	if n == "" || len(n) > 100 || strings.TrimSpace(n) != n {
		return false
	}
	for _, r := range n {
		if !unicode.IsPrint(r) || r == '/' {
			return false
		}
	}
	return true
}

// savedMapping reads the mapping saved under name.
func (s *Server) savedMapping(ctx context.Context, name string) (map[string]string, error) {
	v, err := s.deps.Redis.HGet(ctx, s.mappingsKey(), name).Result()
	if errors.Is(err, redis.Nil) {
		return nil, &userError{status: http.StatusBadRequest, msg: fmt.Sprintf("no saved mapping %q: see GET /api/v1/mappings", truncate(name, 100))}
	}
	if err != nil {
		return nil, fmt.Errorf("read mapping %q from Redis: %w", name, err)
	}
	return parseMapping(v, "saved mapping "+name)
}

// userError is a request's mistake, answered with its status.
type userError struct {
	status int
	msg    string
}

func (e *userError) Error() string { return e.msg }

// answerError answers err: a userError or an importer.FileError as the
// caller's mistake, anything else as the server's.
func (s *Server) answerError(w http.ResponseWriter, what string, err error) {
	var ue *userError
	var fe *importer.FileError
	switch {
	case errors.As(err, &ue):
		writeError(w, ue.status, ue.msg)
	case errors.As(err, &fe):
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"error": fe.Error(), "line": fe.Line, "file": fe.File})
	default:
		s.internal(w, what, err)
	}
}

func (s *Server) listMappings(w http.ResponseWriter, r *http.Request) {
	all, err := s.deps.Redis.HGetAll(r.Context(), s.mappingsKey()).Result()
	if err != nil {
		s.internal(w, "list mappings", err)
		return
	}
	out := []SavedMapping{}
	for name, text := range all {
		m, err := parseMapping(text, "saved mapping "+name)
		if err != nil {
			continue // written by hand into Redis: not usable, not shown
		}
		out = append(out, SavedMapping{Name: name, Mapping: m, YAML: mappingYAML(m)})
	}
	slices.SortFunc(out, func(a, b SavedMapping) int { return strings.Compare(a.Name, b.Name) })
	writeJSON(w, http.StatusOK, map[string]any{"mappings": out})
}

// putMapping saves a mapping: the body is a --map file (YAML) or a JSON
// object of our field -> their header.
func (s *Server) putMapping(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !validMappingName(name) {
		writeError(w, http.StatusBadRequest, "mapping name: 1 to 100 printable characters, no '/', no leading or trailing space")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "a mapping is at most 64 KiB")
		return
	}
	m, err := parseMapping(string(body), "mapping "+name)
	if err != nil {
		s.answerError(w, "save mapping", err)
		return
	}
	ctx := r.Context()
	n, err := s.deps.Redis.HLen(ctx, s.mappingsKey()).Result()
	if err == nil && n >= maxMappings {
		if ok, _ := s.deps.Redis.HExists(ctx, s.mappingsKey(), name).Result(); !ok {
			writeError(w, http.StatusConflict, fmt.Sprintf("%d mappings are saved already: delete some first", n))
			return
		}
	}
	text := mappingYAML(m)
	if err == nil {
		err = s.deps.Redis.HSet(ctx, s.mappingsKey(), name, text).Err()
	}
	if err != nil {
		s.internal(w, "save mapping", err)
		return
	}
	s.deps.Logger.Info("mapping saved", slogName(name), slogBy(ctx))
	writeJSON(w, http.StatusOK, SavedMapping{Name: name, Mapping: m, YAML: text})
}

func (s *Server) deleteMapping(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	n, err := s.deps.Redis.HDel(r.Context(), s.mappingsKey(), name).Result()
	if err != nil {
		s.internal(w, "delete mapping", err)
		return
	}
	if n == 0 {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no saved mapping %q", truncate(name, 100)))
		return
	}
	s.deps.Logger.Info("mapping deleted", slogName(name), slogBy(r.Context()))
	w.WriteHeader(http.StatusNoContent)
}

// Preview is the answer to POST /api/v1/preview: the start of a file as
// it is and as it will be read.
type Preview struct {
	Format string `json:"format"`
	// Headers are the file's column names (the keys of the first JSON
	// objects), and Known what each means without a mapping ("" for an
	// extra column), one for one.
	Headers []string `json:"headers"`
	Known   []string `json:"known"`
	// Recognised: without a mapping the file has a contact column and a
	// member id or email column.
	Recognised bool `json:"recognised"`
	// Sample is the first rows, cell by cell as in the file.
	Sample [][]string `json:"sample"`
	// Rows are the same rows as the importer reads them with the mapping.
	Rows []PreviewRow `json:"rows"`
	// Error is what stops the file from being read with this mapping (a
	// mapped column that is missing, no contact column, ...).
	Error string `json:"error,omitempty"`
	// Fields are the fields a mapping may name.
	Fields []string `json:"fields"`
}

// PreviewRow is one row as the importer reads it.
type PreviewRow struct {
	Line        int    `json:"line"`
	ContactID   string `json:"aiContactId"`
	MemberID    string `json:"teamMemberId"`
	MemberEmail string `json:"teamMemberEmail"`
	Replace     string `json:"removeExistingAgents"`
	Valid       bool   `json:"valid"`
	Reason      string `json:"reason,omitempty"`
	Error       string `json:"error,omitempty"`
}

// Bounds of a preview: the page sends the file's first bytes only.
const (
	maxPreviewBytes = 1 << 20
	previewRows     = 10
)

// preview reads the start of a file (the body, raw or as the multipart
// field "file") and shows its headers, its first rows as they are, and
// the same rows as they will be read with the mapping given (mapping or
// mappingName), with row errors. Nothing is stored, no member is looked
// up: the check of the whole file (dryRun=true) does that.
func (s *Server) preview(w http.ResponseWriter, r *http.Request) {
	params, file, in, ok := s.readUpload(w, r, maxPreviewBytes, "a preview reads the start of a file: send its first 1 MiB at most")
	if !ok {
		return
	}
	data, err := io.ReadAll(io.LimitReader(in, maxPreviewBytes))
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		writeError(w, http.StatusBadRequest, "read the file: "+err.Error())
		return
	}
	format, err := importer.ParseFormat(params.get("format"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	mapping, mappingName, err := s.uploadMapping(r.Context(), params)
	if err != nil {
		s.answerError(w, "preview", err)
		return
	}
	// The data may end in the middle of a row: keep whole lines only.
	if len(data) == maxPreviewBytes {
		if i := bytes.LastIndexByte(data, '\n'); i > 0 {
			data = data[:i+1]
		}
	}
	p := Preview{Headers: []string{}, Known: []string{}, Sample: [][]string{}, Rows: []PreviewRow{}, Fields: importer.MappingFields()}
	dec, err := importer.NewMappedDecoder(bytes.NewReader(data), file, format, s.opts.IDFormat, mapping, mappingName)
	if err == nil {
		p.Format = string(dec.Format())
		for len(p.Rows) < previewRows {
			row, err := dec.Next()
			if err != nil {
				if !errors.Is(err, io.EOF) && len(p.Rows) == 0 {
					p.Error = err.Error()
				}
				break
			}
			p.Rows = append(p.Rows, PreviewRow{Line: row.Line, ContactID: row.ContactID, MemberID: row.MemberID,
				MemberEmail: row.MemberEmail, Replace: row.ReplaceCell(), Valid: row.Valid(), Reason: row.Reason, Error: row.Error})
		}
	} else {
		p.Error = err.Error()
	}
	if p.Format == "" {
		// The decoder refused the header: find the format as it would.
		p.Format = string(guessFormat(format, file, data))
	}
	p.Headers, p.Sample = rawSample(data, importer.Format(p.Format))
	has := map[string]bool{}
	for _, h := range p.Headers {
		f := importer.HeaderField(h)
		p.Known = append(p.Known, f)
		has[f] = true
	}
	p.Recognised = has["aiContactId"] && (has["teamMemberId"] || has["teamMemberEmail"])
	writeJSON(w, http.StatusOK, p)
}

// rawSample returns the header and first rows of a file's start as they
// are: the CSV header and cells, or the keys of the first JSON objects
// (in the order first seen) and their values as text.
func rawSample(data []byte, format importer.Format) ([]string, [][]string) {
	data = bytes.TrimPrefix(data, []byte("\ufeff"))
	if format == importer.FormatCSV {
		cr := csv.NewReader(bytes.NewReader(data))
		cr.FieldsPerRecord, cr.LazyQuotes, cr.ReuseRecord = -1, true, false
		header, err := cr.Read()
		if err != nil {
			return []string{}, [][]string{}
		}
		rows := [][]string{}
		for len(rows) < previewRows {
			rec, err := cr.Read()
			if err != nil {
				break
			}
			rows = append(rows, rec)
		}
		return header, rows
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if format == importer.FormatJSON {
		if t, err := dec.Token(); err != nil || t != json.Delim('[') {
			return []string{}, [][]string{}
		}
	}
	var objs []map[string]json.RawMessage
	keys := []string{}
	for len(objs) < previewRows && dec.More() {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			break
		}
		obj := map[string]json.RawMessage{}
		if err := json.Unmarshal(raw, &obj); err != nil {
			continue
		}
		for _, k := range objectKeys(raw) {
			if !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
		objs = append(objs, obj)
	}
	rows := make([][]string, len(objs))
	for i, o := range objs {
		rows[i] = make([]string, len(keys))
		for j, k := range keys {
			v := o[k]
			var str string
			if json.Unmarshal(v, &str) == nil {
				rows[i][j] = str
			} else {
				rows[i][j] = string(v)
			}
		}
	}
	return keys, rows
}

// objectKeys lists the keys of a JSON object in the order written.
func objectKeys(raw json.RawMessage) []string {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil
	}
	var keys []string
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return keys
		}
		if k, ok := t.(string); ok {
			keys = append(keys, k)
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return keys
		}
	}
	return keys
}

// guessFormat is the format of a file whose header the decoder refused,
// found as the decoder finds it: given, else the extension, else the
// first byte.
func guessFormat(given importer.Format, file string, data []byte) importer.Format {
	if given != importer.FormatAuto {
		return given
	}
	switch strings.ToLower(path.Ext(file)) {
	case ".csv":
		return importer.FormatCSV
	case ".json":
		return importer.FormatJSON
	case ".jsonl", ".ndjson":
		return importer.FormatJSONL
	}
	switch t := bytes.TrimLeft(bytes.TrimPrefix(data, []byte("\ufeff")), " \t\r\n"); {
	case bytes.HasPrefix(t, []byte("[")):
		return importer.FormatJSON
	case bytes.HasPrefix(t, []byte("{")):
		return importer.FormatJSONL
	}
	return importer.FormatCSV
}
