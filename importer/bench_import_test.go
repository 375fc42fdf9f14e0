package importer_test

// Import throughput: decode, validate, plan and queue a file into real
// Redis (asynq tasks plus the batch ledger). A benchmark only: it runs with
//
//	go test ./importer -run '^$' -bench BenchmarkImport -benchmem

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/bulkassign/bulkassign/importer"
	"github.com/bulkassign/bulkassign/internal/redistest"
	"github.com/bulkassign/bulkassign/jobs"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// benchImportRows is the rows (one distinct contact each) of one op.
const benchImportRows = 10_000

// BenchmarkImport imports a 10,000-row CSV: "dry-run" decodes, validates
// and plans only; "redis" also writes the ledger and queues one asynq task
// per contact on a throwaway redis-server.
func BenchmarkImport(b *testing.B) {
	data := benchCSV(benchImportRows)
	b.Run("dry-run", func(b *testing.B) {
		im := importer.New(nil, nil, "")
		benchImport(b, im, data, true)
	})
	b.Run("redis", func(b *testing.B) {
		url := redistest.URL(b)
		ns := redistest.Namespace(b, url)
		ropt, err := redis.ParseURL(url)
		if err != nil {
			b.Fatal(err)
		}
		rdb := redis.NewClient(ropt)
		b.Cleanup(func() { rdb.Close() })
		aopt, err := asynq.ParseRedisURI(url)
		if err != nil {
			b.Fatal(err)
		}
		client := asynq.NewClient(aopt)
		b.Cleanup(func() { client.Close() })
		im := importer.New(jobs.NewStore(rdb, jobs.StoreOptions{Namespace: ns}), client, ns)
		benchImport(b, im, data, false)
	})
}

func benchImport(b *testing.B, im *importer.Importer, data []byte, dry bool) {
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	ops := 0
	for b.Loop() {
		sum, err := im.Import(context.Background(), bytes.NewReader(data), importer.Options{File: "bench.csv", DryRun: dry})
		if err != nil {
			b.Fatal(err)
		}
		if sum.Valid != benchImportRows || sum.Calls != benchImportRows {
			b.Fatalf("imported %d valid rows, %d calls; want %d", sum.Valid, sum.Calls, benchImportRows)
		}
		ops++
	}
	b.ReportMetric(float64(benchImportRows*ops)/b.Elapsed().Seconds(), "rows/s")
}

// benchCSV returns a CSV of n rows with n distinct contacts and 50 members.
func benchCSV(n int) []byte {
	var buf bytes.Buffer
	buf.WriteString("aiContactId,teamMemberId,removeExistingAgents\n")
	for i := range n {
		fmt.Fprintf(&buf, "c0000000-0000-8000-8000-%012d,a0000000-0000-8000-8000-%012d,false\n", i+1, i%50+1)
	}
	return buf.Bytes()
}
