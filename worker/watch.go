package worker

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/bulkassign/bulkassign/jobs"
)

// watcher follows, in one process, the batches whose tasks the process is
// running: one read per batch every tick however many of its tasks run,
// which also renews their claims. When a batch stops running (paused,
// cancelled, deleted) the executions of it are told at once, so each
// stops before its next call, a wait for a rate slot included.
type watcher struct {
	store *jobs.Store
	every time.Duration
	log   *slog.Logger

	mu      sync.Mutex
	batches map[string]*watched
}

type watched struct {
	execs map[*jobs.Execution]context.CancelCauseFunc
	done  chan struct{}
}

func newWatcher(store *jobs.Store, every time.Duration, log *slog.Logger) *watcher {
	return &watcher{store: store, every: every, log: log, batches: map[string]*watched{}}
}

// hold registers an execution that holds its contact and returns a context
// that ends when its batch stops running, and the func that ends the hold.
func (w *watcher) hold(ctx context.Context, x *jobs.Execution) (context.Context, func()) {
	held, cancel := context.WithCancelCause(ctx)
	w.mu.Lock()
	b := w.batches[x.Batch]
	if b == nil {
		b = &watched{execs: map[*jobs.Execution]context.CancelCauseFunc{}, done: make(chan struct{})}
		w.batches[x.Batch] = b
		go w.follow(x.Batch, b)
	}
	b.execs[x] = cancel
	w.mu.Unlock()
	return held, func() {
		w.mu.Lock()
		delete(b.execs, x)
		if len(b.execs) == 0 && w.batches[x.Batch] == b {
			delete(w.batches, x.Batch)
			close(b.done)
		}
		w.mu.Unlock()
		cancel(nil)
	}
}

// follow reads the batch's state every tick, renewing the claims of its
// executions every third of the claim's life, until no execution of it
// is left.
func (w *watcher) follow(batch string, b *watched) {
	tick := time.NewTicker(w.every)
	defer tick.Stop()
	renewEvery := w.store.ClaimTTL() / 3
	renewed := time.Now()
	for {
		select {
		case <-b.done:
			return
		case <-tick.C:
		}
		var renew []*jobs.Execution
		w.mu.Lock()
		if time.Since(renewed) >= renewEvery {
			for x := range b.execs {
				renew = append(renew, x)
			}
		}
		w.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), w.every+time.Second)
		st, err := w.store.Watch(ctx, batch, renew)
		cancel()
		if err != nil {
			// The executions' own writes meet the same trouble.
			w.log.Debug("watch batch", slog.String("batch", batch), slog.Any("error", err))
			continue
		}
		if renew != nil {
			renewed = time.Now()
		}
		if st.Status == jobs.BatchRunning {
			continue
		}
		w.mu.Lock()
		for _, stop := range b.execs {
			stop(errStopped)
		}
		w.mu.Unlock()
	}
}
