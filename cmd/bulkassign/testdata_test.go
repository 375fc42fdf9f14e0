package main

// A generator of messy assignment files and, alongside, an independent
// reference model of what running one must produce. The model is written
// from docs/design.md only: it uses no importer, worker or report code.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"

	"github.com/bulkassign/bulkassign/simulator"
)

// replSpec is one way of writing removeExistingAgents.
type replSpec struct {
	csv    string // the CSV cell as written
	json   any    // the JSON value (nil is null) ...
	absent bool   // ... or no key at all
}

// The spellings of removeExistingAgents, by meaning.
var (
	replFalse = []replSpec{
		{csv: "", absent: true}, {csv: "  ", json: nil}, {csv: "false", json: false},
		{csv: "FALSE", json: "FALSE"}, {csv: " no ", json: " no "}, {csv: "0", json: 0}, {csv: "No", json: "No"},
	}
	replTrue = []replSpec{
		{csv: "true", json: true}, {csv: "TRUE", json: "TRUE"}, {csv: "Yes", json: "Yes"},
		{csv: " 1 ", json: 1}, {csv: "yes", json: " yes "},
	}
	replBad = []replSpec{
		{csv: "maybe", json: "maybe"}, {csv: "2", json: 2}, {csv: "truee", json: "truee"},
		{csv: "sí", json: "sí"}, {csv: "yes please", json: "yes please"},
	}
)

// Malformed ids: not UUIDs (ids of the older form, a UUID cut short, with
// braces, as a URN, without hyphens, digits that JSON writes as a number),
// invalid characters, too long, formula-looking.
var malformedIDs = []string{
	"c-000012", "agent-1a2b3c4d", simulator.ContactID(12)[:35], "{" + simulator.ContactID(12) + "}",
	"urn:uuid:" + simulator.MemberID(1), strings.ReplaceAll(simulator.MemberID(2), "-", ""), "20240101",
	"c 000012", "c-0001!", `=HYPERLINK("http://evil.example","x")`, "ñ-001",
	strings.Repeat("a", 129), "c/000001", "+" + simulator.ContactID(1), "@c-1", "m 0001", simulator.MemberID(1) + ";drop",
}

// Extra cells: commas, quotes, newlines, padding, formulas.
var (
	notes = []string{
		"", "", "plain note", " padded note ", "with, comma", "two\nlines", `say "hi"`,
		"comma, and\nnewline", "ñandú 🚀", "-5",
	}
	formulas = []string{
		"", "", "", "ok", "=SUM(A1)", "+1+1", "@SUM(A1)", "-2", `=HYPERLINK("http://evil.example","x")`, "=1,2",
	}
)

// genRow is one row of a messy file.
type genRow struct {
	contact, member string // the id cells as written
	cBase, mBase    string // the ids they stand for ("" for malformed)
	repl            replSpec
	replGroup       []replSpec
	note, formula   string
}

// messyFile is a generated input: its rows and the CRM it runs against.
type messyFile struct {
	rows     []genRow
	contacts []string           // the simulator's known contacts
	members  []simulator.Member // the simulator's members (some inactive)
}

// Sizes of the generated files: rows of the big file, and the contacts and
// members every file draws from.
const (
	messyRows     = 3000
	messyContacts = 800
	messyMembers  = 20
)

// newMessyFile generates a file of n rows deterministically from seed.
func newMessyFile(seed uint64, n int) *messyFile {
	rng := rand.New(rand.NewPCG(seed, 0x6d657373))
	f := &messyFile{}
	for i := 1; i <= messyContacts+20; i++ {
		if i%29 == 0 { // unknown to the CRM
			continue
		}
		f.contacts = append(f.contacts, simulator.ContactID(i))
	}
	f.members = simulator.GenerateMembers(messyMembers)
	for i := range f.members {
		if (i+1)%7 == 4 { // members 4, 11 and 18
			f.members[i].Active = false
		}
	}

	pick := func(xs []string) string { return xs[rng.IntN(len(xs))] }
	contact := func() string { return simulator.ContactID(1 + rng.IntN(messyContacts)) }
	member := func() string {
		if rng.IntN(40) == 0 {
			return pick([]string{simulator.MemberID(99), simulator.MemberID(123)}) // unknown to the CRM
		}
		return simulator.MemberID(1 + rng.IntN(messyMembers))
	}
	replace := func() []replSpec {
		if rng.IntN(3) == 0 {
			return replTrue
		}
		return replFalse
	}
	// mess writes an id with random case and padding.
	mess := func(id string) string {
		b := []byte(id)
		if rng.IntN(3) == 0 {
			for i := range b {
				if rng.IntN(2) == 0 {
					b[i] = byte(strings.ToUpper(string(b[i]))[0])
				}
			}
		}
		pads := []string{"", "", "", " ", "  ", "\t"}
		return pick(pads) + string(b) + pick(pads)
	}
	row := func(c, m string, group []replSpec) genRow {
		return genRow{
			contact: mess(c), member: mess(m), cBase: c, mBase: m,
			repl: group[rng.IntN(len(group))], replGroup: group,
			note: pick(notes), formula: pick(formulas),
		}
	}
	for len(f.rows) < n {
		switch k := rng.IntN(100); {
		case k < 8 && len(f.rows) > 0: // exact duplicate of the row before, maybe spelled differently
			r := f.rows[len(f.rows)-1]
			if r.cBase != "" && r.mBase != "" && rng.IntN(2) == 0 {
				r.contact, r.member = mess(r.cBase), mess(r.mBase)
				r.repl = r.replGroup[rng.IntN(len(r.replGroup))]
			}
			f.rows = append(f.rows, r)
		case k < 12 && len(f.rows) > 0: // duplicate of an earlier row
			f.rows = append(f.rows, f.rows[rng.IntN(len(f.rows))])
		case k < 18: // a run of adds and replaces on one contact
			c := contact()
			ms := []string{member(), member(), member()}
			for range 3 + rng.IntN(4) {
				f.rows = append(f.rows, row(c, pick(ms), replace()))
			}
		case k < 24: // an invalid row
			r := row(contact(), member(), replace())
			switch rng.IntN(5) {
			case 0:
				r.contact, r.cBase = pick(malformedIDs), ""
			case 1:
				r.member, r.mBase = pick(malformedIDs), ""
			case 2:
				r.contact, r.cBase = pick([]string{"", "   "}), ""
			case 3:
				r.member, r.mBase = pick([]string{"", "  "}), ""
			default:
				r.repl, r.replGroup = replBad[rng.IntN(len(replBad))], replBad
			}
			f.rows = append(f.rows, r)
		default:
			f.rows = append(f.rows, row(contact(), member(), replace()))
		}
	}
	f.rows = f.rows[:n]
	return f
}

// simOptions returns the simulator options that know the file's contacts
// and members.
func (f *messyFile) simOptions() simulator.Options {
	return simulator.Options{Contacts: slices.Clone(f.contacts), Members: slices.Clone(f.members)}
}

// csvCell quotes a cell when it must be, and sometimes when it need not.
func csvCell(s string, rng *rand.Rand) string {
	if strings.ContainsAny(s, "\",\r\n") || rng.IntN(5) == 0 {
		return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
	}
	return s
}

// Format names the generated encodings.
const (
	fmtCSV   = "csv"
	fmtJSON  = "json"
	fmtJSONL = "jsonl"
)

// render writes the file in format and returns it with the file line of
// each row (CSV: the line its record starts on; JSON: the element's index;
// JSON Lines: the line).
func (f *messyFile) render(format string) ([]byte, []int) {
	rng := rand.New(rand.NewPCG(7, uint64(len(format))))
	var b bytes.Buffer
	lines := make([]int, len(f.rows))
	b.WriteString("\ufeff") // a BOM in every format
	switch format {
	case fmtCSV:
		b.WriteString("AI Contact ID, team_member_id ,Remove Existing Agents,Note,Formula\r\n")
		line := 2
		for i, r := range f.rows {
			switch rng.IntN(60) {
			case 0:
				b.WriteString("\r\n")
				line++
			case 1:
				b.WriteString(" , ,,, \r\n")
				line++
			}
			rec := strings.Join([]string{
				csvCell(r.contact, rng), csvCell(r.member, rng), csvCell(r.repl.csv, rng),
				csvCell(r.note, rng), csvCell(r.formula, rng),
			}, ",") + "\r\n"
			lines[i] = line
			line += strings.Count(rec, "\n")
			b.WriteString(rec)
		}
	case fmtJSON, fmtJSONL:
		if format == fmtJSON {
			b.WriteString("[\r\n")
		}
		line := 1
		for i, r := range f.rows {
			obj := f.jsonObject(r, rng)
			if format == fmtJSON {
				lines[i] = i + 1
				if i > 0 {
					b.WriteString(",\r\n")
				}
				b.WriteString("  ")
				b.Write(obj)
				continue
			}
			if rng.IntN(50) == 0 {
				b.WriteString("   \r\n")
				line++
			}
			lines[i] = line
			b.Write(obj)
			b.WriteString("\r\n")
			line++
		}
		if format == fmtJSON {
			b.WriteString("\r\n]\r\n")
		}
	default:
		panic("unknown format " + format)
	}
	return b.Bytes(), lines
}

// jsonObject writes one row as a JSON object, with key aliases that vary
// from row to row.
func (f *messyFile) jsonObject(r genRow, rng *rand.Rand) []byte {
	str := func(s string) string {
		b, err := json.Marshal(s)
		if err != nil {
			panic(err)
		}
		return string(b)
	}
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	// An id of digits only is written as a JSON number, which is never an
	// id.
	id := func(s string) string {
		if s != "" && strings.Trim(s, "0123456789") == "" {
			return s
		}
		return str(s)
	}
	kv := []string{
		str(pick("aiContactId", "contact_id", "contactId", "AI Contact ID")) + ": " + id(r.contact),
		str(pick("teamMemberId", "team_member_id", "agent_id")) + ": " + id(r.member),
	}
	if !r.repl.absent {
		v, err := json.Marshal(r.repl.json)
		if err != nil {
			panic(err)
		}
		kv = append(kv, str(pick("removeExistingAgents", "replace", "remove_existing_agents"))+": "+string(v))
	}
	kv = append(kv, `"note": `+str(r.note))
	if r.formula != "" || rng.IntN(2) == 0 {
		kv = append(kv, `"formula": `+str(r.formula))
	}
	rng.Shuffle(len(kv), func(i, j int) { kv[i], kv[j] = kv[j], kv[i] })
	return []byte("{" + strings.Join(kv, ", ") + "}")
}

// Row outcomes of the reference model.
const (
	wantSucceeded = "succeeded"
	wantFailed    = "failed"
	wantInvalid   = "invalid"
)

// wantRow is what the report must say about one input row.
type wantRow struct {
	line    int
	status  string // succeeded, failed or invalid
	reason  string // the summary's error code: invalid_*, missing_*, http_404; "" when succeeded
	http    string // "200", "404" or ""
	errHas  string // a word the error cell must contain; "" when succeeded
	contact string // the report's cells, before formula neutralisation
	member  string
	replace string
	note    string
	formula string
}

// expectation is the reference model's outcome of a whole file.
type expectation struct {
	rows    []wantRow
	state   map[string][]string // the CRM's agents per contact afterwards
	counts  map[string]int64    // succeeded, failed, invalid
	reasons map[string]int64    // error code -> rows
}

// refID is the model of id normalisation: trimmed, lower-case, and then
// a UUID in its canonical form, 8-4-4-4-12 hex digits (the default
// --id-format).
func refID(cell string) (id string, missing, ok bool) {
	id = strings.ToLower(strings.TrimSpace(cell))
	if id == "" {
		return "", true, false
	}
	groups := strings.Split(id, "-")
	if len(groups) != 5 {
		return id, false, false
	}
	for i, g := range groups {
		if len(g) != []int{8, 4, 4, 4, 12}[i] || strings.Trim(g, "0123456789abcdef") != "" {
			return id, false, false
		}
	}
	return id, false, true
}

// refReplaceText is the removeExistingAgents text a format carries.
func refReplaceText(s replSpec, format string) string {
	if format == fmtCSV {
		return strings.TrimSpace(s.csv)
	}
	switch v := s.json.(type) {
	case nil:
		return ""
	case bool:
		return strconv.FormatBool(v)
	case int:
		return strconv.Itoa(v)
	case string:
		return strings.TrimSpace(v)
	}
	panic(fmt.Sprintf("replSpec json %T", s.json))
}

// refBool is the model of removeExistingAgents.
func refBool(text string) (v, ok bool) {
	switch strings.ToLower(text) {
	case "", "false", "0", "no":
		return false, true
	case "true", "1", "yes":
		return true, true
	}
	return false, false
}

// expect runs the reference model over the file as format writes it.
func (f *messyFile) expect(format string, lines []int) expectation {
	known := map[string]bool{}
	for _, c := range f.contacts {
		known[c] = true
	}
	active := map[string]bool{}
	for _, m := range f.members {
		active[m.ID] = m.Active
	}
	e := expectation{state: map[string][]string{}, counts: map[string]int64{}, reasons: map[string]int64{}}
	// stopped holds, by contact, the line of its first row that did not
	// succeed: its later rows are never sent. An invalid row blocks what
	// follows it at import, whatever failed before it: the rows after it
	// name it.
	stopped, invalidAt := map[string]int{}, map[string]int{}
	for i, r := range f.rows {
		w := wantRow{
			line: lines[i], note: strings.TrimSpace(r.note), formula: strings.TrimSpace(r.formula),
			contact: strings.TrimSpace(r.contact), member: strings.TrimSpace(r.member),
		}
		text := refReplaceText(r.repl, format)
		c, cMissing, cOK := refID(r.contact)
		m, mMissing, mOK := refID(r.member)
		replace, rOK := refBool(text)
		switch {
		case cMissing:
			w.status, w.reason, w.errHas = wantInvalid, "missing_contact_id", "aiContactId"
		case !cOK:
			w.status, w.reason, w.errHas = wantInvalid, "invalid_contact_id", "aiContactId"
		case mMissing:
			w.status, w.reason, w.errHas = wantInvalid, "missing_member_id", "teamMemberId"
		case !mOK:
			w.status, w.reason, w.errHas = wantInvalid, "invalid_member_id", "teamMemberId"
		case !rOK:
			w.status, w.reason, w.errHas = wantInvalid, "invalid_remove_existing_agents", "removeExistingAgents"
		case invalidAt[c] != 0:
			w.status, w.reason, w.errHas = wantFailed, "blocked", fmt.Sprintf("line %d ", invalidAt[c])
		case stopped[c] != 0:
			w.status, w.reason, w.errHas = wantFailed, "blocked", fmt.Sprintf("line %d ", stopped[c])
		case !known[c] || !active[m]:
			w.status, w.reason, w.http, w.errHas = wantFailed, "http_404", "404", "404"
		default:
			w.status, w.http = wantSucceeded, "200"
			agents := e.state[c]
			switch {
			case replace:
				agents = []string{m}
			case !slices.Contains(agents, m):
				agents = append(agents, m)
			}
			e.state[c] = agents
		}
		if w.status != wantSucceeded && !cMissing && stopped[c] == 0 {
			stopped[c] = w.line
		}
		if w.status == wantInvalid && !cMissing && invalidAt[c] == 0 {
			invalidAt[c] = w.line
		}
		if w.status == wantInvalid {
			// An invalid row is reported as written (trimmed).
			w.replace = text
			if w.replace == "" {
				w.replace = "false"
			}
		} else {
			w.contact, w.member, w.replace = c, m, strconv.FormatBool(replace)
		}
		e.counts[w.status]++
		if w.reason != "" {
			e.reasons[w.reason]++
		}
		e.rows = append(e.rows, w)
	}
	return e
}
