package importer

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/bulkassign/bulkassign/internal/redistest"
	"github.com/bulkassign/bulkassign/jobs"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// TestQueuedRowCost: a queued row of a migration's shape (one row per
// contact, UUIDs, one extra column) costs at most 300 bytes of Redis, its
// task's share included, so that 10M rows fit in 3 GB. It sums MEMORY
// USAGE of every key the import wrote (not used_memory, which other tests
// on the same Redis move), and the rows read back whole.
func TestQueuedRowCost(t *testing.T) {
	t.Parallel()
	const rows = 20_000
	rdb, store, client, ns := testLedger(t)
	var buf bytes.Buffer
	buf.WriteString("aiContactId,teamMemberId,region\n")
	for i := range rows {
		fmt.Fprintf(&buf, "%08x-17d6-42e7-8d12-6ea013130df7,00000000-0000-0000-0000-%012d,north\n", i, i%50+1)
	}
	sum, err := New(store, client, ns).Import(context.Background(), &buf, Options{File: "migration.csv"})
	if err != nil {
		t.Fatal(err)
	}
	var bytes int64
	for _, pattern := range []string{ns + ":batch:{" + sum.BatchID + "}*", "asynq:{" + ns + "}:*"} {
		iter := rdb.Scan(t.Context(), 0, pattern, 1000).Iterator()
		for iter.Next(t.Context()) {
			n, err := rdb.MemoryUsage(t.Context(), iter.Val(), 0).Result()
			if err != nil {
				t.Fatal(err)
			}
			bytes += n
		}
		if err := iter.Err(); err != nil {
			t.Fatal(err)
		}
	}
	if per := bytes / rows; per > 300 {
		t.Errorf("a queued row costs %d bytes of Redis, want at most 300", per)
	} else {
		t.Logf("a queued row costs %d bytes of Redis", per)
	}
	n := 0
	for e, err := range store.Entries(t.Context(), sum.BatchID) {
		if err != nil {
			t.Fatal(err)
		}
		if n++; e.Row.Line != n+1 || len(e.Row.Extra) != 1 || !strings.HasPrefix(e.Row.ContactID, fmt.Sprintf("%08x-", n-1)) {
			t.Fatalf("row %d read back as %+v", n, e.Row)
		}
	}
	if n != rows {
		t.Errorf("%d rows read back, want %d", n, rows)
	}
}

// testLedger returns a Redis client, a store and an asynq client on the
// test Redis, in a namespace of the test's own.
func testLedger(t *testing.T) (*redis.Client, *jobs.Store, *asynq.Client, string) {
	t.Helper()
	url := redistest.URL(t)
	ns := redistest.Namespace(t, url)
	ropt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(ropt)
	t.Cleanup(func() { rdb.Close() })
	aopt, err := asynq.ParseRedisURI(url)
	if err != nil {
		t.Fatal(err)
	}
	client := asynq.NewClient(aopt)
	t.Cleanup(func() { client.Close() })
	return rdb, jobs.NewStore(rdb, jobs.StoreOptions{Namespace: ns}), client, ns
}
