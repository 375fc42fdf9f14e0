package simulator

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// ContactID is the n-th generated contact id, a UUID whose last group is
// n in decimal: c0000000-0000-8000-8000-000000000001 for 1. The form is
// UUID version 8 (RFC 9562: "custom"), as these ids are made from a
// counter, not at random, and differ from the members'.
func ContactID(n int) string { return fmt.Sprintf("c0000000-0000-8000-8000-%012d", n) }

// MemberID is the n-th generated team member id, a UUID like ContactID's
// that starts with an a (agent): a0000000-0000-8000-8000-000000000001.
func MemberID(n int) string { return fmt.Sprintf("a0000000-0000-8000-8000-%012d", n) }

// GenerateContacts returns n deterministic contact ids: ContactID(1),
// ContactID(2), …
func GenerateContacts(n int) []string {
	ids := make([]string, max(n, 0))
	for i := range ids {
		ids[i] = ContactID(i + 1)
	}
	return ids
}

// GenerateMembers returns n deterministic, active team members with ids
// MemberID(1), MemberID(2), …, names "Agent 0001", … and emails
// agent0001@example.com, …
func GenerateMembers(n int) []Member {
	ms := make([]Member, max(n, 0))
	for i := range ms {
		num := fmt.Sprintf("%04d", i+1)
		ms[i] = Member{
			ID:        MemberID(i + 1),
			Name:      "Agent " + num,
			FirstName: "Agent",
			LastName:  num,
			Email:     "agent" + num + "@example.com",
			Phone:     fmt.Sprintf("+1555%07d", i+1),
			Active:    true,
		}
	}
	return ms
}

// contactColumns are the header names, normalised, that LoadContacts takes
// as the id column.
var contactColumns = []string{"id", "aicontactid", "contactid", "contact"}

// normHeader lower-cases a header cell and drops spaces, '_' and '-'.
func normHeader(h string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case ' ', '_', '-', '\t':
			return -1
		}
		return r
	}, strings.ToLower(strings.TrimSpace(h)))
}

// LoadContacts reads contact ids: one per line, or a CSV whose header names
// an id column (id, aiContactId, contact_id, contact; matched ignoring case,
// spaces, '_' and '-'). Ids are trimmed, validated and returned lower-case,
// duplicates dropped, in file order. Blank lines are skipped; a UTF-8 BOM
// and CRLF line ends are accepted.
func LoadContacts(r io.Reader) ([]string, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	col := -1
	seen := make(map[string]struct{})
	var ids []string
	for first := true; ; first = false {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("load contacts: %w", err)
		}
		line, _ := cr.FieldPos(0)
		if first {
			rec[0] = strings.TrimPrefix(rec[0], "\ufeff")
			for i, h := range rec {
				for _, name := range contactColumns {
					if normHeader(h) == name && col < 0 {
						col = i
					}
				}
			}
			if col >= 0 {
				continue // a header row
			}
			if len(rec) > 1 {
				return nil, fmt.Errorf("load contacts: line %d: no id column (want a header with id, aiContactId or contact_id)", line)
			}
			col = 0
		}
		if col >= len(rec) {
			return nil, fmt.Errorf("load contacts: line %d: missing id column", line)
		}
		cell := strings.TrimSpace(rec[col])
		if cell == "" && len(rec) == 1 {
			continue
		}
		id, ok := normID(cell)
		if !ok {
			return nil, fmt.Errorf("load contacts: line %d: malformed contact id %q", line, truncate(cell))
		}
		if _, dup := seen[id]; dup {
			continue
		}
		seen[id] = struct{}{}
		ids = append(ids, id)
	}
	if ids == nil {
		ids = []string{}
	}
	return ids, nil
}

// LoadMembers reads team members from a JSON array in the shape of
// GET /api/public/team-members/all. A missing "active" means true. Ids are
// validated and returned lower-case; a duplicate id is an error.
func LoadMembers(r io.Reader) ([]Member, error) {
	type wire struct {
		Member
		Active *bool `json:"active"`
	}
	var in []wire
	dec := json.NewDecoder(r)
	if err := dec.Decode(&in); err != nil {
		return nil, fmt.Errorf("load members: %w", err)
	}
	if in == nil {
		return nil, errors.New("load members: want a JSON array of team members")
	}
	ms := make([]Member, len(in))
	seen := make(map[string]struct{}, len(in))
	for i, w := range in {
		m := w.Member
		id, ok := normID(strings.TrimSpace(m.ID))
		if !ok {
			return nil, fmt.Errorf("load members: element %d: malformed id %q", i+1, truncate(m.ID))
		}
		if _, dup := seen[id]; dup {
			return nil, fmt.Errorf("load members: element %d: duplicate id %s", i+1, id)
		}
		seen[id] = struct{}{}
		m.ID = id
		m.Active = w.Active == nil || *w.Active
		ms[i] = m
	}
	return ms, nil
}

func truncate(s string) string {
	const n = 40
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
