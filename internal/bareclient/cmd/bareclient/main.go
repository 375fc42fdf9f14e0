// Command bareclient makes the assign calls of a CSV file (contact,member
// under a header) with a plain concurrent HTTP client and prints one JSON
// line: calls, errors, seconds, rowsPerSecond. scripts/bench runs it as
// the baseline of `bulkassign run`.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/bulkassign/bulkassign/internal/bareclient"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bareclient:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bareclient", flag.ContinueOnError)
	apiURL := fs.String("api-url", "http://127.0.0.1:8080", "base URL of the CRM (simulator)")
	conc := fs.Int("concurrency", 64, "goroutines making calls")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("usage: bareclient [-api-url URL] [-concurrency N] FILE.csv")
	}
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		return err
	}
	calls, err := bareclient.ReadCSV(f)
	f.Close()
	if err != nil {
		return err
	}
	res, err := bareclient.Run(ctx, *apiURL, calls, *conc)
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]any{
		"calls": res.Calls, "errors": res.Errors,
		"seconds": res.Elapsed.Seconds(), "rowsPerSecond": res.RowsPerSecond(),
	})
}
