package planner

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/gocarina/gocsv"
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
	// Agents are all the contact's agents when the CRM was read (SetLive)
	// and it has more than one: the plan counts the first of them in the
	// contact's pool as its owner, else Agent, the first.
	Agents []string
	// NotInCRM says a live read found no such contact: it gets no row.
	NotInCRM bool
}

// Contacts is a contacts file: its rows and which optional columns it has.
type Contacts struct {
	// File names the contacts file in messages.
	File string
	// List holds the contacts in file order.
	List []Contact
	// HasRegion, HasSegment and HasAgent say which columns the file has.
	HasRegion, HasSegment, HasAgent bool
	// Live says the agents are the CRM's, read by SetLive, not the file's.
	Live bool
}

// SetLive replaces the agent of the contact at index i of List with the
// agents the CRM has for it now (lower-case ids, in the CRM's order;
// none for a contact without one), or marks it as not in the CRM. Once
// every contact is set, mark the file live with Live.
func (cs *Contacts) SetLive(i int, agents []string, notInCRM bool) {
	c := &cs.List[i]
	c.Agent, c.Agents, c.NotInCRM = "", nil, notInCRM
	if len(agents) > 0 {
		c.Agent = agents[0]
	}
	if len(agents) > 1 {
		c.Agents = agents
	}
}

// contactRow is one row of a contacts file as gocsv binds it. A column's
// csv tag lists the headers it is known by, its canonical name first
// (headers compare after normalizeHeader, so contact_id is contactId);
// name is the column in messages.
type contactRow struct {
	ID      string `csv:"aiContactId,contactId,contact,aiContact" name:"contact id"`
	Region  string `csv:"region,territory" name:"region"`
	Segment string `csv:"segment" name:"segment"`
	Agent   string `csv:"currentAgent,currentAgentId,agent,agentId,owner,ownerId,currentOwner,teamMemberId,teamMember,memberId" name:"current agent"`
	// Line is not a column of the file: contactsDecoder adds the line each
	// record starts on, which gocsv cannot know (it counts records, which
	// is wrong after a blank line or a cell over several lines).
	Line int `csv:"line"`
}

// lineKey is the header of the column contactsDecoder adds.
const lineKey = "line"

// column is a column of a contacts file: a contactRow field.
type column struct {
	key  string // the canonical header, as gocsv binds it
	name string // the column in messages
}

// columns are the contactRow fields that are columns of the file, in field
// order; aliases maps each normalised header they are known by to its
// index in columns. Both come from contactRow's tags.
var columns, aliases = contactColumns()

// The indexes of columns: contactRow's field order.
const (
	colContact = iota
	colRegion
	colSegment
	colAgent
)

func contactColumns() ([]column, map[string]int) {
	var cols []column
	aliases := map[string]int{}
	t := reflect.TypeFor[contactRow]()
	for i := range t.NumField() {
		f := t.Field(i)
		keys := strings.Split(f.Tag.Get("csv"), ",")
		if keys[0] == lineKey {
			continue
		}
		for _, k := range keys {
			aliases[normalizeHeader(k)] = len(cols)
		}
		cols = append(cols, column{key: keys[0], name: f.Tag.Get("name")})
	}
	return cols, aliases
}

// ReadContacts reads a CSV contacts file with a header row: a contact id
// column (aiContactId, contactId, contact_id or contact), a region
// column, a segment column, or both, and optionally the current agent
// (currentAgent, agent, owner or teamMemberId). Headers ignore case,
// spaces, '_' and '-'; other columns are ignored; cells are trimmed and
// ids lower-cased. The contact ids and agents must follow the rule ids.
// Any bad row makes the whole file an error naming the file and line: a
// plan computed from part of a territory would move the wrong contacts.
func ReadContacts(r io.Reader, file string, ids jobs.IDFormat) (*Contacts, error) {
	d, err := newContactsDecoder(r, displayName(file), ids)
	if err != nil {
		return nil, err
	}
	cs := &Contacts{File: d.name, HasRegion: d.has[colRegion], HasSegment: d.has[colSegment], HasAgent: d.has[colAgent]}
	seen := map[string]int{} // contact id -> line
	var bad error            // the first bad row; the decoder stops after it
	err = gocsv.UnmarshalDecoderToCallback(d, func(row contactRow) {
		if bad != nil {
			return // a row gocsv had already read
		}
		c := Contact{
			ID:      strings.ToLower(strings.TrimSpace(row.ID)),
			Region:  strings.TrimSpace(row.Region),
			Segment: strings.TrimSpace(row.Segment),
			Agent:   strings.ToLower(strings.TrimSpace(row.Agent)),
			Line:    row.Line,
		}
		if bad = d.check(c, seen); bad != nil {
			d.stop.Store(true)
			return
		}
		seen[c.ID] = c.Line
		cs.List = append(cs.List, c)
	})
	var fe *FileError
	switch {
	case bad != nil:
		return nil, bad
	case errors.As(err, &fe):
		return nil, err
	case err != nil:
		return nil, &FileError{File: d.name, Err: fmt.Errorf("read: %w", err)}
	case len(cs.List) == 0:
		return nil, d.fail(0, "no contacts: the file has a header but nothing under it")
	}
	return cs, nil
}

// contactsDecoder is the gocsv.SimpleDecoder of a contacts file: gocsv
// binds its rows to contactRow (UnmarshalDecoderToCallback). It reads with
// its own csv.Reader, so that rows keep the file's line numbers and read
// errors say what to fix, and hands gocsv the header with each column
// renamed to its canonical key (other columns to "", which binds to
// nothing) and a line column added, and each record with its line.
//
// gocsv's UnmarshalToCallbackWithError, which reads an io.Reader itself,
// would parse with gocsv's package-level reader (no TrimLeadingSpace, no
// FieldPos) and match headers with its package-level normaliser, both
// settable only for the whole process, and after a bad row it reads the
// rest of the file; here a bad row stops the decoder.
type contactsDecoder struct {
	name   string
	ids    jobs.IDFormat // the rule of contact and agent ids
	cr     *csv.Reader
	header []string           // as gocsv sees it; nil once handed over
	cells  int                // cells in a record of the file
	has    [colAgent + 1]bool // which columns the file has
	rec    []string           // reused: gocsv is done with a record before it asks for the next
	stop   atomic.Bool        // set by ReadContacts's callback after a bad row
}

func newContactsDecoder(r io.Reader, name string, ids jobs.IDFormat) (*contactsDecoder, error) {
	br := bufio.NewReader(r)
	if b, _ := br.Peek(3); bytes.Equal(b, []byte("\ufeff")) {
		_, _ = br.Discard(3)
	}
	d := &contactsDecoder{name: name, ids: ids, cr: csv.NewReader(br)}
	d.cr.TrimLeadingSpace = true // `c-1, "north"` is two cells, not a bare quote
	d.cr.ReuseRecord = true
	header, err := d.cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, d.fail(0, "empty file: want a header row with a contact id and a region or segment column")
	}
	if err != nil {
		return nil, d.readError(header, err)
	}
	line, _ := d.cr.FieldPos(0)
	d.cells = len(header)
	d.header = make([]string, len(header), len(header)+1)
	at := map[int]int{} // column -> index in header
	for i, h := range header {
		if !utf8.ValidString(h) {
			return nil, d.fail(line, "the header is not valid UTF-8 text: save the file as UTF-8")
		}
		c, ok := aliases[normalizeHeader(h)]
		if !ok {
			continue
		}
		if prev, dup := at[c]; dup {
			return nil, d.fail(line, "columns %q and %q both mean %s: keep only one of them", clip(header[prev]), clip(h), columns[c].name)
		}
		at[c] = i
		d.has[c] = true
		d.header[i] = columns[c].key
	}
	d.header = append(d.header, lineKey)
	if !d.has[colContact] {
		return nil, d.fail(line, "no contact id column: want aiContactId, contactId, contact_id or contact")
	}
	if !d.has[colRegion] && !d.has[colSegment] {
		return nil, d.fail(line, "no region or segment column: the rules have nothing to match")
	}
	return d, nil
}

// GetCSVRow returns the header first, then each record with its line as
// a last cell, until the file ends or ReadContacts stops it.
func (d *contactsDecoder) GetCSVRow() ([]string, error) {
	if h := d.header; h != nil {
		d.header = nil
		return h, nil
	}
	if d.stop.Load() {
		return nil, io.EOF
	}
	rec, err := d.cr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		return nil, d.readError(rec, err)
	}
	line, _ := d.cr.FieldPos(0)
	d.rec = append(append(d.rec[:0], rec...), strconv.Itoa(line))
	return d.rec, nil
}

// GetCSVRows is the rest of gocsv.SimpleDecoder, which the callback
// entry points do not use: the file is read a row at a time.
func (d *contactsDecoder) GetCSVRows() ([][]string, error) {
	return nil, fmt.Errorf("read %s: %w: contacts are read a row at a time", d.name, errors.ErrUnsupported)
}

// check validates one contact; seen holds the lines of those before it.
func (d *contactsDecoder) check(c Contact, seen map[string]int) error {
	switch {
	case c.ID == "":
		return d.fail(c.Line, "no contact id: fill in the contact's id, or remove the line")
	case !d.ids.Valid(c.ID):
		return d.fail(c.Line, "contact id %q is not a valid id: want %s", clip(c.ID), d.ids.Want())
	case c.Agent != "" && !d.ids.Valid(c.Agent):
		return d.fail(c.Line, "current agent %q is not a valid id (leave the cell empty for none): want %s", clip(c.Agent), d.ids.Want())
	}
	if prev, dup := seen[c.ID]; dup {
		return d.fail(c.Line, "contact %s is also on line %d: list each contact once", c.ID, prev)
	}
	return nil
}

func (d *contactsDecoder) fail(line int, format string, args ...any) *FileError {
	return &FileError{File: d.name, Line: line, Err: fmt.Errorf(format, args...)}
}

// readError turns an error of csv.Reader (rec is what Read returned with
// it) into a *FileError that says what to fix.
func (d *contactsDecoder) readError(rec []string, err error) error {
	var pe *csv.ParseError
	switch {
	case errors.As(err, &pe) && errors.Is(pe.Err, csv.ErrFieldCount):
		fix := "quote cells that contain commas"
		if len(rec) < d.cells {
			fix = "every line needs a cell for each column, even an empty one"
		}
		return d.fail(pe.StartLine, "wrong number of fields (%d, header has %d): %s", len(rec), d.cells, fix)
	case errors.As(err, &pe) && errors.Is(pe.Err, csv.ErrBareQuote):
		return d.fail(pe.Line, "a \" in an unquoted cell (column %d): put the whole cell in double quotes and write the \" as \"\"", pe.Column)
	case errors.As(err, &pe) && errors.Is(pe.Err, csv.ErrQuote):
		return d.fail(pe.StartLine, "a quoted cell is not closed properly (line %d, column %d): end every quoted cell with \" "+
			"and write a \" inside it as \"\"", pe.Line, pe.Column)
	case errors.As(err, &pe):
		return d.fail(pe.StartLine, "%v", pe.Err)
	}
	return &FileError{File: d.name, Err: fmt.Errorf("read: %w", err)}
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
