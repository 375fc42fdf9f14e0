package importer

import (
	"iter"
	"strings"

	"github.com/bulkassign/bulkassign/jobs"
)

// Plan groups valid rows into one ordered list of calls per contact.
//
// A contact's rows are a sequence: an invalid row stops its contact, so
// the contact's later rows are blocked (never sent, failed as blocked) and
// stay out of the plan.
//
// A row that repeats the contact's last call exactly (same member, same
// mode) is merged into it. Applying it
// again could not change the contact, and since nothing stands between the
// two, the merged rows share the call's outcome exactly as they would have
// had theirs: when the call fails, the first row fails and the repeats are
// blocked by it. Anything else is its own call, so the contact ends as the
// file says even when a row in between fails.
//
// A plan holds every contact of the file until it is queued, so it is kept
// small (about 90 bytes per contact of one row): a contact whose one call
// stands for one line, the usual case, is a 32-byte value in contacts;
// only contacts with more get a longPlan with their []jobs.Op. Contact
// and member ids are copied on first sight, so the plan does not pin the
// decoder's line buffers (a CSV field is a substring of its whole record).
type Plan struct {
	index    map[string]int32 // contact id -> its index in contacts
	uuids    map[uuid]int32   // the same for ids in the UUID form, kept in 16 bytes
	contacts []contactPlan    // in order of first appearance in the file
	long     []longPlan       // contactPlan.long-1 indexes it

	memberIndex map[string]int32 // member id -> its index in members
	members     []string         // interned member ids

	// stoppedAt is the line of the first invalid row of each contact that
	// has one.
	stoppedAt map[string]int

	// Rows, Valid, Blocked and Merged count the rows seen, the valid ones
	// planned, the valid ones blocked by an invalid row, and the planned
	// ones merged into an earlier duplicate.
	Rows, Valid, Blocked, Merged int
}

// contactPlan is one contact. While long is 0 it has exactly one op, one
// line long: member, replace and line. Otherwise its ops are in
// Plan.long[long-1] and the other fields are unused.
type contactPlan struct {
	// contact is the id, unless it is a UUID, kept in id then.
	contact string
	id      uuid
	member  int32 // index in Plan.members
	line    int32
	long    int32
	replace bool
}

// longPlan is a contact with more than one op, or an op standing for more
// than one line.
type longPlan struct {
	ops []jobs.Op
}

// NewPlan returns an empty plan.
func NewPlan() *Plan {
	return &Plan{index: map[string]int32{}, uuids: map[uuid]int32{}, memberIndex: map[string]int32{}, stoppedAt: map[string]int{}}
}

// Add takes the next row of the file. A valid row of a contact stopped by
// an earlier invalid row gets that row's line in BlockedBy and is not
// planned.
func (p *Plan) Add(r *jobs.Row) {
	p.Rows++
	if !r.Valid() {
		if c := strings.ToLower(r.ContactID); c != "" {
			if _, ok := p.stoppedAt[c]; !ok {
				p.stoppedAt[strings.Clone(c)] = r.Line
			}
		}
		return
	}
	if l, ok := p.stoppedAt[r.ContactID]; ok {
		r.BlockedBy = l
		p.Blocked++
		return
	}
	p.Valid++
	m, ok := p.memberIndex[r.MemberID]
	if !ok {
		m = int32(len(p.members))
		member := strings.Clone(r.MemberID)
		p.members = append(p.members, member)
		p.memberIndex[member] = m
	}
	var (
		i int32
		c = contactPlan{member: m, line: int32(r.Line), replace: r.Replace}
	)
	if id, isUUID := parseUUID(r.ContactID); isUUID {
		if i, ok = p.uuids[id]; !ok {
			p.uuids[id], c.id = int32(len(p.contacts)), id
		}
	} else if i, ok = p.index[r.ContactID]; !ok {
		c.contact = strings.Clone(r.ContactID)
		p.index[c.contact] = int32(len(p.contacts))
	}
	if !ok {
		if int(c.line) != r.Line { // a line number past int32: keep it as it is
			c.long = p.newLong(nil)
			p.long[c.long-1].add(p.members[m], r.Replace, r.Line)
		}
		p.contacts = append(p.contacts, c)
		return
	}
	pc := &p.contacts[i]
	if pc.long == 0 {
		pc.long = p.newLong(&jobs.Op{MemberID: p.members[pc.member], Replace: pc.replace, Lines: []int{int(pc.line)}})
	}
	if p.long[pc.long-1].add(p.members[m], r.Replace, r.Line) {
		p.Merged++
	}
}

// newLong adds a longPlan starting with op, if not nil, and returns its
// contactPlan.long.
func (p *Plan) newLong(op *jobs.Op) int32 {
	var l longPlan
	if op != nil {
		l.ops = []jobs.Op{*op}
	}
	p.long = append(p.long, l)
	return int32(len(p.long))
}

// add takes the contact's next row and reports whether it was merged into
// the last op. member is interned.
func (c *longPlan) add(member string, replace bool, line int) (merged bool) {
	if n := len(c.ops); n > 0 {
		if last := &c.ops[n-1]; last.MemberID == member && last.Replace == replace {
			last.Lines = append(last.Lines, line)
			return true
		}
	}
	c.ops = append(c.ops, jobs.Op{MemberID: member, Replace: replace, Lines: []int{line}})
	return false
}

// Contacts is the number of contacts with at least one call to make.
func (p *Plan) Contacts() int { return len(p.contacts) }

// All yields every contact with its calls, in order of first appearance
// in the file. The ops of a contact of one line are built afresh for each
// contact; the others are the plan's own.
func (p *Plan) All() iter.Seq[jobs.Contact] {
	return func(yield func(jobs.Contact) bool) {
		for _, c := range p.contacts {
			var ops []jobs.Op
			if c.long == 0 {
				ops = []jobs.Op{{MemberID: p.members[c.member], Replace: c.replace, Lines: []int{int(c.line)}}}
			} else {
				ops = p.long[c.long-1].ops
			}
			id := c.contact
			if id == "" {
				id = c.id.String()
			}
			if !yield(jobs.Contact{ID: id, Ops: ops}) {
				return
			}
		}
	}
}

// uuid is a contact id in the UUID form, in 16 bytes instead of a
// 36-byte string: a migration's plan holds millions of them.
type uuid [16]byte

// parseUUID reads a lower-case UUID in its canonical form
// (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx), the only form String gives back
// as it was.
func parseUUID(s string) (uuid, bool) {
	var u uuid
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return u, false
	}
	j := 0
	for i := 0; i < 36; i += 2 {
		if s[i] == '-' {
			i--
			continue
		}
		hi, ok1 := hexDigit(s[i])
		lo, ok2 := hexDigit(s[i+1])
		if !ok1 || !ok2 {
			return u, false
		}
		u[j] = hi<<4 | lo
		j++
	}
	return u, j == 16
}

func hexDigit(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

func (u uuid) String() string {
	const digits = "0123456789abcdef"
	b := make([]byte, 0, 36)
	for i, x := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b = append(b, '-')
		}
		b = append(b, digits[x>>4], digits[x&15])
	}
	return string(b)
}
