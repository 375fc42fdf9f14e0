package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/simulator"
	"github.com/bulkassign/bulkassign/worker"
)

// buildBinary builds bulkassign into a folder of the test's own.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "bulkassign")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// redisServersIn lists the pids of the redis-server processes whose
// command line names dir.
func redisServersIn(t *testing.T, dir string) []int {
	t.Helper()
	procs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(b), "redis-server") || !strings.Contains(string(b), dir) {
			continue
		}
		var pid int
		fmt.Sscanf(strings.TrimPrefix(p, "/proc/"), "%d", &pid)
		pids = append(pids, pid)
	}
	return pids
}

// waitNoRedisServer fails the test if a redis-server of dir still runs
// after a few seconds (the kernel kills it with its parent; give it a
// moment to be reaped).
func waitNoRedisServer(t *testing.T, dir, after string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids := redisServersIn(t, dir)
		if len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, pid := range pids {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			t.Fatalf("redis-server %v still runs %s", pids, after)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRunKilledResumes kills the built binary with SIGKILL part-way
// through a run against a CRM answering in 20 ms: no redis-server is left
// behind, and the same command again resumes the batch, exits 0, leaves
// the CRM exactly as the file says, and repeats at most --concurrency
// calls (those in flight when it died).
func TestRunKilledResumes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and waits for the dead run's claims to run out (30s)")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("the resumable embedded queue needs redis-server")
	}
	t.Parallel()
	bin := buildBinary(t)
	sim, api := startSim(t, simulator.Options{APIKey: "k-test", Latency: 20 * time.Millisecond})
	dir := t.TempDir()
	rows := chaosRows("kill", 1500) // 2100 rows, order within a contact matters
	file := writeAssignments(t, dir, "in.csv", rows)
	state, out := filepath.Join(dir, "state"), filepath.Join(dir, "reports")
	const concurrency = 8
	command := func() *exec.Cmd {
		cmd := exec.Command(bin, "run", "--api-url", api, "--id-format", "any", "--concurrency", fmt.Sprint(concurrency),
			"--state", state, "--out", out, "--progress-every", "1h", "--retry-base", "10ms", "--retry-max", "50ms", file)
		var env []string
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "BULKASSIGN_") {
				env = append(env, kv)
			}
		}
		cmd.Env = append(env, "BULKASSIGN_API_KEY=k-test")
		return cmd
	}

	first := command()
	var firstOut syncBuffer
	first.Stdout, first.Stderr = &firstOut, &firstOut
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for sim.Stats().Assigned < 500 {
		if time.Now().After(deadline) {
			_ = first.Process.Kill()
			t.Fatalf("500 calls not made within a minute:\n%s", firstOut.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := first.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	waitNoRedisServer(t, state, "after its run was killed with SIGKILL")
	if done := sim.Stats().Assigned; done >= int64(len(rows)) {
		t.Fatalf("the run had made all %d calls before it was killed", done)
	}

	again := command()
	output, err := again.CombinedOutput()
	if err != nil {
		t.Fatalf("the same command again: %v\n%s\nfirst run:\n%s", err, output, firstOut.String())
	}
	if !strings.Contains(string(output), "resuming batch ") {
		t.Errorf("the second run does not say it resumes:\n%s", output)
	}
	waitNoRedisServer(t, state, "after its run ended")
	checkState(t, sim.State(), wantState(rows))
	l := readLedger(t, reportDir(t, out))
	l.checkExact(t, len(rows))
	if l.summary.Succeeded != int64(len(rows)) {
		t.Errorf("summary %+v: want all %d rows succeeded", l.summary, len(rows))
	}
	st := sim.Stats()
	t.Logf("CRM: %d requests for %d rows", st.Requests, len(rows))
	if repeated := st.Requests - int64(len(rows)); repeated > concurrency {
		t.Errorf("the CRM got %d requests for %d rows: %d repeated, want at most --concurrency %d", st.Requests, len(rows), repeated, concurrency)
	}
}

// TestRunResumesRefusedKey: a run stopped because the CRM refused the key
// is resumed by the same command once the key is right, on the embedded
// queue's state; --fresh instead cancels it and starts a new batch.
func TestRunResumesRefusedKey(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("the resumable embedded queue needs redis-server")
	}
	t.Parallel()
	for _, fresh := range []bool{false, true} {
		t.Run(fmt.Sprintf("fresh=%v", fresh), func(t *testing.T) {
			t.Parallel()
			sim, api := startSim(t, simulator.Options{APIKey: "right"})
			dir := t.TempDir()
			rows := chaosRows("key", 40)
			file := writeAssignments(t, dir, "in.csv", rows)
			run := func(key string, flags ...string) cliResult {
				args := append([]string{"run", "--api-url", api, "--api-key", key, "--id-format", "any", "--state", filepath.Join(dir, "state"), "--out", t.TempDir()}, fastFlags()...)
				return runCLI(t, nil, append(append(args, flags...), file)...)
			}
			r := run("wrong")
			if r.code != exitFatal || !strings.Contains(r.errText(), "the same command") {
				t.Fatalf("wrong key: exit %d (%s), want 1 saying the same command resumes\n%s", r.code, r.errText(), r.stderr)
			}
			var flags []string
			if fresh {
				flags = []string{"--fresh"}
			}
			r = run("right", flags...)
			if r.code != exitOK {
				t.Fatalf("right key: exit %d (%s)\n%s", r.code, r.errText(), r.stderr)
			}
			resumed := strings.Contains(r.stderr, "resuming batch ")
			if resumed == fresh {
				t.Errorf("fresh=%v: resumed %v\n%s", fresh, resumed, r.stderr)
			}
			if fresh && !strings.Contains(r.stderr, "cancelled with 0 of") {
				t.Errorf("--fresh does not say it cancelled the stopped batch:\n%s", r.stderr)
			}
			checkState(t, sim.State(), wantState(rows))

			// Ended and reported: the same command starts a new batch.
			r = run("right")
			if r.code != exitOK || strings.Contains(r.stderr, "resuming") {
				t.Errorf("after the batch ended: exit %d (%s)\n%s", r.code, r.errText(), r.stderr)
			}
		})
	}
}

// TestRunStateLocked: a second run of the same file while one holds its
// state is refused, naming the process; runs of other files are not.
func TestRunStateLocked(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("the resumable embedded queue needs redis-server")
	}
	t.Parallel()
	_, api := startSim(t, simulator.Options{})
	dir := t.TempDir()
	file := writeAssignments(t, dir, "in.csv", oneEach("lock", 5))
	other := writeAssignments(t, dir, "other.csv", oneEach("other", 5))
	root := filepath.Join(dir, "state")
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	fp, err := jobs.Fingerprint(f, worker.NormalizeURL(api))
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	held, err := openState(root, fp, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer held.close()
	run := func(file string) cliResult {
		args := append([]string{"run", "--api-url", api, "--api-key", "k", "--id-format", "any", "--state", root, "--out", t.TempDir()}, fastFlags()...)
		return runCLI(t, nil, append(args, file)...)
	}
	r := run(file)
	if r.code != exitFatal || !strings.Contains(r.errText(), fmt.Sprintf("being run already by process %d", os.Getpid())) {
		t.Errorf("the same file while its state is held: exit %d (%s)", r.code, r.errText())
	}
	if r := run(other); r.code != exitOK {
		t.Errorf("another file meanwhile: exit %d (%s)", r.code, r.errText())
	}
}

// TestRunMemoryCannotResume: the in-process queue says that it cannot
// resume.
func TestRunMemoryCannotResume(t *testing.T) {
	t.Parallel()
	_, api := startSim(t, simulator.Options{})
	file := writeAssignments(t, t.TempDir(), "in.csv", oneEach("mem", 3))
	args := append([]string{"run", "--api-url", api, "--api-key", "k", "--id-format", "any", "--embedded", "memory", "--out", t.TempDir()}, fastFlags()...)
	r := runCLI(t, nil, append(args, file)...)
	if r.code != exitOK || !strings.Contains(r.stderr, "it cannot resume if it stops (--embedded memory)") {
		t.Errorf("exit %d (%s)\n%s", r.code, r.errText(), r.stderr)
	}
}

// TestRunMemoryRefusedKey: after a refused key, a run whose queue did not
// outlive it says to fix the key and run the file again, not to resume.
func TestRunMemoryRefusedKey(t *testing.T) {
	t.Parallel()
	_, api := startSim(t, simulator.Options{APIKey: "right"})
	file := writeAssignments(t, t.TempDir(), "in.csv", oneEach("key", 3))
	args := append([]string{"run", "--api-url", api, "--api-key", "wrong", "--id-format", "any", "--embedded", "memory", "--out", t.TempDir()}, fastFlags()...)
	r := runCLI(t, nil, append(args, file)...)
	msg := r.errText()
	if r.code != exitFatal || !strings.Contains(msg, "fix the key and run the file again") || !strings.Contains(msg, "(HTTP 401)") || strings.Contains(msg, "resume") {
		t.Errorf("exit %d (%s), want 1 saying to fix the key and run the file again", r.code, msg)
	}
}

// TestSameFileTwice: a file queued already is refused by import and by
// run --redis, naming the earlier batch, and nothing is queued; --again
// queues it. run --redis of a file imported but not applied yet resumes
// that batch instead, and sends each row once. The batches say who
// started them.
func TestSameFileTwice(t *testing.T) {
	t.Parallel()
	d := newDist(t, simulator.Options{})
	rows := chaosRows("twice", 30)
	file := writeAssignments(t, d.dir, "in.csv", rows)
	id := d.importFile(t, file, "--id-format", "any", "--api-url", d.api)

	r := d.cli(t, "import", "--id-format", "any", "--api-url", d.api, file)
	if r.code != exitFatal {
		t.Fatalf("the same file again: exit %d (%s), want 1", r.code, r.errText())
	}
	for _, want := range []string{"batch " + id, "running", "imported ", "--again"} {
		if !strings.Contains(r.errText(), want) {
			t.Errorf("refusal %q does not say %q", r.errText(), want)
		}
	}
	if ids, _ := d.store.IDs(context.Background()); len(ids) != 1 {
		t.Fatalf("after the refusal there are %d batches, want 1", len(ids))
	}

	// run --redis of that file applies the imported batch: no second one.
	runArgs := append([]string{"run", "--api-url", d.api, "--api-key", d.key, "--id-format", "any", "--out", t.TempDir()}, fastFlags()...)
	r = d.cli(t, strings.Join(runArgs, " "), file)
	if r.code != exitOK || !strings.Contains(r.stderr, fmt.Sprintf("resuming batch %s: 0 of %d rows done", id, len(rows))) {
		t.Fatalf("run --redis of the imported file: exit %d (%s)\n%s", r.code, r.errText(), r.stderr)
	}
	checkState(t, d.sim.State(), wantState(rows))
	if n := d.sim.Stats().Requests; n != int64(len(rows)) {
		t.Errorf("the CRM got %d requests for %d rows", n, len(rows))
	}

	// Done now: run --redis refuses it too, then --again applies it.
	r = d.cli(t, strings.Join(runArgs, " "), file)
	if r.code != exitFatal || !strings.Contains(r.errText(), "batch "+id+", done") {
		t.Errorf("run --redis of a file applied already: exit %d (%s)", r.code, r.errText())
	}
	r = d.cli(t, strings.Join(runArgs, " ")+" --again", file)
	if r.code != exitOK || strings.Contains(r.stderr, "resuming") {
		t.Errorf("run --redis --again: exit %d (%s)\n%s", r.code, r.errText(), r.stderr)
	}
	r = d.cli(t, "import", "--id-format", "any", "--api-url", d.api, "--again", file)
	if r.code != exitOK {
		t.Errorf("import --again: exit %d (%s)", r.code, r.errText())
	}

	r = d.cli(t, "batches", "--json")
	var listed []struct {
		ID     string       `json:"batchId"`
		Origin *jobs.Origin `json:"origin"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &listed); err != nil || len(listed) != 3 {
		t.Fatalf("batches --json: %v, %d batches:\n%s", err, len(listed), r.stdout)
	}
	vias := map[string]int{}
	for _, b := range listed {
		if b.Origin == nil || !strings.Contains(b.Origin.By, "@") {
			t.Errorf("batch %s: origin %+v, want user@host", b.ID, b.Origin)
			continue
		}
		vias[b.Origin.Via]++
		if b.Origin.Via == "run" && (b.Origin.Settings == nil || b.Origin.Settings.Concurrency != 16) {
			t.Errorf("batch %s of run: settings %+v", b.ID, b.Origin.Settings)
		}
	}
	if vias["import"] != 2 || vias["run"] != 1 {
		t.Errorf("batches started by %v, want 2 imports and 1 run", vias)
	}
}

// TestRunStateDoesNotGrow: a file run again after its batch ended and was
// reported starts from an empty queue, so its state folder (and the
// redis-server's start, which reads it back) does not grow with every run.
func TestRunStateDoesNotGrow(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("the resumable embedded queue needs redis-server")
	}
	t.Parallel()
	_, api := startSim(t, simulator.Options{})
	dir := t.TempDir()
	file := writeAssignments(t, dir, "in.csv", oneEach("grow", 300))
	state := filepath.Join(dir, "state")
	var sizes []int64
	for range 3 {
		args := append([]string{"run", "--api-url", api, "--api-key", "k", "--id-format", "any", "--state", state, "--out", t.TempDir()}, fastFlags()...)
		if r := runCLI(t, nil, append(args, file)...); r.code != exitOK || strings.Contains(r.stderr, "resuming") {
			t.Fatalf("exit %d (%s)\n%s", r.code, r.errText(), r.stderr)
		}
		var n int64
		err := filepath.WalkDir(state, func(_ string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			fi, err := d.Info()
			if err == nil {
				n += fi.Size()
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, n)
	}
	if sizes[2] > sizes[0]*3/2 {
		t.Errorf("the state folder grew from %d to %d bytes over 3 runs of the same file: earlier runs are kept", sizes[0], sizes[2])
	}
}
