package worker

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// SharedLimiter is the Limiter of every process that calls the API with one
// key. With a rate, the global pace is a GCRA bucket in Redis that hands
// out call slots, and a 429 seen by any process lowers that shared pace
// (it climbs back when the API is quiet). Without a rate, each process
// adapts its own pace (LocalLimiter), and a 429 seen by one process is
// signalled through Redis so that all of them slow down. A LocalLimiter in
// front always paces this process's own calls.
//
// Every process says in Redis which rate it was given; when they differ
// the lowest applies to all of them, and a process whose own differs says
// so in its log.
type SharedLimiter struct {
	local *LocalLimiter
	rdb   redis.UniversalClient
	log   *slog.Logger
	// own is this process's interval between calls in microseconds (0: no
	// rate of its own), burst the burst in calls.
	own, burst int64
	key        string
	factor     string
	slow       string
	rates      string
	process    string

	mu        sync.Mutex
	checkedAt time.Time
	seen      string // the last slow-down signal this process acted on
	// interval is the one in force across processes, read at announcedAt.
	interval    int64
	announcedAt time.Time
}

// SharedLimiterOptions configures a SharedLimiter; the zero value means
// defaults.
type SharedLimiterOptions struct {
	// Namespace prefixes the limiter's Redis keys; default "bulkassign".
	Namespace string
	// APIURL and APIKey name the bucket: every process calling the same
	// API (however its URL is spelled) with the same key shares it. The
	// key itself is never written: the bucket is named by a hash.
	APIURL, APIKey string
	// Rate is the calls per second across all processes; 0 is unlimited
	// until the API answers 429, or the lowest rate another process has.
	Rate float64
	// Burst is the calls allowed at once above the rate; default 1.
	Burst int
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// announceEvery is how often a process says which rate it has, and reads
// the one in force; a process that stopped is forgotten after rateTTL.
const (
	announceEvery = 5 * time.Second
	rateTTL       = 3 * announceEvery
)

// NormalizeURL is the API URL as the limiter names its bucket: scheme and
// host in lower case, no default port, no trailing slash, no query.
// "HTTPS://CRM.example:443/api/" and "https://crm.example/api" are one API.
func NormalizeURL(raw string) string {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || u.Host == "" {
		return strings.TrimRight(strings.TrimSpace(raw), "/")
	}
	scheme, host := strings.ToLower(u.Scheme), strings.ToLower(u.Hostname())
	port := u.Port()
	if (scheme == "https" && port == "443") || (scheme == "http" && port == "80") {
		port = ""
	}
	if port != "" {
		host = net.JoinHostPort(host, port)
	} else if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return scheme + "://" + host + strings.TrimRight(u.EscapedPath(), "/")
}

// slowCheck is how often a process looks for another's slow-down signal.
const slowCheck = 100 * time.Millisecond

// NewSharedLimiter returns the limiter of one API and key on rdb.
func NewSharedLimiter(rdb redis.UniversalClient, opts SharedLimiterOptions) *SharedLimiter {
	if opts.Namespace == "" {
		opts.Namespace = "bulkassign"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	sum := sha256.Sum256([]byte(NormalizeURL(opts.APIURL) + "\x00" + opts.APIKey))
	id := hex.EncodeToString(sum[:8])
	var b [8]byte
	_, _ = rand.Read(b[:])
	// gcra.lua takes the bucket and its factor: the {id} hash tag keeps the
	// bucket's keys in one Redis Cluster slot.
	prefix := opts.Namespace + ":rate:{" + id + "}"
	l := &SharedLimiter{
		local:   NewLocalLimiter(opts.Rate, opts.Burst),
		rdb:     rdb,
		log:     opts.Logger,
		key:     prefix,
		factor:  prefix + ":factor",
		rates:   prefix + ":rates",
		slow:    opts.Namespace + ":slow:" + id,
		process: hex.EncodeToString(b[:]),
		burst:   int64(max(opts.Burst, 1)),
	}
	if opts.Rate > 0 {
		l.own = int64(math.Round(1e6 / opts.Rate))
	}
	return l
}

// inForce returns the interval in force across the processes sharing the
// bucket (the longest: the lowest rate), saying in this process's log
// when it is not this process's own; every announceEvery it says which
// rate this process has.
func (l *SharedLimiter) inForce(ctx context.Context) (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.announcedAt.IsZero() && time.Since(l.announcedAt) < announceEvery {
		return l.interval, nil
	}
	n, err := announceScript.Run(ctx, l.rdb, []string{l.rates}, l.process, l.own, rateTTL.Milliseconds()).Int64()
	if err != nil {
		return 0, fmt.Errorf("shared rate limit: %w", err)
	}
	if n != l.own && n != l.interval {
		l.log.Warn("another worker runs with a lower --rate for this API and key; the lowest rate applies to every worker",
			slog.Float64("own_rate", perSecond(l.own)), slog.Float64("rate_in_force", perSecond(n)))
	}
	l.interval, l.announcedAt = n, time.Now()
	return n, nil
}

// perSecond turns an interval in microseconds into calls per second; 0
// (no rate) stays 0.
func perSecond(interval int64) float64 {
	if interval == 0 {
		return 0
	}
	return 1e6 / float64(interval)
}

// Wait blocks until this process's pace and the global bucket allow a call.
func (l *SharedLimiter) Wait(ctx context.Context) error {
	interval, err := l.inForce(ctx)
	if err != nil {
		return err
	}
	if err := l.follow(ctx, interval); err != nil {
		return err
	}
	if err := l.local.Wait(ctx); err != nil {
		return err
	}
	if interval == 0 {
		return nil
	}
	wait, err := gcraScript.Run(ctx, l.rdb, []string{l.key, l.factor}, interval, l.burst).Int64()
	if err != nil {
		return fmt.Errorf("shared rate limit: %w", err)
	}
	return sleep(ctx, time.Duration(wait)*time.Microsecond)
}

//go:embed gcra.lua
var gcraLua string

//go:embed slow.lua
var slowLua string

// announceLua records the interval of one process (0: no rate) with an
// expiry, forgets the processes whose record expired, and returns the
// longest interval in force (0 when none has a rate).
// KEYS: rates hash; ARGV: process, interval us, ttl ms
const announceLua = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '|' .. (now + tonumber(ARGV[3])))
redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[3]))
local force = 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local interval, exp = string.match(all[i + 1], '^(%d+)|(%d+)$')
  if not exp or tonumber(exp) < now then
    redis.call('HDEL', KEYS[1], all[i])
  elseif tonumber(interval) > force then
    force = tonumber(interval)
  end
end
return force
`

var (
	gcraScript     = redis.NewScript(gcraLua)
	slowScript     = redis.NewScript(slowLua)
	announceScript = redis.NewScript(announceLua)
)

// follow slows this process when another one has signalled a 429 (only
// without a global rate: with one, the shared pace itself was lowered).
func (l *SharedLimiter) follow(ctx context.Context, interval int64) error {
	if interval != 0 {
		return nil
	}
	l.mu.Lock()
	if time.Since(l.checkedAt) < slowCheck {
		l.mu.Unlock()
		return nil
	}
	l.checkedAt = time.Now()
	l.mu.Unlock()
	sig, err := l.rdb.Get(ctx, l.slow).Result()
	if errors.Is(err, redis.Nil) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("shared rate limit: %w", err)
	}
	l.mu.Lock()
	fresh := sig != l.seen
	l.seen = sig
	l.mu.Unlock()
	if fresh {
		l.local.Slow(ctx)
	}
	return nil
}

// Slow lowers the shared pace after a 429; without a global rate it lowers
// this process's pace and signals every other process sharing the key to
// do the same. Best effort: if Redis fails here, the next Wait reports it.
func (l *SharedLimiter) Slow(ctx context.Context) {
	interval, err := l.inForce(ctx)
	if err != nil {
		interval = l.own
	}
	if interval != 0 {
		_ = slowScript.Run(ctx, l.rdb, []string{l.factor}).Err()
		return
	}
	l.local.Slow(ctx)
	var b [8]byte
	_, _ = rand.Read(b[:])
	sig := hex.EncodeToString(b[:])
	// NX: the first 429 of a wave signals; the others fall inside it.
	if ok, _ := l.rdb.SetNX(ctx, l.slow, sig, slowEvery).Result(); ok {
		l.mu.Lock()
		l.seen = sig // this process has slowed already
		l.mu.Unlock()
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}
