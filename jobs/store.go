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
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Batch statuses as the batch record keeps them. The moves between them
// are made by the ledger's scripts, which refuse any other:
//
//	importing -> running (Start) | abandoned (the importer's lease ran out)
//	running   -> paused | cancelled | done (its last row is final)
//	paused    -> running | cancelled | done
//	done      -> running (Reopen: dead letters retried)
const (
	// BatchImporting: rows are being written; no task is queued yet.
	BatchImporting = "importing"
	// BatchRunning: workers apply rows.
	BatchRunning = "running"
	// BatchPaused: workers hold the batch's tasks until it is resumed.
	BatchPaused = "paused"
	// BatchDone: every row has its final status.
	BatchDone = "done"
	// BatchCancelled: an operator stopped the batch; rows not yet sent
	// never will be.
	BatchCancelled = "cancelled"
	// BatchAbandoned: the import died part-way; nothing of it is sent.
	BatchAbandoned = "abandoned"
)

// Finished reports whether a batch status is final.
func Finished(status string) bool {
	return status == BatchDone || status == BatchCancelled || status == BatchAbandoned
}

// ErrNotFound is returned for a batch id that has no record.
var ErrNotFound = errors.New("batch not found")

// TransitionError is a status change the batch's current status does not
// allow (pause a done batch, resume an importing one, ...).
type TransitionError struct {
	ID, From, To string
}

func (e *TransitionError) Error() string {
	switch {
	case e.From == BatchImporting:
		return fmt.Sprintf("batch %s is still importing: it cannot be %s (an import that died shows as abandoned after its lease; `bulkassign delete %s` removes it)", e.ID, e.To, e.ID)
	case Finished(e.From):
		return fmt.Sprintf("batch %s is already %s: it cannot be %s", e.ID, e.From, e.To)
	}
	return fmt.Sprintf("batch %s is %s: it cannot be %s", e.ID, e.From, e.To)
}

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

	// Origin says who started the batch and how.
	Origin Origin
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
// namespace prefix and every key of one batch under one hash tag.
type Store struct {
	rdb       redis.UniversalClient
	ns        string
	now       func() time.Time
	retention int64 // seconds
	claimTTL  time.Duration
	leaseTTL  time.Duration
	members   memberTables
}

// StoreOptions configures a Store; the zero value means defaults.
type StoreOptions struct {
	// Namespace prefixes every key; default "bulkassign".
	Namespace string
	// Now is the clock of the times a batch record shows; default
	// time.Now. Claims and leases use Redis's own clock.
	Now func() time.Time
	// Retention is how long the keys of a batch this store creates are kept
	// once it is finished; default 7 days, negative keeps them forever.
	Retention time.Duration
	// ClaimTTL is how long a worker's hold on a contact lasts unless its
	// process renews it (see Watch); past it, another worker takes the
	// contact over and the first one's writes are refused. Default 30s.
	ClaimTTL time.Duration
	// LeaseTTL is how long an import lasts unless its process renews it;
	// past it, the batch is abandoned. Default 30s.
	LeaseTTL time.Duration
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
	if opts.ClaimTTL <= 0 {
		opts.ClaimTTL = 30 * time.Second
	}
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = 30 * time.Second
	}
	return &Store{rdb: rdb, ns: opts.Namespace, now: opts.Now, retention: max(int64(opts.Retention/time.Second), 0),
		claimTTL: opts.ClaimTTL, leaseTTL: opts.LeaseTTL}
}

// LeaseTTL is how long an import's lease lasts: its process renews it
// well within that time.
func (s *Store) LeaseTTL() time.Duration { return s.leaseTTL }

// ClaimTTL is how long a worker's hold on a contact lasts: its process
// renews it well within that time.
func (s *Store) ClaimTTL() time.Duration { return s.claimTTL }

// The batch's keys. The {id} hash tag puts them all in one Redis Cluster
// slot, so every script of the ledger runs on one node.
func (s *Store) batchesKey() string          { return s.ns + ":batches" }
func (s *Store) metaKey(id string) string    { return s.ns + ":batch:{" + id + "}" }
func (s *Store) key(id, what string) string  { return s.metaKey(id) + ":" + what }
func (s *Store) rowsKey(id string) string    { return s.key(id, "rows") }
func (s *Store) resultsKey(id string) string { return s.key(id, "results") }
func (s *Store) deadKey(id string) string    { return s.key(id, "dead") }
func (s *Store) planKey(id string) string    { return s.key(id, "plan") }
func (s *Store) parkedKey(id string) string  { return s.key(id, "parked") }
func (s *Store) tasksKey(id string) string   { return s.key(id, "tasks") }

// keys are all of a batch's keys, in the order prelude.lua names them.
func (s *Store) keys(id string) []string {
	return []string{
		s.metaKey(id), s.resultsKey(id), s.key(id, "errors"), s.key(id, "attempts"), s.rowsKey(id),
		s.deadKey(id), s.previousKey(id), s.planKey(id), s.key(id, "claims"), s.parkedKey(id),
		s.membersKey(id), s.tasksKey(id),
	}
}

// Create writes a new batch record in status importing, under a lease
// that the importing process renews (RenewLease) until every task is
// queued (EndLease).
func (s *Store) Create(ctx context.Context, id, name, source string) error {
	now := s.now()
	// The index first: an entry without a record is dropped by IDs, a
	// record without an entry would be invisible.
	if err := s.rdb.ZAdd(ctx, s.batchesKey(), redis.Z{Score: float64(now.UnixMilli()), Member: id}).Err(); err != nil {
		return fmt.Errorf("create batch %s: %w", id, err)
	}
	n, err := createScript.Run(ctx, s.rdb, s.keys(id), id, name, source, now.UnixMilli(), s.retention, s.leaseTTL.Milliseconds()).Int()
	if err != nil {
		return fmt.Errorf("create batch %s: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("create batch %s: id already in use", id)
	}
	return nil
}

// RenewLease renews the lease of a batch being imported. It reports false
// when the batch is no longer the importer's: abandoned, deleted, or its
// lease ran out.
func (s *Store) RenewLease(ctx context.Context, id string) (bool, error) {
	n, err := leaseScript.Run(ctx, s.rdb, s.keys(id), s.leaseTTL.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("renew the import lease of batch %s: %w", id, err)
	}
	return n == 1, nil
}

// EndLease says that every task of a started batch is queued.
func (s *Store) EndLease(ctx context.Context, id string) error {
	n, err := leaseScript.Run(ctx, s.rdb, s.keys(id), 0).Int()
	if err != nil {
		return fmt.Errorf("end the import lease of batch %s: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("end the import of batch %s: its lease ran out before every task was queued (a worker queues the rest)", id)
	}
	return nil
}

// AddRows stores rows of a batch being imported. Rows that will never be
// sent get their final result at once: invalid rows, and rows blocked by an
// earlier invalid row of their contact.
func (s *Store) AddRows(ctx context.Context, id string, rows []Row) error {
	if len(rows) == 0 {
		return nil
	}
	// Rows go in buckets of rowBucket lines, a field of the rows hash
	// each: a field costs Redis tens of bytes besides its value.
	var (
		buckets, members []any
		text             []byte
	)
	for i, r := range rows {
		if r.Valid() && r.MemberID != "" {
			// A valid row names its member by index in the batch's
			// member table, as the plan does ('#' is in no valid id).
			name, isNew := s.intern(id, r.MemberID)
			if isNew {
				members = append(members, name, r.MemberID)
			}
			r.MemberID = "#" + name
		}
		b, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("encode row %d: %w", r.Line, err)
		}
		text = append(append(text, b...), '\n')
		if i == len(rows)-1 || rows[i+1].Line/rowBucket != r.Line/rowBucket {
			buckets = append(buckets, r.Line/rowBucket, string(text))
			text = text[:0]
		}
	}
	// Scripts cannot fall back from EVALSHA to EVAL inside a pipeline:
	// load them first.
	for _, sc := range []*redis.Script{importResultScript, appendRowsScript} {
		if err := sc.Load(ctx, s.rdb).Err(); err != nil {
			return fmt.Errorf("store rows of batch %s: %w", id, err)
		}
	}
	pipe := s.rdb.Pipeline()
	if len(members) > 0 {
		pipe.HSet(ctx, s.membersKey(id), members...)
	}
	appendRowsScript.EvalSha(ctx, pipe, s.keys(id), buckets...)
	for _, r := range rows {
		var res Result
		switch {
		case !r.Valid():
			res = Result{Status: StatusInvalid, Reason: r.Reason, Error: r.Error}
		case r.BlockedBy != 0:
			res = Result{Status: StatusFailed, Reason: ReasonBlocked,
				Error: fmt.Sprintf("not sent: line %d of the same contact is invalid; fix that row and feed failed.csv back as it is (it keeps the order)", r.BlockedBy)}
		default:
			continue
		}
		b, _ := json.Marshal(res) // a Result always encodes
		importResultScript.EvalSha(ctx, pipe, s.keys(id), b, string(res.Status), res.Reason, r.Line)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("store rows of batch %s: %w", id, err)
	}
	return nil
}

// ReasonBlocked is the reason of a row never sent because an earlier row
// of its contact did not succeed.
const ReasonBlocked = "blocked"

// Contact is one contact of a batch: its calls in file order, and the
// chunk of the batch its import queued it in.
type Contact struct {
	ID    string
	Ops   []Op
	Chunk int
}

// AddContacts stores the plan of a batch being imported: every contact
// with calls to make. Tasks name contacts; the worker reads their calls
// from here, and so can whoever queues them again (resume, dlq retry, lost
// tasks).
func (s *Store) AddContacts(ctx context.Context, id string, cs []Contact) error {
	if len(cs) == 0 {
		return nil
	}
	var members []any
	fields := make([]any, 0, 2*len(cs))
	for _, c := range cs {
		ops := slices.Clone(c.Ops)
		for i := range ops {
			name, isNew := s.intern(id, ops[i].MemberID)
			if isNew {
				members = append(members, name, ops[i].MemberID)
			}
			ops[i].MemberID = name
		}
		fields = append(fields, c.ID, strconv.Itoa(c.Chunk)+"/"+EncodeOps(ops))
	}
	pipe := s.rdb.TxPipeline() // a plan entry never without its members
	if len(members) > 0 {
		pipe.HSet(ctx, s.membersKey(id), members...)
	}
	pipe.HSet(ctx, s.planKey(id), fields...)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("store the plan of batch %s: %w", id, err)
	}
	return nil
}

// decodeEntry reads a contact's plan entry: "chunk/ops", members by
// index.
func (s *Store) decodeEntry(ctx context.Context, batch, id, str string) (Contact, error) {
	n, ops, ok := strings.Cut(str, "/")
	chunk, err := strconv.Atoi(n)
	if !ok || err != nil {
		return Contact{}, fmt.Errorf("contact %s: plan entry %q: want chunk/ops", id, str)
	}
	c := Contact{ID: id, Chunk: chunk}
	if c.Ops, err = DecodeOps(ops); err != nil {
		return Contact{}, fmt.Errorf("contact %s: %w", id, err)
	}
	if err := s.memberIDs(ctx, batch, c.Ops); err != nil {
		return Contact{}, fmt.Errorf("contact %s: %w", id, err)
	}
	return c, nil
}

// EncodeOps writes a contact's ops as the plan keeps them:
// "member:0|1:line,line;..." (ids never hold ':', ';' or ',').
func EncodeOps(ops []Op) string {
	var b strings.Builder
	for i, op := range ops {
		if i > 0 {
			b.WriteByte(';')
		}
		b.WriteString(op.MemberID)
		if op.Replace {
			b.WriteString(":1:")
		} else {
			b.WriteString(":0:")
		}
		for j, l := range op.Lines {
			if j > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Itoa(l))
		}
	}
	return b.String()
}

// DecodeOps reads what EncodeOps wrote.
func DecodeOps(s string) ([]Op, error) {
	var ops []Op
	for part := range strings.SplitSeq(s, ";") {
		member, rest, ok1 := strings.Cut(part, ":")
		flag, lines, ok2 := strings.Cut(rest, ":")
		if !ok1 || !ok2 || (flag != "0" && flag != "1") || lines == "" {
			return nil, fmt.Errorf("plan entry %q: want member:0|1:lines", part)
		}
		op := Op{MemberID: member, Replace: flag == "1"}
		for l := range strings.SplitSeq(lines, ",") {
			n, err := strconv.Atoi(l)
			if err != nil {
				return nil, fmt.Errorf("plan entry %q: line %q", part, l)
			}
			op.Lines = append(op.Lines, n)
		}
		ops = append(ops, op)
	}
	return ops, nil
}

// Start ends the reading of an import: it records the row and contact
// counts and the extra column names, and sets the batch running; its tasks
// are queued next. A batch whose rows are all settled already (all
// invalid) is done at once. A batch whose lease ran out is abandoned
// instead, and Start fails.
func (s *Store) Start(ctx context.Context, id string, rows, contacts int, extras []string) error {
	ex, err := json.Marshal(extras)
	if err != nil {
		return fmt.Errorf("encode extras: %w", err)
	}
	err = startScript.Run(ctx, s.rdb, s.keys(id), rows, contacts, ex, s.now().UnixMilli()).Err()
	if err != nil {
		return fmt.Errorf("start batch %s: %w", id, scriptError(err, id, BatchRunning))
	}
	return nil
}

// scriptError turns a script's refusal into ErrNotFound or a
// *TransitionError.
func scriptError(err error, id, to string) error {
	msg := err.Error()
	switch {
	case strings.HasPrefix(msg, "NOTFOUND"):
		return fmt.Errorf("batch %s: %w", id, ErrNotFound)
	case strings.HasPrefix(msg, "ILLEGAL "):
		return &TransitionError{ID: id, From: strings.TrimPrefix(msg, "ILLEGAL "), To: to}
	}
	return err
}

// PauseUnauthorized is the pause code of a batch stopped because the CRM
// refused the API key.
const PauseUnauthorized = "unauthorized"

// SetStatus moves a batch to status, running, paused or cancelled; a pause
// has a code callers branch on and a reason operators read. It reports
// whether the status changed (false: the batch had it already); a move the
// batch's status does not allow is a *TransitionError. Resume is this plus
// queueing the contacts parked while paused: see Resume.
func (s *Store) SetStatus(ctx context.Context, id, status, code, reason string) (bool, error) {
	n, err := statusScript.Run(ctx, s.rdb, s.keys(id), status, code, reason, s.now().UnixMilli()).Int()
	if err != nil {
		return false, fmt.Errorf("set batch %s %s: %w", id, status, scriptError(err, id, status))
	}
	return n == 1, nil
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

// AddStats adds counters of calls that did not end a row, unless the batch
// is gone: a worker finishing a call of a deleted batch must not bring its
// record back.
func (s *Store) AddStats(ctx context.Context, id string, st Stats) error {
	if st == (Stats{}) {
		return nil
	}
	if err := statsScript.Run(ctx, s.rdb, s.keys(id), st.Calls, st.Retries, st.RateLimited).Err(); err != nil {
		return fmt.Errorf("add counters to batch %s: %w", id, err)
	}
	return nil
}

//go:embed prelude.lua
var preludeLua string

//go:embed begin.lua
var beginLua string

//go:embed settle.lua
var settleLua string

//go:embed release.lua
var releaseLua string

//go:embed watch.lua
var watchLua string

//go:embed start.lua
var startLua string

//go:embed status.lua
var statusLua string

//go:embed reopen.lua
var reopenLua string

//go:embed lease.lua
var leaseLua string

//go:embed sweep.lua
var sweepLua string

// createLua writes a new batch record, unless the id is taken.
// ARGV: id, name, source, now ms, retention s, lease ms
const createLua = `
if redis.call('EXISTS', meta) == 1 then
  return 0
end
redis.call('HSET', meta, 'id', ARGV[1], 'name', ARGV[2], 'source', ARGV[3], 'status', 'importing',
  'createdAt', ARGV[4], 'retention', ARGV[5], 'leaseUntil', int(clock() + tonumber(ARGV[6])),
  'rows', 0, 'succeeded', 0, 'failed', 0, 'invalid', 0)
return 1
`

// importResultLua settles a row at import, while the batch is importing:
// an invalid row, or one blocked by an invalid row.
// ARGV: result json, status, reason, line
const importResultLua = `
if redis.call('HGET', meta, 'status') ~= 'importing' then
  return redis.error_reply('ILLEGAL ' .. (redis.call('HGET', meta, 'status') or 'gone'))
end
settle_lines({ARGV[4]}, ARGV[1], ARGV[2], ARGV[3])
return 1
`

// appendRowsLua adds rows to their buckets in the rows hash.
// ARGV: bucket, text pairs
const appendRowsLua = `
local rows = KEYS[5]
for i = 1, #ARGV, 2 do
  redis.call('HSET', rows, ARGV[i], (redis.call('HGET', rows, ARGV[i]) or '') .. ARGV[i + 1])
end
return 1
`

// statsLua adds counters to a batch that exists.
// ARGV: calls, retries, rateLimited
const statsLua = `
if redis.call('EXISTS', meta) == 0 then
  return 0
end
add_stats(ARGV[1], ARGV[2], ARGV[3])
return 1
`

// deletingLua marks a batch that exists as being deleted.
const deletingLua = `
if redis.call('EXISTS', meta) == 0 then
  return 0
end
redis.call('HSET', meta, 'status', 'deleting')
return 1
`

func script(body string) *redis.Script { return redis.NewScript(preludeLua + body) }

var (
	createScript       = script(createLua)
	importResultScript = script(importResultLua)
	appendRowsScript   = script(appendRowsLua)
	statsScript        = script(statsLua)
	beginScript        = script(beginLua)
	settleScript       = script(settleLua)
	releaseScript      = script(releaseLua)
	watchScript        = script(watchLua)
	startScript        = script(startLua)
	statusScript       = script(statusLua)
	reopenScript       = script(reopenLua)
	leaseScript        = script(leaseLua)
	sweepScript        = script(sweepLua)
	deletingScript     = script(deletingLua)
)

// Get reads a batch record.
func (s *Store) Get(ctx context.Context, id string) (Batch, error) {
	pipe := s.rdb.Pipeline()
	meta := pipe.HGetAll(ctx, s.metaKey(id))
	errs := pipe.HGetAll(ctx, s.key(id, "errors"))
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
		Contacts: atoi(m["contacts"]), RecordPrevious: m[recordPreviousField] == "1", Origin: originOf(m),
		CreatedAt: millis(m["createdAt"]), StartedAt: millis(m["startedAt"]), FinishedAt: millis(m["finishedAt"]),
		Errors: map[string]int64{},
	}
	if b.Status == BatchImporting && m["leaseUntil"] != "" && time.Now().UnixMilli() > atoi(m["leaseUntil"]) {
		// The importer died: a worker's sweep will say so in the record.
		b.Status = BatchAbandoned
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

// indexGrace is how old an index entry without a record must be before
// IDs drops it: Create writes the entry just before the record.
const indexGrace = time.Minute

// IDs lists batch ids, newest first, and drops from the index the batches
// whose record expired.
func (s *Store) IDs(ctx context.Context) ([]string, error) {
	zs, err := s.rdb.ZRevRangeWithScores(ctx, s.batchesKey(), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("list batches: %w", err)
	}
	ids := make([]string, len(zs))
	for i, z := range zs {
		ids[i], _ = z.Member.(string)
	}
	old := float64(s.now().Add(-indexGrace).UnixMilli())
	pipe := s.rdb.Pipeline()
	exists := make([]*redis.IntCmd, len(ids))
	for i, id := range ids {
		exists[i] = pipe.Exists(ctx, s.metaKey(id))
	}
	if _, err := pipe.Exec(ctx); err != nil && len(ids) > 0 {
		return nil, fmt.Errorf("list batches: %w", err)
	}
	var gone []any
	live := ids[:0]
	for i, id := range ids {
		switch {
		case exists[i].Val() == 1:
			live = append(live, id)
		case zs[i].Score < old:
			gone = append(gone, id)
		}
	}
	if len(gone) > 0 {
		if err := s.rdb.ZRem(ctx, s.batchesKey(), gone...).Err(); err != nil {
			return nil, fmt.Errorf("prune the batch index: %w", err)
		}
	}
	return live, nil
}

// Entry is a row and its result; Result.Status is empty while the row has
// none yet.
type Entry struct {
	Row    Row
	Result Result
}

// rowBucket is how many consecutive lines share a field of the rows hash.
const rowBucket = 64

// Entries yields a batch's rows in line order with their results, reading
// Redis in chunks so memory does not grow with the batch.
func (s *Store) Entries(ctx context.Context, id string) iter.Seq2[Entry, error] {
	return func(yield func(Entry, error) bool) {
		buckets, err := s.buckets(ctx, id)
		if err != nil {
			yield(Entry{}, err)
			return
		}
		for page := range slices.Chunk(buckets, 16) {
			rows, err := s.rows(ctx, id, page)
			if err != nil {
				yield(Entry{}, err)
				return
			}
			lines := make([]int, 0, len(rows))
			for l := range rows {
				lines = append(lines, l)
			}
			slices.Sort(lines)
			entries, err := s.withResults(ctx, id, lines, rows)
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
	var buckets []int
	for _, l := range lines {
		if b := l / rowBucket; !slices.Contains(buckets, b) {
			buckets = append(buckets, b)
		}
	}
	rows, err := s.rows(ctx, id, buckets)
	if err != nil {
		return nil, err
	}
	return s.withResults(ctx, id, lines, rows)
}

// rows reads the rows of the given buckets, by line.
func (s *Store) rows(ctx context.Context, id string, buckets []int) (map[int]Row, error) {
	fields := make([]string, len(buckets))
	for i, b := range buckets {
		fields[i] = strconv.Itoa(b)
	}
	out := map[int]Row{}
	if len(fields) == 0 {
		return out, nil
	}
	vals, err := s.rdb.HMGet(ctx, s.rowsKey(id), fields...).Result()
	if err != nil {
		return nil, fmt.Errorf("read rows of batch %s: %w", id, err)
	}
	for i, v := range vals {
		text, _ := v.(string)
		for rec := range strings.SplitSeq(strings.TrimSuffix(text, "\n"), "\n") {
			if rec == "" {
				continue
			}
			var r Row
			if err := json.Unmarshal([]byte(rec), &r); err != nil {
				return nil, fmt.Errorf("batch %s rows %s: %w", id, fields[i], err)
			}
			if ref, ok := strings.CutPrefix(r.MemberID, "#"); ok && r.Valid() {
				if r.MemberID, err = s.memberID(ctx, id, ref); err != nil {
					return nil, fmt.Errorf("batch %s line %d: %w", id, r.Line, err)
				}
			}
			out[r.Line] = r
		}
	}
	return out, nil
}

// withResults pairs the given lines' rows with their results.
func (s *Store) withResults(ctx context.Context, id string, lines []int, rows map[int]Row) ([]Entry, error) {
	out := make([]Entry, len(lines))
	if len(lines) == 0 {
		return out, nil
	}
	fields := make([]string, len(lines))
	for i, l := range lines {
		fields[i] = strconv.Itoa(l)
	}
	results, err := s.rdb.HMGet(ctx, s.resultsKey(id), fields...).Result()
	if err != nil {
		return nil, fmt.Errorf("read results of batch %s: %w", id, err)
	}
	for i, l := range lines {
		out[i].Row = rows[l]
		out[i].Row.Line = l
		if err := unmarshalField(results[i], &out[i].Result); err != nil {
			return nil, fmt.Errorf("batch %s line %d: %w", id, l, err)
		}
	}
	return out, nil
}

// buckets returns the batch's row buckets in order: field names only (a
// 64th of the lines), not the rows, which Entries reads next.
func (s *Store) buckets(ctx context.Context, id string) ([]int, error) {
	fields, err := s.rdb.HKeys(ctx, s.rowsKey(id)).Result()
	if err != nil {
		return nil, fmt.Errorf("list rows of batch %s: %w", id, err)
	}
	out := make([]int, len(fields))
	for i, f := range fields {
		if out[i], err = strconv.Atoi(f); err != nil {
			return nil, fmt.Errorf("batch %s: bad rows field %q", id, f)
		}
	}
	slices.Sort(out)
	return out, nil
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

// markDeleting moves a batch in any state to deleting: workers drop its
// tasks as they come, and nothing settles any more.
func (s *Store) markDeleting(ctx context.Context, id string) error {
	n, err := deletingScript.Run(ctx, s.rdb, s.keys(id)).Int()
	if err != nil {
		return fmt.Errorf("delete batch %s: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("batch %s: %w", id, ErrNotFound)
	}
	return nil
}

// Delete removes every key of a batch, whatever its state; its tasks are
// dropped by the workers as they come (Tasks.Delete removes them first).
func (s *Store) Delete(ctx context.Context, id string) error {
	s.members.drop(id)
	if err := s.rdb.Unlink(ctx, s.keys(id)...).Err(); err != nil {
		return fmt.Errorf("delete batch %s: %w", id, err)
	}
	if err := s.rdb.ZRem(ctx, s.batchesKey(), id).Err(); err != nil {
		return fmt.Errorf("delete batch %s: %w", id, err)
	}
	return nil
}
