package worker

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulkassign/bulkassign/internal/redistest"
	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"
)

// sharedSetup is a Redis namespace and a way to make limiters on it, each
// with its own connection, as separate processes would have.
type sharedSetup struct {
	ns    string
	redis *redistest.Redis
}

// onTopologies runs test on a single Redis, through Sentinel and on a
// Redis Cluster, in parallel.
func onTopologies(t *testing.T, test func(t *testing.T, s sharedSetup)) {
	t.Helper()
	for _, tp := range redistest.Topologies() {
		t.Run(string(tp), func(t *testing.T) {
			t.Parallel()
			r := redistest.Shared(t, tp)
			test(t, sharedSetup{ns: r.Namespace(t), redis: r})
		})
	}
}

func newSharedSetup(t *testing.T) sharedSetup {
	t.Helper()
	r := redistest.Shared(t, redistest.Single)
	return sharedSetup{ns: r.Namespace(t), redis: r}
}

func (s sharedSetup) client(t *testing.T) redis.UniversalClient {
	t.Helper()
	return s.redis.Client(t)
}

func (s sharedSetup) limiter(t *testing.T, apiKey string, perSecond float64, burst int) *SharedLimiter {
	t.Helper()
	return NewSharedLimiter(s.client(t), SharedLimiterOptions{Namespace: s.ns, APIURL: "http://crm.test", APIKey: apiKey, Rate: perSecond, Burst: burst})
}

func TestSharedLimiterRateIsGlobal(t *testing.T) {
	t.Parallel()
	onTopologies(t, func(t *testing.T, s sharedSetup) {
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
	})
}

func TestSharedLimiterSlowSlowsOtherProcesses(t *testing.T) {
	t.Parallel()
	onTopologies(t, func(t *testing.T, s sharedSetup) {
		// 5 calls a second: a slot every 200ms, 222ms once slowed by a tenth.
		a, b := s.limiter(t, "k", 5, 1), s.limiter(t, "k", 5, 1)
		other := s.limiter(t, "another key", 5, 1)
		ctx := t.Context()
		c := s.client(t)

		a.Slow(ctx)
		a.Slow(ctx) // the same wave of 429s: one cut
		if f, err := c.HGet(ctx, a.factor, "factor").Result(); err != nil || f != "0.9" {
			t.Fatalf("shared factor after a 429 = %q (%v), want 0.9", f, err)
		}
		// b, another process with the same key, now gets slots 222ms apart:
		// the bucket's next slot moves by exactly that much per reservation.
		if err := b.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		first, err := c.Get(ctx, b.key).Int64()
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		second, err := c.Get(ctx, b.key).Int64()
		if err != nil {
			t.Fatal(err)
		}
		if d := second - first; d < 222222 || d > 222223 {
			t.Errorf("slots %dµs apart after a 429, want 200000/0.9", d)
		}
		// The pace is per API key: another key's limiter keeps its own.
		if a.factor != b.factor || other.factor == a.factor {
			t.Errorf("factor keys: %q, %q (same key) and %q (other key)", a.factor, b.factor, other.factor)
		}
		if n, err := c.Exists(ctx, other.factor).Result(); err != nil || n != 0 {
			t.Errorf("another key's pace was lowered (%d, %v)", n, err)
		}
	})
}

func TestSharedLimiterSlowWithoutRate(t *testing.T) {
	t.Parallel()
	onTopologies(t, func(t *testing.T, s sharedSetup) {
		// --rate 0: no global bucket, but a 429 still slows everyone to the
		// pace they were going at, less a fifth.
		a, b := s.limiter(t, "k", 0, 0), s.limiter(t, "k", 0, 0)
		ctx := t.Context()
		for range 20 {
			if err := b.Wait(ctx); err != nil {
				t.Fatal(err)
			}
		}
		a.Slow(ctx)
		eventually(t, 5*time.Second, "the unlimited process takes a finite rate", func() bool {
			if err := b.Wait(ctx); err != nil {
				t.Fatal(err)
			}
			return b.local.lim.Limit() != rate.Inf
		})
	})
}

func TestSharedLimiterKeysHideTheAPIKey(t *testing.T) {
	t.Parallel()
	onTopologies(t, func(t *testing.T, s sharedSetup) {
		const apiKey = "sk-LIMITER-SECRET-5d1c"
		l := s.limiter(t, apiKey, 10, 1)
		ctx := t.Context()
		if err := l.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		l.Slow(ctx)
		c := s.client(t)
		var keys []string
		for _, pattern := range []string{s.ns + "*"} {
			ks, err := redistest.Keys(ctx, c, pattern)
			if err != nil {
				t.Fatal(err)
			}
			keys = append(keys, ks...)
		}
		if len(keys) < 2 {
			t.Fatalf("want the bucket and the slow-down keys in Redis, got %v", keys)
		}
		for _, k := range keys {
			v, _ := c.Dump(ctx, k).Result()
			if strings.Contains(k, apiKey) || strings.Contains(v, apiKey) {
				t.Errorf("Redis key %q (or its value) holds the API key", k)
			}
		}
	})
}

func TestNormalizeURL(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"https://api.vambe.me", "https://api.vambe.me"},
		{"https://api.vambe.me/", "https://api.vambe.me"},
		{"HTTPS://API.Vambe.ME:443//", "https://api.vambe.me"},
		{"http://crm.test:80/base/", "http://crm.test/base"},
		{"http://crm.test:8080/base?x=1", "http://crm.test:8080/base"},
		{"http://[::1]:8080/", "http://[::1]:8080"},
		{" http://crm.test ", "http://crm.test"},
	}
	for _, tt := range tests {
		if got := NormalizeURL(tt.in); got != tt.want {
			t.Errorf("NormalizeURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestSharedLimiterOneBucketPerAPI: workers that spell the API URL
// differently share one bucket, so the rate stays global.
func TestSharedLimiterOneBucketPerAPI(t *testing.T) {
	t.Parallel()
	s := newSharedSetup(t)
	var keys []string
	for _, u := range []string{"http://crm.test", "http://crm.test/", "HTTP://CRM.TEST:80/"} {
		l := NewSharedLimiter(s.client(t), SharedLimiterOptions{Namespace: s.ns, APIURL: u, APIKey: "k", Rate: 5})
		keys = append(keys, l.key)
	}
	if keys[0] != keys[1] || keys[0] != keys[2] {
		t.Errorf("bucket keys %q: want one", keys)
	}
}

// TestSharedLimiterLowestRateApplies: a worker started with a higher
// --rate than another paces at the lower one, and says so.
func TestSharedLimiterLowestRateApplies(t *testing.T) {
	t.Parallel()
	onTopologies(t, func(t *testing.T, s sharedSetup) {
		var logs strings.Builder
		var mu sync.Mutex
		log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
			mu.Lock()
			defer mu.Unlock()
			return logs.Write(p)
		}), nil))
		slow := NewSharedLimiter(s.client(t), SharedLimiterOptions{Namespace: s.ns, APIURL: "http://crm.test", APIKey: "k", Rate: 10})
		fast := NewSharedLimiter(s.client(t), SharedLimiterOptions{Namespace: s.ns, APIURL: "http://crm.test", APIKey: "k", Rate: 100, Logger: log})
		unlimited := NewSharedLimiter(s.client(t), SharedLimiterOptions{Namespace: s.ns, APIURL: "http://crm.test", APIKey: "k"})
		ctx := t.Context()
		for _, l := range []*SharedLimiter{slow, fast, unlimited} {
			if err := l.Wait(ctx); err != nil {
				t.Fatal(err)
			}
		}
		for name, l := range map[string]*SharedLimiter{"slow": slow, "fast": fast, "unlimited": unlimited} {
			if got, err := l.inForce(ctx); err != nil || got != 100_000 {
				t.Errorf("%s: interval in force %dµs (%v), want 100000 (10/s)", name, got, err)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if !strings.Contains(logs.String(), "lower --rate") || !strings.Contains(logs.String(), "rate_in_force=10") {
			t.Errorf("the faster worker did not say its rate is overridden; log:\n%s", logs.String())
		}
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
