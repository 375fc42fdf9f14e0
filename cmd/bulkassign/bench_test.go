package main

// End-to-end throughput: `bulkassign run` in-process against the simulator,
// next to a bare concurrent HTTP client making the same calls. These are
// benchmarks only (they run with -bench, never in a plain `go test`), and
// they assert nothing about time: scripts/bench and docs/bench.md turn the
// figures into the targets' evidence.
//
//	go test ./cmd/bulkassign -run '^$' -bench 'BenchmarkRun|BenchmarkBareClient' -benchtime 3x

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulkassign/bulkassign/internal/bareclient"
	"github.com/bulkassign/bulkassign/internal/redistest"
	"github.com/bulkassign/bulkassign/simulator"
)

const (
	// benchRows is the rows (one distinct contact each) of one op.
	benchRows = 10_000
	// benchConcurrency is --concurrency of run and the bare client's goroutines.
	benchConcurrency = 64
)

var benchLatencies = []time.Duration{0, 20 * time.Millisecond}

// BenchmarkRun measures `bulkassign run` end to end (import, workers,
// report) with --rate 0 and --concurrency 64, on the embedded queue and on
// real Redis. rows/s is over the whole command; applied-rows/s is the
// report's rows / durationSeconds (from the batch's start to its last row).
func BenchmarkRun(b *testing.B) {
	for _, lat := range benchLatencies {
		for _, queue := range []string{"embedded", "redis"} {
			b.Run(fmt.Sprintf("latency=%s/queue=%s", lat, queue), func(b *testing.B) {
				apiURL := benchSim(b, lat)
				file, _ := benchFile(b, benchRows)
				args := []string{"run", "--api-url", apiURL, "--api-key", "x",
					"--concurrency", fmt.Sprint(benchConcurrency), "--rate", "0", "--progress-every", "1h"}
				if queue == "redis" {
					url := redistest.URL(b)
					// --again: each op runs the same file into the same Redis.
					args = append(args, "--redis", url, "--namespace", redistest.Namespace(b, url), "--again")
				}
				var applied time.Duration
				ops := 0
				for b.Loop() {
					out := filepath.Join(b.TempDir(), "reports")
					err := run(b.Context(), append(args, "--out", out, file), strings.NewReader(""), io.Discard, io.Discard)
					if err != nil {
						b.Fatalf("run: %v", err)
					}
					applied += benchApplied(b, out)
					ops++
				}
				b.ReportMetric(float64(benchRows*ops)/b.Elapsed().Seconds(), "rows/s")
				b.ReportMetric(float64(benchRows*ops)/applied.Seconds(), "applied-rows/s")
			})
		}
	}
}

// BenchmarkBareClient makes the same calls as BenchmarkRun with a plain
// net/http client from 64 goroutines: the ceiling run is compared with.
func BenchmarkBareClient(b *testing.B) {
	for _, lat := range benchLatencies {
		b.Run(fmt.Sprintf("latency=%s", lat), func(b *testing.B) {
			apiURL := benchSim(b, lat)
			_, calls := benchFile(b, benchRows)
			ops := 0
			for b.Loop() {
				res, err := bareclient.Run(b.Context(), apiURL, calls, benchConcurrency)
				if err != nil || res.Errors > 0 {
					b.Fatalf("bare client: %d errors, %v", res.Errors, err)
				}
				ops++
			}
			b.ReportMetric(float64(benchRows*ops)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

// benchSim serves an open simulator with the given latency until b ends.
func benchSim(b *testing.B, latency time.Duration) string {
	b.Helper()
	url, stop, err := simulator.Start(context.Background(), "127.0.0.1:0", simulator.New(simulator.Options{Latency: latency}))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = stop(ctx)
	})
	return url
}

// benchFile writes a CSV of n rows, one distinct contact each, and returns
// it with the same calls for the bare client.
func benchFile(b *testing.B, n int) (string, []bareclient.Call) {
	b.Helper()
	path := filepath.Join(b.TempDir(), "bench.csv")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "aiContactId,teamMemberId,removeExistingAgents")
	calls := make([]bareclient.Call, n)
	for i := range n {
		calls[i] = bareclient.Call{Contact: simulator.ContactID(i + 1), Member: simulator.MemberID(i%50 + 1)}
		fmt.Fprintf(w, "%s,%s,false\n", calls[i].Contact, calls[i].Member)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return path, calls
}

// benchApplied reads durationSeconds from the one summary.json under out.
func benchApplied(b *testing.B, out string) time.Duration {
	b.Helper()
	m, err := filepath.Glob(filepath.Join(out, "*", "summary.json"))
	if err != nil || len(m) != 1 {
		b.Fatalf("summary.json under %s: %v %v", out, m, err)
	}
	data, err := os.ReadFile(m[0])
	if err != nil {
		b.Fatal(err)
	}
	var s struct {
		Rows            int     `json:"rows"`
		Succeeded       int     `json:"succeeded"`
		DurationSeconds float64 `json:"durationSeconds"`
	}
	if err := json.Unmarshal(data, &s); err != nil {
		b.Fatal(err)
	}
	if s.Rows != benchRows || s.Succeeded != benchRows {
		b.Fatalf("summary: %d rows, %d succeeded; want %d", s.Rows, s.Succeeded, benchRows)
	}
	return time.Duration(s.DurationSeconds * float64(time.Second))
}
