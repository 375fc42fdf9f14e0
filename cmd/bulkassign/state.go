package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The state of `run` on the embedded queue: under the state folder
// (--state, else $XDG_STATE_HOME/bulkassign, else ~/.local/state/bulkassign)
// each file (its content and API URL: its fingerprint) has a folder of its
// own holding the private redis-server's append-only file. The same
// command after a crash starts redis-server on that folder again and finds
// the batch where it stopped. Runs of different files go on side by side;
// a lock keeps two runs of one file out of each other's way.

// stateFiles are the names in a file's state folder.
const (
	stateLock     = "lock"     // flock'ed by the run using the folder; holds its pid
	stateFinished = "finished" // written once the folder's batch ended and its report was written
	stateQueue    = "queue"    // redis-server's folder
)

// stateRoot is the state folder: flag, else $XDG_STATE_HOME/bulkassign,
// else ~/.local/state/bulkassign.
func stateRoot(flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	if x := os.Getenv("XDG_STATE_HOME"); x != "" && filepath.IsAbs(x) {
		return filepath.Join(x, "bulkassign"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no folder for run's state: %v; pass --state DIR (or set BULKASSIGN_STATE)", err)
	}
	return filepath.Join(home, ".local", "state", "bulkassign"), nil
}

// runState is the state folder of one file, locked by this process.
type runState struct {
	dir  string
	lock *os.File
}

// openState locks the state folder of the file with fingerprint fp under
// root, creating it, and removes the folders of other files whose batch
// ended more than retention ago (0 or less keeps them).
func openState(root, fp string, retention time.Duration) (*runState, error) {
	dir := filepath.Join(root, fp[:32])
	var (
		f    *os.File
		busy bool
	)
	// A run pruning the folder (it ended long ago) may remove it between
	// our making it and locking it: then make it again.
	for range 3 {
		if err := os.MkdirAll(filepath.Join(dir, stateQueue), 0o700); err != nil {
			return nil, fmt.Errorf("run's state: %w (pass --state DIR for another folder)", err)
		}
		var err error
		if f, busy, err = lockState(dir); err != nil {
			return nil, err
		}
		if busy || stillThere(f) {
			break
		}
		f.Close()
		f = nil
	}
	if f == nil && !busy {
		return nil, fmt.Errorf("run's state: %s keeps disappearing: is another program removing it?", dir)
	}
	if busy {
		pid := "another process"
		if b, err := os.ReadFile(filepath.Join(dir, stateLock)); err == nil && len(strings.TrimSpace(string(b))) > 0 {
			pid = "process " + strings.TrimSpace(string(b))
		}
		return nil, fmt.Errorf("this file (same content, same API URL) is being run already by %s, with its state in %s: wait for it to end, or stop it and run this command again to resume", pid, dir)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	s := &runState{dir: dir, lock: f}
	if err := s.reset(); err != nil {
		f.Close()
		return nil, err
	}
	pruneState(root, dir, retention)
	return s, nil
}

// reset empties the queue of a folder whose batch ended and was reported:
// nothing in it is needed any more, and a redis-server started on it
// would first read back every earlier run of the file.
func (s *runState) reset() error {
	if _, err := os.Stat(filepath.Join(s.dir, stateFinished)); err != nil {
		return nil // a batch to resume, or none yet
	}
	if err := os.RemoveAll(s.queueDir()); err != nil {
		return fmt.Errorf("run's state: empty %s: %w", s.queueDir(), err)
	}
	if err := os.Mkdir(s.queueDir(), 0o700); err != nil {
		return fmt.Errorf("run's state: %w", err)
	}
	return nil
}

// lockState takes the lock of a state folder; busy says another process
// has it.
func lockState(dir string) (f *os.File, busy bool, err error) {
	f, err = os.OpenFile(filepath.Join(dir, stateLock), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("run's state: %w", err)
	}
	busy, err = tryLock(f)
	if err != nil || busy {
		f.Close()
		if err != nil {
			return nil, false, fmt.Errorf("run's state: lock %s: %w", f.Name(), err)
		}
		return nil, true, nil
	}
	return f, false, nil
}

// stillThere reports whether the lock file f is still the one at its
// path, in a folder that was not removed.
func stillThere(f *os.File) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Stat(f.Name())
	return err == nil && os.SameFile(a, b)
}

// queueDir is redis-server's folder.
func (s *runState) queueDir() string { return filepath.Join(s.dir, stateQueue) }

// started says that the folder holds a batch that has not ended.
func (s *runState) started() error {
	if err := os.Remove(filepath.Join(s.dir, stateFinished)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("run's state: %w", err)
	}
	return nil
}

// finished says that the folder's batch ended and its report is written:
// the folder goes once the retention has passed.
func (s *runState) finished() error {
	if err := os.WriteFile(filepath.Join(s.dir, stateFinished), []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o600); err != nil {
		return fmt.Errorf("run's state: %w", err)
	}
	return nil
}

// close releases the lock; the kernel releases it too if the process dies.
func (s *runState) close() { s.lock.Close() }

// pruneState removes the state folders under root, but keep, whose batch
// ended and was reported more than retention ago, unless a run holds them.
func pruneState(root, keep string, retention time.Duration) {
	if retention <= 0 {
		return
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		return
	}
	for _, e := range entries {
		dir := filepath.Join(root, e.Name())
		if !e.IsDir() || dir == keep {
			continue
		}
		fi, err := os.Stat(filepath.Join(dir, stateFinished))
		if err != nil || time.Since(fi.ModTime()) < retention {
			continue // unfinished (resumable), or not old enough
		}
		f, busy, err := lockState(dir)
		if err != nil || busy {
			continue
		}
		_ = os.RemoveAll(dir)
		f.Close()
	}
}
