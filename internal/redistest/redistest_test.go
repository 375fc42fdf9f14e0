package redistest_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
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

func TestSharedTopologies(t *testing.T) {
	t.Parallel()
	for _, tp := range redistest.Topologies() {
		t.Run(string(tp), func(t *testing.T) {
			t.Parallel()
			r := redistest.Shared(t, tp)
			if again := redistest.Shared(t, tp); again.URL != r.URL {
				t.Errorf("Shared(%s) = %s, then %s: want one per test binary", tp, r.URL, again.URL)
			}
			c := r.Client(t)
			ctx := t.Context()

			var ns string
			var keys []string
			t.Run("inner", func(t *testing.T) {
				ns = r.Namespace(t)
				// Keys under 30 hash tags spread over a cluster's slots.
				for i := range 30 {
					k := fmt.Sprintf("%s:{%d}:k", ns, i)
					if err := c.Set(ctx, k, "v", 0).Err(); err != nil {
						t.Fatalf("SET %s: %v", k, err)
					}
					keys = append(keys, k)
				}
				got, err := redistest.Keys(ctx, c, ns+"*")
				if err != nil {
					t.Fatal(err)
				}
				slices.Sort(got)
				slices.Sort(keys)
				if !slices.Equal(got, keys) {
					t.Errorf("Keys = %v, want %v", got, keys)
				}
			})
			if got, err := redistest.Keys(ctx, c, ns+"*"); err != nil || len(got) != 0 {
				t.Errorf("keys left after cleanup: %v (%v)", got, err)
			}

			switch tp {
			case redistest.Cluster:
				cc, ok := c.(*redis.ClusterClient)
				if !ok || r.Flag != "--redis-cluster" {
					t.Fatalf("cluster: client %T, flag %s", c, r.Flag)
				}
				opt, err := redis.ParseClusterURL(r.URL)
				if err != nil || len(opt.Addrs) != 3 {
					t.Errorf("cluster URL %s: %v, %v; want three nodes", r.URL, opt, err)
				}
				var mu sync.Mutex
				masters := 0
				if err := cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
					mu.Lock()
					defer mu.Unlock()
					masters++
					return nil
				}); err != nil || masters != 3 {
					t.Errorf("cluster has %d masters (%v), want 3", masters, err)
				}
				// Keys of two slots in one command are refused: the
				// cluster is a real one.
				if err := c.MSet(ctx, ns+":{a}", 1, ns+":{b}", 1).Err(); err == nil || !strings.Contains(err.Error(), "CROSSSLOT") {
					t.Errorf("MSET across slots: %v, want CROSSSLOT", err)
				}
			case redistest.Sentinel:
				if !strings.HasPrefix(r.URL, "redis-sentinel://") || !strings.Contains(r.URL, "?master=") || r.Flag != "--redis" {
					t.Errorf("sentinel: %s %s, want --redis redis-sentinel://host:port?master=NAME", r.Flag, r.URL)
				}
				if role, err := c.Do(ctx, "ROLE").Slice(); err != nil || len(role) == 0 || role[0] != "master" {
					t.Errorf("the client through the Sentinel reached %v (%v), want the master", role, err)
				}
			case redistest.Single:
				if r.URL != redistest.URL(t) || r.Flag != "--redis" {
					t.Errorf("single: %s %s, want --redis %s", r.Flag, r.URL, redistest.URL(t))
				}
			}
		})
	}
}
