// Package importer decodes, validates, plans and enqueues assignment files.
package importer

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"unicode"

	"github.com/bulkassign/bulkassign/jobs"
)

// Format is the encoding of an assignment file.
type Format string

// The formats NewDecoder reads. FormatAuto picks one from the file name,
// else from the first bytes of the file.
const (
	FormatAuto  Format = ""
	FormatCSV   Format = "csv"
	FormatJSON  Format = "json"
	FormatJSONL Format = "jsonl"
)

// ParseFormat reads a --format value: "csv", "json", "jsonl" (or "ndjson"),
// and "" or "auto" for FormatAuto. Case and surrounding spaces are ignored.
func ParseFormat(s string) (Format, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "auto":
		return FormatAuto, nil
	case "csv":
		return FormatCSV, nil
	case "json":
		return FormatJSON, nil
	case "jsonl", "ndjson", "jsonlines":
		return FormatJSONL, nil
	}
	return FormatAuto, fmt.Errorf("unknown format %q: use csv, json or jsonl", s)
}

// FileError means the file as a whole is unusable: nothing from it may be
// queued. Line is the file's own line number, 0 when the problem has no
// single place.
type FileError struct {
	File string
	Line int
	Err  error
}

// Error returns "FILE: line N: problem", without "line N: " when Line is 0.
func (e *FileError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s: line %d: %v", e.File, e.Line, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.File, e.Err)
}

// Unwrap returns the underlying problem.
func (e *FileError) Unwrap() error { return e.Err }

// maxRecord bounds one CSV record, one JSON array element and one JSON Lines
// line, so that memory does not grow with a malformed file (an unclosed
// quote swallows the rest of the file into one record otherwise).
const maxRecord = 1 << 20

// maxExtras bounds the extra columns of a CSV header and the different
// extra keys of a JSON file: each is carried into every report row.
const maxExtras = 1000

// errTooLong is returned by posReader when a record exceeds maxRecord.
var errTooLong = errors.New("record longer than 1 MiB")

// Decoder reads assignment rows from a CSV, JSON array or JSON Lines file,
// one row at a time, with memory bounded by the longest record.
type Decoder struct {
	format Format
	src    source
	err    error // sticky: io.EOF or a *FileError
}

// source is one format's row reader.
type source interface {
	next() (jobs.Row, error)
	extras() []string
}

// NewDecoder prepares to read r. file is the name used in messages ("-"
// is shown as "stdin") and, when format is FormatAuto, its extension picks
// the format (.csv, .json, .jsonl, .ndjson); without a known extension the
// first byte decides: '[' JSON, '{' JSON Lines, anything else CSV. A .json
// file holding objects one per line is read as JSON Lines, and a .jsonl file
// holding an array as JSON. A UTF-8 byte-order mark is skipped.
//
// ids is the rule every contact and member id must follow; a row with an
// id that breaks it is invalid.
//
// For CSV the header is read here, and a missing contact or member column
// or a column given twice is a *FileError. An empty file is a *FileError
// in every format.
func NewDecoder(r io.Reader, file string, format Format, ids jobs.IDFormat) (*Decoder, error) {
	return newDecoder(r, file, format, ids, nil)
}

// NewMappedDecoder is NewDecoder for a file with other headers: mapping
// says which of the file's columns (JSON keys) holds each of our fields
// (see LoadMapping), and mappingName names the mapping in messages. A
// mapping key that is not one of our fields, or a mapped header that is
// not in the file, is a *FileError.
func NewMappedDecoder(r io.Reader, file string, format Format, ids jobs.IDFormat, mapping map[string]string, mappingName string) (*Decoder, error) {
	mp, err := newMapping(mapping, mappingName)
	if err != nil {
		return nil, &FileError{File: displayName(mappingName), Err: err}
	}
	return newDecoder(r, file, format, ids, mp)
}

func newDecoder(r io.Reader, file string, format Format, ids jobs.IDFormat, mp *mapping) (*Decoder, error) {
	name := displayName(file)
	switch format {
	case FormatAuto, FormatCSV, FormatJSON, FormatJSONL:
	default:
		return nil, fmt.Errorf("decode %s: unknown format %q: use csv, json or jsonl", name, format)
	}
	br := bufio.NewReaderSize(r, 64<<10)
	if b, _ := br.Peek(len(bom)); bytes.Equal(b, bom) {
		_, _ = br.Discard(len(bom))
	} else if bytes.HasPrefix(b, []byte{0xff, 0xfe}) || bytes.HasPrefix(b, []byte{0xfe, 0xff}) {
		return nil, &FileError{File: name, Err: errors.New("the file is UTF-16 text: save it as UTF-8 (in Excel: CSV UTF-8)")}
	}
	first, empty, err := firstByte(br)
	if err != nil {
		return nil, &FileError{File: name, Err: fmt.Errorf("read: %w", err)}
	}
	if empty {
		return nil, &FileError{File: name, Err: errors.New("empty file")}
	}
	d := &Decoder{format: detect(format, file, first)}
	switch d.format {
	case FormatCSV:
		d.src, err = newCSVSource(name, br, ids, mp)
	case FormatJSON:
		d.src = newJSONArraySource(name, br, ids, mp)
	default:
		d.src = newJSONLinesSource(name, br, ids, mp)
	}
	if err != nil {
		return nil, err
	}
	return d, nil
}

// Format returns the format the decoder reads.
func (d *Decoder) Format() Format { return d.format }

// Next returns the next row in file order: a valid row, or an invalid one
// with Reason and Error set. A valid row that names its member only by
// email has MemberEmail set and MemberID empty: Import resolves it through
// Options.Directory. It returns io.EOF after the last row and a *FileError
// when the file is unusable; both are final.
func (d *Decoder) Next() (jobs.Row, error) {
	if d.err != nil {
		return jobs.Row{}, d.err
	}
	row, err := d.src.next()
	if err != nil {
		d.err = err
		return jobs.Row{}, err
	}
	return row, nil
}

// Extras returns the names of the columns that are neither a known field
// nor a report column, in the order first seen. Row.Extra[i] is the value
// for Extras()[i]; a row may have fewer entries (the rest are empty). For
// CSV the list is known after NewDecoder, for JSON only once Next has
// returned io.EOF.
func (d *Decoder) Extras() []string { return slices.Clone(d.src.extras()) }

var bom = []byte("\ufeff")

func displayName(file string) string {
	switch file {
	case "-":
		return "stdin"
	case "":
		return "input"
	}
	return file
}

// firstByte returns the first byte that is not white space, without
// consuming anything. empty is true when the input holds nothing else. If
// the whole read-ahead buffer is white space, first is 0 and empty false.
func firstByte(br *bufio.Reader) (first byte, empty bool, err error) {
	for n := 512; ; n *= 2 {
		n = min(n, br.Size())
		b, err := br.Peek(n)
		for _, c := range b {
			if !isSpace(c) {
				return c, false, nil
			}
		}
		switch {
		case err == io.EOF:
			return 0, true, nil
		case err == bufio.ErrBufferFull || err == nil && n == br.Size():
			return 0, false, nil
		case err != nil:
			return 0, false, err
		}
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// detect resolves FormatAuto from the file name and the first byte.
func detect(given Format, file string, first byte) Format {
	if given != FormatAuto {
		return given
	}
	switch strings.ToLower(filepath.Ext(file)) {
	case ".csv":
		return FormatCSV
	case ".json":
		if first == '{' {
			return FormatJSONL
		}
		return FormatJSON
	case ".jsonl", ".ndjson":
		if first == '[' {
			return FormatJSON
		}
		return FormatJSONL
	}
	switch first {
	case '[':
		return FormatJSON
	case '{':
		return FormatJSONL
	}
	return FormatCSV
}

// field is what a column or key means.
type field int

const (
	fieldExtra field = iota
	fieldContact
	fieldMember
	fieldReplace
	fieldEmail  // the member's email, resolved to its id; also kept as an extra
	fieldIgnore // a column of a previous report (failed.csv is fed back in)
)

// Names the report and the messages use for the fields.
const (
	nameContact = "aiContactId"
	nameMember  = "teamMemberId"
	nameReplace = "removeExistingAgents"
	nameEmail   = "teamMemberEmail"
)

// fields maps a normalised header (see normalizeHeader) to its field.
var fields = map[string]field{
	"aicontactid": fieldContact, "contactid": fieldContact, "contact": fieldContact, "aicontact": fieldContact,

	"teammemberid": fieldMember, "memberid": fieldMember, "agentid": fieldMember, "agent": fieldMember,
	"teammember": fieldMember,

	"removeexistingagents": fieldReplace, "replace": fieldReplace, "removeexisting": fieldReplace,
	"replaceexisting": fieldReplace,

	"teammemberemail": fieldEmail, "agentemail": fieldEmail, "owneremail": fieldEmail, "memberemail": fieldEmail,

	"line": fieldIgnore, "status": fieldIgnore, "httpstatus": fieldIgnore, "attempts": fieldIgnore,
	"error": fieldIgnore,
}

func fieldName(f field) string {
	switch f {
	case fieldContact:
		return nameContact
	case fieldMember:
		return nameMember
	case fieldEmail:
		return nameEmail
	}
	return nameReplace
}

// cleanHeader trims a header cell and drops any byte-order mark in it.
func cleanHeader(h string) string {
	return strings.TrimSpace(strings.ReplaceAll(h, "\ufeff", ""))
}

// normalizeHeader lower-cases h and drops spaces, '_' and '-', so that
// "Team Member-ID" and "team_member_id" compare equal.
func normalizeHeader(h string) string {
	h = strings.ToLower(h)
	return strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '_', '-', '\ufeff':
			return -1
		}
		return r
	}, h)
}

// value is one cell or JSON value of a known field.
type value struct {
	text  string // trimmed text of the cell
	bad   string // the JSON type of a value that cannot be this field ("number" for an id); "" when it can
	given bool   // the column or key exists
}

// makeRow validates one row, its ids by the rule ids. The first problem
// wins: contact, then member, then removeExistingAgents. The member is its
// id, or when the id is empty its email, left for Import to resolve.
func makeRow(ids jobs.IDFormat, line int, contact, member, email, replace value, extra []string) jobs.Row {
	row := jobs.Row{Line: line, Extra: extra}
	c, m := strings.ToLower(contact.text), strings.ToLower(member.text)
	flag, flagOK := parseBool(replace.text)
	byEmail := member.text == "" && member.bad == "" && (email.text != "" || email.bad != "")
	switch {
	case contact.text == "" && contact.bad == "":
		row.Reason = "missing_contact_id"
		row.Error = nameContact + " is empty: fill in the contact's id"
	case contact.bad != "" || !ids.Valid(c):
		row.Reason = "invalid_contact_id"
		row.Error = badID(ids, nameContact, contact)
	case member.text == "" && member.bad == "" && !byEmail:
		row.Reason, row.Error = missingMember(member.given, email.given)
	case byEmail && (email.bad != "" || !validEmail(email.text)):
		row.Reason = "invalid_member_email"
		row.Error = fmt.Sprintf("%s %q is not an email address: write it as name@domain alone, without spaces, mailto: or <...>", nameEmail, email.text)
	case !byEmail && (member.bad != "" || !ids.Valid(m)):
		row.Reason = "invalid_member_id"
		row.Error = badID(ids, nameMember, member)
	case replace.bad != "" || !flagOK:
		row.Reason = "invalid_remove_existing_agents"
		row.Error = fmt.Sprintf("%s %q is not true or false: use true/false, yes/no or 1/0, or leave it empty for false",
			nameReplace, replace.text)
	default:
		row.ContactID, row.Replace = c, flag
		if byEmail {
			row.MemberEmail = strings.ToLower(email.text)
		} else {
			row.MemberID, row.MemberEmail = m, email.text // the id wins
		}
		return row
	}
	row.ContactID, row.MemberID, row.MemberEmail, row.ReplaceText = contact.text, member.text, email.text, replace.text
	return row
}

// badID explains the malformed id v of the field name.
func badID(ids jobs.IDFormat, name string, v value) string {
	if v.bad != "" {
		return fmt.Sprintf("%s %s is a JSON %s, not an id: write the id as a string in quotes; want %s", name, v.text, v.bad, ids.Want())
	}
	return fmt.Sprintf("%s %q is not a valid id: want %s", name, v.text, ids.Want())
}

// missingMember explains a row with neither a member id nor an email.
func missingMember(idColumn, emailColumn bool) (reason, msg string) {
	switch {
	case emailColumn && idColumn:
		return "missing_member_id", nameMember + " and " + nameEmail + " are empty: fill in the team member's id or email"
	case emailColumn:
		return "missing_member_email", nameEmail + " is empty: fill in the team member's email"
	}
	return "missing_member_id", nameMember + " is empty: fill in the team member's id"
}

// validEmail checks an email address loosely: one '@' with text on both
// sides, no spaces or control characters, none of the characters that
// only a display form or a quoted address has (<alice@corp.io>, "Alice"
// <...>, (comment)), and no mailto: scheme.
func validEmail(s string) bool {
	at := strings.IndexByte(s, '@')
	if at <= 0 || at == len(s)-1 || strings.Count(s, "@") != 1 || len(s) > 254 {
		return false
	}
	if len(s) >= 7 && strings.EqualFold(s[:7], "mailto:") {
		return false
	}
	return !strings.ContainsFunc(s, func(r rune) bool {
		return r <= ' ' || r == 0x7f || unicode.IsSpace(r) || strings.ContainsRune(`<>()[],;:"\`, r)
	})
}

// parseBool reads a removeExistingAgents cell; empty means false.
func parseBool(s string) (v, ok bool) {
	switch strings.ToLower(s) {
	case "", "false", "0", "no", "n", "f":
		return false, true
	case "true", "1", "yes", "y", "t":
		return true, true
	}
	return false, false
}

// trimExtras drops trailing empty values, so a row without extras costs
// nothing in the ledger.
func trimExtras(x []string) []string {
	for len(x) > 0 && x[len(x)-1] == "" {
		x = x[:len(x)-1]
	}
	if len(x) == 0 {
		return nil
	}
	return x
}

// posReader passes bytes through and keeps those read since the last
// release, so that the line of any later offset can be computed and a
// single record cannot grow past maxRecord. Memory stays bounded by the
// longest record plus one read.
type posReader struct {
	r     io.Reader
	buf   []byte // buf[start:] are the bytes from offset base on
	start int
	base  int64 // stream offset of buf[start]
	lines int   // newlines before base
	err   error
}

// readChunk caps a single read so that read-ahead stays small.
const readChunk = 64 << 10

func (p *posReader) Read(b []byte) (int, error) {
	if p.err != nil {
		return 0, p.err
	}
	if len(p.buf)-p.start >= maxRecord {
		p.err = errTooLong
		return 0, p.err
	}
	// Never read past the limit, so that a record of maxRecord bytes is
	// accepted and one byte more is not, whatever the consumer's buffering.
	b = b[:min(len(b), readChunk, maxRecord-(len(p.buf)-p.start))]
	n, err := p.r.Read(b)
	p.buf = append(p.buf, b[:n]...)
	if err != nil && err != io.EOF {
		p.err = err
	}
	return n, err
}

// release forgets the bytes before stream offset off: the consumer is done
// with them.
func (p *posReader) release(off int64) {
	k := int(min(max(off-p.base, 0), int64(len(p.buf)-p.start)))
	p.lines += bytes.Count(p.buf[p.start:p.start+k], []byte{'\n'})
	p.start += k
	p.base += int64(k)
	if p.start > len(p.buf)/2 {
		n := copy(p.buf, p.buf[p.start:])
		p.buf = p.buf[:n]
		p.start = 0
	}
}

// kept returns the bytes read since base.
func (p *posReader) kept() []byte { return p.buf[p.start:] }

// lineAt returns the 1-based line of stream offset off (clamped to what is
// kept).
func (p *posReader) lineAt(off int64) int {
	k := int(min(max(off-p.base, 0), int64(len(p.buf)-p.start)))
	return p.lines + 1 + bytes.Count(p.buf[p.start:p.start+k], []byte{'\n'})
}

// nextLine returns the line of the first byte kept that is not white
// space (nor a comma, with skipComma), or of the end of what was read.
func (p *posReader) nextLine(skipComma bool) int {
	kept := p.kept()
	i := 0
	for i < len(kept) && (isSpace(kept[i]) || skipComma && kept[i] == ',') {
		i++
	}
	if i == len(kept) {
		return p.lastLine()
	}
	return p.lineAt(p.base + int64(i))
}

// lastLine returns the line of the last non-space byte read.
func (p *posReader) lastLine() int {
	return p.lineAt(p.base + int64(len(bytes.TrimRight(p.kept(), " \t\r\n"))))
}
