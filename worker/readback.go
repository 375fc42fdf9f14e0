package worker

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// ReadOptions configures ReadAgents; the zero value means defaults.
type ReadOptions struct {
	// Concurrency caps reads in flight; default 8.
	Concurrency int
	// MaxAttempts is how many reads a contact gets for transient failures
	// (5xx, timeouts); default 5. A 429 waits and does not count.
	MaxAttempts int
	// Backoff is the first wait after a transient failure, doubling up to
	// a few seconds; default 500ms.
	Backoff time.Duration
	// MaxRetryAfter caps the wait a Retry-After asks for; default 15m.
	MaxRetryAfter time.Duration
}

// Agents is what ReadAgents found of one contact.
type Agents struct {
	Contact string
	// IDs are the contact's agents now, lower-case; empty when it has none.
	IDs []string
	// Err is why the contact could not be read: ErrContactNotFound for a
	// contact the CRM does not know, else a *CallError (out of attempts, or
	// refused for good).
	Err error
}

// ReadAgents reads the current agents of every contact through the
// client, under limiter and at most opts.Concurrency at a time, and hands
// each answer to fn as it comes (fn is called from one goroutine at a
// time, in no particular order). It is how a batch is verified and a
// rebalance sees the CRM's live owners: the same key probe, shared rate
// limit and retry rules as the assign calls. It stops with an error when
// the key is refused (wrapping ErrUnauthorized), when ctx ends, or when
// fn returns an error.
func ReadAgents(ctx context.Context, c *Client, limiter Limiter, opts ReadOptions, contacts []string, fn func(Agents) error) error {
	if opts.Concurrency <= 0 {
		opts.Concurrency = 8
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 5
	}
	if opts.Backoff <= 0 {
		opts.Backoff = 500 * time.Millisecond
	}
	if opts.MaxRetryAfter <= 0 {
		opts.MaxRetryAfter = 15 * time.Minute
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opts.Concurrency)
	var mu sync.Mutex
	for _, contact := range contacts {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			a, err := readOne(gctx, c, limiter, opts, contact)
			if err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			return fn(a)
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return context.Cause(ctx)
}

// readOne reads one contact, waiting out 429s and retrying transient
// failures; an error ends the whole read.
func readOne(ctx context.Context, c *Client, limiter Limiter, opts ReadOptions, contact string) (Agents, error) {
	for attempt, limited := 1, 0; ; {
		if err := limiter.Wait(ctx); err != nil {
			return Agents{}, err
		}
		agents, out := c.contactAgents(ctx, contact)
		var wait time.Duration
		switch out.Kind {
		case OK:
			return Agents{Contact: contact, IDs: agents}, nil
		case Unauthorized:
			return Agents{}, fmt.Errorf("read agents of contact %s: %w", contact, out.Err)
		case Permanent:
			err := error(&CallError{Outcome: out})
			if out.Reason == reasonForStatus(404) {
				err = fmt.Errorf("%w: %w", ErrContactNotFound, err)
			}
			return Agents{Contact: contact, Err: err}, nil
		case RateLimited:
			limited++
			limiter.Slow(ctx)
			wait = rateLimitedWait(out, limited, opts.MaxRetryAfter)
		case Transient:
			if ctx.Err() != nil {
				return Agents{}, context.Cause(ctx)
			}
			if attempt >= opts.MaxAttempts {
				return Agents{Contact: contact, Err: &CallError{Outcome: out}}, nil
			}
			wait = max(backoff(opts.Backoff, 8*opts.Backoff, attempt, nil), min(out.RetryAfter, opts.MaxRetryAfter))
			attempt++
		}
		if err := sleep(ctx, wait); err != nil {
			return Agents{}, err
		}
	}
}
