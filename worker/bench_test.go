package worker

// Benchmarks of the call path's CPU work: classifying an answer. Run with
//
//	go test ./worker -run '^$' -bench BenchmarkClassify -benchmem

import (
	"net/http"
	"testing"
	"time"
)

// BenchmarkClassify classifies the answers a worker sees most: a success,
// a permanent 404 with the API's message, a 429 whose Retry-After is an
// HTTP date and one in seconds, and a 503 with an HTML body.
func BenchmarkClassify(b *testing.B) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name   string
		status int
		header http.Header
		body   []byte
		want   Kind
	}{
		{"200", 200, http.Header{}, []byte(`{"success":true,"message":"Team member assigned successfully"}`), OK},
		{"404", 404, http.Header{}, []byte(`{"success":false,"message":"Contact not found"}`), Permanent},
		{"429-date", 429, http.Header{"Retry-After": {now.Add(7 * time.Second).Format(http.TimeFormat)}}, []byte(`{"message":"Too Many Requests"}`), RateLimited},
		{"429-seconds", 429, http.Header{"Retry-After": {"3"}}, nil, RateLimited},
		{"503-html", 503, http.Header{}, []byte("<html><body><h1>503 Service Unavailable</h1>\n<p>upstream   overloaded</p></body></html>"), Transient},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			if out := Classify(c.status, c.header, c.body, now); out.Kind != c.want {
				b.Fatalf("Classify = %+v, want kind %v", out, c.want)
			}
			b.ReportAllocs()
			for b.Loop() {
				_ = Classify(c.status, c.header, c.body, now)
			}
		})
	}
}
