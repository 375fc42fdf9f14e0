package worker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// SharedLimiter is the Limiter of every process that calls the API with one
// key: the global rate is a GCRA bucket in Redis (github.com/go-redis/redis_rate),
// a 429 pauses everyone through a Redis key, and a LocalLimiter in front
// smooths this process's own calls and keeps them from hammering Redis.
type SharedLimiter struct {
	local *LocalLimiter
	rl    *redis_rate.Limiter
	rdb   redis.UniversalClient
	limit redis_rate.Limit
	key   string
	pause string

	mu        sync.Mutex
	checkedAt time.Time
	until     time.Time
}

// pauseCheck is how often a process reads the shared pause.
const pauseCheck = 100 * time.Millisecond

// NewSharedLimiter returns the limiter for one API key: perSecond calls a
// second in total (0 = unlimited, only 429 pauses are shared) with the
// given burst. The Redis keys are named after namespace and a hash of
// apiURL and apiKey, never the key itself.
func NewSharedLimiter(rdb redis.UniversalClient, namespace, apiURL, apiKey string, perSecond float64, burst int) *SharedLimiter {
	sum := sha256.Sum256([]byte(apiURL + "\x00" + apiKey))
	key := namespace + ":" + hex.EncodeToString(sum[:8])
	l := &SharedLimiter{
		local: NewLocalLimiter(perSecond, burst),
		rl:    redis_rate.NewLimiter(rdb),
		rdb:   rdb,
		key:   key,
		pause: namespace + ":pause:" + hex.EncodeToString(sum[:8]),
	}
	if perSecond > 0 {
		// redis_rate counts whole calls per period: a long period keeps
		// fractional rates (0.5/s) exact.
		l.limit = redis_rate.Limit{Rate: int(math.Round(perSecond * 1000)), Period: 1000 * time.Second, Burst: max(burst, 1)}
	}
	return l
}

// Wait blocks until the shared pause is over and the global bucket allows
// a call.
func (l *SharedLimiter) Wait(ctx context.Context) error {
	if err := l.local.Wait(ctx); err != nil {
		return err
	}
	if err := l.waitPause(ctx); err != nil {
		return err
	}
	if l.limit.IsZero() {
		return nil
	}
	for {
		res, err := l.rl.Allow(ctx, l.key, l.limit)
		if err != nil {
			return fmt.Errorf("shared rate limit: %w", err)
		}
		if res.Allowed > 0 {
			return nil
		}
		if err := sleep(ctx, res.RetryAfter); err != nil {
			return err
		}
	}
}

// waitPause sleeps while another process's 429 pause is on.
func (l *SharedLimiter) waitPause(ctx context.Context) error {
	l.mu.Lock()
	now := time.Now()
	if now.Sub(l.checkedAt) >= pauseCheck {
		l.checkedAt = now
		l.mu.Unlock()
		ttl, err := l.rdb.PTTL(ctx, l.pause).Result()
		if err != nil {
			return fmt.Errorf("shared rate limit pause: %w", err)
		}
		l.mu.Lock()
		if ttl > 0 {
			l.until = now.Add(ttl)
		}
	}
	d := l.until.Sub(now)
	l.mu.Unlock()
	return sleep(ctx, d)
}

// Slow pauses every process sharing the key for retryAfter (or this
// process's backoff when the API gave none).
func (l *SharedLimiter) Slow(ctx context.Context, retryAfter time.Duration) {
	l.local.Slow(ctx, retryAfter)
	d := l.local.pause()
	if d <= 0 {
		return
	}
	// NX: the first 429 of a wave sets the pause; the others fall inside it.
	// Best effort: if Redis fails here, the next call's Wait reports it.
	_ = l.rdb.SetArgs(ctx, l.pause, "1", redis.SetArgs{Mode: "NX", TTL: d}).Err()
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
