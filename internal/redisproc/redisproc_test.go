package redisproc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// helperEnv makes the test binary the parent process of
// TestParentKilled: it starts a server in the folder the variable names,
// prints its address and pid, and waits to be killed.
const helperEnv = "REDISPROC_TEST_PARENT_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(helperEnv); dir != "" {
		s, err := Start(dir, Options{AppendOnly: true, FsyncEverySec: true})
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println(s.Addr(), s.PID())
		// Threads come and go in a Go process: start and end some locked
		// ones, which the runtime terminates, to show that the server's
		// life is not tied to whichever thread happened to start it.
		for range 8 {
			go func() { runtime.LockOSThread() }()
		}
		select {}
	}
	os.Exit(m.Run())
}

// TestParentKilled kills, with SIGKILL, a process that runs a server with
// an append-only file: the server dies with it (nothing is left running),
// and a server started again on the folder has every write acknowledged
// before the kill, although it fsyncs only once a second.
func TestParentKilled(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the parent-death signal is Linux's")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server is not installed")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("the parent printed nothing: %v", err)
	}
	f := strings.Fields(line)
	if len(f) != 2 {
		t.Fatalf("the parent printed %q", line)
	}
	addr := f[0]
	pid, err := strconv.Atoi(f[1])
	if err != nil {
		t.Fatalf("the parent printed %q", line)
	}

	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	for i := range 100 {
		if err := rdb.Set(ctx, "k"+strconv.Itoa(i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("redis-server (pid %d) still runs 10s after its parent was killed", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}

	s, err := Start(dir, Options{AppendOnly: true, FsyncEverySec: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	again := redis.NewClient(&redis.Options{Addr: s.Addr()})
	defer again.Close()
	n, err := again.DBSize(ctx).Result()
	if err != nil || n != 100 {
		t.Fatalf("after the kill the server has %d keys (%v), want the 100 written before", n, err)
	}
}

// TestStartRelativeDir: a server started in a relative folder (run
// --state ./state) starts, and keeps its files there.
func TestStartRelativeDir(t *testing.T) {
	t.Chdir(t.TempDir())
	if err := os.Mkdir("state", 0o700); err != nil {
		t.Fatal(err)
	}
	s, err := Start("state", Options{AppendOnly: true, FsyncEverySec: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if _, err := os.Stat(filepath.Join("state", "redis.log")); err != nil {
		t.Errorf("no redis.log in the relative folder: %v", err)
	}
}
