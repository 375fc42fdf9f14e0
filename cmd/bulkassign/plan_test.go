package main

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/planner"
	"github.com/bulkassign/bulkassign/report"
	"github.com/bulkassign/bulkassign/simulator"
)

const (
	exampleContacts = "../../examples/contacts.csv"
	exampleRules    = "../../examples/territories.yaml"
)

// planMembers turns the member names of planRules and planContacts into
// the simulator's member UUIDs, the ids the importer takes by default.
var planMembers = strings.NewReplacer("m-ana", simulator.MemberID(1), "m-ben", simulator.MemberID(2),
	"m-carla", simulator.MemberID(3), "m-dev", simulator.MemberID(4), "m-eli", simulator.MemberID(5),
	"m-triage", simulator.MemberID(6), "m-old", simulator.MemberID(7))

// planRules is the rules file of the end-to-end tests: a rule whose caps
// overflow, weights, a capped member whose share goes to the others, a
// region no rule matches, a fallback.
var planRules = planMembers.Replace(`rules:
  - name: north-enterprise
    match: {region: north, segment: enterprise}
    pool:
      - {member: m-ana, weight: 2, cap: 150}
      - {member: m-ben, cap: 100}
  - name: north
    match: {region: [north, north-east]}
    pool:
      - {member: m-ana}
      - {member: m-ben}
      - {member: m-carla, weight: 2}
  - name: south
    match: {region: south}
    pool:
      - {member: m-dev, weight: 3}
      - {member: m-eli, cap: 100}
fallback: m-triage
maxShare: 0.3
`)

// planContacts generates n contacts over the rules' regions, most owned
// by m-ana (a skewed book), some by members outside every pool, some by
// nobody. It returns the contacts CSV and each contact's owner.
func planContacts(seed uint64, n int) ([]byte, map[string]string) {
	rng := rand.New(rand.NewPCG(seed, 99))
	regions := []string{"north", "north", "north-east", "south", "south", "west"}
	segments := []string{"enterprise", "smb", "smb"}
	owners := []string{"m-ana", "m-ana", "m-ana", "m-ben", "m-dev", "m-old", "m-triage", ""}
	var b bytes.Buffer
	b.WriteString("Contact ID,Region,Segment,Owner\n")
	state := map[string]string{}
	for _, i := range rng.Perm(n) { // the file's order does not matter
		id := simulator.ContactID(i)
		o := planMembers.Replace(owners[rng.IntN(len(owners))])
		fmt.Fprintf(&b, "%s,%s,%s,%s\n", id, regions[rng.IntN(len(regions))], segments[rng.IntN(len(segments))], o)
		if o != "" {
			state[id] = o
		}
	}
	return b.Bytes(), state
}

func writePlanInput(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// seedSim gives the simulator's contacts their current owners, through
// `run`, as the CRM would have them.
func seedSim(t *testing.T, url string, owners map[string]string) {
	t.Helper()
	var b bytes.Buffer
	b.WriteString("aiContactId,teamMemberId,removeExistingAgents\n")
	for _, c := range slices.Sorted(maps.Keys(owners)) {
		fmt.Fprintf(&b, "%s,%s,true\n", c, owners[c])
	}
	file := writePlanInput(t, t.TempDir(), "seed.csv", b.Bytes())
	args := append([]string{"run", "--api-url", url, "--api-key", "k", "--out", t.TempDir()}, fastFlags()...)
	if res := runCLI(t, nil, append(args, file)...); res.code != exitOK {
		t.Fatalf("seed: exit %d (%v)\n%s", res.code, res.err, res.stderr)
	}
}

// simOwners returns each contact's one owner in the simulator, failing on
// a contact with more than one.
func simOwners(t *testing.T, sim *simulator.Simulator) map[string]string {
	t.Helper()
	owners := map[string]string{}
	for c, agents := range sim.State() {
		switch len(agents) {
		case 0:
		case 1:
			owners[c] = agents[0]
		default:
			t.Errorf("contact %s has agents %v, want one owner", c, agents)
		}
	}
	return owners
}

// computePlan plans the files with the planner package, as the command does.
func computePlan(t *testing.T, contacts, rules string) *planner.Plan {
	t.Helper()
	rf, err := os.Open(rules)
	if err != nil {
		t.Fatal(err)
	}
	defer rf.Close()
	rs, err := planner.ParseRules(rf, rules, jobs.IDUUID)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := os.Open(contacts)
	if err != nil {
		t.Fatal(err)
	}
	defer cf.Close()
	cs, err := planner.ReadContacts(cf, contacts, jobs.IDUUID)
	if err != nil {
		t.Fatal(err)
	}
	p, err := planner.Compute(rs, cs)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// previewAfter reads the MEMBER table of the preview the command printed:
// member -> AFTER.
func previewAfter(t *testing.T, stderr string) map[string]int {
	t.Helper()
	got := map[string]int{}
	in := false
	for _, line := range strings.Split(stderr, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) > 0 && f[0] == "MEMBER":
			in = true
		case len(f) == 0:
			in = false
		case in && f[0] != "(no":
			n, err := strconv.Atoi(f[2])
			if err != nil {
				t.Fatalf("preview line %q: %v", line, err)
			}
			if n > 0 {
				got[f[0]] = n
			}
		}
	}
	if len(got) == 0 {
		t.Fatalf("no MEMBER table in:\n%s", stderr)
	}
	return got
}

func ownerCounts(owners map[string]string) map[string]int {
	m := map[string]int{}
	for _, o := range owners {
		m[o]++
	}
	return m
}

// TestPlanEndToEnd plans a few thousand contacts whose owners the
// simulator holds, runs the plan against it, and finds there exactly the
// distribution the preview announced; planning again then changes nothing.
func TestPlanEndToEnd(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data, before := planContacts(1, 3000)
	contacts := writePlanInput(t, dir, "contacts.csv", data)
	rules := writePlanInput(t, dir, "territories.yaml", []byte(planRules))
	sim, url := startSim(t, simulator.Options{Members: simulator.GenerateMembers(7)})
	seedSim(t, url, before)

	out := filepath.Join(dir, "plan")
	planFile := filepath.Join(out, "plan.csv")
	res := runCLI(t, nil, "plan", "--contacts", contacts, "--rules", rules, "--out", out)
	if res.code != exitOK {
		t.Fatalf("plan: exit %d (%v)\n%s", res.code, res.err, res.stderr)
	}
	p := computePlan(t, contacts, rules)
	if len(p.Assignments) < 1000 || p.Preview.Unchanged < 500 || p.Preview.Rules[0].Overflow == 0 || p.Preview.NoRule == 0 {
		t.Fatalf("the generated book does not exercise the plan: %+v", p.Preview)
	}
	wantAfter := map[string]int{}
	for _, m := range p.Preview.Members {
		if m.After > 0 {
			wantAfter[m.Member] = m.After
		}
	}
	if got := previewAfter(t, res.stderr); !maps.Equal(got, wantAfter) {
		t.Errorf("the printed preview says %v, the planner %v", got, wantAfter)
	}
	if !strings.Contains(res.stderr, "warning: member a0000000-") || !strings.Contains(res.stderr, "above maxShare 30.0%") {
		t.Errorf("no maxShare warning in:\n%s", res.stderr)
	}

	args := append([]string{"run", "--api-url", url, "--api-key", "k", "--out", t.TempDir()}, fastFlags()...)
	if res := runCLI(t, nil, append(args, planFile)...); res.code != exitOK {
		t.Fatalf("run plan.csv: exit %d (%v)\n%s", res.code, res.err, res.stderr)
	}
	owners := simOwners(t, sim)
	if got := ownerCounts(owners); !maps.Equal(got, wantAfter) {
		t.Errorf("the CRM's distribution %v, the preview's after %v", got, wantAfter)
	}
	moved := 0
	for c, o := range owners {
		if before[c] != o {
			moved++
		}
	}
	if moved != len(p.Assignments) {
		t.Errorf("%d contacts changed owner in the CRM, the plan has %d rows", moved, len(p.Assignments))
	}

	// Plan the CRM's new state: nothing is left to do.
	var now bytes.Buffer
	now.WriteString("aiContactId,region,segment,currentAgent\n")
	cs := strings.Split(strings.TrimSpace(string(data)), "\n")[1:]
	for _, line := range cs {
		f := strings.Split(line, ",")
		fmt.Fprintf(&now, "%s,%s,%s,%s\n", f[0], f[1], f[2], owners[f[0]])
	}
	calls := sim.Stats().Assigned
	res = runCLI(t, nil, "plan", "--apply", "--api-url", url, "--api-key", "k", "--out", t.TempDir(),
		"--contacts", writePlanInput(t, dir, "now.csv", now.Bytes()), "--rules", rules)
	if res.code != exitOK || !strings.Contains(res.stderr, "nothing to apply") {
		t.Errorf("re-plan: exit %d (%v), want 0 and nothing to apply\n%s", res.code, res.err, res.stderr)
	}
	if n := sim.Stats().Assigned - calls; n != 0 {
		t.Errorf("re-plan made %d assignments, want none", n)
	}
}

// TestPlanOutput: the CSV goes to stdout or to --out DIR, byte for byte
// the same every time; the preview goes to stderr.
func TestPlanOutput(t *testing.T) {
	t.Parallel()
	first := runCLI(t, nil, "plan", "--contacts", exampleContacts, "--rules", exampleRules)
	if first.code != exitOK {
		t.Fatalf("exit %d (%v)\n%s", first.code, first.err, first.stderr)
	}
	if !strings.HasPrefix(first.stdout, strings.Join(planner.Header, ",")+"\n") {
		t.Errorf("stdout does not start with the header:\n%s", first.stdout)
	}
	for _, w := range []string{"MEMBER", "BEFORE", "AFTER", "RULE", "north-enterprise", "plan: 40 contacts"} {
		if !strings.Contains(first.stderr, w) {
			t.Errorf("stderr does not have %q:\n%s", w, first.stderr)
		}
	}
	if strings.Contains(first.stdout, "MEMBER") {
		t.Error("the preview is on stdout")
	}
	if again := runCLI(t, nil, "plan", "--contacts", exampleContacts, "--rules", exampleRules); again.stdout != first.stdout || again.stderr != first.stderr {
		t.Error("a second plan of the same files differs")
	}
	out := filepath.Join(t.TempDir(), "plan")
	res := runCLI(t, nil, "plan", "--contacts", exampleContacts, "--rules", exampleRules, "--out", out)
	if res.code != exitOK || res.stdout != "" {
		t.Fatalf("--out: exit %d (%v), stdout %q", res.code, res.err, res.stdout)
	}
	if b, err := os.ReadFile(filepath.Join(out, "plan.csv")); err != nil || string(b) != first.stdout {
		t.Errorf("--out file differs from stdout (%v)", err)
	}
	// Contacts from stdin.
	in, err := os.ReadFile(exampleContacts)
	if err != nil {
		t.Fatal(err)
	}
	if res := runCLI(t, bytes.NewReader(in), "plan", "--contacts", "-", "--rules", exampleRules); res.stdout != first.stdout {
		t.Errorf("contacts from stdin: exit %d (%v), other output", res.code, res.err)
	}
}

func TestPlanErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	m1, c1 := simulator.MemberID(1), simulator.ContactID(1)
	badRules := writePlanInput(t, dir, "bad.yaml", []byte("rules:\n  - name: a\n    pool: [{member: "+m1+", weight: 0}]\n"))
	badContacts := writePlanInput(t, dir, "bad.csv", []byte("contact,region\n"+c1+",n\nc 2,n\n"))
	olderContacts := writePlanInput(t, dir, "older.csv", []byte("contact,region\nc-1,north\n"))
	regionRules := writePlanInput(t, dir, "region.yaml", []byte("rules:\n  - name: a\n    match: {region: n}\n    pool: [{member: "+m1+"}]\n"))
	segmentOnly := writePlanInput(t, dir, "seg.csv", []byte("contact,segment\n"+c1+",smb\n"))
	emailRules := writePlanInput(t, dir, "email.yaml", []byte("rules:\n  - {name: all, pool: [{member: ana@example.com}]}\n"))
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"no files", nil, []string{"--contacts", "--rules"}},
		{"an argument", []string{"--contacts", exampleContacts, "--rules", exampleRules, "x.csv"}, []string{"unexpected", "x.csv"}},
		{"both stdin", []string{"--contacts", "-", "--rules", "-"}, []string{"stdin"}},
		{"missing rules", []string{"--contacts", exampleContacts, "--rules", filepath.Join(dir, "none.yaml")}, []string{"open rules", "none.yaml"}},
		{"missing contacts", []string{"--contacts", filepath.Join(dir, "none.csv"), "--rules", exampleRules}, []string{"open contacts", "none.csv"}},
		{"bad rules", []string{"--contacts", exampleContacts, "--rules", badRules}, []string{"bad.yaml", "line 3", `rule 1 "a"`, "weight 0"}},
		{"bad contacts", []string{"--contacts", badContacts, "--rules", exampleRules}, []string{"bad.csv", "line 3", `"c 2"`}},
		{"ids that are not UUIDs", []string{"--contacts", olderContacts, "--rules", exampleRules},
			[]string{"older.csv", "line 2", `contact id "c-1" is not a valid id: want a UUID`, "--id-format any"}},
		{"a bad --id-format", []string{"--contacts", exampleContacts, "--rules", exampleRules, "--id-format", "guid"}, []string{"--id-format", "want uuid (the default) or any"}},
		{"column the rules need", []string{"--contacts", segmentOnly, "--rules", regionRules}, []string{"seg.csv", "no region column"}},
		{"--out a file", []string{"--contacts", exampleContacts, "--rules", exampleRules, "--out", filepath.Join(dir, "plan.csv")}, []string{"--out is a folder, as for run"}},
		{"--record-previous without --apply", []string{"--contacts", exampleContacts, "--rules", exampleRules, "--record-previous"}, []string{"add --apply"}},
		{"--apply without a key", []string{"--contacts", exampleContacts, "--rules", exampleRules, "--apply"}, []string{"no API key", "--simulate"}},
		{"--live without a key", []string{"--contacts", exampleContacts, "--rules", exampleRules, "--live"}, []string{"--live: no API key", "owners read"}},
		{"members by email without a key", []string{"--contacts", exampleContacts, "--rules", emailRules}, []string{"email.yaml", "names pool members by email", "BULKASSIGN_API_KEY"}},
		{"--preflight without a key", []string{"--contacts", exampleContacts, "--rules", exampleRules, "--preflight"}, []string{"--preflight: no API key"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res := runCLI(t, nil, append([]string{"plan"}, tt.args...)...)
			if res.code != exitFatal {
				t.Fatalf("exit %d (%v), want 1", res.code, res.err)
			}
			for _, w := range tt.want {
				if !strings.Contains(res.errText(), w) {
					t.Errorf("message %q does not mention %q", res.errText(), w)
				}
			}
			if res.stdout != "" {
				t.Errorf("stdout %q, want nothing", res.stdout)
			}
		})
	}
}

// TestPlanIDFormatAny: with --id-format any the planner takes the older
// ids, and the plan it applies is imported by the same rule.
func TestPlanIDFormatAny(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	contacts := writePlanInput(t, dir, "contacts.csv", []byte("contact,region,owner\nc-1,north,m-old\nC-2,north,\n"))
	rules := writePlanInput(t, dir, "rules.yaml", []byte("rules:\n  - name: north\n    match: {region: north}\n    pool: [{member: M-Ana}]\n"))
	res := runCLI(t, nil, "plan", "--contacts", contacts, "--rules", rules, "--id-format", "any")
	if res.code != exitOK {
		t.Fatalf("plan --id-format any: exit %d (%v)\n%s", res.code, res.err, res.stderr)
	}
	if want := "c-1,m-ana,true,north,m-old,outside-pool\nc-2,m-ana,true,north,,new\n"; !strings.HasSuffix(res.stdout, want) {
		t.Errorf("plan:\n%s\nwant it to end with\n%s", res.stdout, want)
	}
	out := t.TempDir()
	members := writePlanInput(t, dir, "members.json", []byte(`[{"id": "m-ana"}]`))
	args := append([]string{"plan", "--apply", "--simulate", "--sim-members", members, "--contacts", contacts, "--rules", rules, "--out", out}, fastFlags()...)
	if res := runCLI(t, nil, append(args, "--id-format", "any")...); res.code != exitOK {
		t.Fatalf("plan --apply --id-format any: exit %d (%v)\n%s", res.code, res.err, res.stderr)
	}
	if s := readSummary(t, reportDir(t, out)); s.Rows != 2 || s.Succeeded != 2 {
		t.Errorf("summary: %d rows, %d succeeded; want 2, 2", s.Rows, s.Succeeded)
	}
}

// TestPlanApplyQueued: --apply with --redis queues the plan as a batch for
// the workers and prints its id last; a worker applies it.
func TestPlanApplyQueued(t *testing.T) {
	t.Parallel()
	d := newDist(t, simulator.Options{Members: simulator.GenerateMembers(7)})
	data, before := planContacts(2, 1200)
	contacts := writePlanInput(t, d.dir, "contacts.csv", data)
	rules := writePlanInput(t, d.dir, "territories.yaml", []byte(planRules))
	seedSim(t, d.api, before)
	p := computePlan(t, contacts, rules)

	res := d.cli(t, "plan", "--apply", "--api-url", d.api, "--api-key", d.key, "--out", d.dir, "--contacts", contacts, "--rules", rules, "--name", "rebalance")
	if res.code != exitOK {
		t.Fatalf("plan --apply: exit %d (%v)\n%s", res.code, res.err, res.stderr)
	}
	lines := strings.Split(strings.TrimSpace(res.stdout), "\n")
	id := lines[len(lines)-1]
	if !report.ValidBatchID(id) {
		t.Fatalf("last stdout line %q is not a batch id", id)
	}
	if b := d.batch(t, id); b.Rows != int64(len(p.Assignments)) || b.Name != "rebalance" || b.Origin.Via != "plan --apply" || b.Origin.By == "" {
		t.Errorf("batch: %d rows, name %q, origin %+v; want %d, rebalance, via plan --apply by this user", b.Rows, b.Name, b.Origin, len(p.Assignments))
	}
	d.startWorker(t, fastFlags()[:4]...)
	r, dir := d.reportWait(t, id)
	if r.code != exitOK {
		t.Fatalf("report: exit %d (%v)\n%s", r.code, r.err, r.stderr)
	}
	want := map[string]string{}
	maps.Copy(want, before)
	for _, a := range p.Assignments {
		want[a.Contact] = a.Member
	}
	if got := simOwners(t, d.sim); !maps.Equal(got, want) {
		t.Errorf("the CRM's owners differ from the plan's: %d contacts, want %d", len(got), len(want))
	}
	// The plan's extra columns are in the report.
	header, _ := readReportCSV(t, filepath.Join(dir, report.SucceededFile))
	for _, col := range []string{"rule", "previousAgent", "reason"} {
		if !slices.Contains(header, col) {
			t.Errorf("succeeded.csv header %q has no %s column", header, col)
		}
	}
}

// TestPlanApplySimulate is the demo: plan and apply the examples against
// the built-in simulator, no CRM, key or Redis needed. As for run
// --simulate, nothing outlives the command: it says it cannot resume and
// keeps no state. The batch says it came from plan --apply, with the
// settings its calls were made with.
func TestPlanApplySimulate(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	out := t.TempDir()
	args := append([]string{"plan", "--apply", "--simulate", "--sim-members", "7", "--contacts", exampleContacts, "--rules", exampleRules,
		"--out", out}, fastFlags()...)
	res := runCLI(t, nil, args...)
	if res.code != exitOK {
		t.Fatalf("exit %d (%v)\n%s", res.code, res.err, res.stderr)
	}
	if !strings.Contains(res.stderr, "it cannot resume if it stops (--simulate") {
		t.Errorf("plan --apply --simulate does not say it cannot resume:\n%s", res.stderr)
	}
	if entries, _ := os.ReadDir(filepath.Join(os.Getenv("XDG_STATE_HOME"), "bulkassign")); len(entries) != 0 {
		t.Errorf("plan --apply --simulate left state behind: %v", entries)
	}
	s := readSummary(t, reportDir(t, out))
	p := computePlan(t, exampleContacts, exampleRules)
	if s.Rows != int64(len(p.Assignments)) || s.Succeeded != s.Rows {
		t.Errorf("summary: %d rows, %d succeeded; want %d, all", s.Rows, s.Succeeded, len(p.Assignments))
	}
	if s.Origin == nil || s.Origin.Via != "plan --apply" || s.Origin.Settings == nil || s.Origin.Settings.Burst != 1 {
		t.Errorf("summary origin %+v, want via plan --apply with the settings used (burst 1, the default)", s.Origin)
	}
}
