package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/bulkassign/bulkassign/config"
	"github.com/bulkassign/bulkassign/metrics"
	"github.com/bulkassign/bulkassign/server"
	"github.com/bulkassign/bulkassign/worker"
	"github.com/hibiken/asynq"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func (a *app) serveCommand() *cobra.Command {
	cfg := config.Default()
	cfg.LogLevel = "info"
	var (
		addr, token, tokensFile, publicURL string
		trustProxy                         bool
		readTimeout                        time.Duration
		maxUpload                          int64
		workers                            int
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "HTTP API and web page: upload, follow and download batches; queue monitor, metrics",
		Long: `Serves, behind access tokens (--token, and/or one per person with --tokens FILE):
  /                 the web page: upload, map columns, check, queue, follow a
                    batch (failed rows, charts), download its reports,
                    verify a finished one against the CRM (drift.csv)
  /schedules        the schedule entries: cron, next run, last batch
  /api/v1/batches   the JSON API (Authorization: Bearer TOKEN)
  /monitor/         asynq's monitor
  /metrics          Prometheus metrics

A tokens file has one line a person, the SHA-256 of their token (never
the token): alice: "sha256:<hex>"; batches record who uploaded them
(the token's name and the client's address), shown as "started by".

An upload may name a URL to tell when its batch ends (the form's field,
the API's notify and notifyFormat, as --notify of import). A file queued
already within --retention (the same content, for the same --api-url) is
refused with its earlier batch (HTTP 409) unless the upload says again
(the form's "Queue it again", the API's again=true).
Behind a TLS proxy give --public-url https://... (or --trust-proxy when
the proxy sets X-Forwarded-Proto and X-Forwarded-For) so that the session
cookie is Secure. Reports of finished batches are written once to
--out/<batch id>/ and served from there.

With --workers N the server also applies batches itself; otherwise run
` + "`bulkassign worker`" + ` processes against the same Redis. The CRM API key is
used by --workers and, when set, to fetch the team member list that
resolves member emails of uploads and for the Verify button of a finished
batch, which reads its contacts back from the CRM (as ` + "`bulkassign verify ID`" + `)
with the calls' key probe, shared --rate and --concurrency, and writes
--out/<batch id>/drift.csv; it never reaches a browser or an API answer.`,
		Example: `  BULKASSIGN_SERVER_TOKEN=$(openssl rand -hex 16) bulkassign serve --redis redis://localhost:6379/0

  # one token a person; the file keeps only their SHA-256
  T=$(openssl rand -hex 16); H=$(printf %s "$T" | sha256sum | cut -d' ' -f1)
  echo "alice: sha256:$H" >> tokens.yaml
  bulkassign serve --redis redis://localhost:6379/0 --tokens tokens.yaml \
    --public-url https://bulkassign.example.com`,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if len(args) != 0 {
				return fmt.Errorf("serve: takes no arguments, got %q", args)
			}
			if token == "" && tokensFile == "" {
				return errors.New("no access token: set --token or BULKASSIGN_SERVER_TOKEN (for example: export BULKASSIGN_SERVER_TOKEN=$(openssl rand -hex 16)), or give --tokens FILE")
			}
			var creds []server.Credential
			if tokensFile != "" {
				f, err := os.Open(tokensFile)
				if err != nil {
					return fmt.Errorf("--tokens: %w", err)
				}
				creds, err = server.LoadTokens(f, tokensFile)
				f.Close()
				if err != nil {
					return err
				}
			}
			if readTimeout <= 0 {
				return fmt.Errorf("--read-timeout %s: want a positive duration, e.g. 5m", readTimeout)
			}
			if !cfg.RedisGiven() {
				return errNoRedis
			}
			if workers < 0 {
				return fmt.Errorf("--workers %d: want 0 (no in-process worker) or more", workers)
			}
			if maxUpload <= 0 {
				return fmt.Errorf("--max-upload %d: want a positive number of bytes", maxUpload)
			}
			if workers > 0 {
				if cfg.APIKey == "" {
					return errors.New("--workers needs the CRM API key: set BULKASSIGN_API_KEY (or --api-key), or run with --workers 0 and separate `bulkassign worker` processes")
				}
				cfg.Concurrency = workers
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			log, err := newLogger(a.stderr, cfg.LogLevel)
			if err != nil {
				return err
			}
			if token != "" && len(token) < 16 {
				log.Warn("the access token is short: use at least 16 random characters (openssl rand -hex 16)")
			}
			q, err := openQueue(ctx, cfg, false)
			if err != nil {
				return err
			}
			defer q.close()

			m := metrics.New()
			var w *workerProc
			if workers > 0 {
				if w, err = newWorker(q, cfg, log, m, 0); err != nil {
					return err
				}
				if err := w.start(ctx); err != nil {
					return err
				}
				defer w.stop()
			}
			inspector := asynq.NewInspector(q.opt)
			defer inspector.Close()
			deps := server.Deps{
				Store: q.store, Redis: q.rdb, Importer: q.importer(cfg), Client: q.client, Inspector: inspector,
				RedisOpt: q.opt, Queue: cfg.Namespace, Metrics: m, Logger: log,
			}
			if cfg.APIKey != "" {
				deps.Directory = memberDirectory(cfg, false)
				if deps.CRM, err = serveCRM(q, cfg, log, m, w); err != nil {
					return err
				}
			}
			sopts := server.Options{Token: token, Tokens: creds, PublicURL: publicURL, TrustProxy: trustProxy,
				MaxUpload: maxUpload, IDFormat: cfg.IDFormat, ReportDir: cfg.Out, Retention: retention(cfg.Retention),
				ReadTimeout: readTimeout, APIURL: cfg.APIURL}
			if workers > 0 {
				sopts.Settings = workerSettings(&cfg)
			}
			h, err := server.New(deps, sopts)
			if err != nil {
				return err
			}
			defer h.Close()

			ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
			if err != nil {
				return fmt.Errorf("serve: listen on %s: %w", addr, err)
			}
			if ta, ok := ln.Addr().(*net.TCPAddr); ok && !ta.IP.IsLoopback() {
				log.Warn("listening beyond this machine over plain HTTP: the token travels in clear unless a TLS proxy is in front", slog.String("addr", ln.Addr().String()))
			}
			hs := h.HTTPServer(slog.NewLogLogger(log.Handler(), slog.LevelWarn))
			served := make(chan error, 1)
			go func() { served <- hs.Serve(ln) }()
			fmt.Fprintf(a.stderr, "bulkassign serve: listening on http://%s (workers: %d, redis: %s, queue: %s)\n",
				ln.Addr(), workers, cfg.RedisDisplay(), cfg.Namespace)

			select {
			case err := <-served:
				return fmt.Errorf("serve: %w", err)
			case <-ctx.Done():
			}
			log.Info("stopping: finishing requests in flight")
			sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := hs.Shutdown(sctx); err != nil {
				_ = hs.Close()
			}
			return nil
		},
	}
	flagGroup(cmd.Flags(), "Server", func(fs *pflag.FlagSet) {
		fs.StringVar(&addr, "addr", "127.0.0.1:8081", "`ADDRESS` to listen on (loopback by default; put a TLS proxy in front before exposing it)")
		fs.StringVar(&token, "server-token", "", "access `TOKEN` for the page, the API, /monitor and /metrics (BULKASSIGN_SERVER_TOKEN); --token for short")
		fs.StringVar(&tokensFile, "tokens", "", "`FILE` of named tokens, one line a person: name: \"sha256:<hex of the token's SHA-256>\"; batches record who uploaded them")
		fs.StringVar(&publicURL, "public-url", "", "`URL` browsers use, e.g. https://bulkassign.example.com behind a TLS proxy: the session cookie is then Secure")
		fs.BoolVar(&trustProxy, "trust-proxy", false, "trust the proxy in front: X-Forwarded-Proto (Secure cookie) and the last X-Forwarded-For address (login throttling); only when every request comes through it")
		fs.DurationVar(&readTimeout, "read-timeout", server.DefaultReadTimeout, "longest time to read a whole request, upload included: a slower upload is cut off and its batch removed")
		fs.Int64Var(&maxUpload, "max-upload", server.DefaultMaxUpload, "largest upload accepted, in bytes")
		cfg.RegisterInput(fs)
		fs.IntVar(&workers, "workers", 0, "run an in-process worker with this many calls in flight (needs BULKASSIGN_API_KEY); 0 leaves the work to separate bulkassign worker processes")
	})
	flagGroup(cmd.Flags(), groupAPI, cfg.RegisterAPI)
	flagGroup(cmd.Flags(), groupQueue, func(fs *pflag.FlagSet) { cfg.RegisterRedis(fs, false) })
	flagGroup(cmd.Flags(), groupWorker, cfg.RegisterWorker)
	flagGroup(cmd.Flags(), groupOutput, cfg.RegisterOutput)
	// --token is --server-token: one flag, so the command line always wins
	// over BULKASSIGN_SERVER_TOKEN.
	cmd.Flags().SetNormalizeFunc(func(_ *pflag.FlagSet, name string) pflag.NormalizedName {
		if name == "token" {
			name = "server-token"
		}
		return pflag.NormalizedName(name)
	})
	return cmd
}

// serveCRM is how serve's Verify button reads the CRM: with --workers, the
// client (its key probe) and limiter of the in-process workers, w; else a
// client and the shared limiter of the key as a worker makes them, so the
// reads share --rate with every worker.
func serveCRM(q *queue, cfg config.Config, log *slog.Logger, m *metrics.Metrics, w *workerProc) (*server.CRM, error) {
	read := readOptions(cfg)
	read.Backoff = cfg.RetryBase
	if w != nil {
		return &server.CRM{Client: w.client, Limiter: w.limiter, Read: read}, nil
	}
	client, err := worker.NewClient(cfg.ClientOptions())
	if err != nil {
		return nil, err
	}
	limiter := m.Limiter(sharedLimiter(q, cfg, log))
	return &server.CRM{Client: client, Limiter: limiter, Read: read}, nil
}
