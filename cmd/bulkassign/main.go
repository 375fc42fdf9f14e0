// Command bulkassign applies bulk contact→agent assignments through a CRM's
// API: it queues the contacts in chunks on Redis with asynq, rate-limited
// workers make the calls, and every batch ends with an exact report.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"syscall"
)

// Exit codes, as the design fixes them.
const (
	exitOK      = 0
	exitFatal   = 1
	exitPartial = 2
)

// exitError carries the exit code of a command that did not fully succeed.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// gcPercent is the garbage collector's pace unless GOGC sets one: a
// worker's heap is small and short-lived (a call's buffers), and the
// default pace spends about a seventh of its CPU collecting it. The import
// still holds its heap to importMemoryLimit.
const gcPercent = 400

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// exitCode prints err, if any, and returns the process exit code.
func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(stderr, "bulkassign:", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return exitFatal
}

// run is the whole program; tests call it.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	stdout, stderr = serialized(stdout), serialized(stderr)
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	root := a.rootCommand()
	// Not nil: cobra reads os.Args when given no arguments.
	root.SetArgs(append([]string{}, args...))
	return root.ExecuteContext(ctx)
}

// serialized makes w safe for the commands' concurrent writes (logs from
// worker goroutines, progress from the command's own), as exec.Cmd does
// for its output. An *os.File is left as it is: it is safe already, and
// the progress bar checks whether it is a terminal.
func serialized(w io.Writer) io.Writer {
	if _, ok := w.(*os.File); ok {
		return w
	}
	return &lockedWriter{w: w}
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// app holds what every command writes to and reads from.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}
