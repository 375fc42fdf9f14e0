package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/hibiken/asynq"
)

// SenderOptions configures a Sender; the zero value means defaults.
type SenderOptions struct {
	// Secret signs every POST (SignatureHeader). Without it a json
	// notice is not sent (it is tried again later: give the workers
	// BULKASSIGN_NOTIFY_SECRET), and a slack one is sent unsigned.
	Secret []byte
	// HTTPClient makes the POSTs; default one with a 30s timeout that
	// follows no redirect.
	HTTPClient *http.Client
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Sender is the asynq handler of TypeNotify tasks: it posts the event's
// body to the batch's target. Any answer but a 2xx, and any failure to
// get one, is an error, so asynq tries again with backoff.
type Sender struct {
	store *jobs.Store
	opts  SenderOptions
}

// NewSender returns a Sender reading targets from store.
func NewSender(store *jobs.Store, opts SenderOptions) *Sender {
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{
			Timeout: 30 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse // a 3xx is not a delivery
			},
		}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Sender{store: store, opts: opts}
}

// ProcessTask delivers one event.
func (s *Sender) ProcessTask(ctx context.Context, t *asynq.Task) error {
	var p Payload
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return fmt.Errorf("decode notify payload: %w: %w", err, asynq.SkipRetry)
	}
	log := s.opts.Logger.With(slog.String("batch", p.Batch), slog.String("event", p.Event))
	st, err := s.store.NotifyState(ctx, p.Batch)
	if errors.Is(err, jobs.ErrNotFound) {
		log.Warn("notice dropped: the batch was deleted or expired before it could be delivered")
		return nil
	}
	if err != nil {
		return err
	}
	target, err := decodeTarget(st.Target)
	if err != nil {
		return fmt.Errorf("batch %s: %w: %w", p.Batch, err, asynq.SkipRetry)
	}
	log = log.With(slog.String("to", target.String()))
	if len(s.opts.Secret) == 0 && target.Format == FormatJSON {
		err := fmt.Errorf("notice of batch %s not sent: %s is not set in this process's environment, and a notice is never sent unsigned", p.Batch, SecretEnv)
		log.Error("notice not sent: set " + SecretEnv + " on the workers")
		return err
	}
	if err := s.post(ctx, target, p); err != nil {
		retried, _ := asynq.GetRetryCount(ctx)
		log.Warn("notice not delivered; trying again later", slog.Int("attempt", retried+1), slog.Any("error", err))
		return err
	}
	log.Info("notice delivered")
	return nil
}

// post makes one POST of p's body to target.
func (s *Sender) post(ctx context.Context, target Target, p Payload) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target.URL, bytes.NewReader(p.Body))
	if err != nil {
		return fmt.Errorf("POST %s: %w: %w", Redact(target.URL), scrub(err), asynq.SkipRetry)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "bulkassign-notify")
	req.Header.Set(EventHeader, p.Event)
	req.Header.Set(DeliveryHeader, p.Key)
	if len(s.opts.Secret) > 0 {
		req.Header.Set(SignatureHeader, Sign(s.opts.Secret, p.Body))
	}
	resp, err := s.opts.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", Redact(target.URL), scrub(err))
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("POST %s: HTTP %d", Redact(target.URL), resp.StatusCode)
	}
	return nil
}

// scrub is err without the target's URL in it (a *url.Error names it,
// and its path may be a secret).
func scrub(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}
