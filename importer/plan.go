package importer

import (
	"iter"

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
type Plan struct {
	contacts map[string]*contactPlan
	order    []string
	members  map[string]string // interned member ids

	// Rows, Valid and Merged count the rows seen, the valid ones, and the
	// valid ones merged into an earlier duplicate.
	Rows, Valid, Merged int
}

type contactPlan struct {
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
// duplicate before contactPlan.adds takes over.
const scanLimit = 16

// NewPlan returns an empty plan.
func NewPlan() *Plan {
	return &Plan{contacts: map[string]*contactPlan{}, members: map[string]string{}}
}

// Add takes the next row of the file.
func (p *Plan) Add(r jobs.Row) {
	p.Rows++
	if !r.Valid() {
		return
	}
	p.Valid++
	member, ok := p.members[r.MemberID]
	if !ok {
		member = r.MemberID
		p.members[member] = member
	}
	c := p.contacts[r.ContactID]
	if c == nil {
		c = &contactPlan{}
		p.contacts[r.ContactID] = c
		p.order = append(p.order, r.ContactID)
	}
	if i := c.duplicate(member, r.Replace); i >= 0 {
		c.ops[i].Lines = append(c.ops[i].Lines, r.Line)
		p.Merged++
		return
	}
	c.ops = append(c.ops, jobs.Op{MemberID: member, Replace: r.Replace, Lines: []int{r.Line}})
	switch last := len(c.ops) - 1; {
	case r.Replace:
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
}

// duplicate returns the index of the op this row repeats harmlessly, or -1.
func (c *contactPlan) duplicate(member string, replace bool) int {
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
func (p *Plan) Contacts() int { return len(p.order) }

// Payloads yields one task payload per contact, in order of first
// appearance in the file.
func (p *Plan) Payloads(batch string) iter.Seq[jobs.AssignPayload] {
	return func(yield func(jobs.AssignPayload) bool) {
		for _, contact := range p.order {
			if !yield(jobs.AssignPayload{Batch: batch, Contact: contact, Ops: p.contacts[contact].ops}) {
				return
			}
		}
	}
}
