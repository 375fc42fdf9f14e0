// Package worker applies queued assignments: the asynq handler, the CRM API
// client, rate limiting and the retry policy.
package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Default API settings, as the CRM documents them.
const (
	DefaultAPIURL       = "https://api.vambe.me"
	DefaultPathTemplate = "/api/public/contact/{aiContactId}/assign-team-member/{teamMemberId}"
	DefaultKeyHeader    = "x-api-key"
	// DefaultInfoPathTemplate is the path of the call that shows a
	// contact with its current agents.
	DefaultInfoPathTemplate = "/api/public/contact/{aiContactId}/info"
)

// ErrUnauthorized means the CRM refused the API key (401 or 403).
var ErrUnauthorized = errors.New("the CRM refused the API key")

// Kind is how a call ended, as far as retrying goes.
type Kind int

// The outcomes of a call.
const (
	// OK: the assignment is applied.
	OK Kind = iota
	// Permanent: the API refused this row for good (400, 404, other 4xx).
	Permanent
	// Unauthorized: the key is wrong; stop the batch.
	Unauthorized
	// RateLimited: 429; wait and try again without using up an attempt.
	RateLimited
	// Transient: 5xx, timeout, connection error; retry with backoff.
	Transient
)

// Outcome is the classified result of one call.
type Outcome struct {
	Kind       Kind
	HTTPStatus int
	// RetryAfter is the wait the API asked for (429 or 503), 0 if none.
	RetryAfter time.Duration
	// Reason is a short stable code: "http_404", "timeout", ...
	Reason string
	// Err explains the failure; nil for OK.
	Err error
	// NotSent means no request was made: the key had been refused before.
	NotSent bool
}

// ClientOptions configures a Client; the zero value means defaults.
type ClientOptions struct {
	// BaseURL of the CRM API; default DefaultAPIURL.
	BaseURL string
	// PathTemplate with {aiContactId} and {teamMemberId}; default DefaultPathTemplate.
	PathTemplate string
	// InfoPathTemplate with {aiContactId}: the call that reads a contact's
	// current agents; default DefaultInfoPathTemplate.
	InfoPathTemplate string
	// KeyHeader carries the API key; default DefaultKeyHeader.
	KeyHeader string
	// APIKey is sent on every call and never written anywhere else.
	APIKey string
	// HTTPClient makes the calls; default one with Timeout as its timeout
	// that never follows a redirect to another host (see sameOrigin). A
	// client given here should refuse such redirects too.
	HTTPClient *http.Client
	// Timeout of one call; default 30s.
	Timeout time.Duration
	// MaxConns is the number of connections kept open to the API; default 64.
	MaxConns int
	// Now is the clock used to read Retry-After dates; default time.Now.
	Now func() time.Time
}

// Client calls the CRM's assign endpoint.
//
// Until one call has been answered with anything other than 401/403, calls
// go one at a time: a wrong key then costs one call, not one per worker.
// After a 401/403 every call fails at once with ErrUnauthorized.
type Client struct {
	opts ClientOptions
	base *url.URL

	probe       sync.Mutex
	keyAccepted atomic.Bool
	// refused is the 401/403 status once the key was refused, else 0.
	refused    atomic.Int32
	refuseOnce sync.Once
	refusedCh  chan struct{}
}

// NewClient checks the options and returns a Client.
func NewClient(opts ClientOptions) (*Client, error) {
	if opts.BaseURL == "" {
		opts.BaseURL = DefaultAPIURL
	}
	if opts.PathTemplate == "" {
		opts.PathTemplate = DefaultPathTemplate
	}
	if opts.KeyHeader == "" {
		opts.KeyHeader = DefaultKeyHeader
	}
	if opts.InfoPathTemplate == "" {
		opts.InfoPathTemplate = DefaultInfoPathTemplate
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = 64
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if !strings.Contains(opts.PathTemplate, "{aiContactId}") || !strings.Contains(opts.PathTemplate, "{teamMemberId}") {
		return nil, fmt.Errorf("path template %q must contain {aiContactId} and {teamMemberId}", opts.PathTemplate)
	}
	if !strings.Contains(opts.InfoPathTemplate, "{aiContactId}") {
		return nil, fmt.Errorf("info path template %q must contain {aiContactId}", opts.InfoPathTemplate)
	}
	base, err := url.Parse(strings.TrimRight(opts.BaseURL, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("api url %q: want http(s)://host[:port]", opts.BaseURL)
	}
	if opts.HTTPClient == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConns = opts.MaxConns
		tr.MaxIdleConnsPerHost = opts.MaxConns
		opts.HTTPClient = &http.Client{Transport: tr, Timeout: opts.Timeout, CheckRedirect: sameOrigin}
	}
	return &Client{opts: opts, base: base, refusedCh: make(chan struct{})}, nil
}

// sameOrigin follows a redirect only to the scheme and host the request
// was made to. net/http holds back Authorization and cookies from another
// host but copies every other header, so following a redirect elsewhere
// (or from https to http) would hand the key header to whoever it names.
// Any other redirect is the answer: a 3xx, which Classify makes a
// permanent failure.
func sameOrigin(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	if from := via[0].URL; req.URL.Scheme != from.Scheme || req.URL.Host != from.Host {
		return http.ErrUseLastResponse
	}
	return nil
}

// Refused is closed once the CRM has refused the API key. A worker
// process whose only job is to call the CRM stops then and says so; serve
// goes on, and a batch resumed after the refusal tries the key again
// (Reprobe).
func (c *Client) Refused() <-chan struct{} { return c.refusedCh }

// refusedNow reports whether calls fail unsent because the key was refused.
func (c *Client) refusedNow() bool { return c.refused.Load() != 0 }

// Reprobe forgets that the key was refused: the next call tries it again,
// alone (the others wait for its answer), so a key still refused costs one
// call.
func (c *Client) Reprobe() {
	c.probe.Lock()
	defer c.probe.Unlock()
	if c.refused.Load() != 0 {
		c.keyAccepted.Store(false)
		c.refused.Store(0)
	}
}

// Assign makes one assign call and classifies its outcome.
func (c *Client) Assign(ctx context.Context, contact, member string, replace bool) Outcome {
	return c.guard(func() Outcome { return c.call(ctx, contact, member, replace) })
}

// guard makes a call under the key probe: one call at a time until the key
// is accepted, none once it was refused.
func (c *Client) guard(call func() Outcome) Outcome {
	if !c.keyAccepted.Load() {
		c.probe.Lock()
		// The probe may have been answered while this call waited: then
		// it goes ahead with the others instead of one at a time.
		if c.keyAccepted.Load() {
			c.probe.Unlock()
		} else {
			defer c.probe.Unlock()
		}
	}
	if st := int(c.refused.Load()); st != 0 {
		return Outcome{Kind: Unauthorized, HTTPStatus: st, Reason: reasonForStatus(st), Err: fmt.Errorf("HTTP %d: %w", st, ErrUnauthorized), NotSent: true}
	}
	out := call()
	switch {
	case out.Kind == Unauthorized:
		c.refused.Store(int32(out.HTTPStatus))
		c.keyAccepted.Store(false)
		c.refuseOnce.Do(func() { close(c.refusedCh) })
	case out.HTTPStatus != 0:
		c.keyAccepted.Store(true)
	}
	return out
}

func (c *Client) call(ctx context.Context, contact, member string, replace bool) Outcome {
	path := strings.ReplaceAll(strings.ReplaceAll(c.opts.PathTemplate,
		"{aiContactId}", url.PathEscape(contact)), "{teamMemberId}", url.PathEscape(member))
	u := c.base.String() + path + "?removeExistingAgents=" + strconv.FormatBool(replace)
	out, _ := c.send(ctx, http.MethodPost, u, 64<<10)
	return out
}

// send makes one request and classifies the answer; it also returns the
// answer's body, at most limit bytes, with the API key scrubbed from it.
func (c *Client) send(ctx context.Context, method, u string, limit int64) (Outcome, []byte) {
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return Outcome{Kind: Permanent, Reason: "bad_request", Err: fmt.Errorf("build request: %w", err)}, nil
	}
	req.Header.Set(c.opts.KeyHeader, c.opts.APIKey)
	req.Header.Set("Accept", "application/json")
	resp, err := c.opts.HTTPClient.Do(req)
	if err != nil {
		return classifyError(ctx, err), nil
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil && resp.StatusCode/100 == 2 {
		return classifyError(ctx, err), nil
	}
	if c.opts.APIKey != "" && bytes.Contains(body, []byte(c.opts.APIKey)) {
		// An API that echoes the key in its messages must not put it in
		// our errors, logs and failed.csv.
		body = bytes.ReplaceAll(body, []byte(c.opts.APIKey), []byte("[api key]"))
	}
	return Classify(resp.StatusCode, resp.Header, body, c.opts.Now()), body
}

// Classify maps an HTTP answer to an outcome. It is the one place where
// status codes become retry decisions.
func Classify(status int, h http.Header, body []byte, now time.Time) Outcome {
	out := Outcome{HTTPStatus: status, Reason: reasonForStatus(status)}
	switch {
	case status/100 == 2:
		if apiRefused(body) {
			out.Kind = Transient
			out.Reason = "success_false"
			out.Err = fmt.Errorf("HTTP %d but the API answered success=false: %s", status, apiMessage(body))
			return out
		}
		out.Kind = OK
		out.Reason = ""
		return out
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		out.Kind = Unauthorized
		out.Err = fmt.Errorf("HTTP %d: %w", status, ErrUnauthorized)
		return out
	case status == http.StatusTooManyRequests:
		out.Kind = RateLimited
		out.RetryAfter = retryAfter(h.Get("Retry-After"), now)
	case status == http.StatusRequestTimeout || status/100 == 5:
		out.Kind = Transient
		out.RetryAfter = retryAfter(h.Get("Retry-After"), now)
	default:
		out.Kind = Permanent
	}
	out.Err = fmt.Errorf("HTTP %d: %s", status, apiMessage(body))
	return out
}

func reasonForStatus(status int) string { return "http_" + strconv.Itoa(status) }

func classifyError(ctx context.Context, err error) Outcome {
	if ctx.Err() != nil {
		return Outcome{Kind: Transient, Reason: "cancelled", Err: fmt.Errorf("call abandoned: %w", context.Cause(ctx))}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return Outcome{Kind: Transient, Reason: "timeout", Err: errors.New("no answer within the request timeout")}
	}
	return Outcome{Kind: Transient, Reason: "connection", Err: fmt.Errorf("connection error: %s", scrubURL(err))}
}

// scrubURL drops the URL a *url.Error carries: the message names the
// operation and the cause, which is what an operator needs.
func scrubURL(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

// maxHeaderWait bounds the Retry-After read from an answer, before the
// handler's own cap (HandlerOptions.MaxRetryAfter): whatever the header
// says, the wait is a valid, positive duration.
const maxHeaderWait = 24 * time.Hour

// retryAfter reads a Retry-After header: seconds or an HTTP date, at most
// maxHeaderWait.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseUint(v, 10, 64); err == nil || errors.Is(err, strconv.ErrRange) {
		if n > uint64(maxHeaderWait/time.Second) || err != nil {
			return maxHeaderWait
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return min(d, maxHeaderWait)
		}
	}
	return 0
}

type apiAnswer struct {
	Success *bool  `json:"success"`
	Message string `json:"message"`
}

func apiRefused(body []byte) bool {
	if !bytes.Contains(body, []byte("false")) {
		return false // the common answer, read without decoding it
	}
	var a apiAnswer
	return json.Unmarshal(body, &a) == nil && a.Success != nil && !*a.Success
}

// apiMessage is the API's own message, or a short clean excerpt of the body.
func apiMessage(body []byte) string {
	var a apiAnswer
	if json.Unmarshal(body, &a) == nil && a.Message != "" {
		return truncate(a.Message, 200)
	}
	s := strings.Join(strings.Fields(strings.ToValidUTF8(string(body), "")), " ")
	if s == "" {
		return "(empty body)"
	}
	return truncate(s, 200)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
