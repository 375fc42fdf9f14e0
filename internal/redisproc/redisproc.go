// Package redisproc runs a private redis-server process: the queue of
// `bulkassign run` when no --redis is given and redis-server is installed,
// and the throwaway servers of the tests (single servers, the nodes of a
// Redis Cluster, a Sentinel).
package redisproc

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// startTimeout bounds how long a redis-server may take to answer PING.
const startTimeout = 10 * time.Second

// ErrNotInstalled means redis-server is not on PATH.
var ErrNotInstalled = errors.New("redis-server is not on PATH")

// Installed reports whether redis-server is on PATH.
func Installed() bool {
	_, err := exec.LookPath("redis-server")
	return err == nil
}

// Options configures a Server started by Start. The zero value is a server
// without persistence.
type Options struct {
	// AppendOnly turns on the append-only file with an fsync per write, so
	// every acknowledged write survives Stop, Kill and Restart.
	AppendOnly bool
	// FsyncEverySec, with AppendOnly, fsyncs the append-only file once a
	// second instead of at every write: far faster, and every
	// acknowledged write still survives the death of redis-server or of
	// this process (the kernel has it); only a crash of the machine itself
	// can lose the last second.
	FsyncEverySec bool
	// Cluster starts a Redis Cluster node (cluster-enabled, its cluster
	// bus on a second free port, its node table in the folder); nodes
	// serve nothing until `redis-cli --cluster create` joins them.
	Cluster bool
	// SentinelOf, when set, starts a Sentinel instead of a server: it
	// watches the master at this host:port, under the name MasterName,
	// with a quorum of 1.
	SentinelOf, MasterName string
}

// Server is a redis-server process of its own, bound to 127.0.0.1 on a
// free port, keeping its files in one folder.
type Server struct {
	dir  string
	port int
	// bus is a cluster node's cluster bus port; 0 for other servers.
	bus  int
	opts Options

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// Start starts a redis-server in dir on a free port, trying a few ports in
// case another process takes the one picked first, and waits until it
// answers. On Linux the kernel stops it if this process dies first.
func Start(dir string, opts Options) (*Server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, ErrNotInstalled
	}
	// redis-server changes into --dir before it opens its files, so a
	// relative dir (run --state ./state) would be looked up twice over.
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	var lastErr error
	for range 3 {
		port, err := freePort()
		if err != nil {
			return nil, fmt.Errorf("start redis-server: %w", err)
		}
		s := &Server{dir: dir, port: port, opts: opts}
		if opts.Cluster {
			// The default bus port, port+10000, may be above 65535 or taken.
			for s.bus == 0 || s.bus == port {
				if s.bus, err = freePort(); err != nil {
					return nil, fmt.Errorf("start redis-server: %w", err)
				}
			}
		}
		if lastErr = s.start(bin); lastErr == nil {
			return s, nil
		}
	}
	return nil, lastErr
}

// freePort asks the kernel for a free TCP port on 127.0.0.1.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// URL is the redis:// URL of DB db on the server.
func (s *Server) URL(db int) string {
	return fmt.Sprintf("redis://127.0.0.1:%d/%d", s.port, db)
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// PID is the process id of the server's redis-server, 0 before it started.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

func (s *Server) logPath() string { return filepath.Join(s.dir, "redis.log") }

// start runs redis-server and waits until it answers PING.
//
// On Linux the kernel sends the parent-death signal when the thread that
// started the child ends, not the process, so the child is started from a
// goroutine locked to its thread that stays there until the child exits:
// the thread then lives exactly as long as this process needs it.
func (s *Server) start(bin string) error {
	args, err := s.args()
	if err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = sysProcAttr()
	started := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		// Never unlocked: the thread ends with this goroutine, once
		// redis-server has exited.
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		_ = cmd.Wait()
		close(done)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()

	if err := waitReady(s.Addr(), done); err != nil {
		s.Kill()
		return fmt.Errorf("start redis-server on port %d: %w%s", s.port, err, s.logTail())
	}
	return nil
}

// args are redis-server's arguments for the server's kind.
func (s *Server) args() ([]string, error) {
	common := []string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--dir", s.dir,
		"--logfile", s.logPath(),
		"--daemonize", "no",
	}
	if s.opts.SentinelOf != "" {
		// A Sentinel reads its master from a config file it may rewrite.
		host, port, err := net.SplitHostPort(s.opts.SentinelOf)
		if err == nil && s.opts.MasterName == "" {
			err = errors.New("no MasterName")
		}
		if err != nil {
			return nil, fmt.Errorf("sentinel of %q: %w", s.opts.SentinelOf, err)
		}
		conf := filepath.Join(s.dir, "sentinel.conf")
		monitor := fmt.Sprintf("sentinel monitor %s %s %s 1\n", s.opts.MasterName, host, port)
		if err := os.WriteFile(conf, []byte(monitor), 0o600); err != nil {
			return nil, err
		}
		return append([]string{conf, "--sentinel"}, common...), nil
	}
	appendOnly, fsync := "no", "always"
	if s.opts.AppendOnly {
		appendOnly = "yes"
	}
	if s.opts.FsyncEverySec {
		fsync = "everysec"
	}
	args := append(common,
		"--save", "",
		"--appendonly", appendOnly,
		"--appendfsync", fsync,
	)
	if s.opts.Cluster {
		args = append(args,
			"--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(s.dir, "nodes.conf"),
			"--cluster-port", strconv.Itoa(s.bus),
		)
	}
	return args, nil
}

// waitReady polls addr with PING until it answers +PONG, the process
// exits, or startTimeout passes.
func waitReady(addr string, exited <-chan struct{}) error {
	deadline := time.NewTimer(startTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		if last = ping(addr); last == nil {
			return nil
		}
		select {
		case <-exited:
			return errors.New("redis-server exited")
		case <-deadline.C:
			return fmt.Errorf("no answer to PING after %v: %v", startTimeout, last)
		case <-tick.C:
		}
	}
}

// ping sends one PING; a server still loading its data answers -LOADING,
// which is not ready.
func ping(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if line = strings.TrimSpace(line); line != "+PONG" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// logTail is the end of the server's log, for error messages.
func (s *Server) logTail() string {
	b, err := os.ReadFile(s.logPath())
	if err != nil || len(b) == 0 {
		return ""
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return "\nredis-server log (" + s.logPath() + "):\n" + string(b)
}

// Stop shuts the server down as an operator would (SIGTERM, then SIGKILL
// after 10 seconds) and waits for it to exit. Stopping a stopped server
// does nothing.
func (s *Server) Stop() { s.signal(syscall.SIGTERM, startTimeout) }

// Kill ends the server at once with SIGKILL, like a crash or an OOM kill,
// and waits for it to exit. Writes not on disk are lost unless
// Options.AppendOnly is set.
func (s *Server) Kill() { s.signal(syscall.SIGKILL, 0) }

func (s *Server) signal(sig syscall.Signal, grace time.Duration) {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Signal(sig)
	if grace > 0 {
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-done:
			return
		case <-t.C:
			_ = cmd.Process.Kill()
		}
	}
	<-done
}

// Restart stops the server if it runs and starts it again on the same
// port and folder, so clients reconnect to the same URL. With
// Options.AppendOnly the data survives.
func (s *Server) Restart() error {
	s.Stop()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return ErrNotInstalled
	}
	return s.start(bin)
}
