package worker

import (
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	hdr := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	okBody := `{"success":true,"message":"Team member assigned successfully"}`
	tests := []struct {
		name       string
		status     int
		header     http.Header
		body       string
		kind       Kind
		retryAfter time.Duration
		reason     string
	}{
		{"200", 200, nil, okBody, OK, 0, ""},
		{"200 empty body", 200, nil, "", OK, 0, ""},
		{"200 garbage body", 200, nil, "<html>ok</html>", OK, 0, ""},
		{"200 success false", 200, nil, `{"success":false,"message":"member is busy"}`, Transient, 0, "success_false"},
		{"201", 201, nil, `{}`, OK, 0, ""},
		{"204", 204, nil, ``, OK, 0, ""},
		{"400", 400, nil, `{"success":false,"message":"bad id"}`, Permanent, 0, "http_400"},
		{"404", 404, nil, `{"message":"contact not found"}`, Permanent, 0, "http_404"},
		{"409", 409, nil, ``, Permanent, 0, "http_409"},
		{"422", 422, nil, `[1,2`, Permanent, 0, "http_422"},
		{"401", 401, nil, `{"message":"bad key"}`, Unauthorized, 0, "http_401"},
		{"403", 403, nil, ``, Unauthorized, 0, "http_403"},
		{"408", 408, nil, ``, Transient, 0, "http_408"},
		{"429 seconds", 429, hdr("Retry-After", "7"), ``, RateLimited, 7 * time.Second, "http_429"},
		{"429 seconds padded", 429, hdr("Retry-After", " 3 "), ``, RateLimited, 3 * time.Second, "http_429"},
		{"429 http date", 429, hdr("Retry-After", now.Add(90*time.Second).Format(http.TimeFormat)), ``, RateLimited, 90 * time.Second, "http_429"},
		{"429 date in the past", 429, hdr("Retry-After", now.Add(-time.Hour).Format(http.TimeFormat)), ``, RateLimited, 0, "http_429"},
		{"429 none", 429, nil, `{"message":"slow down"}`, RateLimited, 0, "http_429"},
		{"429 garbage", 429, hdr("Retry-After", "soon"), ``, RateLimited, 0, "http_429"},
		{"429 negative", 429, hdr("Retry-After", "-5"), ``, RateLimited, 0, "http_429"},
		{"429 fraction", 429, hdr("Retry-After", "1.5"), ``, RateLimited, 0, "http_429"},
		// Whatever the header says, the wait is a valid, positive
		// duration, at most maxHeaderWait (the handler caps it further).
		{"429 a day", 429, hdr("Retry-After", "86400"), ``, RateLimited, maxHeaderWait, "http_429"},
		{"429 past int64 nanoseconds", 429, hdr("Retry-After", "9223372037"), ``, RateLimited, maxHeaderWait, "http_429"},
		{"429 huge", 429, hdr("Retry-After", "99999999999"), ``, RateLimited, maxHeaderWait, "http_429"},
		{"429 past uint64", 429, hdr("Retry-After", "999999999999999999999999"), ``, RateLimited, maxHeaderWait, "http_429"},
		{"429 date next year", 429, hdr("Retry-After", now.AddDate(1, 0, 0).Format(http.TimeFormat)), ``, RateLimited, maxHeaderWait, "http_429"},
		{"500", 500, nil, `{"success":false,"message":"oops"}`, Transient, 0, "http_500"},
		{"502", 502, nil, `<html>bad gateway</html>`, Transient, 0, "http_502"},
		{"503 retry after", 503, hdr("Retry-After", "12"), ``, Transient, 12 * time.Second, "http_503"},
		{"503 retry after date", 503, hdr("Retry-After", now.Add(2*time.Minute).Format(http.TimeFormat)), ``, Transient, 2 * time.Minute, "http_503"},
		{"504", 504, nil, ``, Transient, 0, "http_504"},
		{"599", 599, nil, ``, Transient, 0, "http_599"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out := Classify(tt.status, tt.header, []byte(tt.body), now)
			if out.Kind != tt.kind || out.RetryAfter != tt.retryAfter || out.Reason != tt.reason || out.HTTPStatus != tt.status {
				t.Errorf("Classify(%d) = kind %v retryAfter %v reason %q status %d; want %v %v %q %d",
					tt.status, out.Kind, out.RetryAfter, out.Reason, out.HTTPStatus, tt.kind, tt.retryAfter, tt.reason, tt.status)
			}
			if (out.Err == nil) != (tt.kind == OK) {
				t.Errorf("Err = %v for kind %v", out.Err, out.Kind)
			}
		})
	}
}

func TestClassifyMessages(t *testing.T) {
	t.Parallel()
	now := time.Now()
	tests := []struct {
		name string
		body string
		want string // substring of the error
	}{
		{"api message", `{"success":false,"message":"team member m1 not found"}`, "team member m1 not found"},
		{"empty", ``, "(empty body)"},
		{"whitespace", " \n\t ", "(empty body)"},
		{"html", "<html>\n  <b>Bad</b>\n</html>", "<html> <b>Bad</b> </html>"},
		{"invalid utf8", "bad \xff\xfe bytes", "bad bytes"},
		{"huge", strings.Repeat("x", 100000), "xxx"},
		{"json without message", `{"error":"nope"}`, `{"error":"nope"}`},
		{"binary", "\x00\x01\x02", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out := Classify(404, nil, []byte(tt.body), now)
			msg := out.Err.Error()
			if !strings.Contains(msg, tt.want) {
				t.Errorf("error %q does not contain %q", msg, tt.want)
			}
			if len(msg) > 300 {
				t.Errorf("error is %d bytes long", len(msg))
			}
			if !utf8.ValidString(msg) {
				t.Errorf("error is not valid UTF-8: %q", msg)
			}
		})
	}
}
