package redistest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkassign/bulkassign/internal/redisproc"
	"github.com/redis/go-redis/v9"
)

// Topology is a kind of Redis deployment bulkassign runs on.
type Topology string

const (
	// Single is one Redis server: the one URL returns.
	Single Topology = "single"
	// Sentinel is a master watched by a Sentinel, which clients ask
	// where the master is (redis-sentinel://).
	Sentinel Topology = "sentinel"
	// Cluster is a Redis Cluster of three masters.
	Cluster Topology = "cluster"
)

// Topologies lists every topology, for tests that run on each of them.
func Topologies() []Topology { return []Topology{Single, Sentinel, Cluster} }

// Redis is a Redis of one topology, shared by the tests of a binary.
type Redis struct {
	Topology Topology
	// Flag and URL name it on a bulkassign command line: --redis with a
	// redis:// or redis-sentinel:// URL, or --redis-cluster with a cluster
	// URL (redis://host:port?addr=host:port&addr=host:port).
	Flag, URL string
	connect   func() redis.UniversalClient
}

// sentinelMaster is the name the test Sentinel knows its master by.
const sentinelMaster = "bulkassign-test"

// readyTimeout bounds how long a new Sentinel may take to name its
// master, and a new cluster to agree that every slot is served.
const readyTimeout = 30 * time.Second

// The Sentinel and Cluster of this test binary, started on first use and
// stopped by Main, like the shared server.
var (
	topoMu sync.Mutex
	topos  = map[Topology]*topoState{}
)

type topoState struct {
	once sync.Once // starts it; the other topologies start meanwhile
	r    *Redis
	stop func()
	err  error
}

// stopTopologies stops them once every test has ended.
func stopTopologies() {
	topoMu.Lock()
	defer topoMu.Unlock()
	for tp, st := range topos {
		st.once.Do(func() {}) // one still starting has finished
		if st.stop != nil {
			st.stop()
		}
		delete(topos, tp)
	}
}

// Shared returns the Redis of topology tp that the tests of this binary
// share, starting it on first use:
//
//   - Single is URL's Redis (BULKASSIGN_TEST_REDIS, or a throwaway
//     redis-server), DB 9;
//   - Sentinel is a throwaway redis-server and a Sentinel watching it;
//   - Cluster is three throwaway redis-server nodes joined by
//     `redis-cli --cluster create`, with no replicas.
//
// The throwaway servers keep no data on disk, listen on free ports of
// 127.0.0.1 and are stopped by Main (on Linux also when the test binary
// dies). Sentinel and Cluster use DB 0 of their own servers; they never
// touch the Redis BULKASSIGN_TEST_REDIS names. A test that cannot have
// its Redis fails, saying how to get it; it is never skipped.
func Shared(t testing.TB, tp Topology) *Redis {
	t.Helper()
	if tp == Single {
		url := URL(t)
		return &Redis{Topology: Single, Flag: "--redis", URL: url, connect: func() redis.UniversalClient {
			opt, _ := redis.ParseURL(url) // URL checked it
			return redis.NewClient(opt)
		}}
	}
	if !mainActive.Load() {
		t.Fatal("redistest: Shared starts servers that only Main can stop: add " +
			"func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) } to this package's tests")
	}
	topoMu.Lock()
	st := topos[tp]
	if st == nil {
		st = &topoState{}
		topos[tp] = st
	}
	topoMu.Unlock()
	st.once.Do(func() {
		switch tp {
		case Sentinel:
			st.r, st.stop, st.err = startSentinel()
		case Cluster:
			st.r, st.stop, st.err = startCluster()
		default:
			st.err = fmt.Errorf("unknown topology %q", tp)
		}
	})
	if st.err != nil {
		t.Fatalf("redistest: %s: %v", tp, st.err)
	}
	return st.r
}

// Args are the flags that name r on a bulkassign command line.
func (r *Redis) Args() []string { return []string{r.Flag, r.URL} }

// Client returns a new client of r, closed when the test ends: a
// *redis.ClusterClient for a cluster, else a *redis.Client (through the
// Sentinel for Sentinel).
func (r *Redis) Client(t testing.TB) redis.UniversalClient {
	t.Helper()
	c := r.connect()
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Namespace is Namespace for r: a fresh key prefix whose keys, on every
// master, are deleted when the test ends.
func (r *Redis) Namespace(t testing.TB) string {
	t.Helper()
	return namespace(t, r.connect)
}

// Keys returns the keys matching pattern, read with SCAN from every
// master when c is a cluster client.
func Keys(ctx context.Context, c redis.UniversalClient, pattern string) ([]string, error) {
	cc, ok := c.(*redis.ClusterClient)
	if !ok {
		return scan(ctx, c, pattern)
	}
	var (
		mu  sync.Mutex
		all []string
	)
	err := cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		keys, err := scan(ctx, node, pattern)
		mu.Lock()
		defer mu.Unlock()
		all = append(all, keys...)
		return err
	})
	return all, err
}

func scan(ctx context.Context, c redis.Cmdable, pattern string) ([]string, error) {
	var keys []string
	iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	return keys, iter.Err()
}

// startSentinel starts a master and a Sentinel that watches it, and waits
// until the Sentinel names the master.
func startSentinel() (r *Redis, stop func(), err error) {
	dir, err := os.MkdirTemp("", "redistest-sentinel-")
	if err != nil {
		return nil, nil, fmt.Errorf("start Sentinel: %w", err)
	}
	var procs []*redisproc.Server
	stop = func() {
		for i := len(procs) - 1; i >= 0; i-- { // the Sentinel first
			procs[i].Stop()
		}
		_ = os.RemoveAll(dir)
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	master, err := startIn(filepath.Join(dir, "master"), Options{})
	if err != nil {
		return nil, nil, err
	}
	procs = append(procs, master)
	sentinel, err := startIn(filepath.Join(dir, "sentinel"), Options{SentinelOf: master.Addr(), MasterName: sentinelMaster})
	if err != nil {
		return nil, nil, fmt.Errorf("start Sentinel: %w", err)
	}
	procs = append(procs, sentinel)

	sc := redis.NewSentinelClient(&redis.Options{Addr: sentinel.Addr()})
	defer sc.Close()
	err = waitFor(readyTimeout, func(ctx context.Context) error {
		addr, err := sc.GetMasterAddrByName(ctx, sentinelMaster).Result()
		if err == nil && strings.Join(addr, ":") != master.Addr() {
			err = fmt.Errorf("SENTINEL get-master-addr-by-name %s = %v, want %s", sentinelMaster, addr, master.Addr())
		}
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("start Sentinel: %w", err)
	}
	// go-redis fills in the options it is given: each client gets its own.
	return &Redis{
		Topology: Sentinel,
		Flag:     "--redis",
		URL:      "redis-sentinel://" + sentinel.Addr() + "?master=" + sentinelMaster,
		connect: func() redis.UniversalClient {
			return redis.NewFailoverClient(&redis.FailoverOptions{MasterName: sentinelMaster, SentinelAddrs: []string{sentinel.Addr()}})
		},
	}, stop, nil
}

// startCluster starts three cluster nodes, joins them into a cluster of
// three masters, and waits until every node serves every slot.
func startCluster() (r *Redis, stop func(), err error) {
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		return nil, nil, errors.New("start Redis Cluster: redis-cli is not on PATH (Debian/Ubuntu: apt-get install redis-tools)")
	}
	dir, err := os.MkdirTemp("", "redistest-cluster-")
	if err != nil {
		return nil, nil, fmt.Errorf("start Redis Cluster: %w", err)
	}
	var nodes []*redisproc.Server
	stop = func() {
		for _, n := range nodes {
			n.Stop()
		}
		_ = os.RemoveAll(dir)
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	var addrs []string
	for i := range 3 {
		n, err := startIn(filepath.Join(dir, fmt.Sprintf("node%d", i+1)), Options{Cluster: true})
		if err != nil {
			return nil, nil, fmt.Errorf("start Redis Cluster: %w", err)
		}
		nodes = append(nodes, n)
		addrs = append(addrs, n.Addr())
	}

	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	args := append([]string{"--cluster", "create"}, addrs...)
	cmd := exec.CommandContext(ctx, cli, append(args, "--cluster-replicas", "0", "--cluster-yes")...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return nil, nil, fmt.Errorf("start Redis Cluster: redis-cli %s: %w\n%s", strings.Join(cmd.Args[1:], " "), err, out.String())
	}
	for _, addr := range addrs {
		c := redis.NewClient(&redis.Options{Addr: addr})
		err := waitFor(readyTimeout, func(ctx context.Context) error {
			info, err := c.ClusterInfo(ctx).Result()
			if err == nil && !strings.Contains(info, "cluster_state:ok") {
				err = errors.New("cluster_state is not ok")
			}
			return err
		})
		c.Close()
		if err != nil {
			return nil, nil, fmt.Errorf("start Redis Cluster: node %s: %w", addr, err)
		}
	}
	// go-redis fills in the options it is given: each client gets its own.
	return &Redis{
		Topology: Cluster,
		Flag:     "--redis-cluster",
		URL:      "redis://" + addrs[0] + "?addr=" + addrs[1] + "&addr=" + addrs[2],
		connect:  func() redis.UniversalClient { return redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs}) },
	}, stop, nil
}

// startIn starts a server in a new folder dir.
func startIn(dir string, opts Options) (*redisproc.Server, error) {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, err
	}
	return startProc(dir, opts)
}

// waitFor calls check every 20ms until it returns nil, and fails with its
// last error after timeout.
func waitFor(timeout time.Duration, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := check(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready after %v: %w", timeout, err)
		case <-tick.C:
		}
	}
}
