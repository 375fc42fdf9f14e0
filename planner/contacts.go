package planner

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/bulkassign/bulkassign/jobs"
)

// Contact is one row of a contacts file.
type Contact struct {
	// ID is the contact id, lower-case.
	ID string
	// Region and Segment are the trimmed cells, as the file has them.
	Region, Segment string
	// Agent is the current agent's id, lower-case; "" when it has none.
	Agent string
	// Line is the file line the row starts on.
	Line int
}

// Contacts is a contacts file: its rows and which optional columns it has.
type Contacts struct {
	// File names the contacts file in messages.
	File string
	// List holds the contacts in file order.
	List []Contact
	// HasRegion, HasSegment and HasAgent say which columns the file has.
	HasRegion, HasSegment, HasAgent bool
}

// column is what a contacts file column holds.
type column int

const (
	colOther column = iota
	colContact
	colRegion
	colSegment
	colAgent
)

// columns maps a normalised header (see normalizeHeader) to its column.
var columns = map[string]column{
	"aicontactid": colContact, "contactid": colContact, "contact": colContact, "aicontact": colContact,

	"region": colRegion, "territory": colRegion,

	"segment": colSegment,

	"currentagent": colAgent, "currentagentid": colAgent, "agent": colAgent, "agentid": colAgent,
	"owner": colAgent, "ownerid": colAgent, "currentowner": colAgent, "teammemberid": colAgent,
	"teammember": colAgent, "memberid": colAgent,
}

var columnNames = map[column]string{
	colContact: "contact id", colRegion: "region", colSegment: "segment", colAgent: "current agent",
}

// ReadContacts reads a CSV contacts file with a header row: a contact id
// column (aiContactId, contactId, contact_id or contact), a region
// column, a segment column, or both, and optionally the current agent
// (currentAgent, agent, owner or teamMemberId). Headers ignore case,
// spaces, '_' and '-'; other columns are ignored; cells are trimmed and
// ids lower-cased. Any bad row makes the whole file an error naming the
// file and line: a plan computed from part of a territory would move the
// wrong contacts.
func ReadContacts(r io.Reader, file string) (*Contacts, error) {
	name := displayName(file)
	fail := func(line int, format string, args ...any) error {
		return &FileError{File: name, Line: line, Err: fmt.Errorf(format, args...)}
	}
	br := bufio.NewReader(r)
	if b, _ := br.Peek(3); bytes.Equal(b, []byte("\ufeff")) {
		_, _ = br.Discard(3)
	}
	cr := csv.NewReader(br)
	cr.TrimLeadingSpace = true
	cr.ReuseRecord = true
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, fail(0, "empty file: want a header row with a contact id and a region or segment column")
	}
	if err != nil {
		return nil, csvError(name, err)
	}
	cols := make([]column, len(header))
	at := map[column]int{}
	for i, h := range header {
		if !utf8.ValidString(h) {
			return nil, fail(1, "the header is not valid UTF-8 text: save the file as UTF-8")
		}
		c := columns[normalizeHeader(h)]
		if c == colOther {
			continue
		}
		if prev, dup := at[c]; dup {
			return nil, fail(1, "columns %q and %q both mean %s: keep only one of them", clip(header[prev]), clip(h), columnNames[c])
		}
		at[c] = i
		cols[i] = c
	}
	cs := &Contacts{File: name}
	_, cs.HasRegion = at[colRegion]
	_, cs.HasSegment = at[colSegment]
	_, cs.HasAgent = at[colAgent]
	if _, ok := at[colContact]; !ok {
		return nil, fail(1, "no contact id column: want aiContactId, contactId, contact_id or contact")
	}
	if !cs.HasRegion && !cs.HasSegment {
		return nil, fail(1, "no region or segment column: the rules have nothing to match")
	}

	seen := map[string]int{} // contact id -> line
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, csvError(name, err)
		}
		line, _ := cr.FieldPos(0)
		c := Contact{Line: line}
		for i, cell := range rec {
			cell = strings.TrimSpace(cell)
			switch cols[i] {
			case colContact:
				c.ID = strings.ToLower(cell)
			case colRegion:
				c.Region = cell
			case colSegment:
				c.Segment = cell
			case colAgent:
				c.Agent = strings.ToLower(cell)
			}
		}
		switch {
		case c.ID == "":
			return nil, fail(line, "no contact id")
		case !jobs.ValidID(c.ID):
			return nil, fail(line, "contact id %q: ids are 1 to 128 letters, digits, - and _", clip(c.ID))
		case c.Agent != "" && !jobs.ValidID(c.Agent):
			return nil, fail(line, "current agent %q: ids are 1 to 128 letters, digits, - and _ (leave the cell empty for none)", clip(c.Agent))
		}
		if prev, dup := seen[c.ID]; dup {
			return nil, fail(line, "contact %s is also on line %d: list each contact once", c.ID, prev)
		}
		seen[c.ID] = line
		cs.List = append(cs.List, c)
	}
	if len(cs.List) == 0 {
		return nil, fail(0, "no contacts: the file has a header but nothing under it")
	}
	return cs, nil
}

// csvError turns an encoding/csv error into a *FileError with the line.
func csvError(name string, err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return &FileError{File: name, Line: pe.StartLine, Err: pe.Err}
	}
	return &FileError{File: name, Err: fmt.Errorf("read: %w", err)}
}

// normalizeHeader lower-cases h and drops spaces, '_', '-' and any
// byte-order mark, as the importer does: "Contact ID" and "contact_id"
// compare equal.
func normalizeHeader(h string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '_', '-', '\ufeff':
			return -1
		}
		return r
	}, strings.ToLower(h))
}
