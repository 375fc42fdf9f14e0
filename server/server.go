// Package server is bulkassign's HTTP front: a JSON API under /api/v1 to
// upload, follow and control batches and download their reports, a web
// page for supervisors, asynq's monitor under /monitor and Prometheus
// metrics under /metrics, all behind one access token.
package server

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/bulkassign/bulkassign/importer"
	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/metrics"
	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"
)

// Deps are what the server works with. The CRM API key is not among them:
// the server makes no call to the CRM itself, except through Directory.
type Deps struct {
	// Store holds the batch records and ledgers.
	Store *jobs.Store
	// Importer validates uploads and queues them.
	Importer *importer.Importer
	// Client queues the tasks of retried dead letters.
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
}

// Options configure the server; the zero value means defaults, except
// Token, which is required.
type Options struct {
	// Token is the access token every request must carry.
	Token string
	// MaxUpload is the largest upload accepted, in bytes; default 100 MiB.
	MaxUpload int64
	// IDFormat is the rule the ids of an upload must follow; default
	// jobs.IDUUID.
	IDFormat jobs.IDFormat
	// Recent is how many batches the list, the page and the batch gauge
	// show; default 50.
	Recent int
	// TempDir is where report files are written before they are sent;
	// default os.TempDir().
	TempDir string
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// DefaultMaxUpload is the default upload size limit.
const DefaultMaxUpload = 100 << 20

// ErrNoToken is returned by New without an access token.
var ErrNoToken = errors.New("no access token: set --token or BULKASSIGN_SERVER_TOKEN")

// cookieName is the session cookie the login form sets.
const cookieName = "bulkassign_session"

//go:embed static templates
var assets embed.FS

// Server is the http.Handler of `bulkassign serve`.
type Server struct {
	deps    Deps
	opts    Options
	mux     *http.ServeMux
	handler http.Handler
	monitor *asynqmon.HTTPHandler
	pages   *template.Template
	session string // the cookie value: derived from the token, not the token
}

// New returns the server. It fails without a token.
func New(deps Deps, opts Options) (*Server, error) {
	if opts.Token == "" {
		return nil, ErrNoToken
	}
	if deps.Store == nil || deps.Importer == nil || deps.Client == nil || deps.Inspector == nil || deps.RedisOpt == nil {
		return nil, errors.New("server: Store, Importer, Client, Inspector and RedisOpt are required")
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
	pages, err := template.New("").ParseFS(assets, "templates/*.html")
	if err != nil {
		return nil, err
	}
	mac := hmac.New(sha256.New, []byte(opts.Token))
	mac.Write([]byte("bulkassign serve session v1"))
	s := &Server{
		deps:    deps,
		opts:    opts,
		mux:     http.NewServeMux(),
		pages:   pages,
		session: hex.EncodeToString(mac.Sum(nil)),
	}
	if err := deps.Metrics.Register(newBatchCollector(deps.Store, opts.Recent)); err != nil {
		return nil, err
	}
	s.monitor = asynqmon.New(asynqmon.Options{RootPath: "/monitor", RedisConnOpt: deps.RedisOpt})
	s.routes()
	s.handler = http.NewCrossOriginProtection().Handler(s.mux)
	return s, nil
}

// Close releases the monitor's Redis connections.
func (s *Server) Close() error { return s.monitor.Close() }

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
	auth("POST /api/v1/batches", s.upload)
	auth("GET /api/v1/batches", s.list)
	auth("GET /api/v1/batches/{id}", s.get)
	auth("GET /api/v1/batches/{id}/{file}", s.download)
	auth("POST /api/v1/batches/{id}/{action}", s.control)
	auth("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such API route: see GET /api/v1/batches")
	})
	s.mux.Handle("/monitor", s.authorize(s.monitor.ServeHTTP))
	s.mux.Handle("/monitor/", s.authorize(s.monitor.ServeHTTP))
	s.mux.Handle("GET /metrics", s.authorize(s.deps.Metrics.Handler().ServeHTTP))
}

// authorize lets a request through with the token as a bearer token or a
// session cookie from the login form. Otherwise a browser asking for a
// page goes to the login form and anything else gets a 401.
func (s *Server) authorize(next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.authorized(r) {
			next(w, r)
			return
		}
		if r.Method == http.MethodGet && strings.Contains(r.Header.Get("Accept"), "text/html") {
			http.Redirect(w, r, "/login?next="+safeNext(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="bulkassign"`)
		writeError(w, http.StatusUnauthorized, "missing or wrong access token: send Authorization: Bearer TOKEN (the server's --token / BULKASSIGN_SERVER_TOKEN)")
	})
}

func (s *Server) authorized(r *http.Request) bool {
	if v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return subtle.ConstantTimeCompare([]byte(strings.TrimSpace(v)), []byte(s.opts.Token)) == 1
	}
	if c, err := r.Cookie(cookieName); err == nil {
		return subtle.ConstantTimeCompare([]byte(c.Value), []byte(s.session)) == 1
	}
	return false
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
	if subtle.ConstantTimeCompare([]byte(strings.TrimSpace(r.PostForm.Get("token"))), []byte(s.opts.Token)) != 1 {
		s.deps.Logger.Warn("login refused: wrong token", slog.String("remote_addr", r.RemoteAddr))
		s.renderLogin(w, http.StatusUnauthorized, next, "That token is not right. It is the value of --token / BULKASSIGN_SERVER_TOKEN the server was started with.")
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: s.session, Path: "/",
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
		MaxAge: int((12 * time.Hour).Seconds()),
	})
	http.Redirect(w, r, safeNext(next), http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
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
	recent, err := s.recent(r.Context(), min(s.opts.Recent, 20))
	if err != nil {
		s.deps.Logger.Error("list batches", slog.Any("error", err))
		http.Error(w, "the batch list could not be read from Redis: "+err.Error(), http.StatusInternalServerError)
		return
	}
	s.render(w, http.StatusOK, "index.html", map[string]any{"Recent": recent, "MaxUpload": bytesText(s.opts.MaxUpload)})
}
