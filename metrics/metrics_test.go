package metrics_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/metrics"
	"github.com/bulkassign/bulkassign/simulator"
	"github.com/bulkassign/bulkassign/worker"
	"github.com/hibiken/asynq"
)

// scrape returns what m's handler serves.
func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", rec.Code, rec.Body)
	}
	return rec.Body.String()
}

// wantLines fails unless every line of want is a line of the scrape.
func wantLines(t *testing.T, got string, want ...string) {
	t.Helper()
	lines := strings.Split(got, "\n")
	for _, w := range want {
		found := false
		for _, l := range lines {
			found = found || l == w
		}
		if !found {
			t.Errorf("/metrics lacks the line %s", w)
		}
	}
}

// client returns a real API client of the CRM at url.
func client(t *testing.T, url, key string) *worker.Client {
	t.Helper()
	c, err := worker.NewClient(worker.ClientOptions{BaseURL: url, APIKey: key, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// sim serves a simulator until the test ends and returns its URL.
func sim(t *testing.T, opts simulator.Options) string {
	t.Helper()
	s := httptest.NewServer(simulator.New(opts))
	t.Cleanup(s.Close)
	return s.URL
}

func TestObserveCountsCallsByOutcomeAndStatus(t *testing.T) {
	t.Parallel()
	m := metrics.New()
	ctx := t.Context()
	call := func(c *worker.Client, contact string) {
		start := time.Now()
		m.Observe(c.Assign(ctx, contact, "m-1", false), time.Since(start))
	}
	crm := sim(t, simulator.Options{APIKey: "k", Contacts: []string{"c-1"}})
	call(client(t, crm, "k"), "c-1") // 200
	call(client(t, crm, "k"), "c-2") // 404: unknown contact
	wrong := client(t, crm, "nope")
	call(wrong, "c-1") // 401
	call(wrong, "c-1") // not sent, the key being refused: no call
	slow := sim(t, simulator.Options{Rate: 0.001, Burst: 1})
	call(client(t, slow, "k"), "c-1") // 200
	call(client(t, slow, "k"), "c-1") // 429
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	call(client(t, gone.URL, "k"), "c-1") // no answer

	wantLines(t, scrape(t, m.Handler()),
		`bulkassign_api_calls_total{outcome="ok",status="200"} 2`,
		`bulkassign_api_calls_total{outcome="permanent",status="404"} 1`,
		`bulkassign_api_calls_total{outcome="unauthorized",status="401"} 1`,
		`bulkassign_api_calls_total{outcome="rate_limited",status="429"} 1`,
		`bulkassign_api_calls_total{outcome="transient",status="none"} 1`,
		`bulkassign_api_call_duration_seconds_count 6`,
		`bulkassign_rate_limit_waits_total 1`,
	)
}

func TestSettledCountsRowsByResult(t *testing.T) {
	t.Parallel()
	m := metrics.New()
	wantLines(t, scrape(t, m.Handler()),
		`bulkassign_rows_total{result="succeeded"} 0`,
		`bulkassign_rows_total{result="failed"} 0`,
		`bulkassign_rows_total{result="dead_lettered"} 0`,
	)
	m.Settled(jobs.Result{Status: jobs.StatusSucceeded}, false)
	m.Settled(jobs.Result{Status: jobs.StatusSucceeded}, false)
	m.Settled(jobs.Result{Status: jobs.StatusFailed, HTTPStatus: 404}, false)
	m.Settled(jobs.Result{Status: jobs.StatusFailed, Reason: "timeout"}, true)
	wantLines(t, scrape(t, m.Handler()),
		`bulkassign_rows_total{result="succeeded"} 2`,
		`bulkassign_rows_total{result="failed"} 1`,
		`bulkassign_rows_total{result="dead_lettered"} 1`,
	)
}

// sleepy is a limiter whose every slot takes wait to come.
type sleepy struct{ wait time.Duration }

func (s sleepy) Wait(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	time.Sleep(s.wait)
	return nil
}

func (sleepy) Slow(context.Context) {}

func TestLimiterTimesWaitsForASlot(t *testing.T) {
	t.Parallel()
	m := metrics.New()
	l := m.Limiter(sleepy{20 * time.Millisecond})
	for range 2 {
		if err := l.Wait(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	if err := l.Wait(cancelled); err == nil {
		t.Fatal("a wait with a cancelled context got a slot")
	}
	got := scrape(t, m.Handler())
	wantLines(t, got, `bulkassign_rate_slot_wait_seconds_count 2`) // the failed wait is not counted
	const sum = "bulkassign_rate_slot_wait_seconds_sum "
	i := strings.Index(got, sum)
	if i < 0 {
		t.Fatalf("/metrics lacks %s", sum)
	}
	line, _, _ := strings.Cut(got[i+len(sum):], "\n")
	if v, err := strconv.ParseFloat(line, 64); err != nil || v < 0.04 {
		t.Errorf("waited %s s in all, want at least 0.04", line)
	}
}

func TestInFlightCountsRunningTasks(t *testing.T) {
	t.Parallel()
	m := metrics.New()
	running, release := make(chan struct{}), make(chan struct{})
	fail := errors.New("task failed")
	h := m.InFlight(asynq.HandlerFunc(func(context.Context, *asynq.Task) error {
		close(running)
		<-release
		return fail
	}))
	done := make(chan error, 1)
	go func() { done <- h.ProcessTask(t.Context(), asynq.NewTask(jobs.TypeAssign, nil)) }()
	<-running
	wantLines(t, scrape(t, m.Handler()),
		`bulkassign_tasks_in_flight{type="`+jobs.TypeAssign+`"} 1`,
		`bulkassign_tasks_in_flight{type="`+jobs.TypePlan+`"} 0`,
	)
	close(release)
	if err := <-done; !errors.Is(err, fail) {
		t.Errorf("the task's error came back as %v", err)
	}
	wantLines(t, scrape(t, m.Handler()), `bulkassign_tasks_in_flight{type="`+jobs.TypeAssign+`"} 0`)
}
