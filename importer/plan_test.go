package importer

import (
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/bulkassign/bulkassign/jobs"
)

// planAddRow and planReplaceRow build valid rows; the line is set by planOf from the
// position in the list.
func planAddRow(contact, member string) jobs.Row {
	return jobs.Row{ContactID: contact, MemberID: member}
}

func planReplaceRow(contact, member string) jobs.Row {
	return jobs.Row{ContactID: contact, MemberID: member, Replace: true}
}

func planInvalidRow(contact, member, reason string) jobs.Row {
	return jobs.Row{ContactID: contact, MemberID: member, Reason: reason, Error: reason}
}

// planOf feeds rows to a new plan, numbering them from line 2 as a CSV
// would, and returns the plan and its payloads.
func planOf(rows []jobs.Row) (*Plan, []jobs.Contact) {
	p := NewPlan()
	for i, r := range rows {
		r.Line = i + 2
		p.Add(&r)
	}
	return p, slices.Collect(p.All())
}

func TestPlanMerge(t *testing.T) {
	op := func(member string, replace bool, lines ...int) jobs.Op {
		return jobs.Op{MemberID: member, Replace: replace, Lines: lines}
	}
	tests := []struct {
		name    string
		rows    []jobs.Row
		want    []jobs.Contact
		merged  int
		blocked int
	}{
		{
			name:   "exact duplicate adds in a row are merged",
			rows:   []jobs.Row{planAddRow("c1", "a"), planAddRow("c1", "a"), planAddRow("c1", "a")},
			want:   []jobs.Contact{{ID: "c1", Ops: []jobs.Op{op("a", false, 2, 3, 4)}}},
			merged: 2,
		},
		{
			// If add B fails, the third row is blocked by it: it cannot
			// share the first row's outcome.
			name: "add A, add B, add A: not merged",
			rows: []jobs.Row{planAddRow("c1", "a"), planAddRow("c1", "b"), planAddRow("c1", "a")},
			want: []jobs.Contact{{ID: "c1", Ops: []jobs.Op{op("a", false, 2), op("b", false, 3), op("a", false, 4)}}},
		},
		{
			// Merging the second replace A into the first would leave [A, B]
			// instead of [A].
			name: "replace A, add B, replace A: not merged",
			rows: []jobs.Row{planReplaceRow("c1", "a"), planAddRow("c1", "b"), planReplaceRow("c1", "a")},
			want: []jobs.Contact{{ID: "c1", Ops: []jobs.Op{
				op("a", true, 2), op("b", false, 3), op("a", true, 4),
			}}},
		},
		{
			// If replace B succeeds, A is gone: the second add A must run.
			name: "add A, replace B, add A: not merged",
			rows: []jobs.Row{planAddRow("c1", "a"), planReplaceRow("c1", "b"), planAddRow("c1", "a")},
			want: []jobs.Contact{{ID: "c1", Ops: []jobs.Op{
				op("a", false, 2), op("b", true, 3), op("a", false, 4),
			}}},
		},
		{
			name:   "replace A, replace A: merged",
			rows:   []jobs.Row{planReplaceRow("c1", "a"), planReplaceRow("c1", "a")},
			want:   []jobs.Contact{{ID: "c1", Ops: []jobs.Op{op("a", true, 2, 3)}}},
			merged: 1,
		},
		{
			name: "replace A, add A: different modes are kept",
			rows: []jobs.Row{planReplaceRow("c1", "a"), planAddRow("c1", "a")},
			want: []jobs.Contact{{ID: "c1", Ops: []jobs.Op{
				op("a", true, 2), op("a", false, 3),
			}}},
		},
		{
			name: "the same pair on another contact is not a duplicate",
			rows: []jobs.Row{planAddRow("c1", "a"), planAddRow("c2", "a")},
			want: []jobs.Contact{
				{ID: "c1", Ops: []jobs.Op{op("a", false, 2)}},
				{ID: "c2", Ops: []jobs.Op{op("a", false, 3)}},
			},
		},
		{
			name: "an invalid row stops its contact: its later rows are blocked, never planned",
			rows: []jobs.Row{
				planAddRow("c1", "a"), planAddRow("c2", "a"), planInvalidRow("C1", "a", "invalid_remove_existing_agents"),
				planInvalidRow("bad id", "a", "invalid_contact_id"), planAddRow("c1", "a"), planReplaceRow("c1", "b"),
				planAddRow("c2", "b"),
			},
			want: []jobs.Contact{
				{ID: "c1", Ops: []jobs.Op{op("a", false, 2)}},
				{ID: "c2", Ops: []jobs.Op{op("a", false, 3), op("b", false, 8)}},
			},
			blocked: 2,
		},
		{
			name: "contacts in order of first appearance, rows in file order",
			rows: []jobs.Row{
				planAddRow("c3", "a"), planAddRow("c1", "a"), planReplaceRow("c3", "b"), planAddRow("c2", "c"), planAddRow("c1", "b"), planAddRow("c3", "c"),
			},
			want: []jobs.Contact{
				{ID: "c3", Ops: []jobs.Op{op("a", false, 2), op("b", true, 4), op("c", false, 7)}},
				{ID: "c1", Ops: []jobs.Op{op("a", false, 3), op("b", false, 6)}},
				{ID: "c2", Ops: []jobs.Op{op("c", false, 5)}},
			},
		},
		{
			name:   "a file of only invalid rows plans nothing",
			rows:   []jobs.Row{planInvalidRow("", "a", "missing_contact_id"), planInvalidRow("c1", "", "missing_member_id")},
			want:   nil,
			merged: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, got := planOf(tt.rows)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("payloads\n got %+v\nwant %+v", got, tt.want)
			}
			invalid := 0
			for _, r := range tt.rows {
				if !r.Valid() {
					invalid++
				}
			}
			if want := len(tt.rows) - invalid - tt.blocked; p.Rows != len(tt.rows) || p.Valid != want || p.Merged != tt.merged || p.Blocked != tt.blocked {
				t.Errorf("Rows, Valid, Merged, Blocked = %d, %d, %d, %d; want %d, %d, %d, %d",
					p.Rows, p.Valid, p.Merged, p.Blocked, len(tt.rows), want, tt.merged, tt.blocked)
			}
			if p.Contacts() != len(tt.want) {
				t.Errorf("Contacts() = %d, want %d", p.Contacts(), len(tt.want))
			}
			lines := 0
			for _, pl := range got {
				for _, o := range pl.Ops {
					lines += len(o.Lines)
				}
			}
			if lines != p.Valid {
				t.Errorf("the ops stand for %d lines, want every valid row (%d)", lines, p.Valid)
			}
		})
	}
}

// TestPlanMemberInterning checks that interning member ids is invisible:
// equal ids built from different strings plan the same as one string.
func TestPlanMemberInterning(t *testing.T) {
	fresh := func(s string) string { return strings.Clone(s) }
	a := []jobs.Row{planAddRow("c1", "m-1"), planAddRow("c2", "m-1"), planReplaceRow("c1", "m-2"), planAddRow("c1", "m-1"), planAddRow("c2", "m-1")}
	b := []jobs.Row{
		planAddRow("c1", fresh("m-1")), planAddRow("c2", fresh("m-1")), planReplaceRow("c1", fresh("m-2")),
		planAddRow("c1", fresh("m-1")), planAddRow("c2", fresh("m-1")),
	}
	pa, wa := planOf(a)
	pb, wb := planOf(b)
	if !reflect.DeepEqual(wa, wb) {
		t.Errorf("payloads differ with interning:\n%+v\n%+v", wa, wb)
	}
	if pa.Merged != pb.Merged || pa.Merged != 1 {
		t.Errorf("merged %d and %d, want 1 and 1", pa.Merged, pb.Merged)
	}
}

// planApply is the model of a contact's agents the CRM keeps: add appends a
// member not already there, replace leaves only that member.
func planApply(agents []string, member string, replace bool) []string {
	if replace {
		return []string{member}
	}
	if slices.Contains(agents, member) {
		return agents
	}
	return append(slices.Clone(agents), member)
}

// TestPlanMergeProperty checks the merge rule against the model: for random
// sequences of rows on one contact, applying the planned ops gives the same
// agents as applying every row, and so does applying them with any single
// op failing (a failed op changes nothing; the rows merged into it fail
// with it, and the file without those rows must end the same).
func TestPlanMergeProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	members := []string{"a", "b", "c"}
	for iter := range 5000 {
		n := 1 + rng.IntN(10)
		rows := make([]jobs.Row, n)
		for i := range rows {
			rows[i] = jobs.Row{ContactID: "c1", MemberID: members[rng.IntN(len(members))], Replace: rng.IntN(3) == 0}
		}
		_, payloads := planOf(rows)
		if len(payloads) != 1 {
			t.Fatalf("rows %v: %d payloads, want 1", rows, len(payloads))
		}
		ops := payloads[0].Ops

		var want []string
		for _, r := range rows {
			want = planApply(want, r.MemberID, r.Replace)
		}
		var got []string
		for _, o := range ops {
			got = planApply(got, o.MemberID, o.Replace)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("iteration %d: rows %s: planned ops %v end as %v, the rows as %v", iter, planShow(rows), ops, got, want)
		}

		// One op fails: its lines fail; the other rows are applied as they
		// are in the file.
		for f := range ops {
			failed := map[int]bool{}
			for _, l := range ops[f].Lines {
				failed[l] = true
			}
			var want []string
			for i, r := range rows {
				if !failed[i+2] {
					want = planApply(want, r.MemberID, r.Replace)
				}
			}
			var got []string
			for i, o := range ops {
				if i != f {
					got = planApply(got, o.MemberID, o.Replace)
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("iteration %d: rows %s, op %d fails: planned ops %v end as %v, the rows as %v",
					iter, planShow(rows), f, ops, got, want)
			}
		}
	}
}

func planShow(rows []jobs.Row) string {
	var b strings.Builder
	for i, r := range rows {
		if i > 0 {
			b.WriteString(", ")
		}
		if r.Replace {
			b.WriteString("replace ")
		} else {
			b.WriteString("add ")
		}
		b.WriteString(r.MemberID)
	}
	return b.String()
}

// TestPlanUUIDContacts: contact ids in the UUID form, kept in 16 bytes,
// come back exactly as read, merged with their repeats; other ids beside
// them are kept as they are.
func TestPlanUUIDContacts(t *testing.T) {
	p := NewPlan()
	rows := []jobs.Row{
		{Line: 2, ContactID: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", MemberID: "m1"},
		{Line: 3, ContactID: "not-a-uuid", MemberID: "m1"},
		{Line: 4, ContactID: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", MemberID: "m2"},
		{Line: 5, ContactID: "0f1e2d3c4b5a69788796a5b4c3d2e1f0", MemberID: "m1"},
		{Line: 6, ContactID: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", MemberID: "m2"},
	}
	for i := range rows {
		p.Add(&rows[i])
	}
	var got []jobs.Contact
	for c := range p.All() {
		got = append(got, c)
	}
	want := []jobs.Contact{
		{ID: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", Ops: []jobs.Op{{MemberID: "m1", Lines: []int{2}}, {MemberID: "m2", Lines: []int{4, 6}}}},
		{ID: "not-a-uuid", Ops: []jobs.Op{{MemberID: "m1", Lines: []int{3}}}},
		{ID: "0f1e2d3c4b5a69788796a5b4c3d2e1f0", Ops: []jobs.Op{{MemberID: "m1", Lines: []int{5}}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("plan:\n got %+v\nwant %+v", got, want)
	}
	if p.Merged != 1 || p.Contacts() != 3 {
		t.Errorf("merged %d, contacts %d; want 1, 3", p.Merged, p.Contacts())
	}
}
