package worker

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limiter paces API calls. Wait blocks until a call may be made. Slow is
// told that the API answered 429: the limiter lowers the pace of every
// caller sharing it, while the refused call itself waits out Retry-After.
type Limiter interface {
	Wait(ctx context.Context) error
	Slow(ctx context.Context)
}

// LocalLimiter is a Limiter for one process: a token bucket from
// golang.org/x/time/rate that adapts to the API. A 429 cuts the pace to
// four fifths of what it was (the pace actually achieved when no rate is
// set), at most once per second however many calls were refused together;
// every quiet 2 seconds it climbs back by a quarter, up to the configured
// rate (or without bound when none is set).
type LocalLimiter struct {
	lim   *rate.Limiter
	limit rate.Limit
	now   func() time.Time

	mu       sync.Mutex
	lastSlow time.Time
	// calls since markAt, and the pace of the last whole second.
	calls    int
	markAt   time.Time
	observed float64
}

const (
	// recoverEvery is the quiet time after which a slowed rate climbs back.
	recoverEvery = 2 * time.Second
	// slowEvery is how often 429s may cut the rate: the calls in flight
	// when the API starts refusing come back 429 together, and that is one
	// signal, not many.
	slowEvery = time.Second
	// minRate is the floor of a cut rate.
	minRate = 0.5
	// unbounded is where a recovering rate counts as unlimited again.
	unbounded = 1e6
)

// NewLocalLimiter returns a limiter of perSecond calls a second with the
// given burst; perSecond 0 means unlimited until the API answers 429.
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
	l.tick()
	return l.lim.Wait(ctx)
}

// tick counts a call, keeps the observed pace, and lets a slowed rate
// recover when the API has been quiet.
func (l *LocalLimiter) tick() {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.calls++
	if l.markAt.IsZero() {
		l.markAt = now
	}
	if d := now.Sub(l.markAt); d >= time.Second {
		l.observed = float64(l.calls) / d.Seconds()
		l.calls, l.markAt = 0, now
	}
	cur := l.lim.Limit()
	if cur == l.limit || l.lastSlow.IsZero() || now.Sub(l.lastSlow) < recoverEvery {
		return
	}
	next := cur * 1.25
	if next >= l.limit || (l.limit == rate.Inf && next > unbounded) {
		next = l.limit
	}
	l.lim.SetLimitAt(now, next)
	l.lastSlow = now // the next step comes after another quiet period
}

// Slow lowers the rate after a 429.
func (l *LocalLimiter) Slow(context.Context) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if !l.lastSlow.IsZero() && now.Sub(l.lastSlow) < slowEvery {
		return
	}
	l.lastSlow = now
	cur := l.lim.Limit()
	if cur == rate.Inf {
		cur = rate.Limit(l.observed)
		if d := now.Sub(l.markAt); cur == 0 && d > 0 {
			cur = rate.Limit(float64(l.calls) / d.Seconds())
		}
	}
	l.lim.SetLimitAt(now, max(cur*0.8, minRate))
}
