package planner_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/planner"
)

// FuzzRules: no rules file may panic the parser, and what it accepts is
// valid and can be planned.
func FuzzRules(f *testing.F) {
	for _, s := range []string{
		"rules:\n  - name: a\n    match: {region: [n], segment: s}\n    pool: [{member: m-1, weight: 2, cap: 3}, {member: m-2}]\nfallback: m-fb\nmaxShare: 0.4\n",
		"rules:\n  - name: a\n    pool: [{member: m-1}]\n",
		"rules:\n  - name: a\n    pool: [{member: A0000000-0000-8000-8000-000000000001}]\nfallback: \"{a0000000-0000-8000-8000-000000000002}\"\n",
		"rules: []\n",
		"rules:\n  - &r {name: a, pool: [{member: m-1}]}\n  - *r\n",
		"rules:\n  - name: a\n    pool: [{member: m-1, weight: 1.5, cap: -1}]\n",
		"- a\n",
		"{",
		"---\n---\n",
		"rules:\n  - name: a\n    match: {region: {x: 1}}\n",
		"a: &a [*a]\n",
	} {
		f.Add([]byte(s))
	}
	cs := &planner.Contacts{File: "c.csv", HasRegion: true, HasSegment: true, HasAgent: true, List: []planner.Contact{
		{ID: "c-1", Region: "n", Segment: "s", Agent: "m-1"}, {ID: "c-2", Region: "x"}, {ID: "c-3", Agent: "m-2"},
	}}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, ids := range []jobs.IDFormat{jobs.IDUUID, jobs.IDAny} {
			rs, err := planner.ParseRules(bytes.NewReader(data), "r.yaml", ids)
			if err != nil {
				if !strings.HasPrefix(err.Error(), "r.yaml") {
					t.Errorf("message %q does not start with the file name", err)
				}
				continue
			}
			if len(rs.Rules) == 0 || rs.MaxShare < 0 || rs.MaxShare > 1 || rs.Fallback != "" && !ids.Valid(rs.Fallback) || rs.FallbackEmail != "" && rs.Fallback != "" {
				t.Fatalf("accepted invalid rules %+v", rs)
			}
			for _, r := range rs.Rules {
				if r.Name == "" || len(r.Pool) == 0 {
					t.Fatalf("accepted rule %+v", r)
				}
				for _, m := range r.Pool {
					if (m.Email == "" && !ids.Valid(m.Member) || m.Email != "" && m.Member != "") || m.Weight < 1 || m.Cap < 0 {
						t.Fatalf("accepted pool member %+v", m)
					}
				}
			}
			p, err := planner.Compute(rs, cs)
			if rs.NamesByEmail() {
				if err == nil {
					t.Fatal("planned rules whose members by email were never checked")
				}
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			pv := p.Preview
			if pv.Planned+pv.Unassigned != len(cs.List) ||
				pv.Unchanged+pv.Moves+pv.New+pv.OverCap+pv.NoRuleKept+pv.NoOwner+pv.NotInCRM != pv.Contacts {
				t.Fatalf("preview %+v does not add up", pv)
			}
		}
	})
}

// FuzzContacts: no contacts file may panic the reader, and what it
// accepts has well-formed, distinct ids.
func FuzzContacts(f *testing.F) {
	for _, s := range []string{
		"aiContactId,region,segment,currentAgent\nc-1,north,smb,m-1\nc-2,south,,\n",
		"\ufeffContact ID,Region,Owner\r\n C-1 , North , M-1 \r\n",
		"contact,region\nc-1,\"a\nb\"\n",
		"contact,region\nc-1,n\"x\n",
		"contact,region\nc-1,n\nc-1,n\n",
		"contact,region,owner\n0B6E4F8A-3C2D-4E1F-9A7B-5C6D7E8F9A0B,n,{550e8400-e29b-41d4-a716-446655440000}\n",
		"",
		"contact\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, ids := range []jobs.IDFormat{jobs.IDUUID, jobs.IDAny} {
			cs, err := planner.ReadContacts(bytes.NewReader(data), "c.csv", ids)
			if err != nil {
				continue
			}
			seen := map[string]bool{}
			for _, c := range cs.List {
				if !ids.Valid(c.ID) || c.Agent != "" && !ids.Valid(c.Agent) || seen[c.ID] || c.Line < 2 {
					t.Fatalf("accepted contact %+v", c)
				}
				seen[c.ID] = true
			}
		}
	})
}
