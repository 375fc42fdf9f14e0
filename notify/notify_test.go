package notify_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/bulkassign/bulkassign/notify"
	"github.com/bulkassign/bulkassign/report"
)

func TestSign(t *testing.T) {
	// RFC 4231-style known vector (Wikipedia's HMAC example).
	got := notify.Sign([]byte("key"), []byte("The quick brown fox jumps over the lazy dog"))
	want := "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
	if got != want {
		t.Errorf("Sign = %s, want %s", got, want)
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"https://hooks.slack.com/services/T0/B0/XXXX": "https://hooks.slack.com/…",
		"https://user:pw@example.com:8443/x?token=1":  "https://example.com:8443/…",
		"http://example.com":                          "http://example.com",
		"http://example.com/":                         "http://example.com",
		"http://example.com/?a=b":                     "http://example.com/…",
		"not a url":                                   "(a URL)",
	} {
		if got := notify.Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct {
		url, format string
		ok          bool
	}{
		{"https://example.com/hook", "", true},
		{"http://example.com/hook", "slack", true},
		{"https://example.com/hook", "xml", false},
		{"ftp://example.com/hook", "", false},
		{"example.com/hook", "", false},
		{"https:///secret-path", "", false},
	} {
		tg, err := notify.ParseTarget(tc.url, tc.format)
		if (err == nil) != tc.ok {
			t.Errorf("ParseTarget(%q, %q): %v, want ok %v", tc.url, tc.format, err, tc.ok)
		}
		if err != nil && strings.Contains(err.Error(), "secret-path") {
			t.Errorf("ParseTarget(%q): the error shows the URL's path: %v", tc.url, err)
		}
		if err == nil && tg.Format == "" {
			t.Errorf("ParseTarget(%q, %q): no format", tc.url, tc.format)
		}
	}
}

func TestSkipBody(t *testing.T) {
	s := notify.Skip{Schedule: "nightly", Tick: time.Date(2030, 1, 2, 2, 0, 0, 0, time.UTC), Code: "previous-paused",
		Reason: "the previous run, batch b-1, is paused (3/8 rows done): `bulkassign resume b-1` or cancel it; no tick runs until then"}
	sum := report.Summary{BatchID: "b-1", Status: "paused", Rows: 8}
	b, err := notify.SkipBody(notify.FormatJSON, s, sum)
	if err != nil {
		t.Fatal(err)
	}
	var got notify.SkipNotice
	if err := json.Unmarshal(b, &got); err != nil || got.Event != notify.EventSkipped || got.Schedule != "nightly" ||
		!got.Tick.Equal(s.Tick) || got.Code != s.Code || got.Reason != s.Reason || got.Batch.BatchID != "b-1" || got.Batch.Rows != 8 {
		t.Errorf("json body %s (%v), want the skip and the batch's summary", b, err)
	}
	s.Schedule = "a<b>&c"
	b, err = notify.SkipBody(notify.FormatSlack, s, sum)
	if err != nil {
		t.Fatal(err)
	}
	var msg map[string]string
	if err := json.Unmarshal(b, &msg); err != nil ||
		msg["text"] != "bulkassign schedule a&lt;b&gt;&amp;c: the tick of 2030-01-02T02:00:00Z queued nothing: "+s.Reason {
		t.Errorf("slack body %s (%v)", b, err)
	}
}
