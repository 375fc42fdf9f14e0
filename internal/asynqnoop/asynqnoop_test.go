package asynqnoop_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/bulkassign/bulkassign/internal/asynqnoop"
	"github.com/bulkassign/bulkassign/internal/redistest"
	"github.com/hibiken/asynq"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

// TestRun: every task enqueued is processed, both paces are reported, and
// the queue is gone afterwards.
func TestRun(t *testing.T) {
	url := redistest.URL(t)
	queue := redistest.Namespace(t, url)
	opt, err := asynq.ParseRedisURI(url)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := asynqnoop.Run(ctx, opt, queue, 300, 8)
	if err != nil {
		t.Fatal(err)
	}
	if res.Tasks != 300 || res.EnqueuePerSecond() <= 0 || res.ProcessPerSecond() <= 0 {
		t.Errorf("result %+v: want 300 tasks and both paces", res)
	}
	insp := asynq.NewInspector(opt)
	defer insp.Close()
	if _, err := insp.GetQueueInfo(queue); err == nil {
		t.Errorf("queue %s still exists after the run", queue)
	}
}
