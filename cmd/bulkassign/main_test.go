package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulkassign/bulkassign/internal/redistest"
	"github.com/bulkassign/bulkassign/report"
	"github.com/bulkassign/bulkassign/simulator"
	"github.com/redis/go-redis/v9"
)

func TestMain(m *testing.M) {
	// run keeps its embedded queue's state under XDG_STATE_HOME: the
	// tests' goes to a folder of their own, not the developer's.
	state, err := os.MkdirTemp("", "bulkassign-test-state-")
	if err != nil {
		panic(err)
	}
	os.Setenv("XDG_STATE_HOME", state)
	code := redistest.Main(m)
	os.RemoveAll(state)
	os.Exit(code)
}

// cliResult is what one call of run produced.
type cliResult struct {
	code           int
	err            error
	stdout, stderr string
}

// runCLI calls the CLI in-process, as main does, with a deadline.
func runCLI(t *testing.T, stdin io.Reader, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	var stdout, stderr bytes.Buffer
	err := run(ctx, args, stdin, &stdout, &stderr)
	return cliResult{code: exitCode(err, io.Discard), err: err, stdout: stdout.String(), stderr: stderr.String()}
}

// errText is the message main would print, "" without an error.
func (r cliResult) errText() string {
	if r.err == nil {
		return ""
	}
	return r.err.Error()
}

// startSim serves a simulator on a free local port until the test ends.
func startSim(t *testing.T, opts simulator.Options) (*simulator.Simulator, string) {
	t.Helper()
	sim := simulator.New(opts)
	url, stop, err := simulator.Start(context.Background(), "127.0.0.1:0", sim)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The CLI leaves its HTTP client's spare connections open; a
		// connection that never carried a request holds a graceful
		// shutdown for 5s (net/http's StateNew rule), so give the
		// shutdown a moment and then close what is left.
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		if err := stop(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("stop simulator: %v", err)
		}
	})
	return sim, url
}

// fastFlags are the worker flags every test run uses: small backoffs.
func fastFlags() []string {
	return []string{"--retry-base", "10ms", "--retry-max", "50ms", "--stall", "5s", "--progress-every", "1h"}
}

// redisTarget is a real Redis and a namespace of its own, as run flags.
type redisTarget struct {
	url, ns string
	// shared is the Redis of url when it is one of redistest's shared
	// topologies; nil for a single server of the test's own.
	shared *redistest.Redis
}

func newRedisTarget(t *testing.T) redisTarget {
	t.Helper()
	return newRedisTargetOn(t, redistest.Single)
}

// newRedisTargetOn is a namespace on the shared Redis of topology tp.
func newRedisTargetOn(t *testing.T, tp redistest.Topology) redisTarget {
	t.Helper()
	r := redistest.Shared(t, tp)
	return redisTarget{url: r.URL, ns: r.Namespace(t), shared: r}
}

func (r redisTarget) flags() []string {
	switch {
	case r.url == "":
		return nil
	case r.shared != nil:
		return append(r.shared.Args(), "--namespace", r.ns)
	}
	return []string{"--redis", r.url, "--namespace", r.ns}
}

func (r redisTarget) client(t *testing.T) redis.UniversalClient {
	t.Helper()
	if r.shared != nil {
		return r.shared.Client(t)
	}
	opt, err := redis.ParseURL(r.url)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	return c
}

// keys returns every key of the target's namespace: the project's own and
// asynq's queue keys.
func (r redisTarget) keys(t *testing.T) []string {
	t.Helper()
	c := r.client(t)
	ctx := context.Background()
	var all []string
	for _, pattern := range []string{r.ns + "*", "asynq:{" + r.ns + "}*"} {
		keys, err := redistest.Keys(ctx, c, pattern)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, keys...)
	}
	return all
}

// reportDir returns the one batch folder run wrote under out.
func reportDir(t *testing.T, out string) string {
	t.Helper()
	entries, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, e.Name())
		}
	}
	if len(dirs) != 1 {
		t.Fatalf("report folders in %s: %v, want exactly one", out, dirs)
	}
	return filepath.Join(out, dirs[0])
}

func readSummary(t *testing.T, dir string) report.Summary {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, report.SummaryFile))
	if err != nil {
		t.Fatal(err)
	}
	var s report.Summary
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("summary.json: %v\n%s", err, b)
	}
	return s
}

// reportRow is one row of succeeded.csv or failed.csv by column name, with
// the file line its record starts on.
type reportRow struct {
	fileLine int
	cells    map[string]string
}

func readReportCSV(t *testing.T, path string) (header []string, rows []reportRow) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cr := csv.NewReader(bytes.NewReader(b))
	header, err = cr.Read()
	if err != nil {
		t.Fatalf("%s: header: %v", path, err)
	}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return header, rows
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		line, _ := cr.FieldPos(0)
		r := reportRow{fileLine: line, cells: map[string]string{}}
		for i, h := range header {
			r.cells[h] = rec[i]
		}
		rows = append(rows, r)
	}
}
