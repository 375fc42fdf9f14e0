package planner

import (
	"encoding/csv"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/gocarina/gocsv"
)

// Header is the header of the CSV WriteCSV writes: the importer's three
// columns, then rule, previousAgent and reason, which the importer carries
// into the batch's report as extra columns.
var Header = []string{"aiContactId", "teamMemberId", "removeExistingAgents", "rule", "previousAgent", "reason"}

// planRow is one row of the CSV WriteCSV writes; its tags are Header.
type planRow struct {
	Contact  string `csv:"aiContactId"`
	Member   string `csv:"teamMemberId"`
	Replace  bool   `csv:"removeExistingAgents"`
	Rule     text   `csv:"rule"`
	Previous string `csv:"previousAgent"`
	Reason   Reason `csv:"reason"`
}

// text is a free-text cell (rule names are free text; ids cannot start
// with a formula character): gocsv writes it neutralised.
type text string

// MarshalCSV keeps a spreadsheet from running the cell as a formula.
func (t text) MarshalCSV() (string, error) {
	if t != "" && strings.ContainsRune("=+-@\t\r", rune(t[0])) {
		return "'" + string(t), nil
	}
	return string(t), nil
}

// writeChunk is how many rows WriteCSV hands gocsv at once, so that
// writing a plan does not copy all of it.
const writeChunk = 1024

// WriteCSV writes the plan's rows as an assignment file the importer
// reads: one row per contact that changes owner, removeExistingAgents
// true, in contact id order.
func (p *Plan) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	if err := gocsv.MarshalCSV([]planRow{}, cw); err != nil { // the header alone
		return err
	}
	rows := make([]planRow, 0, min(len(p.Assignments), writeChunk))
	for chunk := range slices.Chunk(p.Assignments, writeChunk) {
		rows = rows[:0]
		for _, a := range chunk {
			rows = append(rows, planRow{Contact: a.Contact, Member: a.Member, Replace: true, Rule: text(a.Rule), Previous: a.Previous, Reason: a.Reason})
		}
		if err := gocsv.MarshalCSVWithoutHeaders(rows, cw); err != nil {
			return err
		}
	}
	return nil
}

// WritePreview writes the plan's preview as tables for a terminal: each
// member's counts (SHARE is of AFTER), each rule's, what the plan does with
// the contacts (each counted once, so the counts add up to them), where
// the owners came from, and the warnings. The contacts one by one are in
// WriteContactsCSV.
func (p *Plan) WritePreview(w io.Writer) error {
	pv := p.Preview
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tBEFORE\tAFTER\tIN\tOUT\tSHARE")
	for _, m := range pv.Members {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%.1f%%\n", m.Member, m.Before, m.After, m.In, m.Out, 100*m.Share)
	}
	if pv.NoOwnerBefore+pv.NoOwnerAfter > 0 {
		fmt.Fprintf(tw, "(no owner)\t%d\t%d\t\t\t%.1f%%\n", pv.NoOwnerBefore, pv.NoOwnerAfter, 100*pv.NoOwnerShare)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RULE\tCONTACTS\tOVERFLOW\tTARGETS")
	for _, r := range pv.Rules {
		var ts []string
		for i, n := range r.Targets {
			ts = append(ts, fmt.Sprintf("%s=%d", r.Pool[i], n))
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", r.Name, r.Contacts, r.Overflow, strings.Join(ts, " "))
	}
	fmt.Fprintf(tw, "(no rule)\t%d\t\t\n", pv.NoRule)
	if err := tw.Flush(); err != nil {
		return err
	}
	parts := []string{
		fmt.Sprintf("%d kept", pv.Unchanged),
		fmt.Sprintf("%d moved", pv.Moves),
		fmt.Sprintf("%d assigned (had no owner)", pv.New),
	}
	for _, c := range []struct {
		n    int
		what string
	}{
		{pv.OverCap, "kept over cap (the pool is full, no fallback)"},
		{pv.NoRuleKept, "kept (no rule matches, no fallback)"},
		{pv.NoOwner, "left without owner (no place, no fallback)"},
		{pv.NotInCRM, "not in the CRM (no row)"},
	} {
		if c.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", c.n, c.what))
		}
	}
	fmt.Fprintf(w, "\nplan: %d contacts: %s; %d assignment calls\n", pv.Contacts, strings.Join(parts, ", "), len(p.Assignments))
	if pv.Live {
		fmt.Fprintln(w, "owners: read from the CRM just now (--live)")
	} else {
		fmt.Fprintln(w, "owners: the contacts file's, trusted as the CRM's (--live reads them from the CRM)")
	}
	for _, s := range p.Warnings {
		fmt.Fprintln(w, "warning:", s)
	}
	return nil
}

// ContactsHeader is the header of the CSV WriteContactsCSV writes.
var ContactsHeader = []string{"aiContactId", "line", "region", "segment", "rule", "before", "after", "action", "reason"}

// contactPlanRow is one row of the CSV WriteContactsCSV writes; its tags
// are ContactsHeader.
type contactPlanRow struct {
	Contact string `csv:"aiContactId"`
	Line    int    `csv:"line"`
	Region  text   `csv:"region"`
	Segment text   `csv:"segment"`
	Rule    text   `csv:"rule"`
	Before  string `csv:"before"`
	After   string `csv:"after"`
	Action  Action `csv:"action"`
	Reason  text   `csv:"reason"`
}

// WriteContactsCSV writes the full plan: every contact, in contact id
// order, with its owner before and after, its action and why.
func (p *Plan) WriteContactsCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	if err := gocsv.MarshalCSV([]contactPlanRow{}, cw); err != nil { // the header alone
		return err
	}
	rows := make([]contactPlanRow, 0, min(len(p.Contacts), writeChunk))
	for chunk := range slices.Chunk(p.Contacts, writeChunk) {
		rows = rows[:0]
		for _, c := range chunk {
			rows = append(rows, contactPlanRow{Contact: c.Contact, Line: c.Line, Region: text(c.Region), Segment: text(c.Segment),
				Rule: text(c.Rule), Before: c.Before, After: c.After, Action: c.Action, Reason: text(c.Reason)})
		}
		if err := gocsv.MarshalCSVWithoutHeaders(rows, cw); err != nil {
			return err
		}
	}
	return nil
}
