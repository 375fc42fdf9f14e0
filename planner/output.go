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
// member's counts, each rule's, the totals, and the warnings.
func (p *Plan) WritePreview(w io.Writer) error {
	pv := p.Preview
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tBEFORE\tAFTER\tIN\tOUT\tSHARE")
	for _, m := range pv.Members {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%.1f%%\n", m.Member, m.Before, m.After, m.In, m.Out, 100*m.Share)
	}
	if pv.NoOwnerBefore+pv.NoOwnerAfter > 0 {
		fmt.Fprintf(tw, "(no owner)\t%d\t%d\t\t\t\n", pv.NoOwnerBefore, pv.NoOwnerAfter)
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
	fmt.Fprintf(w, "\nplan: %d contacts: %d unchanged, %d move, %d new, %d unassigned; %d assignment calls\n",
		pv.Contacts, pv.Unchanged, pv.Moves, pv.New, pv.Unassigned, len(p.Assignments))
	for _, u := range p.Unassigned[:min(len(p.Unassigned), 10)] {
		fmt.Fprintf(w, "unassigned: line %d: contact %s: %s\n", u.Line, u.Contact, u.Reason)
	}
	if n := len(p.Unassigned) - 10; n > 0 {
		fmt.Fprintf(w, "unassigned: ... and %d more\n", n)
	}
	for _, s := range p.Warnings {
		fmt.Fprintln(w, "warning:", s)
	}
	return nil
}
