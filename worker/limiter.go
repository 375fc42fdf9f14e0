package worker

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limiter paces API calls. Wait blocks until a call may be made; Slow is
// told that the API answered 429, with the Retry-After it asked for (0 if
// none), so that every caller sharing the limiter backs off, not only the
// one that was refused.
type Limiter interface {
	Wait(ctx context.Context) error
	Slow(ctx context.Context, retryAfter time.Duration)
}

// LocalLimiter is a Limiter for one process: a token bucket from
// golang.org/x/time/rate plus a shared pause after a 429. After a 429 the
// rate drops by a fifth (once per pause); it climbs back by a quarter for
// every quiet 2 seconds until it is at the configured rate again.
type LocalLimiter struct {
	lim   *rate.Limiter
	limit rate.Limit
	now   func() time.Time

	mu          sync.Mutex
	pausedUntil time.Time
	lastSlow    time.Time
	streak      int
}

// recoverEvery is the quiet time after which a slowed rate climbs back.
const recoverEvery = 2 * time.Second

// NewLocalLimiter returns a limiter of perSecond calls a second with the
// given burst; perSecond 0 means unlimited (only 429 pauses apply).
func NewLocalLimiter(perSecond float64, burst int) *LocalLimiter {
	limit := rate.Inf
	if perSecond > 0 {
		limit = rate.Limit(perSecond)
	}
	if burst < 1 {
		burst = 1
	}
	return &LocalLimiter{lim: rate.NewLimiter(limit, burst), limit: limit, now: time.Now}
}

// Wait blocks until a call may be made or ctx ends.
func (l *LocalLimiter) Wait(ctx context.Context) error {
	if err := sleep(ctx, l.pause()); err != nil {
		return err
	}
	return l.lim.Wait(ctx)
}

// pause returns how long callers must still hold off after a 429, and lets
// the rate recover when the API has been quiet.
func (l *LocalLimiter) pause() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if l.limit != rate.Inf && !l.lastSlow.IsZero() && now.Sub(l.lastSlow) >= recoverEvery {
		if cur := l.lim.Limit(); cur < l.limit {
			l.lim.SetLimitAt(now, min(l.limit, cur*1.25))
		}
		l.lastSlow = now
		l.streak = 0
	}
	return l.pausedUntil.Sub(now)
}

// Slow pauses every caller for retryAfter (or an increasing backoff when
// the API gave none) and lowers the rate.
func (l *LocalLimiter) Slow(_ context.Context, retryAfter time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	// The calls in flight when the API started refusing all come back 429
	// together: that is one signal, not many.
	fresh := !now.Before(l.pausedUntil)
	l.streak++
	if retryAfter <= 0 {
		retryAfter = min(time.Duration(l.streak)*250*time.Millisecond, 5*time.Second)
	}
	if until := now.Add(retryAfter); until.After(l.pausedUntil) {
		l.pausedUntil = until
	}
	if cur := l.lim.Limit(); fresh && cur != rate.Inf {
		l.lim.SetLimitAt(now, max(cur*0.8, 0.5))
	}
	l.lastSlow = now
}
