package main

import (
	"encoding/csv"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bulkassign/bulkassign/report"
	"github.com/bulkassign/bulkassign/simulator"
)

// liveFixture is a CRM and a contacts file that disagree: five north
// contacts whose file owners fit the pool exactly, but in the CRM c4
// went to a member outside the pool, c3 has a second agent, and c5 is
// not there at all.
type liveFixture struct {
	sim                  *simulator.Simulator
	url, contacts, rules string
	c                    [6]string // c[1]..c[5]
	m1, m2, outsider     string
}

func newLiveFixture(t *testing.T) *liveFixture {
	t.Helper()
	f := &liveFixture{m1: simulator.MemberID(1), m2: simulator.MemberID(2), outsider: simulator.MemberID(7)}
	for i := 1; i <= 5; i++ {
		f.c[i] = simulator.ContactID(i)
	}
	f.sim, f.url = startSim(t, simulator.Options{Members: simulator.GenerateMembers(7), Contacts: f.c[1:5]})
	dir := t.TempDir()
	f.contacts = writePlanInput(t, dir, "contacts.csv", []byte("contact,region,owner\n"+
		f.c[1]+",north,"+f.m1+"\n"+f.c[2]+",north,"+f.m2+"\n"+f.c[3]+",north,"+f.m1+"\n"+
		f.c[4]+",north,"+f.m2+"\n"+f.c[5]+",north,"+f.m1+"\n"))
	f.rules = writePlanInput(t, dir, "territories.yaml", []byte("rules:\n  - name: north\n    match: {region: north}\n    pool:\n"+
		"      - {member: "+f.m1+"}\n      - {member: agent0002@example.com}\n"))
	f.sim.SetAgents(f.c[1], f.m1)
	f.sim.SetAgents(f.c[2], f.m2)
	f.sim.SetAgents(f.c[3], f.outsider, f.m1)
	f.sim.SetAgents(f.c[4], f.outsider) // behind the file's back
	return f
}

func (f *liveFixture) plan(t *testing.T, args ...string) cliResult {
	t.Helper()
	all := append([]string{"plan", "--contacts", f.contacts, "--rules", f.rules, "--api-url", f.url, "--api-key", "k"}, fastFlags()...)
	return runCLI(t, nil, append(all, args...)...)
}

// TestPlanLive: finding 1. Without --live the plan trusts the file (every
// contact fits: no row) and says so; with --live it reads the CRM: c4 is
// moved back into the pool, c5, which the CRM does not have, gets no row
// (no 404), and applying it leaves nothing to do for the next plan.
func TestPlanLive(t *testing.T) {
	t.Parallel()
	f := newLiveFixture(t)
	res := f.plan(t, "--preflight")
	if res.code != exitOK || strings.Count(res.stdout, "\n") != 1 || !strings.Contains(res.stderr, "owners: the contacts file's, trusted") {
		t.Fatalf("plan without --live: exit %d (%v), stdout %q\n%s", res.code, res.err, res.stdout, res.stderr)
	}
	res = f.plan(t, "--live")
	if res.code != exitOK {
		t.Fatalf("plan --live: exit %d (%v)\n%s", res.code, res.err, res.stderr)
	}
	if want := f.c[4] + "," + f.m2 + ",true,north," + f.outsider + ",outside-pool\n"; !strings.HasSuffix(res.stdout, want) || strings.Count(res.stdout, "\n") != 2 {
		t.Errorf("plan --live rows:\n%s\nwant the header and %s", res.stdout, want)
	}
	for _, w := range []string{"owners: read from the CRM", "1 not in the CRM", "live: read the agents of 5/5 contacts"} {
		if !strings.Contains(res.stderr, w) {
			t.Errorf("plan --live does not say %q:\n%s", w, res.stderr)
		}
	}

	out := t.TempDir()
	res = f.plan(t, "--live", "--apply", "--out", out)
	if res.code != exitOK {
		t.Fatalf("plan --live --apply: exit %d (%v)\n%s", res.code, res.err, res.stderr)
	}
	if st := f.sim.Stats(); st.Assigned != 1 || st.ByStatus[404] != 2 { // c5's info read, twice: one per plan
		t.Errorf("%d assignments, %d 404s; want 1 and the 2 reads of c5", st.Assigned, st.ByStatus[404])
	}
	if got := f.sim.Agents(f.c[4]); len(got) != 1 || got[0] != f.m2 {
		t.Errorf("c4's agents %v, want [%s]", got, f.m2)
	}
	res = f.plan(t, "--live", "--apply", "--out", out)
	if res.code != exitOK || !strings.Contains(res.stderr, "nothing to apply") {
		t.Errorf("the next live plan: exit %d (%v), want nothing to apply\n%s", res.code, res.err, res.stderr)
	}
}

// TestPlanPoolsChecked: finding 2. A pool with an unknown and an inactive
// member fails before anything is queued, naming the file, the line and
// the rule; nothing moves.
func TestPlanPoolsChecked(t *testing.T) {
	t.Parallel()
	members := simulator.GenerateMembers(3)
	members[2].Active = false
	sim, url := startSim(t, simulator.Options{Members: members})
	dir := t.TempDir()
	rules := writePlanInput(t, dir, "territories.yaml", []byte("rules:\n  - name: north\n    match: {region: north}\n    pool:\n"+
		"      - {member: "+simulator.MemberID(1)+"}\n      - {member: "+simulator.MemberID(9)+"}\n      - {member: agent0003@example.com}\n"))
	out := t.TempDir()
	for _, extra := range [][]string{{"--preflight"}, {"--apply", "--out", out}, {"--apply", "--simulate", "--sim-members", "1", "--out", out}} {
		args := append([]string{"plan", "--contacts", exampleContacts, "--rules", rules, "--api-url", url, "--api-key", "k"}, extra...)
		res := runCLI(t, nil, args...)
		if res.code != exitFatal {
			t.Fatalf("%v: exit %d, want 1\n%s", extra, res.code, res.stderr)
		}
		for _, w := range []string{
			"territories.yaml: line 6: rule 1 \"north\": pool entry 2: member " + simulator.MemberID(9) + " is not among the CRM's",
			"territories.yaml: line 7: rule 1 \"north\": pool entry 3:",
		} {
			if !strings.Contains(res.errText(), w) {
				t.Errorf("%v: message does not say %q:\n%s", extra, w, res.errText())
			}
		}
	}
	if !strings.Contains(runCLI(t, nil, "plan", "--contacts", exampleContacts, "--rules", rules, "--api-url", url, "--api-key", "k", "--preflight").errText(),
		"Agent 0003 <agent0003@example.com> (id "+simulator.MemberID(3)+") is inactive") {
		t.Error("the inactive member is not named")
	}
	if n := sim.Stats().Assigned; n != 0 {
		t.Errorf("%d assignments, want none", n)
	}
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Errorf("--out has %d entries, want nothing: no batch ran", len(entries))
	}
}

// TestPlanUndo: finding 3. plan --apply --record-previous writes a
// rollback.csv that, run, gives every contact its owner back.
func TestPlanUndo(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data, before := planContacts(3, 400)
	contacts := writePlanInput(t, dir, "contacts.csv", data)
	rules := writePlanInput(t, dir, "territories.yaml", []byte(planRules))
	sim, url := startSim(t, simulator.Options{Members: simulator.GenerateMembers(7)})
	seedSim(t, url, before)

	out := t.TempDir()
	args := append([]string{"plan", "--apply", "--record-previous", "--live", "--contacts", contacts, "--rules", rules,
		"--api-url", url, "--api-key", "k", "--out", out}, fastFlags()...)
	res := runCLI(t, nil, args...)
	if res.code != exitOK {
		t.Fatalf("plan --apply --record-previous: exit %d (%v)\n%s", res.code, res.err, res.stderr)
	}
	batch := reportDir(t, out)
	for _, f := range []string{planRowsFile, planContactsFile, report.RollbackFile} {
		if _, err := os.Stat(filepath.Join(batch, f)); err != nil {
			t.Errorf("the batch folder has no %s: %v", f, err)
		}
	}
	if maps.Equal(simOwners(t, sim), before) {
		t.Fatal("the plan changed nothing")
	}
	args = append([]string{"run", "--api-url", url, "--api-key", "k", "--out", t.TempDir()}, fastFlags()...)
	if res := runCLI(t, nil, append(args, filepath.Join(batch, report.RollbackFile))...); res.code != exitOK {
		t.Fatalf("run rollback.csv: exit %d (%v)\n%s", res.code, res.err, res.stderr)
	}
	// Contacts that had an owner have it again; those that had none keep
	// the plan's (the API cannot remove every agent) and are listed.
	got := simOwners(t, sim)
	for c, o := range before {
		if got[c] != o {
			t.Errorf("contact %s: owner %q after the rollback, want %q", c, got[c], o)
		}
	}
	_, unrestorable := readReportCSV(t, filepath.Join(batch, report.RollbackUnrestorableFile))
	if len(got)-len(before) != len(unrestorable) {
		t.Errorf("%d contacts got a first owner, rollback-unrestorable.csv lists %d", len(got)-len(before), len(unrestorable))
	}
}

// TestPlanFullPlanFile: finding 4. --out DIR has every contact's plan,
// and the preview's categories add up to the contacts.
func TestPlanFullPlanFile(t *testing.T) {
	t.Parallel()
	out := t.TempDir()
	res := runCLI(t, nil, "plan", "--contacts", exampleContacts, "--rules", exampleRules, "--out", out)
	if res.code != exitOK {
		t.Fatalf("exit %d (%v)\n%s", res.code, res.err, res.stderr)
	}
	f, err := os.Open(filepath.Join(out, planContactsFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 41 {
		t.Errorf("%s has %d lines, want a header and the 40 contacts", planContactsFile, len(recs))
	}
	p := computePlan(t, exampleContacts, exampleRules)
	pv := p.Preview
	if pv.Unchanged+pv.Moves+pv.New+pv.OverCap+pv.NoRuleKept+pv.NoOwner+pv.NotInCRM != 40 {
		t.Errorf("the categories do not add up to 40: %+v", pv)
	}
	if !strings.Contains(res.stderr, "plan: 40 contacts: ") || !strings.Contains(res.stderr, "pools: not checked") {
		t.Errorf("preview:\n%s", res.stderr)
	}
}
