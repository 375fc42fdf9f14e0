package main

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/simulator"
)

// helperEnv switches the test binary into a bulkassign process: the tests
// below re-run it as `TEST_BINARY -test.run=^TestHelperProcess$ -- ARGS`,
// so worker processes are real processes (and race-checked) without a
// separate build.
const helperEnv = "BULKASSIGN_TEST_HELPER_PROCESS"

// TestHelperProcess is not a test: it is the body of the processes the
// process tests start. It runs bulkassign as main does and exits.
func TestHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		t.Skip("runs only as a child process of the process tests")
	}
	i := slices.Index(os.Args, "--")
	if i < 0 {
		os.Exit(exitFatal)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[i+1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// proc is a bulkassign process started by a test.
type proc struct {
	cmd    *exec.Cmd
	output *syncBuffer
	done   chan struct{} // closed when it has exited
	err    error         // of Wait, once done is closed
}

// startProc starts `bulkassign ARGS` as a child process with the API key
// in its environment; it is stopped (SIGTERM, then SIGKILL) when the test
// ends, if it is still running.
func startProc(t *testing.T, apiKey string, args ...string) *proc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, os.Args[0], append([]string{"-test.run=^TestHelperProcess$", "-test.timeout=5m", "--"}, args...)...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "BULKASSIGN_") { // no settings leak in from the developer's shell
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, helperEnv+"=1", "BULKASSIGN_API_KEY="+apiKey)
	p := &proc{cmd: cmd, output: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.output, p.output
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start %v: %v", args, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		cancel() // SIGTERM: drain
		select {
		case <-p.done:
		case <-time.After(40 * time.Second):
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("output of %v (exit: %v):\n%s", args[0], p.err, tail(p.output.String(), 3000))
		}
	})
	return p
}

// kill stops the process with SIGKILL, as a crash would.
func (p *proc) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatalf("kill: %v", err)
	}
	<-p.done
	var ee *exec.ExitError
	if !errors.As(p.err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("worker ended with %v before it was killed", p.err)
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// workerArgs are the arguments of a worker process of d.
func (d *dist) workerArgs(flags ...string) []string {
	args := append([]string{"worker", "--api-url", d.api, "--retry-base", "100ms", "--retry-max", "500ms"}, d.target.flags()...)
	return append(args, flags...)
}

// reportWaitFor is reportWait with its own deadline.
func (d *dist) reportWaitFor(t *testing.T, id string, timeout time.Duration) (cliResult, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out := t.TempDir()
	args := append([]string{"report", "--wait", "--progress-every", "10s", "--out", out}, d.target.flags()...)
	var stdout, stderr syncBuffer
	err := run(ctx, append(args, id), strings.NewReader(""), &stdout, &stderr)
	r := cliResult{code: exitCode(err, io.Discard), err: err, stdout: stdout.String(), stderr: stderr.String()}
	return r, filepath.Join(out, id)
}

// TestProcessWorkerKilled kills one of two worker processes mid-batch:
// asynq gives the dead worker's tasks to the others once their lease has
// expired, and the ledger still counts every row exactly once.
//
// asynq (v0.26) reclaims a task whose lease (30s, extended every 5s while
// the worker lives) expired at least 30s ago, in a recoverer that runs when
// a server starts and then every minute; none of this is in asynq.Config.
// The third worker starts right after the kill, so its recoverer's first
// tick, a minute later, finds every lease of the dead worker expired long
// enough: the test takes about 65s.
func TestProcessWorkerKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("waits about a minute for asynq to reclaim a dead worker's tasks")
	}
	t.Parallel()
	d := newDist(t, simulator.Options{Latency: 30 * time.Millisecond})
	rows := oneEach("k", 2000)
	id := d.importRows(t, "kill.csv", rows)

	w1 := startProc(t, d.key, d.workerArgs("--concurrency", "8")...)
	startProc(t, d.key, d.workerArgs("--concurrency", "8")...)
	d.waitBatch(t, id, time.Minute, "200 rows done", func(b jobs.Batch) bool { return b.Done() > 200 })
	w1.kill(t)
	killed := time.Now()
	if b := d.batch(t, id); b.Done() >= b.Rows {
		t.Fatalf("the batch finished before the worker was killed: %d/%d done", b.Done(), b.Rows)
	}
	startProc(t, d.key, d.workerArgs("--concurrency", "8")...)

	r, dir := d.reportWaitFor(t, id, 3*time.Minute)
	if r.code != exitOK {
		t.Fatalf("report --wait: exit %d (%s)\n%s", r.code, r.errText(), tail(r.stderr, 2000))
	}
	t.Logf("batch finished %s after the kill", time.Since(killed).Round(time.Second))
	l := readLedger(t, dir)
	l.checkExact(t, len(rows))
	if s := l.summary; s.Succeeded != int64(len(rows)) {
		t.Errorf("summary %+v: want all %d rows succeeded", s, len(rows))
	}
	checkState(t, d.sim.State(), wantState(rows))
	if st := d.sim.Stats(); st.Assigned < int64(len(rows)) {
		t.Errorf("the CRM applied %d calls for %d rows", st.Assigned, len(rows))
	}
}

// TestProcessSharedRateLimit runs two worker processes whose --rate is the
// total for the API key: together they stay under the CRM's limit, so it
// almost never answers 429.
func TestProcessSharedRateLimit(t *testing.T) {
	// Not parallel: it measures a rate, and a loaded machine bunches calls.
	d := newDist(t, simulator.Options{Rate: 45, Burst: 5, Latency: 5 * time.Millisecond})
	rows := oneEach("r", 400)
	id := d.importRows(t, "rate.csv", rows)
	for range 2 {
		startProc(t, d.key, d.workerArgs("--rate", "40", "--concurrency", "8")...)
	}
	r, dir := d.reportWaitFor(t, id, 2*time.Minute)
	if r.code != exitOK {
		t.Fatalf("report --wait: exit %d (%s)\n%s", r.code, r.errText(), tail(r.stderr, 2000))
	}
	l := readLedger(t, dir)
	l.checkExact(t, len(rows))
	if l.summary.Succeeded != int64(len(rows)) {
		t.Errorf("summary %+v: want all %d rows succeeded", l.summary, len(rows))
	}
	st := d.sim.Stats()
	t.Logf("CRM: %d requests, by status %v", st.Requests, st.ByStatus)
	if limited := st.ByStatus[429]; limited*50 > st.Requests {
		t.Errorf("the CRM answered 429 to %d of %d requests: more than 2%%, the workers' rate is not shared", limited, st.Requests)
	}
	checkState(t, d.sim.State(), wantState(rows))
}
