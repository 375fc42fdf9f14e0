package worker

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newFakeLimiter(perSecond float64, burst int) (*LocalLimiter, *fakeClock) {
	clock := &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	l := NewLocalLimiter(perSecond, burst)
	l.now = clock.Now
	return l, clock
}

func TestLocalLimiterRate(t *testing.T) {
	t.Parallel()
	const perSecond, calls = 40.0, 21
	l := NewLocalLimiter(perSecond, 1)
	start := time.Now()
	for range calls {
		if err := l.Wait(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	// Only a lower bound: a slow machine takes longer, never shorter.
	if want, took := time.Duration(float64(calls-1)/perSecond*0.9*float64(time.Second)), time.Since(start); took < want {
		t.Errorf("%d calls at %v/s took %v, want at least %v", calls, perSecond, took, want)
	}
}

func TestLocalLimiterUnlimited(t *testing.T) {
	t.Parallel()
	l := NewLocalLimiter(0, 0)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for range 10000 {
		if err := l.Wait(ctx); err != nil {
			t.Fatalf("unlimited limiter blocked: %v", err)
		}
	}
	l.Slow(ctx, time.Millisecond)
	if got := l.lim.Limit(); got != rate.Inf {
		t.Errorf("Slow changed an unlimited rate to %v", got)
	}
}

func TestLocalLimiterSlowPauses(t *testing.T) {
	t.Parallel()
	l, clock := newFakeLimiter(100, 10)
	ctx := t.Context()
	if d := l.pause(); d > 0 {
		t.Fatalf("pause before any 429 = %v", d)
	}
	l.Slow(ctx, 3*time.Second)
	if d := l.pause(); d != 3*time.Second {
		t.Errorf("pause = %v, want 3s", d)
	}
	clock.Add(time.Second)
	l.Slow(ctx, time.Second) // a shorter Retry-After does not cut the pause
	if d := l.pause(); d != 2*time.Second {
		t.Errorf("pause = %v, want 2s", d)
	}
	clock.Add(2 * time.Second)
	if d := l.pause(); d > 0 {
		t.Errorf("pause after Retry-After = %v", d)
	}
	// Without Retry-After the pause grows with the streak of 429s.
	l.Slow(ctx, 0)
	first := l.pause()
	clock.Add(first)
	l.Slow(ctx, 0)
	second := l.pause()
	if first <= 0 || second <= first || second > 5*time.Second {
		t.Errorf("backoff without Retry-After: %v then %v", first, second)
	}
}

func TestLocalLimiterWaitHonoursPause(t *testing.T) {
	t.Parallel()
	l, _ := newFakeLimiter(0, 1)
	// The clock stands still, so the pause is exactly what Slow was told.
	l.Slow(t.Context(), 150*time.Millisecond)
	start := time.Now()
	if err := l.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 150*time.Millisecond {
		t.Errorf("Wait returned after %v during a 150ms pause", took)
	}

	l.Slow(t.Context(), time.Hour)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if err := l.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait during a pause with an ending context = %v", err)
	}
}

func TestLocalLimiterSlowLowersRateOncePerPause(t *testing.T) {
	t.Parallel()
	l, clock := newFakeLimiter(100, 10)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() { l.Slow(t.Context(), time.Second) })
	}
	wg.Wait()
	if got := l.lim.Limit(); got != 80 {
		t.Fatalf("rate after 20 simultaneous 429s = %v, want 80", got)
	}
	// A 429 after the pause is over is a new signal.
	clock.Add(time.Second)
	l.Slow(t.Context(), time.Second)
	l.Slow(t.Context(), time.Second)
	if got := l.lim.Limit(); got != 64 {
		t.Fatalf("rate after a second pause = %v, want 64", got)
	}
	// Never below half a call a second.
	for range 50 {
		clock.Add(time.Second)
		l.Slow(t.Context(), time.Second)
	}
	if got := l.lim.Limit(); got != 0.5 {
		t.Fatalf("rate after many 429s = %v, want 0.5", got)
	}
}

func TestLocalLimiterRecovers(t *testing.T) {
	t.Parallel()
	l, clock := newFakeLimiter(100, 10)
	l.Slow(t.Context(), time.Second)
	if got := l.lim.Limit(); got != 80 {
		t.Fatalf("rate = %v, want 80", got)
	}
	clock.Add(recoverEvery / 2)
	l.pause()
	if got := l.lim.Limit(); got != 80 {
		t.Fatalf("rate after %s quiet = %v, want 80 still", recoverEvery/2, got)
	}
	prev := l.lim.Limit()
	for range 10 {
		clock.Add(recoverEvery)
		l.pause()
		got := l.lim.Limit()
		if got < prev || got > 100 {
			t.Fatalf("rate went from %v to %v", prev, got)
		}
		prev = got
	}
	if prev != 100 {
		t.Errorf("rate after %s quiet = %v, want back at 100", 10*recoverEvery, prev)
	}
}
