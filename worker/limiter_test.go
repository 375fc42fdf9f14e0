package worker

import (
	"context"
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
	l, _ := newFakeLimiter(0, 1)
	ctx := t.Context()
	for range 1000 {
		if err := l.Wait(ctx); err != nil {
			t.Fatalf("unlimited limiter blocked: %v", err)
		}
	}
}

func TestLocalLimiterUnlimitedSlowsToObservedPace(t *testing.T) {
	t.Parallel()
	l, clock := newFakeLimiter(0, 1)
	ctx := t.Context()
	// 200 calls over one second: the observed pace is 200/s.
	for range 200 {
		clock.Add(5 * time.Millisecond)
		if err := l.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	clock.Add(5 * time.Millisecond)
	_ = l.Wait(ctx)
	l.Slow(ctx)
	if got := l.lim.Limit(); got < 150 || got > 170 {
		t.Fatalf("rate after a 429 at ~200 calls/s = %v, want four fifths of the pace (~160)", got)
	}
	// Quiet for long enough, it climbs back to unlimited.
	for range 60 {
		clock.Add(recoverEvery)
		_ = l.Wait(ctx)
	}
	if got := l.lim.Limit(); got != rate.Inf {
		t.Errorf("rate after a long quiet time = %v, want unlimited again", got)
	}
}

func TestLocalLimiterSlowLowersRateOncePerWave(t *testing.T) {
	t.Parallel()
	l, clock := newFakeLimiter(100, 10)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() { l.Slow(t.Context()) })
	}
	wg.Wait()
	if got := l.lim.Limit(); got != 80 {
		t.Fatalf("rate after 20 simultaneous 429s = %v, want 80", got)
	}
	// A 429 a second later is a new signal.
	clock.Add(slowEvery)
	l.Slow(t.Context())
	l.Slow(t.Context())
	if got := l.lim.Limit(); got != 64 {
		t.Fatalf("rate after a second wave = %v, want 64", got)
	}
	// Never below half a call a second.
	for range 50 {
		clock.Add(slowEvery)
		l.Slow(t.Context())
	}
	if got := l.lim.Limit(); got != minRate {
		t.Fatalf("rate after many 429s = %v, want %v", got, minRate)
	}
}

func TestLocalLimiterWaitEndsWithContext(t *testing.T) {
	t.Parallel()
	l := NewLocalLimiter(0.5, 1)
	_ = l.Wait(t.Context()) // uses the one token
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if err := l.Wait(ctx); err == nil {
		t.Error("Wait with an ending context and no token returned nil")
	}
}

func TestLocalLimiterRecovers(t *testing.T) {
	t.Parallel()
	l, clock := newFakeLimiter(100, 10)
	l.Slow(t.Context())
	if got := l.lim.Limit(); got != 80 {
		t.Fatalf("rate = %v, want 80", got)
	}
	clock.Add(recoverEvery / 2)
	l.tick()
	if got := l.lim.Limit(); got != 80 {
		t.Fatalf("rate after %s quiet = %v, want 80 still", recoverEvery/2, got)
	}
	prev := l.lim.Limit()
	for range 10 {
		clock.Add(recoverEvery)
		l.tick()
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
