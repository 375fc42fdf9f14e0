// Package config holds bulkassign's settings: defaults, flags with their
// BULKASSIGN_* environment twins, and validation.
//
// A flag's help may name its value between backquotes ("base `URL` of the
// CRM API"): the help shows that name in place of the value's type.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/worker"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/pflag"
)

// EnvPrefix is the prefix of every setting's environment variable:
// --api-key is BULKASSIGN_API_KEY.
const EnvPrefix = "BULKASSIGN"

// Config is every setting the commands share.
type Config struct {
	// Input.
	// IDFormat is the rule contact and member ids must follow.
	IDFormat jobs.IDFormat

	// CRM API.
	APIURL         string
	APIKey         string
	PathTemplate   string
	KeyHeader      string
	RequestTimeout time.Duration

	// Queue and workers. Redis is a single server's URL or a Sentinel's
	// (redis-sentinel://); RedisCluster a Redis Cluster's. At most one.
	Redis        string
	RedisCluster string
	Embedded     string
	Namespace    string
	Retention    time.Duration
	// ChunkRows is how many calls one task of a batch queued here carries.
	ChunkRows   int
	Rate        float64
	Burst       int
	Concurrency int
	MaxAttempts int
	RetryBase   time.Duration
	RetryMax    time.Duration
	// Stall is how long a running batch may go without progress, with no
	// row held by any worker, before the workers look for its lost tasks.
	Stall time.Duration
	// MaxRetryAfter caps the wait a 429's Retry-After asks for.
	MaxRetryAfter time.Duration

	// Output.
	Out      string
	LogLevel string
}

// Default returns the settings used when nothing is given.
func Default() Config {
	return Config{
		IDFormat:       jobs.IDUUID,
		APIURL:         worker.DefaultAPIURL,
		PathTemplate:   worker.DefaultPathTemplate,
		KeyHeader:      worker.DefaultKeyHeader,
		RequestTimeout: 30 * time.Second,
		Embedded:       "auto",
		Namespace:      "bulkassign",
		Retention:      7 * 24 * time.Hour,
		ChunkRows:      jobs.DefaultChunkRows,
		Concurrency:    16,
		MaxAttempts:    5,
		RetryBase:      time.Second,
		RetryMax:       time.Minute,
		Stall:          2 * time.Minute,
		MaxRetryAfter:  15 * time.Minute,
		Out:            "reports",
		LogLevel:       "warn",
	}
}

// RegisterInput adds the flags of commands that read assignment or plan
// files to fs: --id-format.
func (c *Config) RegisterInput(fs *pflag.FlagSet) {
	fs.Var(idFormatValue{&c.IDFormat}, "id-format", "`RULE` of contact and member ids: uuid (8-4-4-4-12 hex digits, as the API documents) "+
		"or any (1-128 of a-z, 0-9, - and _, for a CRM with other ids)")
}

// idFormatValue is --id-format: a value other than uuid or any fails when
// it is parsed, from the command line or the environment.
type idFormatValue struct{ f *jobs.IDFormat }

func (v idFormatValue) String() string {
	if v.f == nil { // pflag's zero value, to tell a default
		return ""
	}
	return string(*v.f)
}

func (v idFormatValue) Set(s string) error {
	f, err := jobs.ParseIDFormat(s)
	if err != nil {
		return err
	}
	*v.f = f
	return nil
}

func (v idFormatValue) Type() string { return "uuid|any" }

// RegisterAPI adds the CRM API flags to fs.
func (c *Config) RegisterAPI(fs *pflag.FlagSet) {
	fs.StringVar(&c.APIURL, "api-url", c.APIURL, "base `URL` of the CRM API")
	fs.StringVar(&c.APIKey, "api-key", c.APIKey, "`KEY` for the CRM API; prefer the env var BULKASSIGN_API_KEY: flags show in ps")
	fs.StringVar(&c.PathTemplate, "path-template", c.PathTemplate, "assign call `PATH`, with {aiContactId} and {teamMemberId}")
	fs.StringVar(&c.KeyHeader, "key-header", c.KeyHeader, "HTTP `HEADER` that carries the API key")
	fs.DurationVar(&c.RequestTimeout, "request-timeout", c.RequestTimeout, "timeout of one API call")
}

// RegisterRedis adds the Redis flags to fs. embedded says what an empty
// --redis means for this command.
func (c *Config) RegisterRedis(fs *pflag.FlagSet, embedded bool) {
	help := "Redis `URL`: redis://[user:password@]host:port/db, or through Sentinel redis-sentinel://[:password@]host:port[,host:port]?master=NAME"
	if embedded {
		help += "; without it or --redis-cluster, an embedded queue"
	}
	fs.StringVar(&c.Redis, "redis", c.Redis, help)
	fs.StringVar(&c.RedisCluster, "redis-cluster", c.RedisCluster, "Redis Cluster `URL`: redis://[user:password@]host:port?addr=host:port&addr=host:port (instead of --redis)")
	if embedded {
		fs.StringVar(&c.Embedded, "embedded", c.Embedded, "`KIND` of embedded queue without --redis: auto (a private redis-server if installed, else in-process), redis-server, or memory")
	}
	fs.StringVar(&c.Namespace, "namespace", c.Namespace, "key `PREFIX` in Redis, and the asynq queue's name")
	fs.DurationVar(&c.Retention, "retention", c.Retention, "how long a finished batch stays in Redis (0 or less: forever)")
	fs.IntVar(&c.ChunkRows, "chunk-rows", c.ChunkRows, "calls one task carries at most, for batches this command queues (a contact's rows always travel together)")
}

// RegisterWorker adds the flags of processes that make calls to fs.
func (c *Config) RegisterWorker(fs *pflag.FlagSet) {
	fs.Float64Var(&c.Rate, "rate", c.Rate, "API calls per second, across all workers; 0 = unlimited")
	fs.IntVar(&c.Burst, "burst", c.Burst, "calls allowed at once above --rate (default 1)")
	fs.IntVar(&c.Concurrency, "concurrency", c.Concurrency, "API calls in flight in this process")
	fs.IntVar(&c.MaxAttempts, "max-attempts", c.MaxAttempts, "calls a row gets for transient failures before it is dead-lettered")
	fs.DurationVar(&c.RetryBase, "retry-base", c.RetryBase, "first backoff after a transient failure; doubles each attempt")
	fs.DurationVar(&c.RetryMax, "retry-max", c.RetryMax, "longest backoff between attempts")
	fs.DurationVar(&c.MaxRetryAfter, "max-retry-after", c.MaxRetryAfter, "longest Retry-After honoured; longer waits are capped")
	fs.DurationVar(&c.Stall, "stall", c.Stall, "how long a running batch may make no progress, with no row in flight, before the workers queue its lost tasks again (keep it above --retry-max)")
}

// RegisterOutput adds the report and logging flags to fs.
func (c *Config) RegisterOutput(fs *pflag.FlagSet) {
	fs.StringVar(&c.Out, "out", c.Out, "`DIR` of the reports: a batch's report goes to DIR/<batch id>/")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "`LEVEL` of the logs: debug, info, warn or error")
}

// EnvName is the environment twin of a flag: api-key is BULKASSIGN_API_KEY.
func EnvName(flag string) string {
	return EnvPrefix + "_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// ApplyEnv sets every flag of fs that was not given on the command line
// from its environment twin, as lookup (os.LookupEnv) finds it; an empty
// variable counts as unset. A flag given on the command line wins.
func ApplyEnv(fs *pflag.FlagSet, lookup func(string) (string, bool)) error {
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed {
			return
		}
		name := EnvName(f.Name)
		v, ok := lookup(name)
		if !ok || v == "" {
			return
		}
		// The value stays out of the message: it may be a secret.
		if err := fs.Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("%s: not a valid value for --%s (%s)", name, f.Name, f.Value.Type()))
		}
	})
	return errors.Join(errs...)
}

var namespaceRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Validate checks the settings and says how to fix the first bad one.
func (c Config) Validate() error {
	var errs []error
	if _, err := jobs.ParseIDFormat(string(c.IDFormat)); err != nil {
		errs = append(errs, fmt.Errorf("--id-format %q: want uuid or any", c.IDFormat))
	}
	if u, err := url.Parse(c.APIURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("--api-url %q: want http(s)://host[:port]", c.APIURL))
	}
	if !strings.Contains(c.PathTemplate, "{aiContactId}") || !strings.Contains(c.PathTemplate, "{teamMemberId}") {
		errs = append(errs, fmt.Errorf("--path-template %q must contain {aiContactId} and {teamMemberId}", c.PathTemplate))
	}
	if c.KeyHeader == "" {
		errs = append(errs, errors.New("--key-header must not be empty"))
	}
	if c.RequestTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--request-timeout %s must be positive", c.RequestTimeout))
	}
	if !namespaceRE.MatchString(c.Namespace) {
		errs = append(errs, fmt.Errorf("--namespace %q: use 1-64 letters, digits, - or _", c.Namespace))
	}
	if c.Embedded != "auto" && c.Embedded != "redis-server" && c.Embedded != "memory" {
		errs = append(errs, fmt.Errorf("--embedded %q: want auto, redis-server or memory", c.Embedded))
	}
	if c.Rate < 0 {
		errs = append(errs, fmt.Errorf("--rate %g must be 0 (unlimited) or more", c.Rate))
	}
	if c.Burst < 0 {
		errs = append(errs, fmt.Errorf("--burst %d must not be negative", c.Burst))
	}
	if c.Concurrency < 1 || c.Concurrency > 10000 {
		errs = append(errs, fmt.Errorf("--concurrency %d: want 1 to 10000", c.Concurrency))
	}
	if c.MaxAttempts < 1 || c.MaxAttempts > 100 {
		errs = append(errs, fmt.Errorf("--max-attempts %d: want 1 to 100", c.MaxAttempts))
	}
	if c.RetryBase <= 0 || c.RetryMax < c.RetryBase {
		errs = append(errs, fmt.Errorf("--retry-base %s and --retry-max %s: want 0 < base <= max", c.RetryBase, c.RetryMax))
	}
	if c.ChunkRows < 1 || c.ChunkRows > 10000 {
		errs = append(errs, fmt.Errorf("--chunk-rows %d: want 1 to 10000", c.ChunkRows))
	}
	if c.Stall <= 0 {
		errs = append(errs, fmt.Errorf("--stall %s must be positive", c.Stall))
	}
	if c.MaxRetryAfter <= 0 {
		errs = append(errs, fmt.Errorf("--max-retry-after %s must be positive", c.MaxRetryAfter))
	}
	if c.RedisGiven() {
		if _, err := c.RedisOpt(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// RedisGiven reports whether --redis or --redis-cluster names a Redis.
func (c Config) RedisGiven() bool { return c.Redis != "" || c.RedisCluster != "" }

// RedisOpt parses --redis or --redis-cluster for asynq: a single server,
// a master found through Sentinel, or a Redis Cluster. Its
// MakeRedisClient is the ledger's client too, so both use one
// connection of one kind. The URL's password never appears in the error.
func (c Config) RedisOpt() (asynq.RedisConnOpt, error) {
	switch {
	case c.Redis != "" && c.RedisCluster != "":
		return nil, errors.New("--redis and --redis-cluster: give one (a cluster's nodes go in --redis-cluster; a single server or redis-sentinel:// in --redis)")
	case c.RedisCluster != "":
		return clusterOpt(c.RedisCluster)
	}
	bad := func(why string) error {
		return fmt.Errorf("--redis %s: %swant redis://[user:password@]host:port/db, rediss://…, or redis-sentinel://[:password@]host:port[,host:port][/db]?master=NAME",
			redactURL(c.Redis), why)
	}
	opt, err := asynq.ParseRedisURI(c.Redis)
	if err != nil {
		return nil, bad("")
	}
	u, _ := url.Parse(c.Redis) // asynq parsed it
	switch o := opt.(type) {
	case asynq.RedisClientOpt:
		// asynq reads only the password: without the user, a Redis ACL user
		// would be refused (AUTH as "default").
		if u.User != nil {
			if _, hasPassword := u.User.Password(); hasPassword {
				o.Username = u.User.Username()
			}
		}
		return o, nil
	case asynq.RedisFailoverClientOpt:
		if o.MasterName == "" {
			return nil, bad("no master named (add ?master=NAME, the name the Sentinels know it by); ")
		}
		for _, a := range o.SentinelAddrs {
			if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
				return nil, bad(fmt.Sprintf("Sentinel %q is not host:port; ", a))
			}
		}
		// asynq ignores a path; a DB given there is honoured, not dropped.
		if p := strings.Trim(u.Path, "/"); p != "" {
			db, err := strconv.Atoi(p)
			if err != nil || db < 0 {
				return nil, bad("the path is not a DB number; ")
			}
			o.DB = db
		}
		return o, nil
	}
	return nil, bad("")
}

// clusterQuery are the settings of a cluster URL's query that asynq's
// cluster connection has; go-redis knows more, which would be dropped.
var clusterQuery = map[string]bool{"addr": true, "max_redirects": true, "dial_timeout": true, "read_timeout": true, "write_timeout": true}

// clusterOpt parses --redis-cluster, go-redis's cluster URL form.
func clusterOpt(raw string) (asynq.RedisConnOpt, error) {
	bad := func(why string) error {
		return fmt.Errorf("--redis-cluster %s: %swant redis://[user:password@]host:port?addr=host:port&addr=host:port (rediss:// for TLS), naming one or more of the cluster's nodes",
			redactURL(raw), why)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, bad("")
	}
	if p := strings.Trim(u.Path, "/"); p != "" && p != "0" {
		return nil, bad(fmt.Sprintf("a cluster has only DB 0, not %s (keep batches apart with --namespace); ", p))
	}
	for k := range u.Query() {
		if !clusterQuery[k] {
			return nil, bad(fmt.Sprintf("setting %q is not supported (only addr, max_redirects, dial_timeout, read_timeout and write_timeout are); ", k))
		}
	}
	o, err := redis.ParseClusterURL(raw)
	if err != nil {
		// go-redis's reasons name a setting or an address, never the password.
		return nil, bad(strings.TrimPrefix(err.Error(), "redis: ") + "; ")
	}
	return asynq.RedisClusterClientOpt{
		Addrs:        o.Addrs,
		Username:     o.Username,
		Password:     o.Password,
		MaxRedirects: o.MaxRedirects,
		DialTimeout:  o.DialTimeout,
		ReadTimeout:  o.ReadTimeout,
		WriteTimeout: o.WriteTimeout,
		TLSConfig:    o.TLSConfig,
	}, nil
}

// ClientOptions are the CRM API client's settings.
func (c Config) ClientOptions() worker.ClientOptions {
	return worker.ClientOptions{
		BaseURL:      c.APIURL,
		PathTemplate: c.PathTemplate,
		KeyHeader:    c.KeyHeader,
		APIKey:       c.APIKey,
		Timeout:      c.RequestTimeout,
		MaxConns:     c.Concurrency,
	}
}

// RedisDisplay names the Redis in messages, with any password hidden.
func (c Config) RedisDisplay() string {
	switch {
	case c.RedisCluster != "":
		return "the Redis Cluster at " + redactURL(c.RedisCluster)
	case c.Redis == "":
		return "the embedded queue"
	}
	return redactURL(c.Redis)
}

// redactURL hides a URL's password.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		if err != nil {
			return "(unparsable URL)"
		}
		return s
	}
	return u.Redacted()
}
