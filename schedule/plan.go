package schedule

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/planner"
	"github.com/bulkassign/bulkassign/worker"
)

// CRM is what a plan needs of the CRM: the team-member list, to check the
// pools against, and the contacts' current agents, for a live plan. The
// reads go through the same client, limiter and retry rules as the
// assignment calls.
type CRM struct {
	Client  *worker.Client
	Limiter worker.Limiter
	// Read configures the live reads (concurrency, attempts).
	Read worker.ReadOptions
	// Progress, if set, is called after each live read with the contacts
	// read so far and the total, from one goroutine at a time.
	Progress func(done, total int)
}

// Members fetches the CRM's team-member list.
func (c *CRM) Members(ctx context.Context) ([]planner.Member, error) {
	if err := c.Limiter.Wait(ctx); err != nil {
		return nil, err
	}
	ms, err := c.Client.TeamMembers(ctx)
	if err != nil {
		return nil, fmt.Errorf("fetch the team-member list to check the pools against: %w", err)
	}
	out := make([]planner.Member, len(ms))
	for i, m := range ms {
		out[i] = planner.Member{ID: m.ID, Email: m.Email, Name: m.Name, Active: m.Active}
	}
	return out, nil
}

// maxReadErrors is how many unreadable contacts a live read names.
const maxReadErrors = 5

// Live replaces every contact's agent in cs by the agents the CRM has for
// it now (worker.ReadAgents); a contact the CRM does not know is marked
// so and gets no row. A contact that cannot be read (out of attempts, or
// refused for a reason other than 404) fails the whole read: a plan made
// from a guess would move the wrong contacts.
func (c *CRM) Live(ctx context.Context, cs *planner.Contacts) error {
	index := make(map[string]int, len(cs.List))
	ids := make([]string, len(cs.List))
	for i, ct := range cs.List {
		index[ct.ID] = i
		ids[i] = ct.ID
	}
	done, failed, missing := 0, 0, 0
	var first []string
	err := worker.ReadAgents(ctx, c.Client, c.Limiter, c.Read, ids, func(a worker.Agents) error {
		done++
		switch {
		case errors.Is(a.Err, worker.ErrContactNotFound):
			missing++
			cs.SetLive(index[a.Contact], nil, true)
		case a.Err != nil:
			failed++
			if len(first) < maxReadErrors {
				first = append(first, fmt.Sprintf("%s (line %d): %v", a.Contact, cs.List[index[a.Contact]].Line, a.Err))
			}
		default:
			cs.SetLive(index[a.Contact], a.IDs, false)
		}
		if c.Progress != nil {
			c.Progress(done, len(ids))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read the contacts' current agents from the CRM (--live): %w", err)
	}
	if failed > 0 {
		return fmt.Errorf("read the contacts' current agents from the CRM (--live): %d of %d contacts could not be read, so nothing is planned: %s; try again later",
			failed, len(ids), strings.Join(first, "; "))
	}
	if missing == len(ids) {
		// More likely the wrong CRM (or a path it does not have) than a
		// whole file of contacts it does not know.
		return fmt.Errorf("read the contacts' current agents from the CRM (--live): it has none of the %d contacts (404): check --api-url and the file", len(ids))
	}
	cs.Live, cs.HasAgent = true, true
	return nil
}

// Inputs are a plan's files and how to plan them.
type Inputs struct {
	// Contacts and Rules name the files in messages ("-" is stdin).
	Contacts, Rules string
	// OpenContacts and OpenRules open them.
	OpenContacts, OpenRules func() (io.ReadCloser, error)
	// IDFormat is the rule of the files' ids.
	IDFormat jobs.IDFormat
	// Live reads the contacts' current agents from the CRM instead of
	// trusting the file's.
	Live bool
	// Check checks every pool member and the fallback against the CRM's
	// team-member list (Live and members named by email need it too).
	Check bool
}

// MakePlan reads the rules and the contacts, checks the pools against the
// CRM's members and reads the live owners when in asks for it, and
// computes the plan: how a tick plans, and how `bulkassign plan` does.
// crm may be nil when in asks for neither; a pool that names a member by
// email needs it.
func MakePlan(ctx context.Context, in Inputs, crm *CRM) (*planner.Plan, error) {
	rules, err := readRules(in)
	if err != nil {
		return nil, err
	}
	switch {
	case crm != nil:
	case in.Check || in.Live:
		return nil, errors.New("plan: no CRM client to check the pools against its team members and read its owners")
	case rules.NamesByEmail():
		return nil, &planner.FileError{File: rules.File, Err: errors.New("names pool members by email: their ids come from the CRM's team-member list, which needs the API key (BULKASSIGN_API_KEY)")}
	}
	if in.Check || rules.NamesByEmail() {
		members, err := crm.Members(ctx)
		if err != nil {
			return nil, err
		}
		if err := rules.Check(members); err != nil {
			return nil, err
		}
	}
	cs, err := readContacts(in)
	if err != nil {
		return nil, err
	}
	if in.Live {
		if err := crm.Live(ctx, cs); err != nil {
			return nil, err
		}
	}
	return planner.Compute(rules, cs)
}

func readRules(in Inputs) (*planner.Rules, error) {
	f, err := in.OpenRules()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return planner.ParseRules(f, in.Rules, in.IDFormat)
}

func readContacts(in Inputs) (*planner.Contacts, error) {
	f, err := in.OpenContacts()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return planner.ReadContacts(f, in.Contacts, in.IDFormat)
}
