package importer

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/bulkassign/bulkassign/jobs"
)

// CSV is read with encoding/csv directly rather than through gocsv. gocsv
// binds a fixed struct: its headers must match struct tags exactly (after
// its own global name normaliser), so it cannot map our aliases, keep an
// open-ended list of extra columns or fail on two columns meaning the same
// field; its row errors number lines as "record index + 2", which is wrong
// after a blank line or a quoted cell spanning lines; and its streaming
// entry points (UnmarshalDecoderToCallback and friends) push rows from a
// goroutine instead of letting Next pull them. What would remain of gocsv
// here, NewSimpleDecoderFromCSVReader, only wraps csv.Reader.Read and hides
// the FieldPos and InputOffset methods that give the file's own line numbers
// and bound memory. So gocsv adds nothing but an indirection.

// csvColumn says where one CSV column goes.
type csvColumn struct {
	field field
	extra int // index in extras when field is fieldExtra
}

// csvSource reads rows from a CSV file with a header row.
type csvSource struct {
	name       string
	pr         *posReader
	cr         *csv.Reader
	cols       []csvColumn
	extraNames []string
	ids        jobs.IDFormat
	hasMember  bool // the header has a member id column
	hasEmail   bool // the header has a member email column
}

func newCSVSource(name string, r io.Reader, ids jobs.IDFormat, mp *mapping) (*csvSource, error) {
	pr := &posReader{r: r}
	cr := csv.NewReader(pr)
	cr.FieldsPerRecord = -1 // checked in next, with a better message
	cr.ReuseRecord = true
	cr.TrimLeadingSpace = true // `a, "b,c"` is two cells, not a bare quote
	s := &csvSource{name: name, pr: pr, cr: cr, ids: ids}

	header, err := cr.Read()
	if err == io.EOF {
		return nil, &FileError{File: name, Err: errors.New("empty file")}
	}
	if err != nil {
		return nil, s.readError(err)
	}
	line, _ := cr.FieldPos(0)
	pr.release(cr.InputOffset())

	s.cols = make([]csvColumn, len(header))
	seen := map[field]string{} // field -> header that named it
	for _, h := range header {
		if !utf8.ValidString(h) {
			return nil, s.fail(line, "the header is not valid UTF-8 text: save the file as UTF-8")
		}
	}
	kinds, err := mp.columns(header)
	if err != nil {
		return nil, s.fail(line, "%v", err)
	}
	extras := 0
	for _, f := range kinds {
		if f == fieldExtra || f == fieldEmail { // the columns the report carries, as for JSON
			extras++
		}
	}
	if extras > maxExtras {
		return nil, s.fail(line, "the header has %d extra columns, more than %d: keep only the columns you need "+
			"besides %s, %s and %s (each extra column is carried into the report)", extras, maxExtras, nameContact, nameMember, nameReplace)
	}
	for i, h := range header {
		h = cleanHeader(h)
		f := kinds[i]
		switch f {
		case fieldExtra:
			if h == "" {
				h = fmt.Sprintf("column %d", i+1)
			}
			s.cols[i] = csvColumn{field: fieldExtra, extra: len(s.extraNames)}
			s.extraNames = append(s.extraNames, h)
			continue
		case fieldContact, fieldMember, fieldReplace, fieldEmail:
			if prev, dup := seen[f]; dup {
				return nil, s.fail(line, "columns %q and %q both mean %s: keep only one of them", prev, h, fieldName(f))
			}
			seen[f] = h
		}
		s.cols[i] = csvColumn{field: f}
		if f == fieldEmail { // also an extra, so that the report shows the email as given
			s.cols[i].extra = len(s.extraNames)
			s.extraNames = append(s.extraNames, h)
		}
	}
	_, s.hasMember = seen[fieldMember]
	_, s.hasEmail = seen[fieldEmail]
	if _, ok := seen[fieldContact]; !ok {
		return nil, s.fail(line, "%s", missingColumn(fieldContact, header))
	}
	if !s.hasMember && !s.hasEmail {
		return nil, s.fail(line, "%s", missingColumn(fieldMember, header))
	}
	return s, nil
}

// missingColumn explains a header without the contact or member column.
func missingColumn(f field, header []string) string {
	var found []string
	for _, h := range header {
		if h = cleanHeader(h); h != "" && len(found) < 6 {
			if r := []rune(h); len(r) > 40 { // a binary file's "header" can be huge
				h = string(r[:40]) + "…"
			}
			found = append(found, fmt.Sprintf("%q", h))
		}
	}
	what, aliases := fieldName(f)+" column", "contact_id or contactId"
	if f == fieldMember {
		what = nameMember + " column or " + nameEmail + " column"
		aliases = "team_member_id, agent_id or agentId; agent_email, owner_email or member_email"
	}
	msg := fmt.Sprintf("no %s (also accepted: %s); the header has %s: "+
		"the first line must name the columns, e.g. aiContactId,teamMemberId,removeExistingAgents",
		what, aliases, strings.Join(found, ", "))
	if len(found) == 0 {
		msg = fmt.Sprintf("no %s: the first line must name the columns, "+
			"e.g. aiContactId,teamMemberId,removeExistingAgents", what)
	}
	if len(header) == 1 {
		for _, sep := range []string{";", "\t", "|"} {
			if strings.Contains(header[0], sep) {
				msg += fmt.Sprintf(" (the file seems to separate cells with %q: save it with commas)", sep)
				break
			}
		}
	}
	return msg
}

func (s *csvSource) extras() []string { return s.extraNames }

func (s *csvSource) next() (jobs.Row, error) {
	for {
		rec, err := s.cr.Read()
		if err == io.EOF {
			return jobs.Row{}, io.EOF
		}
		if err != nil {
			return jobs.Row{}, s.readError(err)
		}
		line, _ := s.cr.FieldPos(0)
		s.pr.release(s.cr.InputOffset())
		if blank(rec) {
			continue // a spreadsheet's empty row, not an assignment
		}
		if len(rec) != len(s.cols) {
			fix := "quote cells that contain commas"
			if len(rec) < len(s.cols) {
				fix = "every line needs a cell for each column, even an empty one"
			}
			return jobs.Row{}, s.fail(line, "wrong number of fields (%d, header has %d): %s", len(rec), len(s.cols), fix)
		}
		var contact, member, email, replace value
		member.given, email.given = s.hasMember, s.hasEmail
		var extra []string
		for i, cell := range rec {
			if !utf8.ValidString(cell) {
				return jobs.Row{}, s.fail(line, "column %d is not valid UTF-8 text: save the file as UTF-8", i+1)
			}
			c := s.cols[i]
			if c.field == fieldIgnore {
				continue
			}
			v := undoFormula(strings.TrimSpace(cell))
			switch c.field {
			case fieldContact:
				contact.text = v
			case fieldMember:
				member.text = v
			case fieldReplace:
				replace.text = v
			case fieldEmail:
				email.text = v
			}
			if c.field == fieldExtra || c.field == fieldEmail {
				if v != "" {
					if extra == nil {
						extra = make([]string, len(s.extraNames))
					}
					extra[c.extra] = v
				}
			}
		}
		return makeRow(s.ids, line, contact, member, email, replace, trimExtras(extra)), nil
	}
}

func (s *csvSource) fail(line int, format string, args ...any) *FileError {
	return &FileError{File: s.name, Line: line, Err: fmt.Errorf(format, args...)}
}

// readError turns an error of csv.Reader into a *FileError that says what
// to fix.
func (s *csvSource) readError(err error) error {
	var pe *csv.ParseError
	switch {
	case errors.Is(err, errTooLong):
		return s.tooLong()
	case errors.As(err, &pe) && errors.Is(pe.Err, csv.ErrBareQuote):
		return s.fail(pe.Line, "a \" in an unquoted cell (column %d): put the whole cell in double quotes and write the \" as \"\"", pe.Column)
	case errors.As(err, &pe) && errors.Is(pe.Err, csv.ErrQuote):
		if pe.Line != pe.StartLine {
			return s.fail(pe.StartLine, "a quoted cell that starts here is not closed properly (the problem is on line %d, column %d): end every quoted cell with \" and write a \" inside it as \"\"", pe.Line, pe.Column)
		}
		return s.fail(pe.StartLine, "a quoted cell is not closed properly (column %d): end every quoted cell with \" and write a \" inside it as \"\"", pe.Column)
	case errors.As(err, &pe):
		return s.fail(pe.StartLine, "%v", pe.Err)
	}
	return &FileError{File: s.name, Err: fmt.Errorf("read: %w", err)}
}

// tooLong explains a record that reached maxRecord. A record that spans
// lines is inside a quoted cell, most likely one whose closing quote is
// missing; one that does not is a single line that long, which for the
// header means far too many columns (or not a CSV file at all).
func (s *csvSource) tooLong() *FileError {
	line := s.pr.nextLine(false)
	// csv.Reader reads on only when its buffer holds no further line end,
	// so a line end in what was read since the previous record (past blank
	// lines) is inside this record.
	spans := bytes.IndexByte(bytes.TrimLeft(s.pr.kept(), " \t\r\n"), '\n') >= 0
	switch {
	case spans && s.cols == nil:
		return s.fail(line, "the header is longer than 1 MiB, the limit for one record, and runs over several lines: "+
			"a quoted cell in it is probably not closed; end every quoted cell with \"")
	case spans:
		return s.fail(line, "the row that starts here is longer than 1 MiB, the limit for one row, and runs over several lines: "+
			"a quoted cell in it is probably not closed; end every quoted cell with \" and write a \" inside it as \"\"")
	case s.cols == nil:
		return s.fail(line, "the header is longer than 1 MiB, the limit for one line: keep only the columns you need "+
			"(at most %d besides %s, %s and %s), and check that the file is CSV", maxExtras, nameContact, nameMember, nameReplace)
	}
	return s.fail(line, "the row is longer than 1 MiB, the limit for one row: shorten its longest cells")
}

// blank reports whether every cell of a record is empty or white space.
func blank(rec []string) bool {
	for _, c := range rec {
		if strings.TrimSpace(c) != "" {
			return false
		}
	}
	return true
}

// undoFormula removes the quote the report puts before a cell a spreadsheet
// would run as a formula, so that failed.csv can be fed back in as it is.
func undoFormula(s string) string {
	if len(s) >= 2 && s[0] == '\'' {
		switch s[1] {
		case '=', '+', '-', '@':
			return s[1:]
		}
	}
	return s
}
