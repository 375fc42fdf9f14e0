package worker

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulkassign/bulkassign/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// sharedSetup is a Redis namespace and a way to make limiters on it, each
// with its own connection, as separate processes would have.
type sharedSetup struct {
	ns  string
	url string
}

func newSharedSetup(t *testing.T) sharedSetup {
	t.Helper()
	url := redistest.URL(t)
	return sharedSetup{ns: redistest.Namespace(t, url), url: url}
}

func (s sharedSetup) client(t *testing.T) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(s.url)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	return c
}

func (s sharedSetup) limiter(t *testing.T, apiKey string, perSecond float64, burst int) *SharedLimiter {
	t.Helper()
	return NewSharedLimiter(s.client(t), s.ns, "http://crm.test", apiKey, perSecond, burst)
}

func TestSharedLimiterRateIsGlobal(t *testing.T) {
	t.Parallel()
	s := newSharedSetup(t)
	const (
		rate   = 50
		window = 3 * time.Second
	)
	limiters := []*SharedLimiter{s.limiter(t, "k", rate, 1), s.limiter(t, "k", rate, 1)}
	ctx, cancel := context.WithTimeout(t.Context(), window)
	defer cancel()
	var allowed [2]atomic.Int64
	var wg sync.WaitGroup
	for i, l := range limiters {
		for range 4 {
			wg.Go(func() {
				for l.Wait(ctx) == nil {
					allowed[i].Add(1)
				}
			})
		}
	}
	wg.Wait()
	a, b := allowed[0].Load(), allowed[1].Load()
	t.Logf("allowed in %s: %d + %d", window, a, b)
	// 50/s for 3s is 150 calls (+1 for the burst); each process alone
	// could make 150, so the band shows the rate is shared. It is wide:
	// the test counts over a window on a machine that may be busy.
	if total := a + b; total < 120 || total > 175 {
		t.Errorf("two limiters of %d/s allowed %d + %d = %d calls in %s, want about %d", rate, a, b, total, window, int(rate*window.Seconds()))
	}
	if a == 0 || b == 0 {
		t.Errorf("one limiter got no calls at all: %d and %d", a, b)
	}
}

func TestSharedLimiterSlowPausesOtherProcesses(t *testing.T) {
	t.Parallel()
	s := newSharedSetup(t)
	a, b := s.limiter(t, "k", 50, 1), s.limiter(t, "k", 50, 1)
	other := s.limiter(t, "another key", 50, 1)
	ctx := t.Context()

	a.Slow(ctx, 2*time.Second)
	start := time.Now()
	if err := b.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited < 500*time.Millisecond {
		t.Errorf("after a 429 with Retry-After 2s in another process, Wait returned after %s", waited)
	}

	// The pause is per API key: another key's limiter is not held.
	if a.pause != b.pause || other.pause == a.pause {
		t.Errorf("pause keys: %q, %q (same key) and %q (other key)", a.pause, b.pause, other.pause)
	}
	if n, err := s.client(t).Exists(ctx, other.pause).Result(); err != nil || n != 0 {
		t.Errorf("another key's pause exists (%d, %v)", n, err)
	}
}

func TestSharedLimiterPauseWithoutRate(t *testing.T) {
	t.Parallel()
	s := newSharedSetup(t)
	// --rate 0: no global bucket, but a 429 still pauses everyone.
	a, b := s.limiter(t, "k", 0, 0), s.limiter(t, "k", 0, 0)
	ctx := t.Context()
	a.Slow(ctx, 2*time.Second)

	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := b.Wait(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait during another process's pause, with a context that ends first: %v, want %v", err, context.DeadlineExceeded)
	}
	start := time.Now()
	if err := b.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited < 500*time.Millisecond {
		t.Errorf("unlimited limiter: Wait returned %s after another process's 2s pause began", waited)
	}
}

func TestSharedLimiterKeysHideTheAPIKey(t *testing.T) {
	t.Parallel()
	s := newSharedSetup(t)
	const apiKey = "sk-LIMITER-SECRET-5d1c"
	l := s.limiter(t, apiKey, 10, 1)
	ctx := t.Context()
	if err := l.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	l.Slow(ctx, time.Second)
	c := s.client(t)
	// redis_rate puts its "rate:" prefix before the namespace.
	var keys []string
	for _, pattern := range []string{s.ns + "*", "rate:" + s.ns + "*"} {
		ks, err := c.Keys(ctx, pattern).Result()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, ks...)
	}
	if len(keys) < 2 {
		t.Fatalf("want the bucket and the pause keys in Redis, got %v", keys)
	}
	for _, k := range keys {
		v, _ := c.Dump(ctx, k).Result()
		if strings.Contains(k, apiKey) || strings.Contains(v, apiKey) {
			t.Errorf("Redis key %q (or its value) holds the API key", k)
		}
	}
}
