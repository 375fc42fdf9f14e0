package planner_test

import (
	"strings"
	"testing"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/planner"
)

// TestIDRules: under the default rule the contacts file's ids and agents,
// the pools' members and the fallback are UUIDs (in any case; kept
// lower-case), and anything else is a file error that shows the form
// wanted; under jobs.IDAny the older ids pass.
func TestIDRules(t *testing.T) {
	t.Parallel()
	const (
		c1 = "c0000000-0000-8000-8000-000000000001"
		a1 = "a0000000-0000-8000-8000-000000000001"
		a2 = "a0000000-0000-8000-8000-000000000002"
	)
	rules := func(member, fallback string) string {
		return "rules:\n  - name: all\n    pool: [{member: \"" + member + "\"}]\nfallback: \"" + fallback + "\"\n"
	}
	contacts := func(id, agent string) string { return "contact,region,owner\n" + id + ",north," + agent + "\n" }
	tests := []struct {
		name           string
		ids            jobs.IDFormat
		rules, cs      string
		rulesErr, cErr string // "" = accepted
	}{
		{name: "uuids", ids: jobs.IDUUID, rules: rules(a1, a2), cs: contacts(c1, a1)},
		{name: "upper-case uuids", ids: jobs.IDUUID, rules: rules(strings.ToUpper(a1), strings.ToUpper(a2)), cs: contacts(strings.ToUpper(c1), strings.ToUpper(a1))},
		{name: "an empty agent is none", ids: jobs.IDUUID, rules: rules(a1, a2), cs: contacts(c1, "")},
		{name: "older ids under uuid", ids: jobs.IDUUID, rules: rules("m-ana", a2), cs: contacts("c-1", a1),
			rulesErr: `r.yaml: line 3: rule 1 "all": pool entry 1: member "m-ana" is not a valid id: want a UUID, 8-4-4-4-12 hex digits`,
			cErr:     `c.csv: line 2: contact id "c-1" is not a valid id: want a UUID`},
		{name: "a truncated fallback and agent", ids: jobs.IDUUID, rules: rules(a1, a2[:35]), cs: contacts(c1, a1[:35]),
			rulesErr: `r.yaml: fallback "` + a2[:35] + `" is not a valid member id: want a UUID`,
			cErr:     `c.csv: line 2: current agent "` + a1[:35] + `" is not a valid id (leave the cell empty for none): want a UUID`},
		{name: "braces", ids: jobs.IDUUID, rules: rules("{"+a1+"}", a2), cs: contacts("{"+c1+"}", a1),
			rulesErr: "(--id-format any accepts other ids)", cErr: "without braces or urn:uuid:"},
		{name: "older ids under any", ids: jobs.IDAny, rules: rules("m-ana", "m-triage"), cs: contacts("c-1", "m-ana")},
		{name: "uuids under any", ids: jobs.IDAny, rules: rules(a1, a2), cs: contacts(c1, a1)},
		{name: "any still refuses a space", ids: jobs.IDAny, rules: rules("ana smith", a2), cs: contacts("c 1", a1),
			rulesErr: `member "ana smith" is not a valid id: want 1-128 letters, digits, - or _`,
			cErr:     `contact id "c 1" is not a valid id: want 1-128 letters, digits, - or _`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rs, err := planner.ParseRules(strings.NewReader(tt.rules), "r.yaml", tt.ids)
			check(t, "rules", err, tt.rulesErr)
			if err == nil && (!tt.ids.Valid(rs.Rules[0].Pool[0].Member) || !tt.ids.Valid(rs.Fallback)) {
				t.Errorf("rules: ids not kept lower-case: %+v", rs)
			}
			cs, err := planner.ReadContacts(strings.NewReader(tt.cs), "c.csv", tt.ids)
			check(t, "contacts", err, tt.cErr)
			if err == nil && (!tt.ids.Valid(cs.List[0].ID) || cs.List[0].Agent != "" && !tt.ids.Valid(cs.List[0].Agent)) {
				t.Errorf("contacts: ids not kept lower-case: %+v", cs.List)
			}
		})
	}
}

// check fails t unless err contains want, or is nil when want is "".
func check(t *testing.T, what string, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Errorf("%s: %v, want no error", what, err)
	case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
		t.Errorf("%s: %v, want an error containing %q", what, err, want)
	}
}
