package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"

	"github.com/bulkassign/bulkassign/config"
	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/worker"
)

// fingerprinted reads the input once for its fingerprint (its content and
// the API URL, see jobs.Fingerprint) and returns it with an open that gives
// the same content again: the input opened anew, or for stdin a copy
// spooled to a temporary file while it was hashed. cleanup removes that
// copy.
func fingerprinted(file string, open func() (io.ReadCloser, error), apiURL string) (fp string, reopen func() (io.ReadCloser, error), cleanup func(), err error) {
	in, err := open()
	if err != nil {
		return "", nil, nil, err
	}
	defer in.Close()
	url := worker.NormalizeURL(apiURL)
	if file != "-" {
		if fp, err = jobs.Fingerprint(in, url); err != nil {
			return "", nil, nil, fmt.Errorf("%s: %w", file, err)
		}
		return fp, open, func() {}, nil
	}
	spool, err := os.CreateTemp("", "bulkassign-stdin-")
	if err != nil {
		return "", nil, nil, fmt.Errorf("keep a copy of stdin: %w", err)
	}
	cleanup = func() { spool.Close(); _ = os.Remove(spool.Name()) }
	if fp, err = jobs.Fingerprint(io.TeeReader(in, spool), url); err != nil {
		cleanup()
		return "", nil, nil, fmt.Errorf("stdin: %w", err)
	}
	reopen = func() (io.ReadCloser, error) {
		if _, err := spool.Seek(0, io.SeekStart); err != nil {
			return nil, fmt.Errorf("read the copy of stdin: %w", err)
		}
		return io.NopCloser(spool), nil
	}
	return fp, reopen, cleanup, nil
}

// duplicate explains a file refused as a *jobs.DuplicateError and says how
// to send it anyway; other errors pass as they are.
func duplicate(err error) error {
	var dup *jobs.DuplicateError
	if !errors.As(err, &dup) {
		return err
	}
	return fmt.Errorf("%w; nothing was queued: `bulkassign report %s` writes its report, and --again sends the file once more", err, dup.Batch.ID)
}

// remember records, for a batch just imported, the file it came from and
// who started it how. Neither is needed to apply the batch: a failure is
// only reported.
func (a *app) remember(ctx context.Context, q *queue, fp, id string, o jobs.Origin) {
	var errs []error
	if fp != "" {
		errs = append(errs, q.store.RememberFile(ctx, fp, id))
	}
	errs = append(errs, q.store.SetOrigin(ctx, id, o))
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintf(a.stderr, "warning: %v\n", err)
	}
}

// cliOrigin is the origin of a batch a command starts: via names the
// command, settings are the workers' when the command applies the batch
// itself (nil otherwise).
func cliOrigin(via string, cfg *config.Config) jobs.Origin {
	o := jobs.Origin{Via: via, By: localUser()}
	if cfg != nil {
		o.Settings = workerSettings(cfg)
	}
	return o
}

// workerSettings are the settings cfg's workers make their calls with.
func workerSettings(cfg *config.Config) *jobs.Settings {
	// --burst 0 is its default, 1, as the limiter takes it.
	return &jobs.Settings{Rate: cfg.Rate, Burst: max(cfg.Burst, 1), Concurrency: cfg.Concurrency, MaxAttempts: cfg.MaxAttempts}
}

// localUser is user@host of this process.
func localUser() string {
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	if name == "" {
		name = fmt.Sprintf("uid %d", os.Getuid())
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	return name + "@" + host
}
