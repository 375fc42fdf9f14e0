package worker

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/simulator"
)

// crash is what the test hook panics with: the process died right after a
// write to the ledger.
type crash struct{ point string }

// TestHandlerCrashPoints kills the handler (a panic from the test hook)
// right after each of its writes to the ledger in turn, then lets a fresh
// worker take the task over, as asynq would after the lease. Whatever the
// point, the ledger ends exact: every row once, in its right state, the
// counters equal to the rows, nothing reported that the CRM did not get,
// and the CRM in the state the file describes.
func TestHandlerCrashPoints(t *testing.T) {
	t.Parallel()
	scenarios := []struct {
		name  string
		rows  []jobs.Row
		state []string // the contact's agents at the end
		// status of each row at the end, by line
		want map[int]jobs.Status
		sim  simulator.Options
	}{
		{
			name:  "all succeed",
			rows:  []jobs.Row{row(2, "c1", "a", false), row(3, "c1", "b", true), row(4, "c1", "c", false)},
			state: []string{"b", "c"},
			want:  map[int]jobs.Status{2: jobs.StatusSucceeded, 3: jobs.StatusSucceeded, 4: jobs.StatusSucceeded},
		},
		{
			name:  "refused in the middle",
			rows:  []jobs.Row{row(2, "c1", "a", false), row(3, "c1", "ghost", true), row(4, "c1", "c", false)},
			state: []string{"a"},
			want:  map[int]jobs.Status{2: jobs.StatusSucceeded, 3: jobs.StatusFailed, 4: jobs.StatusFailed},
			sim:   simulator.Options{Members: []simulator.Member{{ID: "a", Active: true}, {ID: "c", Active: true}}},
		},
		{
			name:  "transient then fine",
			rows:  []jobs.Row{row(2, "c1", "a", false), row(3, "c1", "b", false)},
			state: []string{"a", "b"},
			want:  map[int]jobs.Status{2: jobs.StatusSucceeded, 3: jobs.StatusSucceeded},
			sim:   simulator.Options{Transient: 1, TransientAttempts: 1},
		},
	}
	for _, sc := range scenarios {
		for crashAt := 1; crashAt <= 6; crashAt++ {
			t.Run(fmt.Sprintf("%s/write %d", sc.name, crashAt), func(t *testing.T) {
				t.Parallel()
				e := newEnv(t, envOptions{sim: sc.sim, claimTTL: 150 * time.Millisecond, maxAttempts: 5})
				ps := e.load(t, "b", sc.rows)
				task := e.task(t, ps[0])
				writes := 0
				var crashedAt string
				e.handler.after = func(point string) {
					writes++
					if writes == crashAt {
						crashedAt = point
						panic(crash{point})
					}
				}
				func() {
					defer func() {
						if r := recover(); r != nil {
							if _, ok := r.(crash); !ok {
								panic(r)
							}
						}
					}()
					for range 10 { // until it crashes or the contact is done
						if err := e.handler.ProcessTask(e.ctx, task); err == nil && e.batch(t, "b").Status == jobs.BatchDone {
							return
						}
					}
				}()
				e.handler.after = func(string) {}
				// The next worker: asynq brings the task back until it ends.
				eventually(t, 30*time.Second, "batch done after the crash at "+crashedAt, func() bool {
					_ = e.handler.ProcessTask(e.ctx, task)
					return e.batch(t, "b").Status == jobs.BatchDone
				})
				b := e.batch(t, "b")
				res := e.results(t, "b")
				for line, want := range sc.want {
					if res[line].Status != want {
						t.Errorf("crash after %s: line %d is %+v, want %s", crashedAt, line, res[line], want)
					}
				}
				var ok, failed int64
				for _, r := range res {
					switch r.Status {
					case jobs.StatusSucceeded:
						ok++
					case jobs.StatusFailed:
						failed++
					}
				}
				if b.Succeeded != ok || b.Failed != failed || b.Done() != int64(len(sc.rows)) {
					t.Errorf("crash after %s: counters %d/%d/%d, ledger %d succeeded %d failed of %d", crashedAt, b.Succeeded, b.Failed, b.Done(), ok, failed, len(sc.rows))
				}
				if got := e.sim.Agents("c1"); !slices.Equal(got, sc.state) {
					t.Errorf("crash after %s: agents %v, want %v", crashedAt, got, sc.state)
				}
				if got := e.sim.Stats().ByStatus[http.StatusOK]; got < ok {
					t.Errorf("crash after %s: %d rows succeeded, the CRM answered 200 only %d times", crashedAt, ok, got)
				}
			})
		}
	}
}
