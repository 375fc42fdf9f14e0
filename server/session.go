package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"
)

// Sessions of the login form live in Redis: the cookie holds a random id,
// Redis holds, under the id's SHA-256 (a Redis reader cannot replay a
// session), who signed in and a fingerprint of their token, with the
// session's expiry. Logout deletes it; a session whose token was removed
// or changed in the tokens file is refused.
//
//	NS:serve:session:<sha256 of the id>  "<name> <token fingerprint>"  PX ttl

// DefaultSessionTTL is how long a login lasts.
const DefaultSessionTTL = 12 * time.Hour

func (s *Server) sessionKey(id string) string {
	sum := sha256.Sum256([]byte(id))
	return s.deps.Queue + ":serve:session:" + hex.EncodeToString(sum[:])
}

// fingerprint names a token's hash in a session without storing it.
func fingerprint(c Credential) string {
	sum := sha256.Sum256(append([]byte("bulkassign session v2 "), c.Hash[:]...))
	return hex.EncodeToString(sum[:8])
}

// newSession stores a session for c and returns its id.
func (s *Server) newSession(ctx context.Context, c Credential) (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	id := base64.RawURLEncoding.EncodeToString(b)
	if err := s.deps.Redis.Set(ctx, s.sessionKey(id), c.Name+" "+fingerprint(c), s.opts.SessionTTL).Err(); err != nil {
		return "", fmt.Errorf("store the session in Redis: %w", err)
	}
	return id, nil
}

// session returns who holds the session id, if it is live and their token
// is still the one they signed in with.
func (s *Server) session(ctx context.Context, id string) (string, bool, error) {
	if len(id) != 43 { // 32 bytes, base64url without padding
		return "", false, nil
	}
	v, err := s.deps.Redis.Get(ctx, s.sessionKey(id)).Result()
	if errors.Is(err, redis.Nil) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("read the session from Redis: %w", err)
	}
	name, fp, _ := strings.Cut(v, " ")
	for _, c := range s.creds {
		if c.Name == name && fingerprint(c) == fp {
			return name, true, nil
		}
	}
	return "", false, nil
}

func (s *Server) endSession(ctx context.Context, id string) error {
	return s.deps.Redis.Del(ctx, s.sessionKey(id)).Err()
}

// secure reports whether the browser reached us over TLS: directly, behind
// the https --public-url, or (with --trust-proxy) as the proxy's
// X-Forwarded-Proto says.
func (s *Server) secure(r *http.Request) bool {
	return r.TLS != nil || strings.HasPrefix(s.opts.PublicURL, "https://") ||
		(s.opts.TrustProxy && strings.EqualFold(strings.TrimSpace(lastHop(r.Header.Get("X-Forwarded-Proto"))), "https"))
}

// clientAddr is the address failed logins are counted against: the peer,
// or with --trust-proxy the address the proxy appended to X-Forwarded-For.
func (s *Server) clientAddr(r *http.Request) string {
	if s.opts.TrustProxy {
		if ip := net.ParseIP(strings.TrimSpace(lastHop(r.Header.Get("X-Forwarded-For")))); ip != nil {
			return ip.String()
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// lastHop is the last element of a comma-separated forwarding header: the
// one our own proxy added (a client can forge the ones before it).
func lastHop(v string) string {
	if i := strings.LastIndexByte(v, ','); i >= 0 {
		return v[i+1:]
	}
	return v
}

// Throttle settings: a client address gets LoginBurst wrong tokens, then
// one more every LoginEvery.
const (
	DefaultLoginBurst = 10
	DefaultLoginEvery = 6 * time.Second
)

// throttle counts wrong tokens per client address (login form and bearer
// token alike). While an address is throttled every attempt from it is
// refused, the right token too, so that guessing goes no faster.
type throttle struct {
	every time.Duration
	burst int
	now   func() time.Time

	mu  sync.Mutex
	per map[string]*rate.Limiter
}

// maxThrottled bounds the addresses remembered; past it, the addresses
// whose allowance is full again are forgotten.
const maxThrottled = 10000

func newThrottle(every time.Duration, burst int, now func() time.Time) *throttle {
	return &throttle{every: every, burst: burst, now: now, per: map[string]*rate.Limiter{}}
}

// wait returns how long addr must wait before its next attempt; 0 when it
// may try now.
func (t *throttle) wait(addr string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	l, ok := t.per[addr]
	if !ok {
		return 0
	}
	now := t.now()
	if l.TokensAt(now) >= 1 {
		return 0
	}
	r := l.ReserveN(now, 1)
	d := r.DelayFrom(now)
	r.CancelAt(now)
	return max(d, time.Second)
}

// failed counts a wrong token from addr.
func (t *throttle) failed(addr string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	l, ok := t.per[addr]
	if !ok {
		if len(t.per) >= maxThrottled {
			for a, x := range t.per {
				if x.TokensAt(now) >= float64(t.burst) {
					delete(t.per, a)
				}
			}
		}
		l = rate.NewLimiter(rate.Every(t.every), t.burst)
		t.per[addr] = l
	}
	l.AllowN(now, 1)
}
