package redistest_test

import (
	"errors"
	"os"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/bulkassign/bulkassign/internal/redistest"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

func client(t *testing.T, url string) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestURLAndNamespace(t *testing.T) {
	t.Parallel()
	url := redistest.URL(t)
	c := client(t, url)
	ctx := t.Context()

	opt, _ := redis.ParseURL(url)
	if opt.DB == 0 {
		t.Fatalf("URL() = %s names DB 0", url)
	}

	var ns string
	t.Run("inner", func(t *testing.T) {
		ns = redistest.Namespace(t, url)
		other := redistest.Namespace(t, url)
		if ns == other || len(ns) != len(other) {
			t.Fatalf("namespaces %q and %q", ns, other)
		}
		for _, k := range []string{ns + ":batch:1", ns + ":rows", "asynq:{" + ns + "}:pending"} {
			if err := c.Set(ctx, k, "v", 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.SAdd(ctx, "asynq:queues", ns).Err(); err != nil {
			t.Fatal(err)
		}
		if got, err := c.Get(ctx, ns+":batch:1").Result(); err != nil || got != "v" {
			t.Fatalf("GET = %q, %v", got, err)
		}
	})
	// The inner test's cleanup has deleted its namespace.
	for _, pattern := range []string{ns + "*", "asynq:{" + ns + "}*"} {
		keys, err := c.Keys(ctx, pattern).Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != 0 {
			t.Errorf("keys left after cleanup: %v", keys)
		}
	}
	if in, err := c.SIsMember(ctx, "asynq:queues", ns).Result(); err != nil || in {
		t.Errorf("queue %s still in asynq:queues (%v)", ns, err)
	}
}

func TestURLIsShared(t *testing.T) {
	t.Parallel()
	if a, b := redistest.URL(t), redistest.URL(t); a != b {
		t.Errorf("URL() = %s then %s, want one server per test binary", a, b)
	}
}

func TestStartRestart(t *testing.T) {
	t.Parallel()
	ctx := t.Context()

	t.Run("append only survives stop and kill", func(t *testing.T) {
		t.Parallel()
		s := redistest.Start(t, redistest.Options{AppendOnly: true})
		c := client(t, s.URL())
		if err := c.Set(ctx, "k", "1", 0).Err(); err != nil {
			t.Fatal(err)
		}
		s.Restart(t)
		if got, err := c.Get(ctx, "k").Result(); err != nil || got != "1" {
			t.Fatalf("after Restart GET = %q, %v; want 1", got, err)
		}
		if err := c.Set(ctx, "k", "2", 0).Err(); err != nil {
			t.Fatal(err)
		}
		s.Kill()
		if err := c.Ping(ctx).Err(); err == nil {
			t.Fatal("PING answered after Kill")
		}
		s.Restart(t)
		if got, err := c.Get(ctx, "k").Result(); err != nil || got != "2" {
			t.Fatalf("after Kill+Restart GET = %q, %v; want 2", got, err)
		}
	})

	t.Run("without persistence restart is empty", func(t *testing.T) {
		t.Parallel()
		s := redistest.Start(t, redistest.Options{})
		c := client(t, s.URL())
		if err := c.Set(ctx, "k", "1", 0).Err(); err != nil {
			t.Fatal(err)
		}
		s.Stop()
		s.Stop() // idempotent
		s.Restart(t)
		if err := c.Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
			t.Fatalf("after Restart GET err = %v, want redis.Nil", err)
		}
	})
}
