// Package bareclient is the yardstick of bulkassign's throughput
// benchmarks: the same assign calls the worker makes, sent by a plain
// net/http client from a fixed number of goroutines, with no queue, ledger
// or rate limiter in the way. `bulkassign run` is measured against it.
package bareclient

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Call is one assign call: add Member to Contact.
type Call struct {
	Contact, Member string
}

// Result is what a Run did.
type Result struct {
	// Calls is the calls answered, Errors those answered with anything but
	// 2xx or not answered at all.
	Calls, Errors int
	// Elapsed is the wall time from the first call to the last answer.
	Elapsed time.Duration
}

// RowsPerSecond is Calls over Elapsed.
func (r Result) RowsPerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Calls) / r.Elapsed.Seconds()
}

// Run makes every call once against baseURL from concurrency goroutines,
// on the worker's path
// (/api/public/contact/{c}/assign-team-member/{m}?removeExistingAgents=false)
// with an x-api-key header, through a Transport that keeps concurrency
// connections open. It stops early only when ctx ends.
func Run(ctx context.Context, baseURL string, calls []Call, concurrency int) (Result, error) {
	if concurrency < 1 {
		return Result{}, fmt.Errorf("concurrency %d: want at least 1", concurrency)
	}
	base := strings.TrimRight(baseURL, "/")
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = concurrency
	tr.MaxIdleConnsPerHost = concurrency
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	defer tr.CloseIdleConnections()

	var (
		next   atomic.Int64
		done   atomic.Int64
		failed atomic.Int64
		wg     sync.WaitGroup
	)
	start := time.Now()
	for range concurrency {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= len(calls) {
					return
				}
				if !assign(ctx, client, base, calls[i]) {
					failed.Add(1)
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	res := Result{Calls: int(done.Load()), Errors: int(failed.Load()), Elapsed: time.Since(start)}
	return res, context.Cause(ctx)
}

// assign makes one call and says whether it was answered with 2xx.
func assign(ctx context.Context, client *http.Client, base string, c Call) bool {
	u := base + "/api/public/contact/" + url.PathEscape(c.Contact) +
		"/assign-team-member/" + url.PathEscape(c.Member) + "?removeExistingAgents=false"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return false
	}
	req.Header.Set("x-api-key", "x")
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return err == nil && resp.StatusCode/100 == 2
}

// ReadCSV reads calls from a CSV file whose first two columns are the
// contact and the member id, under a header row.
func ReadCSV(r io.Reader) ([]Call, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	var calls []Call
	for line := 1; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return calls, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read calls: %w", err)
		}
		if line == 1 {
			continue
		}
		if len(rec) < 2 {
			return nil, fmt.Errorf("read calls: line %d: want contact,member", line)
		}
		calls = append(calls, Call{
			Contact: strings.ToLower(strings.TrimSpace(rec[0])),
			Member:  strings.ToLower(strings.TrimSpace(rec[1])),
		})
	}
}
