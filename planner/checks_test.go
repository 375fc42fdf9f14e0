package planner_test

import (
	"bytes"
	"encoding/csv"
	"strings"
	"testing"

	"github.com/bulkassign/bulkassign/planner"
)

var crmMembers = []planner.Member{
	{ID: "m-a", Email: "Ana@Example.com", Name: "Ana", Active: true},
	{ID: "m-b", Email: "ben@example.com", Name: "Ben", Active: true},
	{ID: "m-old", Email: "old@example.com", Name: "Old", Active: false},
	{ID: "m-s1", Email: "sales@example.com", Active: true},
	{ID: "m-s2", Email: "sales@example.com", Active: true},
	{ID: "m-f", Email: "triage@example.com", Active: true},
}

// TestCheck: finding 2. Every pool member and the fallback are checked
// against the CRM's members; emails resolve to ids; each problem names
// the file, the line and the rule.
func TestCheck(t *testing.T) {
	t.Parallel()
	rs := mustRules(t, `rules:
  - name: north
    match: {region: north}
    pool:
      - {member: m-a}
      - {member: BEN@example.com}
      - {member: m-nobody}
      - {member: m-old}
      - {member: nobody@example.com}
      - {member: sales@example.com}
      - {member: ana@example.com}
fallback: triage@example.com
`)
	if !rs.NamesByEmail() {
		t.Error("NamesByEmail: false, want true")
	}
	if _, err := planner.Compute(rs, contacts("c-1 north")); err == nil || !strings.Contains(err.Error(), "named by email") {
		t.Errorf("Compute before Check: %v, want an error about the emails", err)
	}
	err := rs.Check(crmMembers)
	if err == nil {
		t.Fatal("Check: no error")
	}
	for _, w := range []string{
		`rules.yaml: line 7: rule 1 "north": pool entry 3: member m-nobody is not among the CRM's 6 team members`,
		`rules.yaml: line 8: rule 1 "north": pool entry 4: team member Old <old@example.com> (id m-old) is inactive`,
		`rules.yaml: line 9: rule 1 "north": pool entry 5: nobody@example.com is not the email of any of the CRM's 6 team members`,
		`rules.yaml: line 10: rule 1 "north": pool entry 6: sales@example.com is the email of 2 team members`,
		`rules.yaml: line 11: rule 1 "north": pool entries 1 and 7 are the same member m-a`,
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not say %q:\n%v", w, err)
		}
	}
	if got := rs.Rules[0].Pool[1].Member; got != "m-b" {
		t.Errorf("BEN@example.com resolved to %q, want m-b", got)
	}
	if rs.Fallback != "m-f" {
		t.Errorf("fallback %q, want m-f", rs.Fallback)
	}

	good := mustRules(t, "rules:\n  - {name: all, pool: [{member: m-a}, {member: ben@example.com}]}\nfallback: m-nobody\n")
	if err := good.Check(crmMembers); err == nil || !strings.Contains(err.Error(), "rules.yaml: line 3: fallback: member m-nobody is not among") {
		t.Errorf("unknown fallback: %v", err)
	}
}

// TestPreviewAddsUp: finding 4. With full caps and no fallback, every
// contact is counted once by what happens to it; the (no owner) row is
// the contacts left without one; SHARE is of AFTER; the full plan lists
// every contact.
func TestPreviewAddsUp(t *testing.T) {
	t.Parallel()
	rs := mustRules(t, `rules:
  - name: north
    match: {region: north}
    pool: [{member: m-a, cap: 4}, {member: m-b, cap: 4}]
maxShare: 0.3
`)
	// 14 north contacts: 10 owned by m-a, 4 by nobody; 2 west ones, one
	// owned by m-x; and one the CRM does not have.
	var lines []string
	for i := range 14 {
		owner := "m-a"
		if i >= 10 {
			owner = "-"
		}
		lines = append(lines, "c-"+string(rune('a'+i))+" north - "+owner)
	}
	lines = append(lines, "w-1 west - m-x", "w-2 west", "z-1 north - m-a")
	cs := contacts(lines...)
	cs.SetLive(len(cs.List)-1, nil, true)
	p := compute(t, rs, cs)
	pv := p.Preview
	sum := pv.Unchanged + pv.Moves + pv.New + pv.OverCap + pv.NoRuleKept + pv.NoOwner + pv.NotInCRM
	if sum != pv.Contacts || pv.Contacts != 17 {
		t.Fatalf("the categories sum to %d of %d contacts: %+v", sum, pv.Contacts, pv)
	}
	// m-a keeps 4 and the 6 over its cap (no fallback), m-b takes the 4
	// without an owner; w-1 keeps m-x, w-2 stays without.
	if pv.Unchanged != 4 || pv.New != 4 || pv.Moves != 0 || pv.OverCap != 6 || pv.NoOwner != 1 || pv.NoRuleKept != 1 || pv.NotInCRM != 1 {
		t.Errorf("preview %+v", pv)
	}
	if pv.NoOwnerAfter != pv.NoOwner {
		t.Errorf("(no owner) after %d, left without owner %d: the same contacts", pv.NoOwnerAfter, pv.NoOwner)
	}
	total := pv.NoOwnerShare
	for _, m := range pv.Members {
		if want := float64(m.After) / 16; m.Share != want {
			t.Errorf("member %s: share %.3f, want AFTER/16 = %.3f", m.Member, m.Share, want)
		}
		total += m.Share
	}
	if total < 0.999 || total > 1.001 {
		t.Errorf("the shares sum to %.3f, want 1", total)
	}
	var out bytes.Buffer
	if err := p.WritePreview(&out); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"4 kept", "kept over cap (the pool is full, no fallback)", "1 kept (no rule matches, no fallback)",
		"1 not in the CRM", "owners: the contacts file's, trusted"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("preview does not say %q:\n%s", w, out.String())
		}
	}
	if !hasWarning(p, "member m-a would own") {
		t.Errorf("no maxShare warning for m-a, whose AFTER is over 30%%: %q", p.Warnings)
	}
	out.Reset()
	if err := p.WriteContactsCSV(&out); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&out).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 18 || strings.Join(recs[0], ",") != strings.Join(planner.ContactsHeader, ",") {
		t.Fatalf("the full plan has %d lines (header %q), want a header and 17 contacts", len(recs), recs[0])
	}
	actions := map[string]int{}
	for _, r := range recs[1:] {
		actions[r[7]]++
	}
	if actions["kept-over-cap"] != pv.OverCap || actions["not-in-crm"] != 1 || actions["kept-no-rule"] != 1 || actions["no-owner"] != pv.NoOwner {
		t.Errorf("actions %v, preview %+v", actions, pv)
	}
}

// TestLiveOwners: owners read from the CRM replace the file's; a contact
// with several agents is owned by the first in its pool.
func TestLiveOwners(t *testing.T) {
	t.Parallel()
	rs := mustRules(t, "rules:\n  - {name: all, pool: [{member: m-a}, {member: m-b}]}\n")
	cs := contacts("c-1 n - m-a", "c-2 n - m-b", "c-3 n - m-a", "c-4 n - m-b")
	cs.SetLive(0, []string{"m-x", "m-a"}, false) // m-a, in the pool, owns it
	cs.SetLive(1, nil, false)                    // the CRM has no agent
	cs.SetLive(2, []string{"m-a"}, false)
	cs.SetLive(3, []string{"m-b"}, false)
	cs.Live = true
	p := compute(t, rs, cs)
	if len(p.Assignments) != 1 || p.Assignments[0].Contact != "c-2" || p.Assignments[0].Reason != planner.ReasonNew {
		t.Errorf("rows %+v, want c-2 alone, as new", p.Assignments)
	}
	var out bytes.Buffer
	if err := p.WritePreview(&out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "owners: read from the CRM") {
		t.Errorf("preview does not say where the owners come from:\n%s", out.String())
	}
}
