package jobs

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Batch statuses as the batch record keeps them.
const (
	// BatchImporting: rows are being written and tasks queued; workers wait.
	BatchImporting = "importing"
	// BatchRunning: every task is queued; workers apply rows.
	BatchRunning = "running"
	// BatchPaused: workers hold the batch's tasks until it is resumed.
	BatchPaused = "paused"
	// BatchDone: every row has its final status.
	BatchDone = "done"
	// BatchCancelled: an operator stopped the batch; rows not yet sent
	// never will be.
	BatchCancelled = "cancelled"
)

// Finished reports whether a batch status is final.
func Finished(status string) bool { return status == BatchDone || status == BatchCancelled }

// ErrNotFound is returned for a batch id that has no record.
var ErrNotFound = errors.New("batch not found")

// Batch is the batch record: what was imported and how far it got.
type Batch struct {
	ID          string
	Name        string
	Source      string
	Status      string
	PauseCode   string
	PauseReason string
	Rows        int64
	Succeeded   int64
	Failed      int64
	Invalid     int64
	APICalls    int64
	Retries     int64
	RateLimited int64
	Contacts    int64
	// RecordPrevious: the batch keeps each contact's earlier agents, and
	// its report has a rollback file.
	RecordPrevious bool
	Extras         []string
	CreatedAt      time.Time
	StartedAt      time.Time
	FinishedAt     time.Time
	Errors         map[string]int64
}

// Done is the number of rows with a final status.
func (b Batch) Done() int64 { return b.Succeeded + b.Failed + b.Invalid }

// Percent is how much of the batch is done, 0 to 100.
func (b Batch) Percent() float64 {
	if b.Rows <= 0 {
		return 0
	}
	return 100 * float64(b.Done()) / float64(b.Rows)
}

// RowsPerSecond is the batch's average pace of rows sent since it
// started (invalid rows, never sent, do not count), up to now or its end.
func (b Batch) RowsPerSecond(now time.Time) float64 {
	end := b.FinishedAt
	if end.IsZero() {
		end = now
	}
	if b.StartedAt.IsZero() || !end.After(b.StartedAt) {
		return 0
	}
	return float64(b.Done()-b.Invalid) / end.Sub(b.StartedAt).Seconds()
}

// Stats are counter increments that travel with a ledger update.
type Stats struct {
	Calls       int64
	Retries     int64
	RateLimited int64
}

// Store keeps batch records and row ledgers in Redis, every key under one
// namespace prefix.
type Store struct {
	rdb       redis.UniversalClient
	ns        string
	now       func() time.Time
	retention int64 // seconds
}

// StoreOptions configures a Store; the zero value means defaults.
type StoreOptions struct {
	// Namespace prefixes every key; default "bulkassign".
	Namespace string
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Retention is how long the keys of a batch this store creates are kept
	// once it is finished; default 7 days, negative keeps them forever.
	Retention time.Duration
}

// DefaultRetention is how long a finished batch is kept in Redis.
const DefaultRetention = 7 * 24 * time.Hour

// NewStore returns a Store on rdb.
func NewStore(rdb redis.UniversalClient, opts StoreOptions) *Store {
	if opts.Namespace == "" {
		opts.Namespace = "bulkassign"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Retention == 0 {
		opts.Retention = DefaultRetention
	}
	return &Store{rdb: rdb, ns: opts.Namespace, now: opts.Now, retention: max(int64(opts.Retention/time.Second), 0)}
}

func (s *Store) batchesKey() string           { return s.ns + ":batches" }
func (s *Store) metaKey(id string) string     { return s.ns + ":batch:" + id }
func (s *Store) rowsKey(id string) string     { return s.ns + ":batch:" + id + ":rows" }
func (s *Store) resultsKey(id string) string  { return s.ns + ":batch:" + id + ":results" }
func (s *Store) errorsKey(id string) string   { return s.ns + ":batch:" + id + ":errors" }
func (s *Store) attemptsKey(id string) string { return s.ns + ":batch:" + id + ":attempts" }
func (s *Store) deadKey(id string) string     { return s.ns + ":batch:" + id + ":dead" }

// keys are all of a batch's keys, the meta key first.
func (s *Store) keys(id string) []string {
	return []string{s.metaKey(id), s.resultsKey(id), s.errorsKey(id), s.attemptsKey(id), s.rowsKey(id), s.deadKey(id), s.previousKey(id)}
}

// Create writes a new batch record in status importing.
func (s *Store) Create(ctx context.Context, id, name, source string) error {
	now := s.now()
	ok, err := s.rdb.HSetNX(ctx, s.metaKey(id), "id", id).Result()
	if err != nil {
		return fmt.Errorf("create batch %s: %w", id, err)
	}
	if !ok {
		return fmt.Errorf("create batch %s: id already in use", id)
	}
	pipe := s.rdb.TxPipeline()
	pipe.HSet(ctx, s.metaKey(id), "name", name, "source", source, "status", BatchImporting,
		"createdAt", now.UnixMilli(), "retention", s.retention, "rows", 0, "succeeded", 0, "failed", 0, "invalid", 0)
	pipe.ZAdd(ctx, s.batchesKey(), redis.Z{Score: float64(now.UnixMilli()), Member: id})
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("create batch %s: %w", id, err)
	}
	return nil
}

// AddRows stores rows of a batch being imported; invalid rows get their
// final result at once.
func (s *Store) AddRows(ctx context.Context, id string, rows []Row) error {
	if len(rows) == 0 {
		return nil
	}
	fields := make([]any, 0, 2*len(rows))
	for _, r := range rows {
		b, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("encode row %d: %w", r.Line, err)
		}
		fields = append(fields, r.Line, b)
	}
	// Scripts cannot fall back from EVALSHA to EVAL inside a pipeline:
	// load the script first.
	if err := recordScript.Load(ctx, s.rdb).Err(); err != nil {
		return fmt.Errorf("store rows of batch %s: %w", id, err)
	}
	pipe := s.rdb.Pipeline()
	pipe.HSet(ctx, s.rowsKey(id), fields...)
	for _, r := range rows {
		if r.Valid() {
			continue
		}
		res := Result{Status: StatusInvalid, Reason: r.Reason, Error: r.Error}
		keys, args := s.recordArgs(id, []int{r.Line}, res, Stats{})
		recordScript.EvalSha(ctx, pipe, keys, args...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("store rows of batch %s: %w", id, err)
	}
	return nil
}

// Start ends the import: it records the row and contact counts and the
// extra column names, and sets the batch running. A batch whose rows are all
// invalid is done at once.
func (s *Store) Start(ctx context.Context, id string, rows, contacts int, extras []string) error {
	ex, err := json.Marshal(extras)
	if err != nil {
		return fmt.Errorf("encode extras: %w", err)
	}
	err = startScript.Run(ctx, s.rdb, s.keys(id),
		rows, contacts, ex, s.now().UnixMilli()).Err()
	if err != nil {
		return fmt.Errorf("start batch %s: %w", id, err)
	}
	return nil
}

// Delete removes every key of a batch.
func (s *Store) Delete(ctx context.Context, id string) error {
	pipe := s.rdb.TxPipeline()
	pipe.Unlink(ctx, s.keys(id)...)
	pipe.ZRem(ctx, s.batchesKey(), id)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("delete batch %s: %w", id, err)
	}
	return nil
}

// PauseUnauthorized is the pause code of a batch stopped because the CRM
// refused the API key.
const PauseUnauthorized = "unauthorized"

// SetStatus moves a batch that is not finished to status; a pause has a code
// callers branch on and a reason operators read. A batch that is done stays
// done.
func (s *Store) SetStatus(ctx context.Context, id, status, code, reason string) error {
	err := statusScript.Run(ctx, s.rdb, s.keys(id), status, code, reason, s.now().UnixMilli()).Err()
	if err != nil {
		return fmt.Errorf("set batch %s %s: %w", id, status, err)
	}
	return nil
}

// Status returns the batch's status and pause reason; ErrNotFound when the
// batch is gone.
func (s *Store) Status(ctx context.Context, id string) (status, reason string, err error) {
	v, err := s.rdb.HMGet(ctx, s.metaKey(id), "status", "pauseReason").Result()
	if err != nil {
		return "", "", fmt.Errorf("read batch %s: %w", id, err)
	}
	if v[0] == nil {
		return "", "", fmt.Errorf("batch %s: %w", id, ErrNotFound)
	}
	status, _ = v[0].(string)
	reason, _ = v[1].(string)
	return status, reason, nil
}

// Progress is what a worker needs to resume a contact's task: the batch's
// status, the results already recorded and the attempts already spent, by
// line.
type Progress struct {
	Status   string
	Done     map[int]bool
	Attempts map[int]int
}

// Progress reads the batch's status and the state of the given lines in
// one round trip; ErrNotFound when the batch is gone.
func (s *Store) Progress(ctx context.Context, id string, lines []int) (Progress, error) {
	fields := make([]string, len(lines))
	for i, l := range lines {
		fields[i] = strconv.Itoa(l)
	}
	pipe := s.rdb.Pipeline()
	status := pipe.HGet(ctx, s.metaKey(id), "status")
	res := pipe.HMGet(ctx, s.resultsKey(id), fields...)
	att := pipe.HMGet(ctx, s.attemptsKey(id), fields...)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return Progress{}, fmt.Errorf("read progress of batch %s: %w", id, err)
	}
	if status.Val() == "" {
		return Progress{}, fmt.Errorf("batch %s: %w", id, ErrNotFound)
	}
	p := Progress{Status: status.Val(), Done: map[int]bool{}, Attempts: map[int]int{}}
	for i, v := range res.Val() {
		if v != nil {
			p.Done[lines[i]] = true
		}
	}
	for i, v := range att.Val() {
		if str, ok := v.(string); ok {
			n, _ := strconv.Atoi(str)
			p.Attempts[lines[i]] = n
		}
	}
	return p, nil
}

// NoteAttempt records a failed call for the lines of one operation that
// will be tried again, with the counters that go with it.
func (s *Store) NoteAttempt(ctx context.Context, id string, line int, st Stats) error {
	if err := s.addStats(ctx, id, st, strconv.Itoa(line)); err != nil {
		return fmt.Errorf("note attempt in batch %s: %w", id, err)
	}
	return nil
}

// AddStats adds counters of calls that did not end a row.
func (s *Store) AddStats(ctx context.Context, id string, st Stats) error {
	if err := s.addStats(ctx, id, st, ""); err != nil {
		return fmt.Errorf("add counters to batch %s: %w", id, err)
	}
	return nil
}

// addStats adds st and, when line is not empty, an attempt of line, unless
// the batch is gone: a worker finishing a call of a deleted batch must not
// bring its record back.
func (s *Store) addStats(ctx context.Context, id string, st Stats, line string) error {
	if st == (Stats{}) && line == "" {
		return nil
	}
	return statsScript.Run(ctx, s.rdb, []string{s.metaKey(id), s.attemptsKey(id)},
		st.Calls, st.Retries, st.RateLimited, line).Err()
}

// statsLua adds counters and an attempt to a batch that exists.
// KEYS: meta, attempts; ARGV: calls, retries, rateLimited, line (or empty)
const statsLua = `
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
if ARGV[4] ~= '' then
  redis.call('HINCRBY', KEYS[2], ARGV[4], 1)
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 then
    redis.call('PEXPIRE', KEYS[2], ttl)
  end
end
local names = {'apiCalls', 'retries', 'rateLimited'}
for i = 1, 3 do
  local n = tonumber(ARGV[i])
  if n ~= 0 then
    redis.call('HINCRBY', KEYS[1], names[i], n)
  end
end
return 1
`

// Record gives lines their final result, once: a line that already has a
// result keeps it and is not counted again, so duplicate deliveries and
// retries never double-count. It reports whether this update completed the
// batch, which is true for exactly one caller.
func (s *Store) Record(ctx context.Context, id string, lines []int, res Result, st Stats) (completed bool, err error) {
	keys, args := s.recordArgs(id, lines, res, st)
	n, err := recordScript.Run(ctx, s.rdb, keys, args...).Int()
	if err != nil {
		return false, fmt.Errorf("record lines %v of batch %s: %w", lines, id, err)
	}
	return n == 1, nil
}

// recordArgs are the keys and arguments of record.lua.
func (s *Store) recordArgs(id string, lines []int, res Result, st Stats) ([]string, []any) {
	b, _ := json.Marshal(res) // a Result always encodes
	args := make([]any, 0, 7+len(lines))
	args = append(args, b, string(res.Status), res.Reason, s.now().UnixMilli(), st.Calls, st.Retries, st.RateLimited)
	for _, l := range lines {
		args = append(args, l)
	}
	return s.keys(id), args
}

// Get reads a batch record.
func (s *Store) Get(ctx context.Context, id string) (Batch, error) {
	pipe := s.rdb.Pipeline()
	meta := pipe.HGetAll(ctx, s.metaKey(id))
	errs := pipe.HGetAll(ctx, s.errorsKey(id))
	if _, err := pipe.Exec(ctx); err != nil {
		return Batch{}, fmt.Errorf("read batch %s: %w", id, err)
	}
	m := meta.Val()
	if len(m) == 0 {
		return Batch{}, fmt.Errorf("batch %s: %w", id, ErrNotFound)
	}
	b := Batch{
		ID: id, Name: m["name"], Source: m["source"], Status: m["status"], PauseCode: m["pauseCode"], PauseReason: m["pauseReason"],
		Rows: atoi(m["rows"]), Succeeded: atoi(m["succeeded"]), Failed: atoi(m["failed"]), Invalid: atoi(m["invalid"]),
		APICalls: atoi(m["apiCalls"]), Retries: atoi(m["retries"]), RateLimited: atoi(m["rateLimited"]),
		Contacts: atoi(m["contacts"]), RecordPrevious: m[recordPreviousField] == "1",
		CreatedAt: millis(m["createdAt"]), StartedAt: millis(m["startedAt"]), FinishedAt: millis(m["finishedAt"]),
		Errors: map[string]int64{},
	}
	if ex := m["extras"]; ex != "" {
		if err := json.Unmarshal([]byte(ex), &b.Extras); err != nil {
			return Batch{}, fmt.Errorf("batch %s: extras: %w", id, err)
		}
	}
	for k, v := range errs.Val() {
		if n := atoi(v); n != 0 { // a retried row leaves its old reason at 0
			b.Errors[k] = n
		}
	}
	return b, nil
}

// Reopen takes failed lines back for a retry: their results go, the
// counters move with them, and the batch runs again. It returns how many
// lines were reopened; lines that did not fail are left alone.
func (s *Store) Reopen(ctx context.Context, id string, lines []int) (int, error) {
	args := make([]any, len(lines))
	for i, l := range lines {
		args[i] = l
	}
	n, err := reopenScript.Run(ctx, s.rdb, s.keys(id), args...).Int()
	if err != nil {
		return 0, fmt.Errorf("reopen lines of batch %s: %w", id, err)
	}
	return n, nil
}

// MarkDead keeps the task of a contact whose rows were dead-lettered, so
// that it can be retried even after asynq's archive dropped it.
func (s *Store) MarkDead(ctx context.Context, p AssignPayload) error {
	b, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("encode payload for contact %s: %w", p.Contact, err)
	}
	if err := s.rdb.HSet(ctx, s.deadKey(p.Batch), p.Contact, b).Err(); err != nil {
		return fmt.Errorf("dead-letter contact %s of batch %s: %w", p.Contact, p.Batch, err)
	}
	return nil
}

// Dead returns the dead-lettered tasks of a batch, by contact.
func (s *Store) Dead(ctx context.Context, id string) ([]AssignPayload, error) {
	m, err := s.rdb.HGetAll(ctx, s.deadKey(id)).Result()
	if err != nil {
		return nil, fmt.Errorf("read dead letters of batch %s: %w", id, err)
	}
	out := make([]AssignPayload, 0, len(m))
	for _, v := range m {
		var p AssignPayload
		if err := json.Unmarshal([]byte(v), &p); err != nil {
			return nil, fmt.Errorf("batch %s: dead letter: %w", id, err)
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b AssignPayload) int { return a.Ops[0].Lines[0] - b.Ops[0].Lines[0] })
	return out, nil
}

// Undead forgets a contact's dead letter once its task is queued again.
func (s *Store) Undead(ctx context.Context, id, contact string) error {
	if err := s.rdb.HDel(ctx, s.deadKey(id), contact).Err(); err != nil {
		return fmt.Errorf("batch %s: clear dead letter of %s: %w", id, contact, err)
	}
	return nil
}

// IDs lists batch ids, newest first.
func (s *Store) IDs(ctx context.Context) ([]string, error) {
	ids, err := s.rdb.ZRevRange(ctx, s.batchesKey(), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("list batches: %w", err)
	}
	return ids, nil
}

// Entry is a row and its result; Result.Status is empty while the row has
// none yet.
type Entry struct {
	Row    Row
	Result Result
}

// Entries yields a batch's rows in line order with their results, reading
// Redis in chunks so memory does not grow with the batch.
func (s *Store) Entries(ctx context.Context, id string) iter.Seq2[Entry, error] {
	return func(yield func(Entry, error) bool) {
		lines, err := s.lines(ctx, id)
		if err != nil {
			yield(Entry{}, err)
			return
		}
		const chunk = 1000
		for start := 0; start < len(lines); start += chunk {
			entries, err := s.Lookup(ctx, id, lines[start:min(start+chunk, len(lines))])
			if err != nil {
				yield(Entry{}, err)
				return
			}
			for _, e := range entries {
				if !yield(e, nil) {
					return
				}
			}
		}
	}
}

// Lookup reads the given lines of a batch with their results; a line the
// batch does not have comes back as an Entry with only Row.Line set.
func (s *Store) Lookup(ctx context.Context, id string, lines []int) ([]Entry, error) {
	fields := make([]string, len(lines))
	for i, l := range lines {
		fields[i] = strconv.Itoa(l)
	}
	pipe := s.rdb.Pipeline()
	rows := pipe.HMGet(ctx, s.rowsKey(id), fields...)
	results := pipe.HMGet(ctx, s.resultsKey(id), fields...)
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("read rows of batch %s: %w", id, err)
	}
	out := make([]Entry, len(lines))
	for i, l := range lines {
		out[i].Row.Line = l
		if err := unmarshalField(rows.Val()[i], &out[i].Row); err != nil {
			return nil, fmt.Errorf("batch %s line %d: %w", id, l, err)
		}
		if err := unmarshalField(results.Val()[i], &out[i].Result); err != nil {
			return nil, fmt.Errorf("batch %s line %d: %w", id, l, err)
		}
	}
	return out, nil
}

// lines returns the batch's line numbers in order. Line numbers are small
// integers, so this is a few bytes a row even for a million rows.
func (s *Store) lines(ctx context.Context, id string) ([]int, error) {
	var lines []int
	iter := s.rdb.HScan(ctx, s.rowsKey(id), 0, "", 5000).Iterator()
	for i := 0; iter.Next(ctx); i++ {
		if i%2 == 1 { // HSCAN yields field, value, field, value...
			continue
		}
		l, err := strconv.Atoi(iter.Val())
		if err != nil {
			return nil, fmt.Errorf("batch %s: bad line field %q", id, iter.Val())
		}
		lines = append(lines, l)
	}
	if err := iter.Err(); err != nil {
		return nil, fmt.Errorf("scan rows of batch %s: %w", id, err)
	}
	slices.Sort(lines)
	return lines, nil
}

func unmarshalField(v any, dst any) error {
	s, ok := v.(string)
	if !ok {
		return nil
	}
	return json.Unmarshal([]byte(s), dst)
}

func atoi(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

func millis(s string) time.Time {
	n := atoi(s)
	if n == 0 {
		return time.Time{}
	}
	return time.UnixMilli(n).UTC()
}

// finishLua defines finish(), which record, start and status share.
//
//go:embed finish.lua
var finishLua string

//go:embed record.lua
var recordLua string

//go:embed start.lua
var startLua string

//go:embed status.lua
var statusLua string

//go:embed reopen.lua
var reopenLua string

var (
	reopenScript = redis.NewScript(reopenLua)
	recordScript = redis.NewScript(finishLua + recordLua)
	startScript  = redis.NewScript(finishLua + startLua)
	statusScript = redis.NewScript(finishLua + statusLua)
	statsScript  = redis.NewScript(statsLua)
)
