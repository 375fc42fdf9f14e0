package worker

import (
	"os"
	"testing"
	"time"

	"github.com/bulkassign/bulkassign/internal/redistest"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

// eventually fails the test unless cond becomes true within timeout. It
// polls; cond must be cheap and safe to call many times.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", timeout, what)
		}
		<-tick.C
	}
}
