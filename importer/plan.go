package importer

import (
	"iter"
	"strings"

	"github.com/bulkassign/bulkassign/jobs"
)

// Plan groups valid rows into one ordered list of calls per contact.
//
// An exact duplicate (same contact, member and mode) is merged into the
// earlier row only where applying it again could not change the contact:
// an add repeats an add or replace of the same member made since the
// contact's last replace, or a replace repeats the call just before it.
// Anything else is kept, so the contact ends as the file says even when a
// row in between fails.
//
// A plan holds every contact of the file until it is queued, so it is kept
// small (about 90 bytes per contact of one row): a contact whose one call
// stands for one line, the usual case, is a 32-byte value in contacts;
// only contacts with more get a longPlan with their []jobs.Op. Contact
// and member ids are copied on first sight, so the plan does not pin the
// decoder's line buffers (a CSV field is a substring of its whole record).
type Plan struct {
	index    map[string]int32 // contact id -> its index in contacts
	contacts []contactPlan    // in order of first appearance in the file
	long     []longPlan       // contactPlan.long-1 indexes it

	memberIndex map[string]int32 // member id -> its index in members
	members     []string         // interned member ids

	// Rows, Valid and Merged count the rows seen, the valid ones, and the
	// valid ones merged into an earlier duplicate.
	Rows, Valid, Merged int
}

// contactPlan is one contact. While long is 0 it has exactly one op, one
// line long: member, replace and line. Otherwise its ops are in
// Plan.long[long-1] and the other fields are unused.
type contactPlan struct {
	contact string
	member  int32 // index in Plan.members
	line    int32
	long    int32
	replace bool
}

// longPlan is a contact with more than one op, or an op standing for more
// than one line.
type longPlan struct {
	ops []jobs.Op
	// since is the index of the contact's last replace op; adds after it
	// are known to be in the contact's agents.
	since int
	// adds indexes the add ops after since by member once there are more
	// than scanLimit of them, so that a file with very many rows for one
	// contact is not planned in quadratic time.
	adds map[string]int
}

// scanLimit is how many add ops since the last replace are scanned for a
// duplicate before longPlan.adds takes over.
const scanLimit = 16

// NewPlan returns an empty plan.
func NewPlan() *Plan {
	return &Plan{index: map[string]int32{}, memberIndex: map[string]int32{}}
}

// Add takes the next row of the file.
func (p *Plan) Add(r jobs.Row) {
	p.Rows++
	if !r.Valid() {
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
	i, ok := p.index[r.ContactID]
	if !ok {
		contact := strings.Clone(r.ContactID)
		p.index[contact] = int32(len(p.contacts))
		c := contactPlan{contact: contact, member: m, line: int32(r.Line), replace: r.Replace}
		if int(c.line) != r.Line { // a line number past int32: keep it as it is
			c.long = p.newLong(nil)
			p.long[c.long-1].add(p.members[m], r.Replace, r.Line)
		}
		p.contacts = append(p.contacts, c)
		return
	}
	c := &p.contacts[i]
	if c.long == 0 {
		// The one op is both the last op and the only one since the last
		// replace (or the start): a row repeats it harmlessly exactly when
		// it has the same member and mode.
		c.long = p.newLong(&jobs.Op{MemberID: p.members[c.member], Replace: c.replace, Lines: []int{int(c.line)}})
	}
	if p.long[c.long-1].add(p.members[m], r.Replace, r.Line) {
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
// an earlier op. member is interned.
func (c *longPlan) add(member string, replace bool, line int) (merged bool) {
	if i := c.duplicate(member, replace); i >= 0 {
		c.ops[i].Lines = append(c.ops[i].Lines, line)
		return true
	}
	c.ops = append(c.ops, jobs.Op{MemberID: member, Replace: replace, Lines: []int{line}})
	switch last := len(c.ops) - 1; {
	case replace:
		c.since, c.adds = last, nil
	case c.adds != nil:
		c.adds[member] = last
	case last-c.since > scanLimit:
		c.adds = map[string]int{}
		for i := c.since; i <= last; i++ {
			if op := c.ops[i]; !op.Replace {
				c.adds[op.MemberID] = i
			}
		}
	}
	return false
}

// duplicate returns the index of the op this row repeats harmlessly, or -1.
func (c *longPlan) duplicate(member string, replace bool) int {
	if len(c.ops) == 0 {
		return -1
	}
	if replace {
		last := len(c.ops) - 1
		if op := c.ops[last]; op.Replace && op.MemberID == member {
			return last
		}
		return -1
	}
	if c.adds != nil {
		if i, ok := c.adds[member]; ok {
			return i
		}
		return -1
	}
	for i := c.since; i < len(c.ops); i++ {
		if op := c.ops[i]; !op.Replace && op.MemberID == member {
			return i
		}
	}
	return -1
}

// Contacts is the number of contacts with at least one call to make.
func (p *Plan) Contacts() int { return len(p.contacts) }

// Payloads yields one task payload per contact, in order of first
// appearance in the file. The ops of a contact of one line are built
// afresh for each call; the others are the plan's own.
func (p *Plan) Payloads(batch string) iter.Seq[jobs.AssignPayload] {
	return func(yield func(jobs.AssignPayload) bool) {
		for _, c := range p.contacts {
			var ops []jobs.Op
			if c.long == 0 {
				ops = []jobs.Op{{MemberID: p.members[c.member], Replace: c.replace, Lines: []int{int(c.line)}}}
			} else {
				ops = p.long[c.long-1].ops
			}
			if !yield(jobs.AssignPayload{Batch: batch, Contact: c.contact, Ops: ops}) {
				return
			}
		}
	}
}
