package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Origin says who started a batch and how, and the settings its calls are
// made with. It never holds a secret: no key, no token, no password.
type Origin struct {
	// Via is how the batch was started: "run", "import", "plan --apply",
	// "schedule" or "serve".
	Via string `json:"via"`
	// By is who: user@host of the command's process for the CLI, the
	// schedule's name, the name of serve's token.
	By string `json:"by"`
	// Client is the address of serve's client.
	Client string `json:"client,omitempty"`
	// Settings are those of the process that started the batch and
	// applies it (run, serve with workers); nil when other processes
	// (workers) apply it with their own.
	Settings *Settings `json:"settings,omitempty"`
}

// Settings are the worker settings a batch's calls are made with.
type Settings struct {
	// Rate is calls per second across all workers; 0 is unlimited.
	Rate        float64 `json:"rate"`
	Burst       int     `json:"burst"`
	Concurrency int     `json:"concurrency"`
	MaxAttempts int     `json:"maxAttempts"`
}

// IsZero reports whether the origin is unknown (a batch from before
// origins were recorded).
func (o Origin) IsZero() bool { return o == Origin{} }

// String is the origin for people: "alice@laptop (run; rate 20/s,
// concurrency 16, 5 attempts)"; "" when unknown.
func (o Origin) String() string {
	if o.IsZero() {
		return ""
	}
	var how []string
	if o.Via != "" {
		how = append(how, o.Via)
	}
	if o.Client != "" {
		how = append(how, "from "+o.Client)
	}
	if st := o.Settings; st != nil {
		rate := "no rate limit"
		if st.Rate > 0 {
			rate = "rate " + strconv.FormatFloat(st.Rate, 'f', -1, 64) + "/s"
		}
		how = append(how, fmt.Sprintf("%s, concurrency %d, %d attempts", rate, st.Concurrency, st.MaxAttempts))
	}
	if len(how) == 0 {
		return o.By
	}
	return strings.TrimSpace(o.By + " (" + strings.Join(how, "; ") + ")")
}

// originField is the batch record's field holding its Origin as JSON.
const originField = "origin"

// SetOrigin records who started a batch and how. Whoever creates a batch
// calls it right after: it never changes afterwards.
func (s *Store) SetOrigin(ctx context.Context, id string, o Origin) error {
	b, err := json.Marshal(o)
	if err != nil {
		return fmt.Errorf("batch %s: encode its origin: %w", id, err)
	}
	n, err := setFlagScript.Run(ctx, s.rdb, s.keys(id), originField, b).Int()
	if err != nil {
		return fmt.Errorf("batch %s: record its origin: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("batch %s: record its origin: %w", id, ErrNotFound)
	}
	return nil
}

// originOf reads the Origin of a batch record's fields; a record without
// one (or with one it cannot read) has the zero Origin.
func originOf(m map[string]string) Origin {
	var o Origin
	if v := m[originField]; v != "" {
		_ = json.Unmarshal([]byte(v), &o)
	}
	return o
}
