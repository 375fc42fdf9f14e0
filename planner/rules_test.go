package planner_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/planner"
)

// The tests of rules files use member ids of the older form (jobs.IDAny):
// they are about the file. TestIDRules checks the ids.
func TestParseRules(t *testing.T) {
	t.Parallel()
	const file = `# territories
rules:
  - name: North Enterprise
    match:
      region: [North, " north-east "]
      segment: enterprise
    pool:
      - {member: M-Ana, weight: 2, cap: 500}
      - member: m-ben
  - name: rest
    pool:
      - {member: m-carla, cap: 0}
fallback: " M-Triage "
maxShare: 0.4
`
	got, err := planner.ParseRules(strings.NewReader(file), "territories.yaml", jobs.IDAny)
	if err != nil {
		t.Fatal(err)
	}
	want := &planner.Rules{
		File: "territories.yaml",
		Rules: []planner.Rule{
			{Name: "North Enterprise", Line: 3, Regions: []string{"north", "north-east"}, Segments: []string{"enterprise"},
				Pool: []planner.PoolMember{{Member: "m-ana", Weight: 2, Cap: 500, Line: 8}, {Member: "m-ben", Weight: 1, Line: 9}}},
			{Name: "rest", Line: 10, Pool: []planner.PoolMember{{Member: "m-carla", Weight: 1, Line: 12}}},
		},
		Fallback:     "m-triage",
		FallbackLine: 13,
		MaxShare:     0.4,
	}
	if got := exported(got); !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestParseRulesErrors(t *testing.T) {
	t.Parallel()
	const pool = "    pool: [{member: m-1}]\n"
	tests := []struct {
		name string
		data string
		want []string // every one must be in the message
	}{
		{"empty file", "", []string{"r.yaml", "empty"}},
		{"only a comment", "# nothing\n", []string{"r.yaml", "empty"}},
		{"no rules", "fallback: m-1\n", []string{"r.yaml", "no rules"}},
		{"syntax error", "rules:\n  - name: a\n   pool: [\n", []string{"r.yaml", "line"}},
		{"not a mapping", "- a\n- b\n", []string{"r.yaml", "cannot unmarshal"}},
		{"unknown top-level field", "rules:\n  - name: a\n" + pool + "fallbak: m-1\n", []string{"r.yaml", "line 4", "fallbak", "not found"}},
		{"unknown rule field", "rules:\n  - name: a\n    matches: {region: [n]}\n" + pool, []string{"r.yaml", "line 3", "matches", "not found"}},
		{"unknown match field", "rules:\n  - name: a\n    match: {regoin: [n]}\n" + pool, []string{"r.yaml", "line 3", "regoin"}},
		{"unknown pool field", "rules:\n  - name: a\n    pool: [{member: m-1, wieght: 2}]\n", []string{"r.yaml", "line 3", "wieght"}},
		{"no type names", "rules:\n  - name: a\n    pool: [{member: m-1, wieght: 2}]\n", []string{"not found (a rules file has"}},
		{"weight zero", "rules:\n  - name: a\n    pool:\n      - {member: m-1, weight: 0}\n", []string{"r.yaml", "line 4", `rule 1 "a"`, "member m-1", "weight 0"}},
		{"weight negative", "rules:\n  - name: a\n    pool: [{member: m-1, weight: -2}]\n", []string{`rule 1 "a"`, "weight -2"}},
		{"weight not a number", "rules:\n  - name: a\n    pool: [{member: m-1, weight: 1.5}]\n", []string{"r.yaml", "line 3", "1.5"}},
		{"cap negative", "rules:\n  - name: a\n    pool: [{member: m-1, cap: -1}]\n", []string{`rule 1 "a"`, "cap -1"}},
		{"empty pool", "rules:\n  - name: a\n    pool: []\n", []string{"r.yaml", "line 2", `rule 1 "a"`, "empty pool"}},
		{"no pool", "rules:\n  - name: a\n", []string{`rule 1 "a"`, "empty pool"}},
		{"bad member id", "rules:\n  - name: a\n    pool: [{member: \"ana smith\"}]\n", []string{`rule 1 "a"`, "pool entry 1", `"ana smith"`}},
		{"no member id", "rules:\n  - name: a\n    pool: [{weight: 2}]\n", []string{`rule 1 "a"`, "no member id"}},
		{"member twice", "rules:\n  - name: a\n    pool: [{member: m-1}, {member: M-1}]\n", []string{`rule 1 "a"`, "m-1 is in the pool twice"}},
		{"no name", "rules:\n  - pool: [{member: m-1}]\n", []string{"line 2", "rule 1", "no name"}},
		{"same name", "rules:\n  - name: a\n    match: {region: x}\n" + pool + "  - name: A\n" + pool, []string{"line 5", `rule 2 "A"`, "taken by rule 1"}},
		{"unreachable rule", "rules:\n  - name: all\n" + pool + "  - name: north\n    match: {region: north}\n" + pool, []string{`rule 2 "north"`, "never used", "rule 1"}},
		{"empty match value", "rules:\n  - name: a\n    match: {region: [\"\"]}\n" + pool, []string{`rule 1 "a"`, "match.region"}},
		{"bad fallback", "rules:\n  - name: a\n" + pool + "fallback: \"x y\"\n", []string{"r.yaml", "fallback"}},
		{"maxShare above 1", "rules:\n  - name: a\n" + pool + "maxShare: 1.5\n", []string{"r.yaml", "maxShare 1.5"}},
		{"maxShare negative", "rules:\n  - name: a\n" + pool + "maxShare: -0.1\n", []string{"maxShare -0.1"}},
		{"maxShare NaN", "rules:\n  - name: a\n" + pool + "maxShare: .nan\n", []string{"maxShare NaN"}},
		{"two documents", "rules:\n  - name: a\n" + pool + "---\nrules: []\n", []string{"r.yaml", "more than one YAML document"}},
		{"duplicate key", "rules:\n  - name: a\n    name: b\n" + pool, []string{"r.yaml", "already defined"}},
		{"too long", "rules:\n" + strings.Repeat("#", 1<<20), []string{"r.yaml", "1 MiB"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rs, err := planner.ParseRules(strings.NewReader(tt.data), "r.yaml", jobs.IDAny)
			if err == nil {
				t.Fatalf("no error; rules %+v", rs)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("message %q does not mention %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "planner.") {
				t.Errorf("message %q names a Go type", err)
			}
			var fe *planner.FileError
			if !errors.As(err, &fe) {
				t.Errorf("%T is not a *planner.FileError", err)
			}
		})
	}
}

// TestParseRulesAllProblems: every problem of a file is reported at once,
// each naming its rule.
func TestParseRulesAllProblems(t *testing.T) {
	t.Parallel()
	data := `rules:
  - name: a
    pool: [{member: m-1, weight: 0}]
  - name: b
    match: {region: south}
    pool: []
`
	_, err := planner.ParseRules(strings.NewReader(data), "r.yaml", jobs.IDAny)
	if err == nil {
		t.Fatal("no error")
	}
	for _, w := range []string{`r.yaml: line 3: rule 1 "a": member m-1: weight 0`, `r.yaml: line 4: rule 2 "b": empty pool`} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("message %q does not have %q", err, w)
		}
	}
}

// exported is rs without its unexported fields, for comparing.
func exported(rs *planner.Rules) *planner.Rules {
	out := &planner.Rules{File: rs.File, Fallback: rs.Fallback, FallbackEmail: rs.FallbackEmail, FallbackLine: rs.FallbackLine, MaxShare: rs.MaxShare}
	for _, r := range rs.Rules {
		out.Rules = append(out.Rules, planner.Rule{Name: r.Name, Line: r.Line, Regions: r.Regions, Segments: r.Segments, Pool: r.Pool})
	}
	return out
}
