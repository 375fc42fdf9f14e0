package planner

import (
	"errors"
	"fmt"
	"strings"
)

// Member is a CRM team member, as pools are checked against the CRM's
// team-member list.
type Member struct {
	ID, Email, Name string
	Active          bool
}

// label names a member in messages.
func (m *Member) label() string {
	switch {
	case m.Name != "" && m.Email != "":
		return fmt.Sprintf("%s <%s>", m.Name, m.Email)
	case m.Email != "":
		return m.Email
	case m.Name != "":
		return m.Name
	}
	return m.ID
}

// Check checks every pool member and the fallback against members, the
// CRM's team-member list, and gives those the file names by email their
// ids. A member that is not in the list, an email of no member or of
// several, an inactive member and a member in a pool twice (once by id,
// once by email) are each a *FileError naming the rule's file, the line
// and the rule; all of them are returned, joined, and then the rules must
// not be planned: a plan would move contacts to members the CRM refuses.
func (rs *Rules) Check(members []Member) error {
	byID := make(map[string]*Member, len(members))
	byEmail := make(map[string][]*Member, len(members))
	for i := range members {
		m := &members[i]
		if id := strings.ToLower(strings.TrimSpace(m.ID)); id != "" {
			if _, dup := byID[id]; !dup {
				byID[id] = m
			}
		}
		if e := strings.ToLower(strings.TrimSpace(m.Email)); e != "" {
			byEmail[e] = append(byEmail[e], m)
		}
	}
	n := len(byID)
	var errs []error
	// find returns the id of the member named by id or email, or explains
	// why there is none.
	find := func(id, email string) (string, string) {
		var m *Member
		if email != "" {
			ms := byEmail[email]
			switch len(ms) {
			case 0:
				return "", fmt.Sprintf("%s is not the email of any of the CRM's %d team members: check the spelling, or give the member's id", email, n)
			case 1:
				m = ms[0]
			default:
				return "", fmt.Sprintf("%s is the email of %d team members: give the member's id instead", email, len(ms))
			}
		} else if m = byID[id]; m == nil {
			return "", fmt.Sprintf("member %s is not among the CRM's %d team members: check the id", id, n)
		}
		got := strings.ToLower(strings.TrimSpace(m.ID))
		switch {
		case !m.Active:
			who := m.label()
			if who != m.ID {
				who += " (id " + m.ID + ")"
			}
			return "", fmt.Sprintf("team member %s is inactive: the CRM refuses to assign contacts to it; remove it or choose an active member", who)
		case !rs.ids.Valid(got):
			return "", fmt.Sprintf("the team member list gives %s the id %q, which is not a valid id: want %s", m.label(), m.ID, rs.ids.Want())
		}
		return got, ""
	}
	for i := range rs.Rules {
		r := &rs.Rules[i]
		seen := map[string]int{}
		for j := range r.Pool {
			pm := &r.Pool[j]
			id, why := find(pm.Member, pm.Email)
			if why != "" {
				errs = append(errs, &FileError{File: rs.File, Line: pm.Line, Rule: r.label, Err: fmt.Errorf("pool entry %d: %s", j+1, why)})
				continue
			}
			pm.Member = id
			if prev, dup := seen[id]; dup {
				errs = append(errs, &FileError{File: rs.File, Line: pm.Line, Rule: r.label,
					Err: fmt.Errorf("pool entries %d and %d are the same member %s: list each member once", prev, j+1, id)})
			}
			seen[id] = j + 1
		}
	}
	if rs.Fallback != "" || rs.FallbackEmail != "" {
		id, why := find(rs.Fallback, rs.FallbackEmail)
		if why != "" {
			errs = append(errs, &FileError{File: rs.File, Line: rs.FallbackLine, Err: fmt.Errorf("fallback: %s", why)})
		} else {
			rs.Fallback = id
		}
	}
	return errors.Join(errs...)
}

// NamesByEmail reports whether a pool member or the fallback is named by
// email, so that the rules cannot be planned before Check.
func (rs *Rules) NamesByEmail() bool {
	if rs.FallbackEmail != "" {
		return true
	}
	for _, r := range rs.Rules {
		for _, m := range r.Pool {
			if m.Email != "" {
				return true
			}
		}
	}
	return false
}

// resolved fails when a member named by email has no id yet.
func (rs *Rules) resolved() error {
	if rs.FallbackEmail != "" && rs.Fallback == "" {
		return &FileError{File: rs.File, Line: rs.FallbackLine, Err: fmt.Errorf("fallback %s is named by email: its id comes from the CRM's team-member list, which was not read", rs.FallbackEmail)}
	}
	for _, r := range rs.Rules {
		for j, m := range r.Pool {
			if m.Member == "" {
				return &FileError{File: rs.File, Line: m.Line, Rule: r.label, Err: fmt.Errorf("pool entry %d: %s is named by email: its id comes from the CRM's team-member list, which was not read", j+1, m.Email)}
			}
		}
	}
	return nil
}

// badEmail says why s, lower-case and trimmed, is not an email address
// as a pool names a member, or returns "".
func badEmail(s string) string {
	switch at := strings.IndexByte(s, '@'); {
	case strings.HasPrefix(s, "mailto:"):
		return "write the address alone, without mailto:"
	case strings.ContainsAny(s, "<>"):
		return "write the address alone, without <...> or a name"
	case at <= 0 || at == len(s)-1 || strings.Count(s, "@") != 1 || len(s) > 254:
		return "want name@domain"
	case strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f || strings.ContainsRune(`(),:;[]\"`, r) }):
		return "want name@domain, without spaces or ( ) , : ; [ ] \\ \""
	}
	return ""
}
