package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/notify"
	"github.com/bulkassign/bulkassign/worker"
	"github.com/hibiken/asynqmon"
	"github.com/redis/go-redis/v9"
)

// An upload is read in full to a temporary file before anything is
// queued, so that its fingerprint (jobs.Fingerprint: its content and the
// API URL) is known first: a file imported already within the retention is
// refused (409, naming its batch) unless again=true. While an upload is
// being queued, its fingerprint is claimed in Redis,
//
//	NS:serve:queueing:<fingerprint>  a random token, for queueingTTL
//
// so that the same file sent again meanwhile (a double click, a retried
// request, another serve process) is refused too, again=true or not: the
// batch of the first is not known yet.

// queueingTTL bounds a claim whose server died while queueing.
const queueingTTL = 10 * time.Minute

// spoolUpload copies an upload to a temporary file in TempDir and returns
// the file, at its start, and its fingerprint; the caller closes and
// removes the file. A problem reading the upload is the client's (a
// *userError); one keeping it is the server's.
func (s *Server) spoolUpload(in io.Reader) (*os.File, string, error) {
	f, err := os.CreateTemp(s.opts.TempDir, "bulkassign-upload-")
	if err != nil {
		return nil, "", fmt.Errorf("keep the upload: %w", err)
	}
	fail := func(err error) (*os.File, string, error) {
		f.Close()
		_ = os.Remove(f.Name())
		return nil, "", err
	}
	src := &readErr{r: in}
	if _, err := io.Copy(f, src); err != nil {
		if src.err != nil {
			return fail(&userError{status: http.StatusBadRequest, msg: "the upload could not be read: " + src.err.Error()})
		}
		return fail(fmt.Errorf("keep the upload: %w", err))
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fail(fmt.Errorf("keep the upload: %w", err))
	}
	fp, err := jobs.Fingerprint(f, worker.NormalizeURL(s.opts.APIURL))
	if err != nil {
		return fail(fmt.Errorf("the upload's fingerprint: %w", err))
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fail(fmt.Errorf("keep the upload: %w", err))
	}
	return f, fp, nil
}

// readErr keeps the error of its reader, to tell it from the writer's.
type readErr struct {
	r   io.Reader
	err error
}

func (r *readErr) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}

func (s *Server) queueingKey(fp string) string { return s.deps.Queue + ":serve:queueing:" + fp }

// errQueueing refuses an upload of a file that another upload is queueing.
var errQueueing = &userError{status: http.StatusConflict,
	msg: "the same file is being queued by another upload right now (a double click, or a retried request): nothing was queued for this one; its batch is in the list in a moment"}

// claimFile claims the fingerprint fp for this upload while it is queued;
// errQueueing when another upload holds it. release ends the claim.
func (s *Server) claimFile(ctx context.Context, fp string) (release func(), err error) {
	var b [16]byte
	_, _ = rand.Read(b[:])
	mine := hex.EncodeToString(b[:])
	key := s.queueingKey(fp)
	ok, err := s.deps.Redis.SetNX(ctx, key, mine, queueingTTL).Result()
	if err != nil {
		return nil, fmt.Errorf("claim the file: %w", err)
	}
	if !ok {
		return nil, errQueueing
	}
	return func() {
		// Not ctx: a request that ended must still free the file.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = releaseScript.Run(cctx, s.deps.Redis, []string{key}, mine).Err() // else it lapses after queueingTTL
	}, nil
}

var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// duplicateAnswer is the 409 of a file imported already: the message, and
// the earlier batch as the API shows it.
func (s *Server) duplicateAnswer(ctx context.Context, w http.ResponseWriter, dup *jobs.DuplicateError) {
	out, err := s.withUploads(ctx, []jobs.Batch{dup.Batch})
	if err != nil {
		s.internal(w, "read the earlier batch", err)
		return
	}
	writeJSON(w, http.StatusConflict, map[string]any{
		"error":       dup.Error() + "; nothing was queued. To queue it once more, send again=true (on the page: tick \"Queue it again\").",
		"duplicateOf": out[0],
	})
}

// uploadTarget is the notify target of an upload's notify and
// notifyFormat fields; ok false without notify.
func uploadTarget(p uploadParams) (t notify.Target, ok bool, err error) {
	u, f := strings.TrimSpace(p.get("notify")), strings.TrimSpace(p.get("notifyFormat"))
	switch {
	case u == "" && f != "":
		return t, false, &userError{status: http.StatusBadRequest, msg: "notifyFormat without notify: give notify, the URL to post the batch's end to"}
	case u == "":
		return t, false, nil
	case f != "" && f != notify.FormatJSON && f != notify.FormatSlack:
		// notify.ParseTarget's messages name the CLI's flags.
		return t, false, &userError{status: http.StatusBadRequest, msg: fmt.Sprintf("notifyFormat %q: want json or slack", f)}
	}
	t, err = notify.ParseTarget(u, f)
	if err != nil {
		return t, false, &userError{status: http.StatusBadRequest, msg: fmt.Sprintf("notify %s: want an http:// or https:// URL, e.g. https://hooks.example.com/bulkassign", notify.Redact(u))}
	}
	return t, true, nil
}

// monitorPayload shows a task's payload in the monitor as asynqmon does,
// with a schedule tick's notify URL redacted: its path may be a key (a
// Slack webhook's is).
func monitorPayload(taskType string, payload []byte) string {
	if taskType == jobs.TypePlan {
		var m map[string]any
		if err := json.Unmarshal(payload, &m); err != nil {
			return "(unreadable plan payload)"
		}
		if u, ok := m["notify"].(string); ok {
			m["notify"] = notify.Redact(u)
			b, err := json.Marshal(m)
			if err != nil {
				return "(unreadable plan payload)"
			}
			payload = b
		}
	}
	return asynqmon.DefaultPayloadFormatter.FormatPayload(taskType, payload)
}
