package importer

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/bulkassign/bulkassign/jobs"
)

// jsonObjects turns JSON objects into rows. It is shared by the JSON array
// and the JSON Lines readers: key matching, extras and the end-of-file
// check are the same.
type jsonObjects struct {
	name       string
	extraIndex map[string]int // normalised key -> index in extraNames
	extraNames []string
	seenExtra  []bool // per object, reset for each
	hasContact bool   // some object had a contact key
	hasMember  bool
	hasEmail   bool
	rows       int
	ids        jobs.IDFormat
	mapping    *mapping
	mappedSeen [fieldIgnore]bool // field -> some object had its mapped key
}

func newJSONObjects(name string, ids jobs.IDFormat, mp *mapping) jsonObjects {
	return jsonObjects{name: name, extraIndex: map[string]int{}, ids: ids, mapping: mp}
}

func (j *jsonObjects) extras() []string { return j.extraNames }

func (j *jsonObjects) fail(line int, format string, args ...any) *FileError {
	return &FileError{File: j.name, Line: line, Err: fmt.Errorf(format, args...)}
}

// row decodes raw, one complete and valid JSON value. line is the row's
// Line; textLine is the file line for a *FileError; where names the value
// in messages ("element 3: " or "").
func (j *jsonObjects) row(raw []byte, line, textLine int, where string) (jobs.Row, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return jobs.Row{}, j.fail(textLine, "%sfound %s where an object was expected: "+
			"each entry must be an object like {\"aiContactId\": \"...\", \"teamMemberId\": \"...\"}", where, jsonKind(raw))
	}
	if !utf8.Valid(raw) {
		return jobs.Row{}, j.fail(textLine, "%stext is not valid UTF-8: save the file as UTF-8", where)
	}
	for i := range j.seenExtra {
		j.seenExtra[i] = false
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil { // '{'
		return jobs.Row{}, j.fail(textLine, "%sinvalid JSON: %v", where, err)
	}
	var contact, member, email, replace value
	var extra []string
	var keys [fieldIgnore]string // field -> key that set it
	for n := 1; dec.More(); n++ {
		tok, err := dec.Token()
		if err != nil {
			return jobs.Row{}, j.fail(textLine, "%sinvalid JSON: %v", where, err)
		}
		key, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return jobs.Row{}, j.fail(textLine, "%sinvalid JSON: %v", where, err)
		}
		key = cleanHeader(key)
		norm := normalizeHeader(key)
		f, mapped := j.mapping.keyField(norm)
		if mapped {
			j.mappedSeen[f] = true
		}
		switch f {
		case fieldIgnore:
			continue
		case fieldContact, fieldMember, fieldReplace, fieldEmail:
			if prev := keys[f]; prev != "" {
				return jobs.Row{}, j.fail(textLine, "%skeys %q and %q both mean %s: keep only one of them", where, prev, key, fieldName(f))
			}
			keys[f] = key
		}
		switch f {
		case fieldContact:
			j.hasContact = true
			contact = jsonValue(v, true)
		case fieldMember:
			j.hasMember = true
			member = jsonValue(v, true)
		case fieldReplace:
			replace = jsonValue(v, false)
		case fieldEmail:
			j.hasEmail = true
			email = jsonValue(v, true)
			email.given = true
		}
		if f == fieldExtra || f == fieldEmail { // an email is also kept as it is given
			i, ok := j.extraIndex[norm]
			if !ok {
				if len(j.extraNames) == maxExtras {
					return jobs.Row{}, j.fail(textLine, "%smore than %d different keys: keep only the columns you need", where, maxExtras)
				}
				i = len(j.extraNames)
				name := key
				if name == "" {
					name = fmt.Sprintf("column %d", i+1)
				}
				j.extraIndex[norm] = i
				j.extraNames = append(j.extraNames, name)
				j.seenExtra = append(j.seenExtra, false)
			}
			if j.seenExtra[i] {
				return jobs.Row{}, j.fail(textLine, "%skey %q is given twice (as %q or a spelling of it): keep only one", where, key, j.extraNames[i])
			}
			j.seenExtra[i] = true
			if t := jsonValue(v, false).text; t != "" {
				if len(extra) <= i {
					extra = append(extra, make([]string, i+1-len(extra))...)
				}
				extra[i] = t
			}
		}
	}
	j.rows++
	member.given = keys[fieldMember] != "" || !email.given
	return makeRow(j.ids, line, contact, member, email, replace, trimExtras(extra)), nil
}

// finish is called at the end of the input: if no object named the contact
// or the member, the file is unusable rather than every row invalid.
func (j *jsonObjects) finish() error {
	if j.rows > 0 {
		if err := j.mapping.missingKeys(j.mappedSeen); err != nil {
			return &FileError{File: j.name, Err: err}
		}
	}
	if j.rows > 0 && !j.hasContact {
		return j.fail(0, "no object has an %s key (also accepted: contact_id, contactId): name each object's contact id %s", nameContact, nameContact)
	}
	if j.rows > 0 && !j.hasMember && !j.hasEmail {
		return j.fail(0, "no object has a %s key or a %s key (also accepted: team_member_id, agent_id, agentId; agent_email, owner_email, member_email): name each object's team member id %s", nameMember, nameEmail, nameMember)
	}
	return io.EOF
}

// jsonValue converts one JSON value to cell text: a string as it is
// (trimmed), a number as its literal, null as "", a boolean as "true" or
// "false" and an object or array as its compact JSON text. For a field
// that holds an id (or an email) only a string or null will do: a number
// is never an id, whatever its digits. An object or array is always bad
// for a known field.
func jsonValue(v json.RawMessage, id bool) value {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return value{}
	}
	notID := func(kind string) string {
		if id {
			return kind
		}
		return ""
	}
	switch v[0] {
	case '"':
		if s := v[1 : len(v)-1]; bytes.IndexByte(s, '\\') < 0 {
			return value{text: strings.TrimSpace(string(s))}
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return value{text: string(v), bad: "string with a bad escape"}
		}
		return value{text: strings.TrimSpace(s)}
	case 'n':
		return value{}
	case 't', 'f':
		return value{text: string(v), bad: notID("boolean")}
	case '{', '[':
		kind := "object"
		if v[0] == '[' {
			kind = "array"
		}
		var b bytes.Buffer
		if err := json.Compact(&b, v); err != nil {
			return value{text: string(v), bad: kind}
		}
		return value{text: b.String(), bad: kind}
	}
	return value{text: string(v), bad: notID("number")} // a number, as written
}

// jsonKind names the kind of a JSON value for messages.
func jsonKind(raw []byte) string {
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// jsonArraySource reads a JSON array of objects, one element at a time.
type jsonArraySource struct {
	jsonObjects
	pr      *posReader
	dec     *json.Decoder
	started bool
	index   int // elements read
}

func newJSONArraySource(name string, r io.Reader, ids jobs.IDFormat, mp *mapping) *jsonArraySource {
	pr := &posReader{r: r}
	return &jsonArraySource{jsonObjects: newJSONObjects(name, ids, mp), pr: pr, dec: json.NewDecoder(pr)}
}

func (s *jsonArraySource) next() (jobs.Row, error) {
	if !s.started {
		s.started = true
		tok, err := s.dec.Token()
		if err != nil {
			return jobs.Row{}, s.syntaxError(err)
		}
		if d, ok := tok.(json.Delim); !ok || d != '[' {
			line := s.pr.lineAt(s.dec.InputOffset() - 1)
			if d == '{' {
				return jobs.Row{}, s.fail(line, "the file is a single JSON object, not an array: "+
					"put the objects in [ ] separated by commas, or write one object per line (JSON Lines)")
			}
			return jobs.Row{}, s.fail(line, "the file is a single JSON value, not an array: "+
				"write the rows as an array of objects, [{\"aiContactId\": \"...\", \"teamMemberId\": \"...\"}, ...]")
		}
	}
	s.pr.release(s.dec.InputOffset())
	if !s.dec.More() {
		tok, err := s.dec.Token()
		if err != nil {
			return jobs.Row{}, s.syntaxError(err)
		}
		if d, ok := tok.(json.Delim); !ok || d != ']' {
			return jobs.Row{}, s.fail(s.pr.lineAt(s.dec.InputOffset()), "unexpected %v in the array", tok)
		}
		s.pr.release(s.dec.InputOffset())
		switch _, err := s.dec.Token(); {
		case err == io.EOF:
		case err != nil:
			return jobs.Row{}, s.syntaxError(err)
		default:
			return jobs.Row{}, s.fail(s.pr.nextLine(false), "more data after the closing ] of the array: the file must hold a single array")
		}
		return jobs.Row{}, s.finish()
	}
	var raw json.RawMessage
	if err := s.dec.Decode(&raw); err != nil {
		return jobs.Row{}, s.syntaxError(err)
	}
	s.index++
	end := s.dec.InputOffset()
	lead := len(raw) - len(bytes.TrimLeft(raw, " \t\r\n"))
	line := s.pr.lineAt(end - int64(len(raw)) + int64(lead))
	return s.row(raw, s.index, line, fmt.Sprintf("element %d: ", s.index))
}

// syntaxError turns a decoding error into a *FileError on the line where
// the JSON goes wrong. json.Decoder's SyntaxError.Offset cannot be trusted
// inside a stream (its scanner counts bytes across values and skips the
// bytes Token consumes), but the decoder stops before the value it failed
// on, so that value is scanned again on its own from the kept bytes.
func (s *jsonArraySource) syntaxError(err error) error {
	var se *json.SyntaxError
	switch {
	case errors.Is(err, errTooLong):
		return s.fail(s.pr.nextLine(true), "element %d is longer than 1 MiB: each element must be one small object", s.index+1)
	case err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF):
		return s.fail(s.pr.lastLine(), "the file ends inside the JSON array: close every \", { and [, and end the array with ]")
	case errors.As(err, &se):
		return s.fail(s.pr.lineAt(s.errorOffset()), "invalid JSON (%v): fix the JSON syntax", se)
	}
	return &FileError{File: s.name, Err: fmt.Errorf("read: %w", err)}
}

// errorOffset returns the stream offset of the syntax error the decoder
// stopped at.
func (s *jsonArraySource) errorOffset() int64 {
	at := s.dec.InputOffset()
	kept := s.pr.kept()
	k := int(min(max(at-s.pr.base, 0), int64(len(kept))))
	var raw json.RawMessage
	var se *json.SyntaxError
	if err := json.NewDecoder(bytes.NewReader(kept[k:])).Decode(&raw); errors.As(err, &se) && se.Offset > 0 {
		return at + se.Offset - 1
	}
	return at
}

// jsonLinesSource reads one JSON object per line.
type jsonLinesSource struct {
	jsonObjects
	sc   *bufio.Scanner
	line int
}

func newJSONLinesSource(name string, r io.Reader, ids jobs.IDFormat, mp *mapping) *jsonLinesSource {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxRecord)
	return &jsonLinesSource{jsonObjects: newJSONObjects(name, ids, mp), sc: sc}
}

func (s *jsonLinesSource) next() (jobs.Row, error) {
	for s.sc.Scan() {
		s.line++
		b := bytes.TrimSpace(s.sc.Bytes())
		if len(b) == 0 {
			continue
		}
		if !json.Valid(b) {
			err := json.Unmarshal(b, new(json.RawMessage))
			return jobs.Row{}, s.fail(s.line, "invalid JSON (%v): write one complete object per line, "+
				"or put the objects in a [ ] array", err)
		}
		return s.row(b, s.line, s.line, "")
	}
	if err := s.sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return jobs.Row{}, s.fail(s.line+1, "line longer than 1 MiB: write one small object per line")
		}
		return jobs.Row{}, &FileError{File: s.name, Err: fmt.Errorf("read: %w", err)}
	}
	return jobs.Row{}, s.finish()
}
