package importer

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/bulkassign/bulkassign/jobs"
)

// Member is a CRM team member as the importer needs it: to turn an email
// into an id, and to check that a member exists and is active.
type Member struct {
	ID     string
	Email  string
	Name   string
	Active bool
}

// label names a member in messages: its name and email, as far as known.
func (m *Member) label() string {
	switch {
	case m.Name != "" && m.Email != "":
		return fmt.Sprintf("%s <%s>", m.Name, m.Email)
	case m.Name != "":
		return m.Name
	case m.Email != "":
		return m.Email
	}
	return m.ID
}

// ErrNoDirectory means a row names its member by email, or the import is a
// preflight, but Options.Directory is nil: there is no member list to
// resolve or check against.
var ErrNoDirectory = errors.New("no team member list: the CRM API settings are needed to fetch it")

// resolver turns member emails into ids and, for a preflight, checks ids,
// against the team member list. It fetches the list at most once, and only
// when a row needs it.
type resolver struct {
	fetch     func(ctx context.Context) ([]Member, error)
	preflight bool
	ids       jobs.IDFormat
	file      string // the input, for a *FileError

	loaded  bool
	count   int                  // members in the list
	byID    map[string]*Member   // lower-case id -> member
	byEmail map[string][]*Member // lower-case email -> members with it

	// resolved counts the rows whose member was found by email.
	resolved int
}

func newResolver(opts Options) *resolver {
	return &resolver{fetch: opts.Directory, preflight: opts.Preflight, ids: opts.IDFormat, file: displayName(opts.File)}
}

// resolve fills in row.MemberID from its email, or makes the row invalid
// when the member is unknown, ambiguous or inactive, or when the row gives
// both an id and an email and they are not the same member's. With
// preflight it also checks rows given by id. It fails (with a *FileError)
// only when the member list is needed and cannot be had.
func (rs *resolver) resolve(ctx context.Context, row *jobs.Row) error {
	byEmail := row.MemberID == "" && row.MemberEmail != ""
	both := row.MemberID != "" && row.MemberEmail != ""
	if !row.Valid() || !byEmail && !both && !rs.preflight {
		return nil
	}
	why := "member ids cannot be checked (preflight)"
	switch {
	case byEmail:
		why = "member emails cannot be resolved"
	case both:
		why = "rows with both a member id and an email cannot be checked to name one member"
	}
	if err := rs.load(ctx, row.Line, why); err != nil {
		return err
	}
	if both && rs.disagree(row) {
		return nil
	}
	var m *Member
	if byEmail {
		ms := rs.byEmail[row.MemberEmail]
		switch len(ms) {
		case 0:
			row.Reason = "unknown_member_email"
			row.Error = fmt.Sprintf("%s %q is not the email of any of the CRM's %d team members: check the spelling, or give the %s",
				nameEmail, row.MemberEmail, rs.count, nameMember)
			return nil
		case 1:
			m = ms[0]
		default:
			ids := make([]string, 0, min(len(ms), 5))
			for _, m := range ms[:min(len(ms), 5)] {
				ids = append(ids, m.ID)
			}
			row.Reason = "ambiguous_member_email"
			row.Error = fmt.Sprintf("%s %q is the email of %d team members (ids %s): give the %s instead",
				nameEmail, row.MemberEmail, len(ms), strings.Join(ids, ", "), nameMember)
			return nil
		}
	} else if m = rs.byID[row.MemberID]; m == nil {
		row.Reason = "unknown_member"
		row.Error = fmt.Sprintf("%s %q is not among the CRM's %d team members", nameMember, row.MemberID, rs.count)
		return nil
	}
	id := strings.ToLower(strings.TrimSpace(m.ID))
	switch {
	case !m.Active:
		row.Reason = "inactive_member"
		row.Error = fmt.Sprintf("team member %s (id %s) is inactive: choose an active member", m.label(), m.ID)
	case !rs.ids.Valid(id):
		row.Reason = "invalid_member_id"
		row.Error = fmt.Sprintf("the team member list gives %s the id %q, which is not a valid id: want %s", m.label(), m.ID, rs.ids.Want())
	case byEmail:
		row.MemberID = id
		rs.resolved++
	}
	return nil
}

// disagree makes a row that gives both a member id and an email invalid
// when they do not name the same member, and reports whether it did.
func (rs *resolver) disagree(row *jobs.Row) bool {
	email := strings.ToLower(strings.TrimSpace(row.MemberEmail))
	m := rs.byID[row.MemberID]
	if m != nil && strings.EqualFold(strings.TrimSpace(m.Email), email) {
		return false
	}
	idSays := fmt.Sprintf("is not among the CRM's %d team members", rs.count)
	if m != nil {
		idSays = "is " + m.label()
	}
	emailSays := "is the email of no team member"
	switch ms := rs.byEmail[email]; {
	case !validEmail(email):
		emailSays = "is not an email address"
	case len(ms) == 1:
		emailSays = fmt.Sprintf("is the email of %s (id %s)", ms[0].label(), ms[0].ID)
	case len(ms) > 1:
		emailSays = fmt.Sprintf("is the email of %d team members", len(ms))
	}
	row.Reason = "member_id_email_mismatch"
	row.Error = fmt.Sprintf("%s %s %s, but %s %q %s: they must name the same member (give one of them, or correct the other)",
		nameMember, row.MemberID, idSays, nameEmail, row.MemberEmail, emailSays)
	return true
}

// load fetches the member list the first time a row needs it. line is
// that row's line; why says what cannot be done without the list.
func (rs *resolver) load(ctx context.Context, line int, why string) error {
	if rs.loaded {
		return nil
	}
	if rs.fetch == nil {
		return &FileError{File: rs.file, Line: line, Err: fmt.Errorf("%s: %w", why, ErrNoDirectory)}
	}
	members, err := rs.fetch(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return &FileError{File: rs.file, Err: fmt.Errorf("the team member list could not be fetched, so %s: %w", why, err)}
	}
	rs.loaded = true
	rs.count = len(members)
	rs.byID = make(map[string]*Member, len(members))
	rs.byEmail = make(map[string][]*Member, len(members))
	for i := range members {
		m := &members[i]
		if id := strings.ToLower(strings.TrimSpace(m.ID)); id != "" {
			if _, dup := rs.byID[id]; dup {
				continue // listed twice (pages that overlap): one member
			}
			rs.byID[id] = m
		}
		if e := strings.ToLower(strings.TrimSpace(m.Email)); e != "" {
			rs.byEmail[e] = append(rs.byEmail[e], m)
		}
	}
	return nil
}
