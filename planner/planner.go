// Package planner computes territory assignments: from a contacts file
// (contact, region, segment, current agent) and a rules file (ordered
// rules mapping regions and segments to weighted, capped pools of
// members, and a fallback member) it decides who owns each contact, and
// returns the assignment rows that make it so, with a preview of the
// change. It does no I/O beyond the readers and writers it is given.
//
// # Algorithm
//
// The plan is a pure function of the two files: the order of the
// contacts file does not matter, and the same files give the same bytes.
//
//  1. Contacts are sorted by id. Each goes to the first rule, in file
//     order, whose regions and segments it matches (an empty list matches
//     anything; values compare case-insensitively).
//  2. Each rule's targets: the rule's n contacts are shared in proportion
//     to the pool's weights, rounded by largest remainder (ties to the
//     lower member id) so that they sum to n. A member whose share is
//     above its cap is fixed at the cap and the rest is shared again among
//     the others, until no share is above a cap. When every member is
//     capped, the targets sum to less than n: that is the overflow.
//  3. Keep (minimal churn): in id order, a contact whose current agent is
//     in the pool stays with that agent while the agent is under target.
//     Given the targets no plan keeps more contacts where they are.
//  4. Fill: the other contacts, in id order, go one by one to the member
//     furthest under target: the lowest count/target (ties to the lower
//     member id). Members thus take new contacts interleaved across the id
//     range, not in blocks. Those that overflow best come last, so that
//     overflow leaves them where they are: the contacts the fallback owns,
//     or, without a fallback, every contact that has an owner.
//  5. What is left is the overflow: it goes to the fallback, or, when
//     there is none, keeps its owner over the cap (or stays without one),
//     reported with its reason. Contacts that match no rule go to the
//     fallback too, or stay as they are.
//
// A contact already owned by its planned member needs no call and gets no
// row; every other planned contact gets a row with removeExistingAgents
// true, so that the planned member becomes its only owner.
package planner

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// FileError is a problem with an input file: the file, the line where the
// problem is (0 when it has no single place), the rule when the problem
// is in one, and what is wrong.
type FileError struct {
	File string
	Line int
	Rule string // "rule 2 \"north\"", or ""
	Err  error
}

// Error returns "FILE: line N: rule R: problem", leaving out what is unknown.
func (e *FileError) Error() string {
	s := e.File
	if e.Line > 0 {
		s += fmt.Sprintf(": line %d", e.Line)
	}
	if e.Rule != "" {
		s += ": " + e.Rule
	}
	return s + ": " + e.Err.Error()
}

// Unwrap returns the underlying problem.
func (e *FileError) Unwrap() error { return e.Err }

func displayName(file string) string {
	switch file {
	case "-":
		return "stdin"
	case "":
		return "input"
	}
	return file
}

// Reason says why a contact gets a new owner.
type Reason string

// The reasons of an assignment row.
const (
	// ReasonNew: the contact had no owner.
	ReasonNew Reason = "new"
	// ReasonOutsidePool: the contact's owner is not in its rule's pool.
	ReasonOutsidePool Reason = "outside-pool"
	// ReasonRebalance: the owner is in the pool but above its target.
	ReasonRebalance Reason = "rebalance"
	// ReasonOverflow: every member of the pool is at its cap; the fallback
	// takes the contact.
	ReasonOverflow Reason = "overflow"
	// ReasonNoRule: no rule matches the contact; the fallback takes it.
	ReasonNoRule Reason = "no-rule"
)

// Assignment is one row of the plan: Member becomes the only owner of
// Contact.
type Assignment struct {
	Contact string
	Member  string
	// Previous is the current agent, "" for none.
	Previous string
	// Rule is the name of the rule that matched, "" for none.
	Rule   string
	Reason Reason
	// Line is the contact's line in the contacts file.
	Line int
}

// Unassigned is a contact the plan cannot place: it keeps its current
// owner, if any, and gets no row.
type Unassigned struct {
	Contact string
	Agent   string // current agent, "" for none
	Rule    string // "" when no rule matched
	Reason  string
	Line    int
}

// Action is what the plan does with one contact. Every contact gets
// exactly one, so the preview's counts of them add up to the contacts.
type Action string

// The actions of ContactPlan.
const (
	// ActionKept: the contact already has its planned owner; no row.
	ActionKept Action = "kept"
	// ActionMoved: the contact goes from its owner to another; a row.
	ActionMoved Action = "moved"
	// ActionAssigned: the contact had no owner and gets one; a row.
	ActionAssigned Action = "assigned"
	// ActionOverCap: every member of the rule's pool is at its cap and
	// there is no fallback: the contact keeps its owner, over the cap; no row.
	ActionOverCap Action = "kept-over-cap"
	// ActionNoRule: no rule matches and there is no fallback: the contact
	// keeps its owner; no row.
	ActionNoRule Action = "kept-no-rule"
	// ActionNoOwner: the contact cannot be placed (as for the two above)
	// and has no owner, so it stays without one; no row.
	ActionNoOwner Action = "no-owner"
	// ActionNotInCRM: a live read found no such contact in the CRM; no row.
	ActionNotInCRM Action = "not-in-crm"
)

// ContactPlan is the plan of one contact, whatever it is: a line of the
// full plan (WriteContactsCSV).
type ContactPlan struct {
	Contact         string
	Line            int
	Region, Segment string
	// Rule is the name of the rule that matched, "" for none.
	Rule string
	// Before is the owner now and After the owner once the plan is
	// applied; "" for none.
	Before, After string
	Action        Action
	// Reason is the row's Reason for a moved or assigned contact, or why
	// a contact could not be placed.
	Reason string
}

// MemberCount is one member's load before and after the plan, over the
// contacts of the file.
type MemberCount struct {
	Member string
	// Before is how many contacts the member owns now; After, once the
	// plan is applied (a contact that cannot be placed keeps its owner).
	Before, After int
	// In and Out are the contacts the plan gives and takes away.
	In, Out int
	// Planned is how many contacts the plan places with the member (After
	// without the contacts it keeps only because they cannot be placed).
	Planned int
	// Share is After over every contact of the plan: the member's share of
	// the book once the plan is applied.
	Share float64
}

// RuleCount is what one rule matched and where it sent it.
type RuleCount struct {
	Name string
	// Contacts is how many contacts the rule matched; Overflow, how many of
	// them its pool could not hold.
	Contacts, Overflow int
	// Pool is the rule's members and Targets their targets, in pool order.
	Pool    []string
	Targets []int
}

// Preview sums a plan up.
type Preview struct {
	// Contacts is every contact of the file; Planned those given an owner.
	Contacts, Planned int
	// Each contact is counted once, by its Action: Unchanged (kept),
	// Moves, New (assigned), OverCap, NoRuleKept, NoOwner and NotInCRM sum
	// to Contacts. Moves+New is the number of rows, and of API calls.
	Unchanged, Moves, New int
	OverCap, NoRuleKept   int
	NoOwner, NotInCRM     int
	// Unassigned is the contacts that could not be placed:
	// OverCap+NoRuleKept+NoOwner.
	Unassigned int
	// NoRule matched no rule (they went to the fallback, or were not placed).
	NoRule int
	// NoOwnerBefore and NoOwnerAfter count contacts without an owner (those
	// not in the CRM left out); NoOwnerShare is NoOwnerAfter's share.
	NoOwnerBefore, NoOwnerAfter int
	NoOwnerShare                float64
	// Live says the owners were read from the CRM, not taken from the file.
	Live bool
	// Members is every member owning a contact before or after, by id.
	Members []MemberCount
	// Rules is each rule, in file order.
	Rules []RuleCount
	// MaxShare is the rules' warning threshold (0: none).
	MaxShare float64
}

// Plan is the outcome of Compute.
type Plan struct {
	// Assignments are the rows to apply, by contact id.
	Assignments []Assignment
	// Unassigned are the contacts left as they are, by contact id.
	Unassigned []Unassigned
	// Contacts is every contact's plan, by contact id.
	Contacts []ContactPlan
	Preview  Preview
	// Warnings are for the operator to read before applying the plan.
	Warnings []string
}

// Compute plans contacts under rules (see the package comment). It fails
// only when the files do not fit together (rules matching on a column the
// contacts file does not have) or when a pool names a member by email that
// Check has not resolved.
func Compute(rules *Rules, contacts *Contacts) (*Plan, error) {
	if err := rules.resolved(); err != nil {
		return nil, err
	}
	for _, r := range rules.Rules {
		if len(r.Regions) > 0 && !contacts.HasRegion {
			return nil, &FileError{File: contacts.File, Line: 1, Err: fmt.Errorf("no region column, and %s rule %q matches on region", rules.File, r.Name)}
		}
		if len(r.Segments) > 0 && !contacts.HasSegment {
			return nil, &FileError{File: contacts.File, Line: 1, Err: fmt.Errorf("no segment column, and %s rule %q matches on segment", rules.File, r.Name)}
		}
	}
	sorted := slices.Clone(contacts.List)
	slices.SortFunc(sorted, func(a, b Contact) int { return cmp.Compare(a.ID, b.ID) })

	// 1. Match. A contact with several agents (read live) is owned, for
	// the plan, by the first of them in its rule's pool, else the first.
	groups := make([][]int, len(rules.Rules)) // indices into sorted
	var noRule []int
	for i, c := range sorted {
		if c.NotInCRM {
			continue
		}
		r := firstMatch(rules.Rules, c)
		if len(c.Agents) > 1 && r >= 0 {
			for _, a := range c.Agents {
				if inPool(rules.Rules[r].Pool, a) {
					sorted[i].Agent = a
					break
				}
			}
		}
		if r >= 0 {
			groups[r] = append(groups[r], i)
		} else {
			noRule = append(noRule, i)
		}
	}

	owner := make([]string, len(sorted)) // planned member; "" unassigned
	rule := make([]int, len(sorted))     // rule index, -1 none
	overflow := make([]bool, len(sorted))
	why := make([]string, len(sorted)) // why a contact is unassigned
	p := &Plan{Preview: Preview{MaxShare: rules.MaxShare, Live: contacts.Live}}

	// 2-5. Each rule's pool.
	for ri, r := range rules.Rules {
		g := groups[ri]
		targets := Targets(r.Pool, len(g))
		got := allocate(r.Pool, targets, sorted, g, rules.Fallback)
		rc := RuleCount{Name: r.Name, Contacts: len(g), Targets: targets}
		for _, m := range r.Pool {
			rc.Pool = append(rc.Pool, m.Member)
		}
		for k, ci := range g {
			rule[ci] = ri
			if got[k] >= 0 {
				owner[ci] = r.Pool[got[k]].Member
				continue
			}
			rc.Overflow++
			overflow[ci] = true
			if rules.Fallback != "" {
				owner[ci] = rules.Fallback
			} else {
				why[ci] = "every member of the pool is at its cap, and there is no fallback"
			}
		}
		p.Preview.Rules = append(p.Preview.Rules, rc)
		switch {
		case len(g) == 0:
			p.Warnings = append(p.Warnings, fmt.Sprintf("rule %q matches no contact", r.Name))
		case rc.Overflow > 0 && rules.Fallback != "":
			p.Warnings = append(p.Warnings, fmt.Sprintf("rule %q: the caps hold %d of its %d contacts; %d go to the fallback %s",
				r.Name, len(g)-rc.Overflow, len(g), rc.Overflow, rules.Fallback))
		case rc.Overflow > 0:
			p.Warnings = append(p.Warnings, fmt.Sprintf("rule %q: the caps hold %d of its %d contacts; %d keep their owner over the caps, or stay without one (no fallback)",
				r.Name, len(g)-rc.Overflow, len(g), rc.Overflow))
		}
	}
	for _, ci := range noRule {
		rule[ci] = -1
		if rules.Fallback != "" {
			owner[ci] = rules.Fallback
		} else {
			why[ci] = "matches no rule, and there is no fallback"
		}
	}
	p.Preview.NoRule = len(noRule)
	if len(noRule) > 0 && rules.Fallback != "" {
		p.Warnings = append(p.Warnings, fmt.Sprintf("%d contacts match no rule: they go to the fallback %s", len(noRule), rules.Fallback))
	} else if len(noRule) > 0 {
		p.Warnings = append(p.Warnings, fmt.Sprintf("%d contacts match no rule and there is no fallback: they keep their owner, or stay without one", len(noRule)))
	}

	// Rows and counts.
	counts := map[string]*MemberCount{}
	member := func(id string) *MemberCount {
		m := counts[id]
		if m == nil {
			m = &MemberCount{Member: id}
			counts[id] = m
		}
		return m
	}
	pv := &p.Preview
	pv.Contacts = len(sorted)
	p.Contacts = make([]ContactPlan, 0, len(sorted))
	for i, c := range sorted {
		cp := ContactPlan{Contact: c.ID, Line: c.Line, Region: c.Region, Segment: c.Segment, Before: c.Agent}
		if c.NotInCRM {
			pv.NotInCRM++
			cp.Before, cp.Action, cp.Reason = "", ActionNotInCRM, "the CRM has no such contact"
			p.Contacts = append(p.Contacts, cp)
			continue
		}
		if rule[i] >= 0 {
			cp.Rule = rules.Rules[rule[i]].Name
		}
		if c.Agent != "" {
			member(c.Agent).Before++
		} else {
			pv.NoOwnerBefore++
		}
		to := owner[i]
		if to == "" {
			pv.Unassigned++
			p.Unassigned = append(p.Unassigned, Unassigned{Contact: c.ID, Agent: c.Agent, Rule: cp.Rule, Reason: why[i], Line: c.Line})
			cp.After, cp.Reason = c.Agent, why[i]
			switch {
			case c.Agent == "":
				pv.NoOwner++
				pv.NoOwnerAfter++
				cp.Action = ActionNoOwner
			case rule[i] < 0:
				pv.NoRuleKept++
				cp.Action = ActionNoRule
			default:
				pv.OverCap++
				cp.Action = ActionOverCap
			}
			if c.Agent != "" {
				member(c.Agent).After++
			}
			p.Contacts = append(p.Contacts, cp)
			continue
		}
		pv.Planned++
		m := member(to)
		m.After++
		m.Planned++
		cp.After = to
		if to == c.Agent {
			pv.Unchanged++
			cp.Action = ActionKept
			p.Contacts = append(p.Contacts, cp)
			continue
		}
		m.In++
		a := Assignment{Contact: c.ID, Member: to, Previous: c.Agent, Rule: cp.Rule, Line: c.Line}
		switch {
		case rule[i] < 0:
			a.Reason = ReasonNoRule
		case overflow[i]:
			a.Reason = ReasonOverflow
		case c.Agent == "":
			a.Reason = ReasonNew
		case inPool(rules.Rules[rule[i]].Pool, c.Agent):
			a.Reason = ReasonRebalance
		default:
			a.Reason = ReasonOutsidePool
		}
		cp.Reason = string(a.Reason)
		if c.Agent == "" {
			pv.New++
			cp.Action = ActionAssigned
		} else {
			pv.Moves++
			cp.Action = ActionMoved
			member(c.Agent).Out++
		}
		p.Assignments = append(p.Assignments, a)
		p.Contacts = append(p.Contacts, cp)
	}
	// Shares are of the book after the plan: every contact but those the
	// CRM does not have, so that the SHARE column sums to 100%.
	book := pv.Contacts - pv.NotInCRM
	for _, m := range counts {
		if book > 0 {
			m.Share = float64(m.After) / float64(book)
		}
		pv.Members = append(pv.Members, *m)
	}
	if book > 0 {
		pv.NoOwnerShare = float64(pv.NoOwnerAfter) / float64(book)
	}
	slices.SortFunc(pv.Members, func(a, b MemberCount) int { return cmp.Compare(a.Member, b.Member) })
	if rules.MaxShare > 0 {
		for _, m := range pv.Members {
			if m.Share > rules.MaxShare {
				p.Warnings = append(p.Warnings, fmt.Sprintf("member %s would own %.1f%% of the %d contacts (%d), above maxShare %.1f%%",
					m.Member, 100*m.Share, book, m.After, 100*rules.MaxShare))
			}
		}
	}
	return p, nil
}

// firstMatch returns the index of the first rule matching c, or -1.
func firstMatch(rules []Rule, c Contact) int {
	region, segment := lower(c.Region), lower(c.Segment)
	for i, r := range rules {
		if (len(r.Regions) == 0 || slices.Contains(r.Regions, region)) &&
			(len(r.Segments) == 0 || slices.Contains(r.Segments, segment)) {
			return i
		}
	}
	return -1
}

func lower(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

func inPool(pool []PoolMember, id string) bool {
	return slices.ContainsFunc(pool, func(m PoolMember) bool { return m.Member == id })
}

// Targets shares n contacts over pool: in proportion to the weights by
// largest remainder (ties to the lower member id), no member above its
// cap, what a capped member cannot take shared again among the others.
// The targets sum to n unless every member is capped.
func Targets(pool []PoolMember, n int) []int {
	t := make([]int, len(pool))
	fixed := make([]bool, len(pool))
	left := n
	for left > 0 {
		var active []int
		for i := range pool {
			if !fixed[i] {
				active = append(active, i)
			}
		}
		if len(active) == 0 {
			break
		}
		share := largestRemainder(pool, active, left)
		capped := false
		for k, i := range active {
			if c := pool[i].Cap; c > 0 && share[k] > c {
				t[i], fixed[i], capped = c, true, true
				left -= c
			}
		}
		if !capped {
			for k, i := range active {
				t[i] = share[k]
			}
			break
		}
	}
	return t
}

// largestRemainder shares n over the members active (indices into pool)
// by weight; the shares sum to n.
func largestRemainder(pool []PoolMember, active []int, n int) []int {
	var total int64
	for _, i := range active {
		total += int64(pool[i].Weight)
	}
	share := make([]int, len(active))
	rem := make([]int64, len(active))
	given := 0
	for k, i := range active {
		q := int64(n) * int64(pool[i].Weight)
		share[k], rem[k] = int(q/total), q%total
		given += share[k]
	}
	order := make([]int, len(active))
	for k := range order {
		order[k] = k
	}
	slices.SortFunc(order, func(a, b int) int {
		if c := cmp.Compare(rem[b], rem[a]); c != 0 {
			return c
		}
		return cmp.Compare(pool[active[a]].Member, pool[active[b]].Member)
	})
	for _, k := range order[:n-given] {
		share[k]++
	}
	return share
}

// allocate places the contacts group (indices into sorted) in pool with
// targets: the pool index for each, -1 for overflow.
func allocate(pool []PoolMember, targets []int, sorted []Contact, group []int, fallback string) []int {
	idx := make(map[string]int, len(pool))
	for i, m := range pool {
		idx[m.Member] = i
	}
	count := make([]int, len(pool))
	got := make([]int, len(group))
	// Keep.
	for k, ci := range group {
		got[k] = -1
		if i, ok := idx[sorted[ci].Agent]; ok && count[i] < targets[i] {
			got[k] = i
			count[i]++
		}
	}
	// Fill: last the contacts that overflow best, so that they are the
	// overflow, if any, and stay where they are: those the fallback owns,
	// or without a fallback every contact with an owner (it keeps it, over
	// the cap, rather than a contact without one staying without).
	last := func(c Contact) bool {
		if fallback != "" {
			return c.Agent == fallback
		}
		return c.Agent != ""
	}
	fill := func(lastOnes bool) {
		for k, ci := range group {
			if got[k] >= 0 || last(sorted[ci]) != lastOnes {
				continue
			}
			best := -1
			for i := range pool {
				if count[i] >= targets[i] {
					continue
				}
				if best < 0 {
					best = i
					continue
				}
				// count[i]/targets[i] against best's, in integers.
				c := cmp.Compare(int64(count[i])*int64(targets[best]), int64(count[best])*int64(targets[i]))
				if c < 0 || c == 0 && pool[i].Member < pool[best].Member {
					best = i
				}
			}
			if best < 0 {
				return // the pool is full: the rest is overflow
			}
			got[k] = best
			count[best]++
		}
	}
	fill(false)
	fill(true)
	return got
}
