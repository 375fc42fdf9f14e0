// Package redistest gives tests a real Redis: a throwaway redis-server
// started once per test binary, or the Redis named by BULKASSIGN_TEST_REDIS;
// and, for tests that run on every topology, a throwaway Sentinel and a
// throwaway Redis Cluster (Shared).
// Tests never use a mock and never write DB 0, so pointing them at an
// operator's Redis cannot touch production data; each test works inside
// its own Namespace and deletes it when it ends.
//
// A test binary that uses URL needs
//
//	func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }
//
// so the shared servers are stopped when its tests end.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulkassign/bulkassign/internal/redisproc"
	"github.com/redis/go-redis/v9"
)

// EnvURL names the environment variable that points tests at an existing
// Redis instead of a throwaway one. It must name a DB other than 0.
const EnvURL = "BULKASSIGN_TEST_REDIS"

// sharedDB is the DB tests use on the throwaway server: not 0, so code that
// refuses DB 0 in tests behaves the same on both kinds of Redis.
const sharedDB = 9

// howToGetRedis ends every "no Redis" failure.
const howToGetRedis = "tests need a real Redis: install redis-server " +
	"(Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis) " +
	"so tests can start a throwaway one, or set " + EnvURL + "=redis://host:port/N " +
	"(N not 0) to use a Redis you own"

// The one shared server of this test binary. Package state is unavoidable
// here: the server must outlive single tests and be stopped by Main.
var (
	mainActive atomic.Bool
	sharedMu   sync.Mutex
	shared     *redisproc.Server
	sharedDir  string
	sharedErr  error

	envMu      sync.Mutex
	envChecked = map[string]error{} // BULKASSIGN_TEST_REDIS value -> result of checkEnvURL
)

// Main runs the tests of a binary and then stops the servers URL and
// Shared started, if any. Call it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }
//
// When a test panics or times out, the binary dies without returning here;
// on Linux the servers are then stopped by the kernel (parent-death signal).
func Main(m *testing.M) int {
	mainActive.Store(true)
	defer stopShared()
	defer stopTopologies()
	return m.Run()
}

func stopShared() {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared != nil {
		shared.Stop()
		shared = nil
	}
	if sharedDir != "" {
		_ = os.RemoveAll(sharedDir)
		sharedDir = ""
	}
}

// URL returns the redis:// URL of the Redis a test should use.
//
// When BULKASSIGN_TEST_REDIS is set, that is the URL; it must name a DB
// other than 0 and answer PING, else the test fails. Otherwise URL starts a
// redis-server (once per test binary, on a free port, without persistence,
// in a temporary folder) and returns a URL for DB 9 on it. Without either,
// the test fails with how to get Redis; it is never skipped.
//
// Tests sharing the Redis keep apart by using Namespace.
func URL(t testing.TB) string {
	t.Helper()
	if v := os.Getenv(EnvURL); v != "" {
		if err := checkEnvURL(v); err != nil {
			t.Fatalf("redistest: %v", err)
		}
		return v
	}
	if !mainActive.Load() {
		t.Fatal("redistest: URL starts a shared redis-server, which only Main can stop: add " +
			"func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) } to this package's tests")
	}
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared == nil && sharedErr == nil {
		shared, sharedDir, sharedErr = startShared()
	}
	if sharedErr != nil {
		t.Fatalf("redistest: %v", sharedErr)
	}
	return shared.URL(sharedDB)
}

func startShared() (*redisproc.Server, string, error) {
	dir, err := os.MkdirTemp("", "redistest-")
	if err != nil {
		return nil, "", fmt.Errorf("start redis-server: %w", err)
	}
	s, err := startProc(dir, Options{})
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, "", err
	}
	return s, dir, nil
}

// checkEnvURL checks a BULKASSIGN_TEST_REDIS value once per test binary:
// it must parse, not name DB 0, and answer PING.
func checkEnvURL(v string) error {
	envMu.Lock()
	defer envMu.Unlock()
	err, ok := envChecked[v]
	if !ok {
		err = checkURL(v)
		envChecked[v] = err
	}
	return err
}

func checkURL(v string) error {
	opt, err := redis.ParseURL(v)
	if err != nil {
		return fmt.Errorf("%s=%s: %v", EnvURL, redact(v), err)
	}
	if opt.DB == 0 {
		return errors.New(EnvURL + " names DB 0; tests never write DB 0 — use e.g. redis://127.0.0.1:6379/9")
	}
	c := redis.NewClient(opt)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("%s=%s does not answer PING: %v; %s", EnvURL, redact(v), err, howToGetRedis)
	}
	return nil
}

// redact hides a password in a Redis URL.
func redact(v string) string {
	u, err := url.Parse(v)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// Namespace returns a fresh key prefix and asynq queue name for one test:
// "t" and 16 random hex digits. Keys the test creates under it
// ("<ns>…") and the asynq queue of that name ("asynq:{<ns>}…") are
// deleted with SCAN and UNLINK when the test ends, so tests sharing one
// Redis never see each other's data and leave nothing behind.
func Namespace(t testing.TB, redisURL string) string {
	t.Helper()
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("redistest: namespace: %v", err)
	}
	opt, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatalf("redistest: namespace: parse %s: %v", redact(redisURL), err)
	}
	return namespace(t, func() redis.UniversalClient { return redis.NewClient(opt) })
}

// namespace makes a namespace whose keys a client from connect deletes
// when the test ends.
func namespace(t testing.TB, connect func() redis.UniversalClient) string {
	t.Helper()
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("redistest: namespace: %v", err)
	}
	ns := "t" + hex.EncodeToString(b)
	t.Cleanup(func() {
		c := connect()
		defer c.Close()
		if err := deleteNamespace(c, ns); err != nil {
			t.Errorf("redistest: delete keys of namespace %s: %v", ns, err)
		}
	})
	return ns
}

func deleteNamespace(c redis.UniversalClient, ns string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Namespaces all have the same length, so "<ns>*" matches only this
	// namespace's keys.
	for _, pattern := range []string{ns + "*", "asynq:{" + ns + "}*"} {
		keys, err := Keys(ctx, c, pattern)
		if err != nil {
			return err
		}
		// One key a command: a cluster refuses one UNLINK of keys in
		// several slots, and its pipeline sends each to its node.
		for batch := range slices.Chunk(keys, 1000) {
			pipe := c.Pipeline()
			for _, k := range batch {
				pipe.Unlink(ctx, k)
			}
			if _, err := pipe.Exec(ctx); err != nil {
				return err
			}
		}
	}
	// asynq lists every queue it has seen in one set.
	return c.SRem(ctx, "asynq:queues", ns).Err()
}
