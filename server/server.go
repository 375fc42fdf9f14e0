// Package server is bulkassign's HTTP front: a JSON API under /api/v1 to
// upload, follow and control batches and download their reports, a web
// page for supervisors, asynq's monitor under /monitor and Prometheus
// metrics under /metrics, all behind named access tokens, with login
// sessions kept in Redis.
package server

import (
	"cmp"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bulkassign/bulkassign/importer"
	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/metrics"
	"github.com/bulkassign/bulkassign/notify"
	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"
	"github.com/redis/go-redis/v9"
)

// Deps are what the server works with. The CRM API key is not among them:
// the server calls the CRM only through Directory and CRM.
type Deps struct {
	// Store holds the batch records and ledgers.
	Store *jobs.Store
	// Redis is the Redis of the queue: sessions, saved column mappings,
	// who uploaded a batch and its progress over time live there, under
	// Queue's prefix.
	Redis redis.UniversalClient
	// Importer validates uploads and queues them.
	Importer *importer.Importer
	// Client queues the tasks of retried dead letters, and the notices of
	// uploads with notify.
	Client *asynq.Client
	// Inspector drops archived tasks before they are queued again.
	Inspector *asynq.Inspector
	// RedisOpt is the Redis of the queue, for the monitor.
	RedisOpt asynq.RedisConnOpt
	// Queue is the asynq queue name (the namespace); default jobs.Queue.
	Queue string
	// Metrics, if set, are the metrics the in-process workers report to;
	// default a new, empty set.
	Metrics *metrics.Metrics
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Directory, if set, lists the CRM's team members, so that uploads may
	// name members by email (importer.Options.Directory); without it such
	// an upload is refused with a message.
	Directory func(ctx context.Context) ([]importer.Member, error)
	// CRM, if set, is how the Verify button of a finished batch reads its
	// contacts back; without it Verify is refused with a message.
	CRM *CRM
}

// Options configure the server; the zero value means defaults, except
// that Token or Tokens is required.
type Options struct {
	// Token is an access token, named DefaultTokenName.
	Token string
	// Tokens are named access tokens (LoadTokens); batches record the
	// name of the token that uploaded them.
	Tokens []Credential
	// PublicURL is the address browsers use (https://... behind a TLS
	// proxy): the session cookie is then Secure and the URL's origin is
	// trusted by the cross-origin check.
	PublicURL string
	// TrustProxy trusts the proxy in front: X-Forwarded-Proto says whether
	// the browser used TLS, and the last X-Forwarded-For address is the
	// client whose failed logins are counted.
	TrustProxy bool
	// SessionTTL is how long a login lasts; default DefaultSessionTTL.
	SessionTTL time.Duration
	// LoginBurst wrong tokens from one client address are allowed, then one
	// more every LoginEvery; defaults DefaultLoginBurst, DefaultLoginEvery.
	LoginBurst int
	LoginEvery time.Duration
	// ReadHeaderTimeout, ReadTimeout and IdleTimeout are those of the
	// http.Server that HTTPServer returns; defaults 10 s, 5 min, 2 min.
	// ReadTimeout bounds a whole upload: a stalled or trickling upload is
	// cut off before any batch is made (an upload is read in full, to a
	// temporary file in TempDir, before it is checked and queued).
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	IdleTimeout       time.Duration
	// MaxUpload is the largest upload accepted, in bytes; default 100 MiB.
	MaxUpload int64
	// IDFormat is the rule the ids of an upload must follow; default
	// jobs.IDUUID.
	IDFormat jobs.IDFormat
	// Recent is how many batches the list, the page and the batch gauge
	// show; default 50.
	Recent int
	// TempDir is where uploads are kept while they are checked and
	// queued, and where the report files of a batch still running are
	// written before they are sent; default os.TempDir().
	TempDir string
	// ReportDir keeps the reports of finished batches, each in
	// ReportDir/<batch id>/, written once and served from there; default
	// a new folder in TempDir.
	ReportDir string
	// Retention is the store's --retention: what serve keeps of a batch in
	// Redis (who uploaded it, its progress) expires some time after it;
	// default jobs.DefaultRetention, negative keeps it forever.
	Retention time.Duration
	// SampleEvery is how often the progress of running batches is
	// sampled for the rows-per-second chart; default DefaultSampleEvery.
	SampleEvery time.Duration
	// APIURL is the CRM's API URL the workers call: a file's fingerprint
	// is its content and this URL (jobs.Fingerprint), so that the same
	// file uploaded again within Retention is refused unless again=true.
	APIURL string
	// Settings, when this process's own workers apply the batches (serve
	// --workers), are their settings, recorded in each upload's origin;
	// nil when separate workers apply them.
	Settings *jobs.Settings
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// DefaultMaxUpload is the default upload size limit.
const DefaultMaxUpload = 100 << 20

// Default timeouts of HTTPServer.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = 5 * time.Minute
	DefaultIdleTimeout       = 2 * time.Minute
)

// ErrNoToken is returned by New without an access token.
var ErrNoToken = errors.New("no access token: set --token or BULKASSIGN_SERVER_TOKEN, or --tokens FILE")

// cookieName is the session cookie the login form sets.
const cookieName = "bulkassign_session"

//go:embed static templates
var assets embed.FS

// Server is the http.Handler of `bulkassign serve`.
type Server struct {
	deps     Deps
	opts     Options
	mux      *http.ServeMux
	handler  http.Handler
	monitor  *asynqmon.HTTPHandler
	pages    *template.Template
	creds    []Credential
	throt    *throttle
	reports  *reportCache
	failures failureCache
	notifier *notify.Notifier
	verifies *verifier
	stop     context.CancelFunc
	sampled  chan struct{}
}

// New returns the server. It fails without a token.
func New(deps Deps, opts Options) (*Server, error) {
	creds := slices.Clone(opts.Tokens)
	if opts.Token != "" {
		for _, c := range creds {
			if c.Name == DefaultTokenName {
				return nil, fmt.Errorf("the tokens file names someone %q, the name of --token: rename them", DefaultTokenName)
			}
		}
		creds = append(creds, HashToken(DefaultTokenName, opts.Token))
	}
	if len(creds) == 0 {
		return nil, ErrNoToken
	}
	if deps.Store == nil || deps.Redis == nil || deps.Importer == nil || deps.Client == nil || deps.Inspector == nil || deps.RedisOpt == nil {
		return nil, errors.New("server: Store, Redis, Importer, Client, Inspector and RedisOpt are required")
	}
	if opts.PublicURL != "" {
		u, err := url.Parse(opts.PublicURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("public URL %q: want https://host[:port] (the address browsers use)", opts.PublicURL)
		}
		opts.PublicURL = u.Scheme + "://" + u.Host
	}
	if deps.Queue == "" {
		deps.Queue = jobs.Queue
	}
	if deps.Metrics == nil {
		deps.Metrics = metrics.New()
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if opts.MaxUpload <= 0 {
		opts.MaxUpload = DefaultMaxUpload
	}
	if opts.Recent <= 0 {
		opts.Recent = 50
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Retention == 0 {
		opts.Retention = jobs.DefaultRetention
	}
	opts.SampleEvery = cmp.Or(opts.SampleEvery, DefaultSampleEvery)
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = DefaultSessionTTL
	}
	if opts.LoginBurst <= 0 {
		opts.LoginBurst = DefaultLoginBurst
	}
	if opts.LoginEvery <= 0 {
		opts.LoginEvery = DefaultLoginEvery
	}
	opts.ReadHeaderTimeout = cmp.Or(opts.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	opts.ReadTimeout = cmp.Or(opts.ReadTimeout, DefaultReadTimeout)
	opts.IdleTimeout = cmp.Or(opts.IdleTimeout, DefaultIdleTimeout)
	if opts.ReportDir == "" {
		d, err := os.MkdirTemp(opts.TempDir, "bulkassign-serve-reports-")
		if err != nil {
			return nil, fmt.Errorf("a folder for reports: %w", err)
		}
		opts.ReportDir = d
	}
	pages, err := template.New("").ParseFS(assets, "templates/*.html")
	if err != nil {
		return nil, err
	}
	s := &Server{
		deps:     deps,
		opts:     opts,
		mux:      http.NewServeMux(),
		pages:    pages,
		creds:    creds,
		throt:    newThrottle(opts.LoginEvery, opts.LoginBurst, opts.Now),
		reports:  newReportCache(opts.ReportDir),
		notifier: notify.New(deps.Store, deps.Client, notify.Options{Queue: deps.Queue, Logger: deps.Logger}),
		verifies: newVerifier(),
	}
	if err := deps.Metrics.Register(newBatchCollector(deps.Store, opts.Recent)); err != nil {
		return nil, err
	}
	if err := deps.Metrics.Register(s.reports.builds); err != nil {
		return nil, err
	}
	s.monitor = asynqmon.New(asynqmon.Options{RootPath: "/monitor", RedisConnOpt: deps.RedisOpt,
		PayloadFormatter: asynqmon.PayloadFormatterFunc(monitorPayload)})
	s.routes()
	cop := http.NewCrossOriginProtection()
	if opts.PublicURL != "" {
		if err := cop.AddTrustedOrigin(opts.PublicURL); err != nil {
			return nil, fmt.Errorf("public URL %q: %w", opts.PublicURL, err)
		}
	}
	s.handler = cop.Handler(s.mux)
	ctx, stop := context.WithCancel(context.Background())
	s.stop, s.sampled = stop, make(chan struct{})
	go func() {
		defer close(s.sampled)
		s.sampleLoop(ctx)
	}()
	return s, nil
}

// HTTPServer returns an http.Server for the handler with its timeouts;
// errorLog may be nil.
func (s *Server) HTTPServer(errorLog *log.Logger) *http.Server {
	return &http.Server{
		Handler:           s,
		ReadHeaderTimeout: s.opts.ReadHeaderTimeout,
		ReadTimeout:       s.opts.ReadTimeout,
		IdleTimeout:       s.opts.IdleTimeout,
		ErrorLog:          errorLog,
	}
}

// Close stops the progress sampler and the verifications running (each
// is then recorded as failed) and releases the monitor's Redis
// connections.
func (s *Server) Close() error {
	s.stop()
	<-s.sampled
	s.verifies.close()
	return s.monitor.Close()
}

// ServeHTTP answers one request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	s.handler.ServeHTTP(w, r)
}

func (s *Server) routes() {
	static, _ := fs.Sub(assets, "static")
	// The page's own script and style hold no data; the login page needs
	// the style before there is a session.
	s.mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	s.mux.HandleFunc("GET /login", s.loginPage)
	s.mux.HandleFunc("POST /login", s.login)
	s.mux.HandleFunc("POST /logout", s.logout)

	auth := func(pattern string, h http.HandlerFunc) { s.mux.Handle(pattern, s.authorize(h)) }
	auth("GET /{$}", s.index)
	auth("GET /schedules", s.schedulesPage)
	auth("GET /api/v1/schedules", s.listSchedules)
	auth("POST /api/v1/batches", s.upload)
	auth("GET /api/v1/batches", s.list)
	auth("GET /api/v1/batches/{id}", s.get)
	auth("GET /api/v1/batches/{id}/failures", s.listFailures)
	auth("GET /api/v1/batches/{id}/progress", s.progress)
	auth("POST /api/v1/batches/{id}/verify", s.startVerify)
	auth("GET /api/v1/batches/{id}/verify", s.getVerify)
	auth("GET /api/v1/batches/{id}/drift.csv", s.downloadDrift)
	auth("POST /api/v1/preview", s.preview)
	auth("GET /api/v1/mappings", s.listMappings)
	auth("PUT /api/v1/mappings/{name}", s.putMapping)
	auth("DELETE /api/v1/mappings/{name}", s.deleteMapping)
	auth("GET /api/v1/batches/{id}/{file}", s.download)
	auth("POST /api/v1/batches/{id}/{action}", s.control)
	auth("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such API route: see GET /api/v1/batches")
	})
	s.mux.Handle("/monitor", s.authorize(s.monitor.ServeHTTP))
	s.mux.Handle("/monitor/", s.authorize(s.monitor.ServeHTTP))
	s.mux.Handle("GET /metrics", s.authorize(s.deps.Metrics.Handler().ServeHTTP))
}

// authorize lets a request through with a token as a bearer token or a
// session cookie from the login form, and puts who it is in the request's
// context. Otherwise a browser asking for a page goes to the login form
// and anything else gets a 401, or a 429 while the client address is
// throttled for wrong tokens.
func (s *Server) authorize(next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		who, err := s.authorized(r)
		var tooMany *throttledError
		switch {
		case errors.As(err, &tooMany):
			s.throttled(w, tooMany.wait)
			return
		case err != nil:
			s.internal(w, "check the session", err)
			return
		case who != "":
			next(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, who)))
			return
		}
		if r.Method == http.MethodGet && strings.Contains(r.Header.Get("Accept"), "text/html") {
			http.Redirect(w, r, "/login?next="+url.QueryEscape(safeNext(r.URL.RequestURI())), http.StatusSeeOther)
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="bulkassign"`)
		writeError(w, http.StatusUnauthorized, "missing or wrong access token, or the session ended: send Authorization: Bearer TOKEN (the server's --token / BULKASSIGN_SERVER_TOKEN, or yours from --tokens), or sign in again")
	})
}

// principalKey is the context key of the name of who made the request.
type principalKey struct{}

// principal is the name of the token behind the request.
func principal(ctx context.Context) string {
	v, _ := ctx.Value(principalKey{}).(string)
	return v
}

type throttledError struct{ wait time.Duration }

func (e *throttledError) Error() string { return "too many wrong tokens" }

// authorized returns the name behind the request's bearer token or
// session cookie, "" for none.
func (s *Server) authorized(r *http.Request) (string, error) {
	if v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		addr := s.clientAddr(r)
		if d := s.throt.wait(addr); d > 0 {
			return "", &throttledError{wait: d}
		}
		c, ok := match(s.creds, strings.TrimSpace(v))
		if !ok {
			s.throt.failed(addr)
			s.deps.Logger.Warn("request refused: wrong token", slog.String("client", addr), slog.String("path", r.URL.Path))
			return "", nil
		}
		return c.Name, nil
	}
	if c, err := r.Cookie(cookieName); err == nil {
		name, ok, err := s.session(r.Context(), c.Value)
		if err != nil || !ok {
			return "", err
		}
		return name, nil
	}
	return "", nil
}

// throttled answers a request from a client address with too many wrong
// tokens.
func (s *Server) throttled(w http.ResponseWriter, wait time.Duration) {
	secs := int(wait.Round(time.Second).Seconds())
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	writeError(w, http.StatusTooManyRequests, fmt.Sprintf("too many wrong tokens from this address: try again in %d s", secs))
}

// safeNext keeps a post-login redirect on this site: a path, never
// "//host" or a URL.
func safeNext(p string) string {
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.HasPrefix(p, "/\\") || strings.ContainsAny(p, "\r\n") {
		return "/"
	}
	return p
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	s.renderLogin(w, http.StatusOK, r.URL.Query().Get("next"), "")
}

func (s *Server) renderLogin(w http.ResponseWriter, status int, next, problem string) {
	s.render(w, status, "login.html", map[string]string{"Next": safeNext(next), "Error": problem})
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		s.renderLogin(w, http.StatusBadRequest, "/", "The form could not be read.")
		return
	}
	next := r.PostForm.Get("next")
	addr := s.clientAddr(r)
	if d := s.throt.wait(addr); d > 0 {
		s.deps.Logger.Warn("login refused: throttled", slog.String("client", addr))
		w.Header().Set("Retry-After", strconv.Itoa(int(d.Round(time.Second).Seconds())))
		s.renderLogin(w, http.StatusTooManyRequests, next,
			fmt.Sprintf("Too many wrong tokens from this address. Wait %s and try again.", d.Round(time.Second)))
		return
	}
	c, ok := match(s.creds, strings.TrimSpace(r.PostForm.Get("token")))
	if !ok {
		s.throt.failed(addr)
		s.deps.Logger.Warn("login refused: wrong token", slog.String("client", addr))
		s.renderLogin(w, http.StatusUnauthorized, next, "That token is not right. It is the value of --token / BULKASSIGN_SERVER_TOKEN the server was started with, or the one you were given for --tokens.")
		return
	}
	id, err := s.newSession(r.Context(), c)
	if err != nil {
		s.deps.Logger.Error("login", slog.Any("error", err))
		s.renderLogin(w, http.StatusInternalServerError, next, "Signing in failed: "+err.Error())
		return
	}
	s.deps.Logger.Info("signed in", slog.String("name", c.Name), slog.String("client", addr))
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: id, Path: "/",
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: s.secure(r),
		MaxAge: int(s.opts.SessionTTL.Seconds()),
	})
	http.Redirect(w, r, safeNext(next), http.StatusSeeOther)
}

// logout ends the session in Redis, so that its cookie is refused from
// then on wherever it was copied to, and deletes the browser's cookie.
func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(cookieName); err == nil {
		if err := s.endSession(r.Context(), c.Value); err != nil {
			s.internal(w, "sign out", err)
			return
		}
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: s.secure(r)})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// render writes one of the page templates with the page's security
// headers: no script or style from anywhere but this server.
func (s *Server) render(w http.ResponseWriter, status int, name string, data any) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
	w.WriteHeader(status)
	if err := s.pages.ExecuteTemplate(w, name, data); err != nil {
		s.deps.Logger.Error("render page", slog.String("page", name), slog.Any("error", err))
	}
}

func (s *Server) index(w http.ResponseWriter, r *http.Request) {
	recent, err := s.recent(r.Context(), min(s.opts.Recent, 20), listFilter{})
	if err != nil {
		s.deps.Logger.Error("list batches", slog.Any("error", err))
		http.Error(w, "the batch list could not be read from Redis: "+err.Error(), http.StatusInternalServerError)
		return
	}
	s.render(w, http.StatusOK, "index.html", map[string]any{"Recent": recent, "MaxUpload": bytesText(s.opts.MaxUpload),
		"Who": principal(r.Context()), "Statuses": statuses, "Members": s.deps.Directory != nil, "Verify": s.deps.CRM != nil})
}
