package worker

import (
	"context"
	"sync"

	"github.com/bulkassign/bulkassign/jobs"
)

// maxGroup bounds the writes that go to Redis in one script call: one
// call's time is Redis's time, for every client.
const maxGroup = 200

// group coalesces calls of the same kind for one batch, made at the same
// time by many executions of this process, into one call of do with all
// of them, in order (a group commit): while one call is in flight the
// next ones gather, so under load each round trip carries many, and alone
// a call waits for nobody.
type group[Req, Res any] struct {
	do func(ctx context.Context, batch string, reqs []Req) ([]Res, error)

	mu      sync.Mutex
	waiting map[string][]*groupCall[Req, Res]
}

type groupCall[Req, Res any] struct {
	req  Req
	res  Res
	err  error
	done chan struct{}
}

func newGroup[Req, Res any](do func(context.Context, string, []Req) ([]Res, error)) *group[Req, Res] {
	return &group[Req, Res]{do: do, waiting: map[string][]*groupCall[Req, Res]{}}
}

// call makes req as part of the next call of do for batch. The calls use
// a context of their own, bounded by ledgerTimeout: one execution's
// context must not fail the others' writes.
func (g *group[Req, Res]) call(batch string, req Req) (Res, error) {
	c := &groupCall[Req, Res]{req: req, done: make(chan struct{})}
	g.mu.Lock()
	q, flushing := g.waiting[batch]
	g.waiting[batch] = append(q, c)
	g.mu.Unlock()
	if !flushing {
		go g.flush(batch)
	}
	<-c.done
	return c.res, c.err
}

// flush makes the calls waiting for batch, maxGroup at a time, until none
// waits.
func (g *group[Req, Res]) flush(batch string) {
	for {
		g.mu.Lock()
		cs := g.waiting[batch]
		if len(cs) == 0 {
			delete(g.waiting, batch)
			g.mu.Unlock()
			return
		}
		n := min(len(cs), maxGroup)
		g.waiting[batch] = cs[n:len(cs):len(cs)]
		g.mu.Unlock()
		cs = cs[:n]
		reqs := make([]Req, n)
		for i, c := range cs {
			reqs[i] = c.req
		}
		ctx, cancel := context.WithTimeout(context.Background(), ledgerTimeout)
		res, err := g.do(ctx, batch, reqs)
		cancel()
		for i, c := range cs {
			if err == nil {
				c.res = res[i]
			}
			c.err = err
			close(c.done)
		}
	}
}

// ledger is the handler's way to the ledger: Begin and Settle of the
// executions running at the same time go to Redis together.
type ledger struct {
	begins  *group[string, jobs.Begun]
	settles *group[jobs.Settlement, jobs.SettleResult]
}

func newLedger(store *jobs.Store, maxAttempts int) *ledger {
	return &ledger{
		begins: newGroup(func(ctx context.Context, batch string, contacts []string) ([]jobs.Begun, error) {
			return store.BeginMany(ctx, batch, contacts, maxAttempts)
		}),
		settles: newGroup(store.SettleMany),
	}
}
