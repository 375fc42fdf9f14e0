// Package simulator is the built-in CRM: an http.Handler that answers the
// CRM's public assignment API (assign a team member to a contact, list team
// members, show a contact's agents) from in-memory state, with an optional
// API key, rate limit, latency and deterministic faults. It stands in for
// the real CRM in `bulkassign simulate`, `run --simulate`, demos and tests.
package simulator

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Defaults applied by New to zero fields of Options.
const (
	// DefaultKeyHeader is the header that carries the API key.
	DefaultKeyHeader = "x-api-key"
	// DefaultTransientAttempts is how many calls of a transient pair fail.
	DefaultTransientAttempts = 1
	// DefaultHangFor is how long the first call of a hanging pair hangs.
	DefaultHangFor = 30 * time.Second
)

// MaxIDLen is the longest well-formed contact or member id.
const MaxIDLen = 128

// StatusClientClosed is the status Stats records for a request whose client
// went away (or whose server stopped) while the simulator was still waiting
// on latency or a hang; no answer is sent for it (nginx's 499).
const StatusClientClosed = 499

// API paths, as ServeMux patterns.
const (
	assignPattern = "/api/public/contact/{contact}/assign-team-member/{member}"
	infoPattern   = "/api/public/contact/{contact}/info"
	membersPath   = "/api/public/team-members/all"
)

// Member is a CRM team member, in the JSON shape of
// GET /api/public/team-members/all.
type Member struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	FirstName string `json:"first_name"`
	LastName  string `json:"last_name"`
	Email     string `json:"email"`
	Phone     string `json:"phone"`
	Active    bool   `json:"active"`
}

// Options configures a Simulator. The zero value is an open simulator: no
// key, no rate limit, no latency, no faults, any well-formed id accepted.
type Options struct {
	// APIKey, when not empty, must be sent in KeyHeader on every request.
	APIKey string
	// KeyHeader is the API key header; empty means DefaultKeyHeader.
	KeyHeader string

	// Contacts is the known set of contact ids; nil accepts any well-formed
	// id, an empty non-nil slice accepts none.
	Contacts []string
	// Members is the known set of team members; nil accepts any well-formed
	// id as an active member.
	Members []Member

	// Rate is the allowed requests per second; 0 (or less) is unlimited.
	Rate float64
	// Burst is the rate limiter's bucket size; 0 (or less) means 1.
	Burst int

	// Latency is added to every answer.
	Latency time.Duration

	// Transient is the fraction (0..1) of (contact, member) pairs whose first
	// TransientAttempts assign calls answer 500, 502 or 503.
	Transient float64
	// TransientAttempts is how many calls of a transient pair fail; 0 (or
	// less) means DefaultTransientAttempts.
	TransientAttempts int
	// Hang is the fraction (0..1) of pairs whose first assign call hangs for
	// HangFor (or until the client gives up) and then answers 504.
	Hang float64
	// HangFor is how long a hanging call hangs; 0 (or less) means
	// DefaultHangFor.
	HangFor time.Duration

	// Now is the clock of the rate limiter; nil means time.Now.
	Now func() time.Time
}

// Stats are the simulator's counters since New or the last Reset.
type Stats struct {
	// Requests is every request the handler received.
	Requests int64
	// Assigned is the assign calls answered with 2xx.
	Assigned int64
	// ByStatus counts answers by HTTP status (StatusClientClosed for requests
	// abandoned while waiting).
	ByStatus map[int]int64
	// MaxInFlight is the most requests handled at the same time.
	MaxInFlight int64
}

// numShards is the number of independently locked parts of the assignment
// state; a power of two.
const numShards = 64

type contactState struct {
	agents []string
}

// shard is one part of the assignment state, padded to its own cache line.
type shard struct {
	mu       sync.Mutex
	contacts map[string]*contactState
	_        [48]byte
}

// Simulator is the in-memory CRM. It is safe for concurrent use; create it
// with New.
type Simulator struct {
	opts      Options
	keyHash   [sha256.Size]byte
	checkKey  bool
	keyHeader string // canonical form
	now       func() time.Time

	contacts    map[string]struct{} // nil: any contact
	members     map[string]*Member  // nil: any member
	membersJSON []byte              // the team-members answer when members is set

	limiter atomic.Pointer[rate.Limiter] // nil: unlimited
	mux     *http.ServeMux

	shards [numShards]shard

	seenMu   sync.RWMutex // guards seen and seenList (open member set only)
	seen     map[string]struct{}
	seenList []Member

	faultMu  sync.Mutex // guards attempts
	attempts map[string]int

	requests    atomic.Int64
	assigned    atomic.Int64
	inFlight    atomic.Int64
	maxInFlight atomic.Int64
	byStatus    [600]atomic.Int64
}

// New returns a Simulator configured by opts (see Options for defaults).
// Ids in opts.Contacts and opts.Members are stored lower-case.
func New(opts Options) *Simulator {
	if opts.KeyHeader == "" {
		opts.KeyHeader = DefaultKeyHeader
	}
	if opts.TransientAttempts <= 0 {
		opts.TransientAttempts = DefaultTransientAttempts
	}
	if opts.HangFor <= 0 {
		opts.HangFor = DefaultHangFor
	}
	if opts.Burst <= 0 {
		opts.Burst = 1
	}
	if opts.Rate < 0 {
		opts.Rate = 0
	}
	opts.Transient = clamp01(opts.Transient)
	opts.Hang = clamp01(opts.Hang)
	if opts.Now == nil {
		opts.Now = time.Now
	}

	s := &Simulator{
		keyHeader: http.CanonicalHeaderKey(opts.KeyHeader),
		now:       opts.Now,
		seen:      make(map[string]struct{}),
		attempts:  make(map[string]int),
	}
	if opts.APIKey != "" {
		s.checkKey = true
		s.keyHash = sha256.Sum256([]byte(opts.APIKey))
	}
	if opts.Contacts != nil {
		s.contacts = make(map[string]struct{}, len(opts.Contacts))
		cs := make([]string, len(opts.Contacts))
		for i, c := range opts.Contacts {
			cs[i] = strings.ToLower(strings.TrimSpace(c))
			s.contacts[cs[i]] = struct{}{}
		}
		opts.Contacts = cs
	}
	if opts.Members != nil {
		ms := make([]Member, len(opts.Members))
		s.members = make(map[string]*Member, len(ms))
		for i, m := range opts.Members {
			m.ID = strings.ToLower(strings.TrimSpace(m.ID))
			ms[i] = m
			s.members[m.ID] = &ms[i]
		}
		opts.Members = ms
		body, err := json.Marshal(ms)
		if err != nil { // cannot happen: Member has only strings and a bool
			panic("simulator: encode members: " + err.Error())
		}
		s.membersJSON = body
	}
	s.opts = opts
	for i := range s.shards {
		s.shards[i].contacts = make(map[string]*contactState)
	}
	s.limiter.Store(s.newLimiter())

	mux := http.NewServeMux()
	mux.HandleFunc("POST "+assignPattern, s.handleAssign)
	mux.HandleFunc(assignPattern, methodNotAllowed(s, "POST"))
	mux.HandleFunc("GET "+infoPattern, s.handleInfo)
	mux.HandleFunc(infoPattern, methodNotAllowed(s, "GET, HEAD"))
	mux.HandleFunc("GET "+membersPath, s.handleMembers)
	mux.HandleFunc(membersPath, methodNotAllowed(s, "GET, HEAD"))
	s.registerContactControls(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		s.fail(w, http.StatusNotFound, "no such endpoint")
	})
	s.mux = mux
	return s
}

func clamp01(f float64) float64 {
	if !(f > 0) { // also NaN
		return 0
	}
	return min(f, 1)
}

func (s *Simulator) newLimiter() *rate.Limiter {
	if s.opts.Rate <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(s.opts.Rate), s.opts.Burst)
}

// ServeHTTP answers one API request. Every request is checked, in order,
// for latency (waited first), the API key (401) and the rate limit (429),
// then routed. A request whose client goes away while the simulator waits
// is aborted with http.ErrAbortHandler, so it must be served by an
// http.Server (as httptest.NewServer and Start do).
func (s *Simulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	n := s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	for {
		m := s.maxInFlight.Load()
		if n <= m || s.maxInFlight.CompareAndSwap(m, n) {
			break
		}
	}

	if s.opts.Latency > 0 {
		s.sleep(r.Context(), s.opts.Latency)
	}
	if s.checkKey && !s.authorized(r) {
		s.writeJSON(w, http.StatusUnauthorized, unauthorizedBody)
		return
	}
	if lim := s.limiter.Load(); lim != nil {
		if retry, ok := s.allow(lim); !ok {
			w.Header().Set("Retry-After", strconv.Itoa(retry))
			s.writeJSON(w, http.StatusTooManyRequests, rateLimitedBody)
			return
		}
	}
	s.mux.ServeHTTP(w, r)
}

// authorized compares the request's key with the configured one in constant
// time (hashing both first, so neither the content nor the length leaks).
func (s *Simulator) authorized(r *http.Request) bool {
	vs := r.Header[s.keyHeader] // canonical key: Get would canonicalise (and allocate) per request
	if len(vs) == 0 || vs[0] == "" {
		return false
	}
	got := vs[0]
	h := sha256.Sum256([]byte(got))
	return subtle.ConstantTimeCompare(h[:], s.keyHash[:]) == 1
}

// allow takes a token from lim, or says how many whole seconds (at least 1)
// to wait before the next one.
func (s *Simulator) allow(lim *rate.Limiter) (retryAfter int, ok bool) {
	now := s.now()
	if lim.AllowN(now, 1) {
		return 0, true
	}
	res := lim.ReserveN(now, 1)
	if !res.OK() {
		return 1, false
	}
	d := res.DelayFrom(now)
	res.CancelAt(now)
	return max(1, int(math.Ceil(d.Seconds()))), false
}

// sleep waits d, or aborts the request if its context ends first.
func (s *Simulator) sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		s.byStatus[StatusClientClosed].Add(1)
		panic(http.ErrAbortHandler)
	}
}

func (s *Simulator) handleAssign(w http.ResponseWriter, r *http.Request) {
	contact, ok := normID(r.PathValue("contact"))
	if !ok {
		s.fail(w, http.StatusBadRequest, "malformed aiContactId: want 1 to 128 characters of A-Z a-z 0-9 _ -")
		return
	}
	member, ok := normID(r.PathValue("member"))
	if !ok {
		s.fail(w, http.StatusBadRequest, "malformed teamMemberId: want 1 to 128 characters of A-Z a-z 0-9 _ -")
		return
	}
	replace, ok := parseReplace(r.URL.RawQuery)
	if !ok {
		s.fail(w, http.StatusBadRequest, "removeExistingAgents must be true or false")
		return
	}
	if !s.knownContact(contact) {
		s.fail(w, http.StatusNotFound, "contact "+contact+" not found")
		return
	}
	if s.members != nil {
		m := s.members[member]
		if m == nil {
			s.fail(w, http.StatusNotFound, "team member "+member+" not found")
			return
		}
		if !m.Active {
			s.fail(w, http.StatusNotFound, "team member "+member+" is inactive")
			return
		}
	}
	switch status := s.fault(contact, member); status {
	case 0:
	case http.StatusGatewayTimeout:
		s.sleep(r.Context(), s.opts.HangFor)
		s.fail(w, status, "upstream timed out (simulated hang)")
		return
	default:
		s.fail(w, status, "temporary failure (simulated)")
		return
	}

	s.apply(contact, member, replace)
	if s.members == nil {
		s.see(member)
	}
	s.assigned.Add(1)
	s.writeJSON(w, http.StatusOK, assignedBody)
}

func (s *Simulator) knownContact(id string) bool {
	if s.contacts == nil {
		return true
	}
	_, ok := s.contacts[id]
	return ok
}

// apply records member as an agent of contact: added at the end unless it
// is already there, or as the only agent when replace is set.
func (s *Simulator) apply(contact, member string, replace bool) {
	sh := &s.shards[shardOf(contact)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	st := sh.contacts[contact]
	if st == nil {
		// Clone: the path value shares memory with the whole request URL.
		st = &contactState{agents: make([]string, 0, 2)}
		sh.contacts[strings.Clone(contact)] = st
	}
	if replace {
		if len(st.agents) == 1 && st.agents[0] == member {
			return
		}
		clear(st.agents)
		st.agents = append(st.agents[:0], strings.Clone(member))
		return
	}
	if slices.Contains(st.agents, member) {
		return
	}
	st.agents = append(st.agents, strings.Clone(member))
}

// see remembers a member id for the team-members list of an open simulator.
func (s *Simulator) see(id string) {
	s.seenMu.RLock()
	_, ok := s.seen[id]
	s.seenMu.RUnlock()
	if ok {
		return
	}
	s.seenMu.Lock()
	defer s.seenMu.Unlock()
	if _, ok := s.seen[id]; ok {
		return
	}
	id = strings.Clone(id)
	s.seen[id] = struct{}{}
	s.seenList = append(s.seenList, openMember(id))
}

// openMember is how an open simulator shows a member it has no record of.
func openMember(id string) Member {
	return Member{ID: id, Name: id, Active: true}
}

func (s *Simulator) handleMembers(w http.ResponseWriter, _ *http.Request) {
	if s.members != nil {
		s.writeJSON(w, http.StatusOK, s.membersJSON)
		return
	}
	s.seenMu.RLock()
	list := slices.Clone(s.seenList)
	s.seenMu.RUnlock()
	if list == nil {
		list = []Member{}
	}
	s.writeValue(w, http.StatusOK, list)
}

type agentInfo struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Email string `json:"email"`
}

type contactInfo struct {
	ID     string      `json:"id"`
	Agents []agentInfo `json:"agents"`
}

func (s *Simulator) handleInfo(w http.ResponseWriter, r *http.Request) {
	contact, ok := normID(r.PathValue("contact"))
	if !ok {
		s.fail(w, http.StatusBadRequest, "malformed aiContactId: want 1 to 128 characters of A-Z a-z 0-9 _ -")
		return
	}
	if !s.knownContact(contact) {
		s.fail(w, http.StatusNotFound, "contact "+contact+" not found")
		return
	}
	ids := s.Agents(contact)
	info := contactInfo{ID: contact, Agents: make([]agentInfo, len(ids))}
	for i, id := range ids {
		m := openMember(id)
		if mm := s.members[id]; mm != nil {
			m = *mm
		}
		info.Agents[i] = agentInfo{ID: m.ID, Name: m.Name, Email: m.Email}
	}
	s.writeValue(w, http.StatusOK, info)
}

func methodNotAllowed(s *Simulator, allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Allow", allow)
		s.fail(w, http.StatusMethodNotAllowed, "method not allowed; use "+allow)
	}
}

// Agents returns the current agents of contact (lower-case ids, in the order
// they were added), or nil if it has none. The id is compared
// case-insensitively.
func (s *Simulator) Agents(contact string) []string {
	contact = strings.ToLower(contact)
	sh := &s.shards[shardOf(contact)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	st := sh.contacts[contact]
	if st == nil || len(st.agents) == 0 {
		return nil
	}
	return slices.Clone(st.agents)
}

// State returns a copy of every contact's agents, keyed by contact id.
func (s *Simulator) State() map[string][]string {
	out := make(map[string][]string)
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for c, st := range sh.contacts {
			if len(st.agents) > 0 {
				out[c] = slices.Clone(st.agents)
			}
		}
		sh.mu.Unlock()
	}
	return out
}

// Stats returns a snapshot of the counters.
func (s *Simulator) Stats() Stats {
	st := Stats{
		Requests:    s.requests.Load(),
		Assigned:    s.assigned.Load(),
		MaxInFlight: s.maxInFlight.Load(),
		ByStatus:    make(map[int]int64),
	}
	for code := range s.byStatus {
		if n := s.byStatus[code].Load(); n != 0 {
			st.ByStatus[code] = n
		}
	}
	return st
}

// Reset clears the assignments, the members seen, the fault attempt
// counters, the rate limiter's bucket and the counters; the Options stay.
// MaxInFlight restarts from the requests in flight now.
func (s *Simulator) Reset() {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		clear(sh.contacts)
		sh.mu.Unlock()
	}
	s.seenMu.Lock()
	clear(s.seen)
	s.seenList = nil
	s.seenMu.Unlock()
	s.faultMu.Lock()
	clear(s.attempts)
	s.faultMu.Unlock()
	s.limiter.Store(s.newLimiter())
	s.requests.Store(0)
	s.assigned.Store(0)
	s.maxInFlight.Store(s.inFlight.Load())
	for i := range s.byStatus {
		s.byStatus[i].Store(0)
	}
}

// Answers written on hot paths, encoded once.
var (
	assignedBody     = []byte(`{"success":true,"message":"Team member assigned successfully"}`)
	unauthorizedBody = mustErrorBody("missing or invalid API key")
	rateLimitedBody  = mustErrorBody("rate limit exceeded; retry after the Retry-After delay")
	// jsonContentType is shared by every answer; net/http never modifies it.
	jsonContentType = []string{"application/json"}
)

type errorBody struct {
	Success bool   `json:"success"`
	Message string `json:"message"`
}

func mustErrorBody(msg string) []byte {
	b, err := json.Marshal(errorBody{Message: msg})
	if err != nil {
		panic(err)
	}
	return b
}

func (s *Simulator) fail(w http.ResponseWriter, status int, msg string) {
	s.writeJSON(w, status, mustErrorBody(msg))
}

func (s *Simulator) writeValue(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		s.fail(w, http.StatusInternalServerError, "encode answer")
		return
	}
	s.writeJSON(w, status, b)
}

func (s *Simulator) writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(status)
	_, _ = w.Write(body)
	if status >= 0 && status < len(s.byStatus) {
		s.byStatus[status].Add(1)
	}
}

// normID checks that id is 1..MaxIDLen characters of [A-Za-z0-9_-] and
// returns it lower-case.
func normID(id string) (string, bool) {
	if len(id) == 0 || len(id) > MaxIDLen {
		return "", false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return "", false
		}
	}
	return strings.ToLower(id), true // no allocation when already lower-case
}

// ValidID reports whether id is well-formed: 1 to MaxIDLen characters of
// A-Z, a-z, 0-9, '_' and '-'.
func ValidID(id string) bool {
	_, ok := normID(id)
	return ok
}

// parseReplace reads removeExistingAgents from a raw query without building
// a url.Values: absent or empty is false, true/false in any case, anything
// else is not ok. The first occurrence wins.
func parseReplace(rawQuery string) (replace, ok bool) {
	const key = "removeExistingAgents"
	for rawQuery != "" {
		var kv string
		kv, rawQuery, _ = strings.Cut(rawQuery, "&")
		k, v, _ := strings.Cut(kv, "=")
		if k != key {
			continue
		}
		if strings.ContainsAny(v, "%+") {
			var err error
			if v, err = url.QueryUnescape(v); err != nil {
				return false, false
			}
		}
		switch {
		case v == "" || strings.EqualFold(v, "false"):
			return false, true
		case strings.EqualFold(v, "true"):
			return true, true
		default:
			return false, false
		}
	}
	return false, true
}
