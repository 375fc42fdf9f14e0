package worker

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// SharedLimiter is the Limiter of every process that calls the API with one
// key. With a rate, the global pace is a GCRA bucket in Redis that hands
// out call slots, and a 429 seen by any process lowers that shared pace
// (it climbs back when the API is quiet). Without a rate, each process
// adapts its own pace (LocalLimiter), and a 429 seen by one process is
// signalled through Redis so that all of them slow down. A LocalLimiter in
// front always paces this process's own calls.
type SharedLimiter struct {
	local *LocalLimiter
	rdb   redis.UniversalClient
	// interval between calls in microseconds, and the burst in calls; 0
	// interval means no global rate.
	interval, burst int64
	key             string
	factor          string
	slow            string

	mu        sync.Mutex
	checkedAt time.Time
	seen      string // the last slow-down signal this process acted on
}

// slowCheck is how often a process looks for another's slow-down signal.
const slowCheck = 100 * time.Millisecond

// NewSharedLimiter returns the limiter for one API key: perSecond calls a
// second in total (0 = unlimited until the API answers 429) with the given
// burst. The Redis keys are named after namespace and a hash of apiURL and
// apiKey, never the key itself.
func NewSharedLimiter(rdb redis.UniversalClient, namespace, apiURL, apiKey string, perSecond float64, burst int) *SharedLimiter {
	sum := sha256.Sum256([]byte(apiURL + "\x00" + apiKey))
	id := hex.EncodeToString(sum[:8])
	l := &SharedLimiter{
		local:  NewLocalLimiter(perSecond, burst),
		rdb:    rdb,
		key:    namespace + ":rate:" + id,
		factor: namespace + ":rate:" + id + ":factor",
		slow:   namespace + ":slow:" + id,
	}
	if perSecond > 0 {
		l.interval = int64(math.Round(1e6 / perSecond))
		l.burst = int64(max(burst, 1))
	}
	return l
}

// Wait blocks until this process's pace and the global bucket allow a call.
func (l *SharedLimiter) Wait(ctx context.Context) error {
	if err := l.follow(ctx); err != nil {
		return err
	}
	if err := l.local.Wait(ctx); err != nil {
		return err
	}
	if l.interval == 0 {
		return nil
	}
	wait, err := gcraScript.Run(ctx, l.rdb, []string{l.key, l.factor}, l.interval, l.burst).Int64()
	if err != nil {
		return fmt.Errorf("shared rate limit: %w", err)
	}
	return sleep(ctx, time.Duration(wait)*time.Microsecond)
}

//go:embed gcra.lua
var gcraLua string

//go:embed slow.lua
var slowLua string

var (
	gcraScript = redis.NewScript(gcraLua)
	slowScript = redis.NewScript(slowLua)
)

// follow slows this process when another one has signalled a 429 (only
// without a global rate: with one, the shared pace itself was lowered).
func (l *SharedLimiter) follow(ctx context.Context) error {
	if l.interval != 0 {
		return nil
	}
	l.mu.Lock()
	if time.Since(l.checkedAt) < slowCheck {
		l.mu.Unlock()
		return nil
	}
	l.checkedAt = time.Now()
	l.mu.Unlock()
	sig, err := l.rdb.Get(ctx, l.slow).Result()
	if errors.Is(err, redis.Nil) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("shared rate limit: %w", err)
	}
	l.mu.Lock()
	fresh := sig != l.seen
	l.seen = sig
	l.mu.Unlock()
	if fresh {
		l.local.Slow(ctx)
	}
	return nil
}

// Slow lowers the shared pace after a 429; without a global rate it lowers
// this process's pace and signals every other process sharing the key to
// do the same. Best effort: if Redis fails here, the next Wait reports it.
func (l *SharedLimiter) Slow(ctx context.Context) {
	if l.interval != 0 {
		_ = slowScript.Run(ctx, l.rdb, []string{l.factor}).Err()
		return
	}
	l.local.Slow(ctx)
	var b [8]byte
	_, _ = rand.Read(b[:])
	sig := hex.EncodeToString(b[:])
	// NX: the first 429 of a wave signals; the others fall inside it.
	if ok, _ := l.rdb.SetNX(ctx, l.slow, sig, slowEvery).Result(); ok {
		l.mu.Lock()
		l.seen = sig // this process has slowed already
		l.mu.Unlock()
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}
