package planner_test

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/planner"
)

// mustRules parses a rules file, whose member ids are of the older form
// (the plans are easier to read), or fails the test.
func mustRules(t testing.TB, data string) *planner.Rules {
	t.Helper()
	rs, err := planner.ParseRules(strings.NewReader(data), "rules.yaml", jobs.IDAny)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// contacts builds a contacts file with every column from "id region
// segment agent" lines ("-" for an empty cell).
func contacts(lines ...string) *planner.Contacts {
	cs := &planner.Contacts{File: "contacts.csv", HasRegion: true, HasSegment: true, HasAgent: true}
	for i, l := range lines {
		f := strings.Fields(l)
		for len(f) < 4 {
			f = append(f, "-")
		}
		for j := range f {
			if f[j] == "-" {
				f[j] = ""
			}
		}
		cs.List = append(cs.List, planner.Contact{ID: f[0], Region: f[1], Segment: f[2], Agent: f[3], Line: i + 2})
	}
	return cs
}

// generate makes n contacts c-00000.. in region r-<i%regions>, owned by
// owner(i) ("" for none).
func generate(n, regions int, owner func(i int) string) *planner.Contacts {
	cs := &planner.Contacts{File: "contacts.csv", HasRegion: true, HasAgent: true}
	for i := range n {
		cs.List = append(cs.List, planner.Contact{ID: fmt.Sprintf("c-%05d", i), Region: fmt.Sprintf("r-%d", i%regions), Agent: owner(i), Line: i + 2})
	}
	return cs
}

func compute(t testing.TB, rs *planner.Rules, cs *planner.Contacts) *planner.Plan {
	t.Helper()
	p, err := planner.Compute(rs, cs)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// final applies the plan to the contacts' current owners: contact -> owner.
func final(cs *planner.Contacts, p *planner.Plan) map[string]string {
	m := map[string]string{}
	for _, c := range cs.List {
		if c.Agent != "" {
			m[c.ID] = c.Agent
		}
	}
	for _, a := range p.Assignments {
		m[a.Contact] = a.Member
	}
	return m
}

// after returns the preview's after counts by member.
func after(p *planner.Plan) map[string]int {
	m := map[string]int{}
	for _, mc := range p.Preview.Members {
		if mc.After > 0 {
			m[mc.Member] = mc.After
		}
	}
	return m
}

func countOwners(owners map[string]string) map[string]int {
	m := map[string]int{}
	for _, o := range owners {
		m[o]++
	}
	return m
}

// reapply returns the contacts with the plan applied: the next run's input.
func reapply(cs *planner.Contacts, p *planner.Plan) *planner.Contacts {
	owners := final(cs, p)
	next := *cs
	next.List = slices.Clone(cs.List)
	for i := range next.List {
		next.List[i].Agent = owners[next.List[i].ID]
	}
	return &next
}

func TestRuleMatchingOrder(t *testing.T) {
	t.Parallel()
	rs := mustRules(t, `
rules:
  - name: north-enterprise
    match: {region: [north], segment: [enterprise]}
    pool: [{member: m-ne}]
  - name: north
    match: {region: [north, north-east]}
    pool: [{member: m-n}]
  - name: enterprise
    match: {segment: enterprise}
    pool: [{member: m-e}]
  - name: rest
    pool: [{member: m-rest}]
`)
	tests := []struct {
		contact  string
		wantRule string
		want     string
	}{
		{"c-1 north enterprise", "north-enterprise", "m-ne"},
		{"c-2 NORTH Enterprise", "north-enterprise", "m-ne"}, // case-insensitive
		{"c-3 north smb", "north", "m-n"},
		{"c-4 north-east enterprise", "north", "m-n"}, // the earlier rule wins
		{"c-5 south enterprise", "enterprise", "m-e"},
		{"c-6 south smb", "rest", "m-rest"},
		{"c-7 - -", "rest", "m-rest"},
		{"c-8 - enterprise", "enterprise", "m-e"},
	}
	var lines []string
	for _, tt := range tests {
		lines = append(lines, tt.contact)
	}
	p := compute(t, rs, contacts(lines...))
	if len(p.Assignments) != len(tests) {
		t.Fatalf("%d assignments, want %d", len(p.Assignments), len(tests))
	}
	for i, tt := range tests {
		a := p.Assignments[i]
		if a.Rule != tt.wantRule || a.Member != tt.want || a.Reason != planner.ReasonNew {
			t.Errorf("%s: rule %q member %s (%s), want rule %q member %s (new)", tt.contact, a.Rule, a.Member, a.Reason, tt.wantRule, tt.want)
		}
	}
}

func TestNoRule(t *testing.T) {
	t.Parallel()
	const rules = `
rules:
  - name: north
    match: {region: north}
    pool: [{member: m-1}]
`
	cs := contacts("c-1 north", "c-2 south - m-9", "c-3 west - m-fb")
	t.Run("fallback", func(t *testing.T) {
		p := compute(t, mustRules(t, rules+"fallback: m-fb\n"), cs)
		want := []planner.Assignment{
			{Contact: "c-1", Member: "m-1", Rule: "north", Reason: planner.ReasonNew, Line: 2},
			{Contact: "c-2", Member: "m-fb", Previous: "m-9", Reason: planner.ReasonNoRule, Line: 3},
		}
		if !slices.Equal(p.Assignments, want) {
			t.Errorf("assignments %+v\nwant %+v", p.Assignments, want)
		}
		if p.Preview.NoRule != 2 || p.Preview.Unchanged != 1 || len(p.Unassigned) != 0 {
			t.Errorf("preview %+v", p.Preview)
		}
	})
	t.Run("no fallback", func(t *testing.T) {
		p := compute(t, mustRules(t, rules), cs)
		if len(p.Assignments) != 1 || p.Assignments[0].Contact != "c-1" {
			t.Errorf("assignments %+v, want only c-1", p.Assignments)
		}
		if len(p.Unassigned) != 2 || p.Unassigned[0].Contact != "c-2" || !strings.Contains(p.Unassigned[0].Reason, "matches no rule") {
			t.Errorf("unassigned %+v", p.Unassigned)
		}
		// Unassigned contacts keep their owners in the preview.
		if got, want := after(p), map[string]int{"m-1": 1, "m-9": 1, "m-fb": 1}; !maps.Equal(got, want) {
			t.Errorf("after %v, want %v", got, want)
		}
		if !hasWarning(p, "match no rule and there is no fallback") {
			t.Errorf("warnings %q", p.Warnings)
		}
	})
}

func TestTargets(t *testing.T) {
	t.Parallel()
	pool := func(spec ...string) []planner.PoolMember {
		var ps []planner.PoolMember
		for _, s := range spec {
			var m planner.PoolMember
			if _, err := fmt.Sscanf(s, "%s %d %d", &m.Member, &m.Weight, &m.Cap); err != nil {
				panic(s)
			}
			ps = append(ps, m)
		}
		return ps
	}
	tests := []struct {
		name string
		pool []planner.PoolMember
		n    int
		want []int
	}{
		{"weights 1:2:3", pool("a 1 0", "b 2 0", "c 3 0"), 3000, []int{500, 1000, 1500}},
		{"equal, remainder to the lower ids", pool("c 1 0", "a 1 0", "b 1 0"), 10, []int{3, 4, 3}},
		{"remainder tie to the lower id", pool("b 3 0", "a 1 0"), 6, []int{4, 2}}, // 4.5, 1.5
		{"largest remainder wins over id", pool("a 1 0", "b 2 0"), 5, []int{2, 3}},
		{"one member", pool("a 7 0"), 13, []int{13}},
		{"nothing to share", pool("a 1 0", "b 1 0"), 0, []int{0, 0}},
		{"cap redistributes", pool("a 1 10", "b 1 0", "c 1 0"), 100, []int{10, 45, 45}},
		{"cap above share", pool("a 1 50", "b 1 0"), 60, []int{30, 30}},
		{"cap cascades", pool("a 4 10", "b 2 20", "c 1 0"), 100, []int{10, 20, 70}},
		{"all capped: overflow", pool("a 1 10", "b 2 15"), 100, []int{10, 15}},
		{"caps exactly fit", pool("a 1 10", "b 1 10"), 20, []int{10, 10}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := planner.Targets(tt.pool, tt.n); !slices.Equal(got, tt.want) {
				t.Errorf("Targets(%d) = %v, want %v", tt.n, got, tt.want)
			}
		})
	}
}

func TestWeights(t *testing.T) {
	t.Parallel()
	rs := mustRules(t, `
rules:
  - name: all
    pool:
      - {member: m-a, weight: 1}
      - {member: m-b, weight: 2}
      - {member: m-c, weight: 3}
`)
	p := compute(t, rs, generate(3000, 4, func(int) string { return "" }))
	want := map[string]int{"m-a": 500, "m-b": 1000, "m-c": 1500}
	if got := after(p); !maps.Equal(got, want) {
		t.Errorf("after %v, want %v", got, want)
	}
	if got := countOwners(final(generate(3000, 4, func(int) string { return "" }), p)); !maps.Equal(got, want) {
		t.Errorf("rows give %v, want %v", got, want)
	}
	if pv := p.Preview; pv.New != 3000 || pv.Moves != 0 || pv.Unchanged != 0 || len(p.Assignments) != 3000 {
		t.Errorf("preview %+v, %d rows", pv, len(p.Assignments))
	}
	// Interleaved, not in blocks.
	var first []string
	for _, a := range p.Assignments[:6] {
		first = append(first, a.Member)
	}
	if want := []string{"m-a", "m-b", "m-c", "m-c", "m-b", "m-c"}; !slices.Equal(first, want) {
		t.Errorf("first members %v, want %v", first, want)
	}
}

func TestCaps(t *testing.T) {
	t.Parallel()
	const rules = `
rules:
  - name: north
    match: {region: r-0}
    pool:
      - {member: m-a, cap: 20}
      - {member: m-b, weight: 2, cap: 30}
  - name: south
    match: {region: r-1}
    pool: [{member: m-c}]
`
	cs := generate(160, 2, func(i int) string { // 80 north, 80 south
		if i%10 == 0 {
			return "m-fb" // 16 north contacts already with the fallback
		}
		return ""
	})
	t.Run("overflow to the fallback", func(t *testing.T) {
		t.Parallel()
		p := compute(t, mustRules(t, rules+"fallback: m-fb\n"), cs)
		if got, want := after(p), map[string]int{"m-a": 20, "m-b": 30, "m-c": 80, "m-fb": 30}; !maps.Equal(got, want) {
			t.Errorf("after %v, want %v", got, want)
		}
		if r := p.Preview.Rules[0]; r.Overflow != 30 || !slices.Equal(r.Targets, []int{20, 30}) {
			t.Errorf("rule north: %+v, want overflow 30, targets [20 30]", r)
		}
		// The overflow takes the contacts the fallback has already: 14 calls, not 30.
		overflow := 0
		for _, a := range p.Assignments {
			if a.Reason == planner.ReasonOverflow {
				overflow++
				if a.Member != "m-fb" || a.Rule != "north" {
					t.Errorf("overflow row %+v", a)
				}
			}
		}
		if overflow != 14 {
			t.Errorf("%d overflow rows, want 14 (30 over the caps, 16 with the fallback already)", overflow)
		}
		if !hasWarning(p, `rule "north": the caps hold 50 of its 80 contacts; 30 go to the fallback m-fb`) {
			t.Errorf("warnings %q", p.Warnings)
		}
	})
	t.Run("no fallback: unassigned", func(t *testing.T) {
		t.Parallel()
		p := compute(t, mustRules(t, rules), cs)
		if len(p.Unassigned) != 30 {
			t.Fatalf("%d unassigned, want 30", len(p.Unassigned))
		}
		for _, u := range p.Unassigned {
			if u.Rule != "north" || !strings.Contains(u.Reason, "at its cap") {
				t.Errorf("unassigned %+v", u)
			}
		}
		if p.Preview.Unassigned != 30 || p.Preview.Planned != 130 {
			t.Errorf("preview %+v", p.Preview)
		}
		if !hasWarning(p, "30 keep their owner over the caps, or stay without one (no fallback)") {
			t.Errorf("warnings %q", p.Warnings)
		}
	})
}

func TestChurn(t *testing.T) {
	t.Parallel()
	const twoEqual = `
rules:
  - name: all
    pool: [{member: m-a}, {member: m-b}]
`
	t.Run("balanced pool: no call", func(t *testing.T) {
		t.Parallel()
		cs := generate(100, 1, func(i int) string { return []string{"m-a", "m-b"}[i%2] })
		p := compute(t, mustRules(t, twoEqual), cs)
		if len(p.Assignments) != 0 || p.Preview.Unchanged != 100 {
			t.Errorf("%d rows, %d unchanged; want 0, 100", len(p.Assignments), p.Preview.Unchanged)
		}
	})
	t.Run("skewed pool moves the minimum", func(t *testing.T) {
		t.Parallel()
		// m-a has 80, m-b 20: 30 must move from a to b, and no more.
		cs := generate(100, 1, func(i int) string {
			if i%5 == 0 {
				return "m-b"
			}
			return "m-a"
		})
		p := compute(t, mustRules(t, twoEqual), cs)
		if len(p.Assignments) != 30 || p.Preview.Moves != 30 {
			t.Fatalf("%d rows, %d moves; want 30", len(p.Assignments), p.Preview.Moves)
		}
		for _, a := range p.Assignments {
			if a.Previous != "m-a" || a.Member != "m-b" || a.Reason != planner.ReasonRebalance {
				t.Errorf("row %+v: want m-a -> m-b, rebalance", a)
			}
		}
		if got := after(p); got["m-a"] != 50 || got["m-b"] != 50 {
			t.Errorf("after %v", got)
		}
		// m-a keeps its first 50 contacts in id order (up to c-00062); the rest move.
		if first := p.Assignments[0].Contact; first != "c-00063" {
			t.Errorf("first contact moved: %s, want c-00063", first)
		}
	})
	t.Run("owners outside the pool move, owners inside stay", func(t *testing.T) {
		t.Parallel()
		cs := contacts("c-1 n - m-a", "c-2 n - m-x", "c-3 n - m-b", "c-4 n - m-y")
		p := compute(t, mustRules(t, twoEqual), cs)
		if len(p.Assignments) != 2 {
			t.Fatalf("rows %+v, want c-2 and c-4", p.Assignments)
		}
		for _, a := range p.Assignments {
			if a.Reason != planner.ReasonOutsidePool || (a.Contact != "c-2" && a.Contact != "c-4") {
				t.Errorf("row %+v", a)
			}
		}
	})
	t.Run("adding a member takes only its share", func(t *testing.T) {
		t.Parallel()
		cs := generate(90, 1, func(i int) string { return []string{"m-a", "m-b"}[i%2] })
		p := compute(t, mustRules(t, "rules:\n  - name: all\n    pool: [{member: m-a}, {member: m-b}, {member: m-c}]\n"), cs)
		if len(p.Assignments) != 30 {
			t.Errorf("%d rows, want 30: the new member's share", len(p.Assignments))
		}
		if got := after(p); got["m-a"] != 30 || got["m-b"] != 30 || got["m-c"] != 30 {
			t.Errorf("after %v", got)
		}
	})
}

// TestMinimalMoves checks, over random pools, that a rule's moves are the
// lower bound given its targets: every contact whose owner is in the pool
// and under target stays.
func TestMinimalMoves(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 200 {
		members := 1 + rng.IntN(6)
		var pool strings.Builder
		var pm []planner.PoolMember
		for i := range members {
			w := 1 + rng.IntN(5)
			fmt.Fprintf(&pool, "      - {member: m-%d, weight: %d}\n", i, w)
			pm = append(pm, planner.PoolMember{Member: fmt.Sprintf("m-%d", i), Weight: w})
		}
		rs := mustRules(t, "rules:\n  - name: all\n    pool:\n"+pool.String())
		n := rng.IntN(400)
		cs := generate(n, 3, func(int) string {
			if k := rng.IntN(members + 2); k < members+1 {
				return fmt.Sprintf("m-%d", k) // m-<members> is outside the pool
			}
			return ""
		})
		p := compute(t, rs, cs)
		have := map[string]int{}
		for _, c := range cs.List {
			have[c.Agent]++
		}
		kept := 0
		for i, tgt := range planner.Targets(pm, n) {
			kept += min(tgt, have[pm[i].Member])
		}
		if len(p.Assignments) != n-kept {
			t.Fatalf("trial %d: %d rows, want %d (n %d, kept %d)", trial, len(p.Assignments), n-kept, n, kept)
		}
	}
}

// TestReplanIsStable: once a plan is applied, planning again changes
// nothing, caps, overflow and unmatched contacts included.
func TestReplanIsStable(t *testing.T) {
	t.Parallel()
	rs := mustRules(t, `
rules:
  - name: r0
    match: {region: r-0}
    pool:
      - {member: m-a, weight: 3, cap: 100}
      - {member: m-b, weight: 1}
  - name: r1
    match: {region: [r-1, r-2]}
    pool:
      - {member: m-c, cap: 50}
      - {member: m-fb, cap: 20}
fallback: m-fb
`)
	rng := rand.New(rand.NewPCG(3, 4))
	owners := []string{"", "m-a", "m-b", "m-c", "m-fb", "m-x"}
	cs := generate(1000, 4, func(int) string { return owners[rng.IntN(len(owners))] })
	p := compute(t, rs, cs)
	if len(p.Assignments) == 0 {
		t.Fatal("the first plan changes nothing: the test proves nothing")
	}
	again := compute(t, rs, reapply(cs, p))
	if len(again.Assignments) != 0 {
		t.Errorf("the second plan has %d rows, e.g. %+v", len(again.Assignments), again.Assignments[0])
	}
	if !maps.Equal(after(p), after(again)) {
		t.Errorf("after %v, then %v", after(p), after(again))
	}
}

func TestDeterminism(t *testing.T) {
	t.Parallel()
	rs := mustRules(t, `
rules:
  - name: r0
    match: {region: r-0}
    pool: [{member: m-a, weight: 2, cap: 300}, {member: m-b}, {member: m-c}]
  - name: rest
    match: {region: [r-1, r-2]}
    pool: [{member: m-d}, {member: m-e, weight: 5}]
fallback: m-fb
maxShare: 0.3
`)
	rng := rand.New(rand.NewPCG(5, 6))
	owners := []string{"", "m-a", "m-b", "m-c", "m-d", "m-e", "m-fb", "m-x"}
	cs := generate(3000, 4, func(int) string { return owners[rng.IntN(len(owners))] })
	render := func(cs *planner.Contacts) (string, string) {
		p := compute(t, rs, cs)
		var rows, preview bytes.Buffer
		if err := p.WriteCSV(&rows); err != nil {
			t.Fatal(err)
		}
		if err := p.WritePreview(&preview); err != nil {
			t.Fatal(err)
		}
		return rows.String(), preview.String()
	}
	rows, preview := render(cs)
	rows2, preview2 := render(cs)
	if rows != rows2 || preview != preview2 {
		t.Error("the same input gave different output")
	}
	for seed := range uint64(5) {
		shuffled := *cs
		shuffled.List = slices.Clone(cs.List)
		rand.New(rand.NewPCG(seed, 7)).Shuffle(len(shuffled.List), func(i, j int) {
			shuffled.List[i], shuffled.List[j] = shuffled.List[j], shuffled.List[i]
		})
		r, pv := render(&shuffled)
		if r != rows || pv != preview {
			t.Errorf("shuffle %d: the output changed with the order of the contacts", seed)
		}
	}
}

func TestMaxShare(t *testing.T) {
	t.Parallel()
	const pool = `
rules:
  - name: all
    pool: [{member: m-a, weight: 3}, {member: m-b, weight: 1}, {member: m-c, weight: 1}]
`
	cs := generate(100, 1, func(int) string { return "" }) // m-a gets 60%
	tests := []struct {
		maxShare string
		warn     bool
	}{
		{"", false},
		{"maxShare: 0\n", false},
		{"maxShare: 0.6\n", false}, // not above
		{"maxShare: 0.59\n", true},
		{"maxShare: 0.4\n", true},
	}
	for _, tt := range tests {
		p := compute(t, mustRules(t, pool+tt.maxShare), cs)
		got := hasWarning(p, "member m-a would own 60.0% of the 100 contacts (60), above maxShare")
		if got != tt.warn {
			t.Errorf("%q: warning %v, want %v; warnings %q", tt.maxShare, got, tt.warn, p.Warnings)
		}
		if hasWarning(p, "member m-b") || hasWarning(p, "member m-c") {
			t.Errorf("%q: warnings %q name members at 20%%", tt.maxShare, p.Warnings)
		}
	}
}

func TestMissingColumn(t *testing.T) {
	t.Parallel()
	rs := mustRules(t, "rules:\n  - name: n\n    match: {segment: smb}\n    pool: [{member: m-1}]\n")
	cs := contacts("c-1 north")
	cs.HasSegment = false
	_, err := planner.Compute(rs, cs)
	if err == nil || !strings.Contains(err.Error(), "contacts.csv") || !strings.Contains(err.Error(), "no segment column") {
		t.Errorf("error %v, want one naming contacts.csv and the segment column", err)
	}
}

func TestWriteCSV(t *testing.T) {
	t.Parallel()
	rs := mustRules(t, "rules:\n  - name: \"=cmd\"\n    match: {region: n}\n    pool: [{member: m-1}]\nfallback: m-fb\n")
	p := compute(t, rs, contacts("c-2 n - m-0", "c-1 n", "c-3 n - m-1", "c-4 s"))
	var b bytes.Buffer
	if err := p.WriteCSV(&b); err != nil {
		t.Fatal(err)
	}
	want := `aiContactId,teamMemberId,removeExistingAgents,rule,previousAgent,reason
c-1,m-1,true,'=cmd,,new
c-2,m-1,true,'=cmd,m-0,outside-pool
c-4,m-fb,true,,,no-rule
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
	if header := strings.Join(planner.Header, ",") + "\n"; !strings.HasPrefix(want, header) {
		t.Errorf("planner.Header %q is not the header written", header)
	}
}

// TestWriteCSVSizes: an empty plan is its header alone, and a large one is
// one header and every row, in order, however it is handed to gocsv.
func TestWriteCSVSizes(t *testing.T) {
	t.Parallel()
	header := strings.Join(planner.Header, ",") + "\n"
	var b bytes.Buffer
	if err := (&planner.Plan{}).WriteCSV(&b); err != nil || b.String() != header {
		t.Errorf("empty plan: %q, %v; want the header alone", b.String(), err)
	}
	p := &planner.Plan{}
	want := header
	for i := range 2500 {
		a := planner.Assignment{Contact: fmt.Sprintf("c-%04d", i), Member: "m-1", Rule: "r", Reason: planner.ReasonNew}
		p.Assignments = append(p.Assignments, a)
		want += a.Contact + ",m-1,true,r,,new\n"
	}
	b.Reset()
	if err := p.WriteCSV(&b); err != nil {
		t.Fatal(err)
	}
	if b.String() != want {
		t.Errorf("2,500 rows: got %d lines, want %d", strings.Count(b.String(), "\n"), strings.Count(want, "\n"))
	}
}

func hasWarning(p *planner.Plan, s string) bool {
	return slices.ContainsFunc(p.Warnings, func(w string) bool { return strings.Contains(w, s) })
}
