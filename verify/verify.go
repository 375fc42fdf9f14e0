// Package verify reads contacts' agents back from the CRM and compares
// them with the end state a batch or an assignment file describes: the
// drift between what bulkassign applied and what the CRM holds now.
//
// A contact's expected agents come from its rows in file order: a replace
// makes the expectation exact (the contact has exactly these agents), and
// a contact with adds only must contain the agents added (others may have
// been there before). The CLI's `verify` and serve's Verify button both
// call Batch or Check.
package verify

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/worker"
)

// Expectation is the end state of one contact.
type Expectation struct {
	Contact string
	// Agents are the agents the contact must have, in the order they were
	// applied.
	Agents []string
	// Exact: a replace was applied, so the contact has exactly Agents;
	// else it must contain them.
	Exact bool
}

// apply adds one applied call to e, as the CRM applies it: a replace
// leaves only its member, an add appends its member unless it is there.
func (e *Expectation) apply(member string, replace bool) {
	switch {
	case replace:
		e.Agents, e.Exact = append(e.Agents[:0], member), true
	case !slices.Contains(e.Agents, member):
		e.Agents = append(e.Agents, member)
	}
}

// Expect is the end state the ops of one contact leave, applied in order.
func Expect(contact string, ops []jobs.Op) Expectation {
	e := Expectation{Contact: contact}
	for _, op := range ops {
		e.apply(op.MemberID, op.Replace)
	}
	return e
}

// Drift is one contact whose agents are not what was expected, or that
// could not be read.
type Drift struct {
	Expectation
	// Actual are the agents the CRM has now.
	Actual []string
	// Missing are the expected agents the contact lacks; Unexpected, for
	// an exact expectation, the agents it has besides them.
	Missing, Unexpected []string
	// Err is why the contact could not be read: wraps
	// worker.ErrContactNotFound for a contact the CRM does not know (a
	// drift: its agents are gone), else it ran out of attempts and its
	// state is unknown.
	Err error
}

// Unknown reports whether the contact's state is unknown: it could not be
// read for another reason than the CRM not knowing it.
func (d Drift) Unknown() bool {
	return d.Err != nil && !errors.Is(d.Err, worker.ErrContactNotFound)
}

// Compare is the drift of one contact with agents actual from e, and
// whether there is any.
func Compare(e Expectation, actual []string) (Drift, bool) {
	d := Drift{Expectation: e, Actual: actual}
	for _, a := range e.Agents {
		if !slices.Contains(actual, a) {
			d.Missing = append(d.Missing, a)
		}
	}
	if e.Exact {
		for _, a := range actual {
			if !slices.Contains(e.Agents, a) {
				d.Unexpected = append(d.Unexpected, a)
			}
		}
	}
	return d, len(d.Missing)+len(d.Unexpected) > 0
}

// Summary counts what a verification found.
type Summary struct {
	// Batch is the verified batch's id; File the verified file; one is set.
	Batch string `json:"batchId,omitempty"`
	File  string `json:"file,omitempty"`
	// Contacts is how many contacts have an expected state; Read how many
	// of them have been read so far (all, once Check returns nil).
	Contacts int `json:"contacts"`
	Read     int `json:"read"`
	// Matching contacts are as expected; Drifted are not (NotFound of
	// them are contacts the CRM no longer knows); Unknown could not be
	// read (out of attempts): run verify again for them.
	Matching int `json:"matching"`
	Drifted  int `json:"drifted"`
	NotFound int `json:"notFound"`
	Unknown  int `json:"unknown"`
}

// Options configures Check; the zero value means defaults.
type Options struct {
	// Read are the read's concurrency, attempts and backoff.
	Read worker.ReadOptions
	// Progress, if set, is told the counts after each contact is read
	// (from one goroutine at a time).
	Progress func(Summary)
}

// Check reads the agents of every expectation's contact through client,
// under limiter (the same key probe, shared rate limit and retries as the
// assign calls: worker.ReadAgents), and returns the summary and the
// contacts that drifted or could not be read, in the order of exps. It
// fails when the key is refused (wrapping worker.ErrUnauthorized) or ctx
// ends; sum then counts what was read.
func Check(ctx context.Context, client *worker.Client, limiter worker.Limiter, exps []Expectation, opts Options) (sum Summary, drifts []Drift, err error) {
	sum.Contacts = len(exps)
	at := make(map[string]int, len(exps))
	contacts := make([]string, len(exps))
	for i, e := range exps {
		if _, dup := at[e.Contact]; dup {
			return sum, nil, fmt.Errorf("verify: contact %s has two expectations", e.Contact)
		}
		at[e.Contact], contacts[i] = i, e.Contact
	}
	type found struct {
		i int
		d Drift
	}
	var out []found
	err = worker.ReadAgents(ctx, client, limiter, opts.Read, contacts, func(a worker.Agents) error {
		i := at[a.Contact]
		sum.Read++
		switch d, drifted := Compare(exps[i], a.IDs); {
		case a.Err != nil:
			d = Drift{Expectation: exps[i], Missing: exps[i].Agents, Err: a.Err}
			if d.Unknown() {
				d.Missing = nil // not known to be missing
				sum.Unknown++
			} else {
				sum.Drifted++
				sum.NotFound++
			}
			out = append(out, found{i, d})
		case drifted:
			sum.Drifted++
			out = append(out, found{i, d})
		default:
			sum.Matching++
		}
		if opts.Progress != nil {
			opts.Progress(sum)
		}
		return nil
	})
	slices.SortFunc(out, func(a, b found) int { return a.i - b.i })
	drifts = make([]Drift, len(out))
	for k, f := range out {
		drifts[k] = f.d
	}
	if err != nil {
		return sum, drifts, fmt.Errorf("verify: %w", err)
	}
	return sum, drifts, nil
}
