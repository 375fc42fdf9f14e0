package importer

import (
	"bytes"
	"context"
	"errors"
	"io"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/hibiken/asynq"
)

// TestDecodeMemberEmail: the email columns, their validation, and the
// rule that an id wins over an email. Its ids follow the older rule
// (jobs.IDAny), as in the tests of the member list below: they are about
// emails.
func TestDecodeMemberEmail(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		file   string
		in     string
		rows   []jobs.Row
		extras []string
		errIn  string
	}{
		{
			name: "aliases and normalisation", file: "a.csv",
			in: "aiContactId,Owner-Email\nc1, Ann@Example.COM \n",
			rows: []jobs.Row{
				{Line: 2, ContactID: "c1", MemberEmail: "ann@example.com", Extra: []string{"Ann@Example.COM"}},
			},
			extras: []string{"Owner-Email"},
		},
		{
			name: "agent_email and member_email are the same field", file: "a.csv",
			in:    "contact_id,agent_email,member_email\nc1,a@x.io,b@x.io\n",
			errIn: `columns "agent_email" and "member_email" both mean teamMemberEmail`,
		},
		{
			name: "the id wins and the email is kept as it is", file: "a.csv",
			in: "aiContactId,teamMemberId,teamMemberEmail\nc1,M-1,Not An Email\nc2,,b@x.io\nc3,,\n",
			rows: []jobs.Row{
				{Line: 2, ContactID: "c1", MemberID: "m-1", MemberEmail: "Not An Email", Extra: []string{"Not An Email"}},
				{Line: 3, ContactID: "c2", MemberEmail: "b@x.io", Extra: []string{"b@x.io"}},
				{Line: 4, ContactID: "c3", Reason: "missing_member_id",
					Error: "teamMemberId and teamMemberEmail are empty: fill in the team member's id or email"},
			},
			extras: []string{"teamMemberEmail"},
		},
		{
			name: "bad emails", file: "a.csv",
			in: "aiContactId,teamMemberEmail\nc1,ann.example.com\nc2,a@b@c\nc3,an n@x.io\nc4,@x.io\nc5,\nc6,<alice@corp.io>\nc7,mailto:alice@corp.io\nc8,MAILTO:a@x.io\n",
			rows: []jobs.Row{
				{Line: 2, ContactID: "c1", MemberEmail: "ann.example.com", Extra: []string{"ann.example.com"}, Reason: "invalid_member_email"},
				{Line: 3, ContactID: "c2", MemberEmail: "a@b@c", Extra: []string{"a@b@c"}, Reason: "invalid_member_email"},
				{Line: 4, ContactID: "c3", MemberEmail: "an n@x.io", Extra: []string{"an n@x.io"}, Reason: "invalid_member_email"},
				{Line: 5, ContactID: "c4", MemberEmail: "@x.io", Extra: []string{"@x.io"}, Reason: "invalid_member_email"},
				{Line: 6, ContactID: "c5", Reason: "missing_member_email", Error: "teamMemberEmail is empty: fill in the team member's email"},
				{Line: 7, ContactID: "c6", MemberEmail: "<alice@corp.io>", Extra: []string{"<alice@corp.io>"}, Reason: "invalid_member_email"},
				{Line: 8, ContactID: "c7", MemberEmail: "mailto:alice@corp.io", Extra: []string{"mailto:alice@corp.io"}, Reason: "invalid_member_email"},
				{Line: 9, ContactID: "c8", MemberEmail: "MAILTO:a@x.io", Extra: []string{"MAILTO:a@x.io"}, Reason: "invalid_member_email"},
			},
			extras: []string{"teamMemberEmail"},
		},
		{
			name: "no member column names both choices", file: "a.csv",
			in:    "aiContactId,owner\nc1,x\n",
			errIn: "no teamMemberId column or teamMemberEmail column (also accepted: team_member_id, agent_id or agentId; agent_email, owner_email or member_email)",
		},
		{
			name: "json email key, also an extra", file: "a.json",
			in: `[{"aiContactId":"c1","owner_email":"A@X.io","note":"n"},{"aiContactId":"c2","teamMemberId":"m2"},{"aiContactId":"c3","owner_email":true}]`,
			rows: []jobs.Row{
				{Line: 1, ContactID: "c1", MemberEmail: "a@x.io", Extra: []string{"A@X.io", "n"}},
				{Line: 2, ContactID: "c2", MemberID: "m2"},
				{Line: 3, ContactID: "c3", MemberEmail: "true", Extra: []string{"true"}, Reason: "invalid_member_email"},
			},
			extras: []string{"owner_email", "note"},
		},
		{
			name: "json without member id or email", file: "a.jsonl",
			in:    `{"aiContactId":"c1","x":"y"}` + "\n",
			errIn: "no object has a teamMemberId key or a teamMemberEmail key",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := decodeAll(t, strings.NewReader(tt.in), tt.file, FormatAuto, jobs.IDAny)
			if tt.errIn != "" {
				if got.err == nil || !strings.Contains(got.err.Error(), tt.errIn) {
					t.Fatalf("error %v, want one containing %q", got.err, tt.errIn)
				}
				return
			}
			if got.err != nil {
				t.Fatal(got.err)
			}
			for i := range got.rows {
				if got.rows[i].Reason != "" && got.rows[i].Error == "" {
					t.Errorf("row %d: reason %s without a message", i, got.rows[i].Reason)
				}
				if i < len(tt.rows) && tt.rows[i].Error == "" {
					got.rows[i].Error = "" // messages are checked where the test gives one
				}
			}
			if !reflect.DeepEqual(got.rows, tt.rows) {
				t.Errorf("rows:\n got %+v\nwant %+v", got.rows, tt.rows)
			}
			if !reflect.DeepEqual(got.extras, tt.extras) {
				t.Errorf("extras %q, want %q", got.extras, tt.extras)
			}
		})
	}
}

// testMembers is a small team: ann active, bob inactive, two members
// sharing a mailbox, and one whose id the CRM writes in upper case.
var testMembers = []Member{
	{ID: "m-ann", Email: "Ann@Example.com", Name: "Ann", Active: true},
	{ID: "m-bob", Email: "bob@example.com", Name: "Bob", Active: false},
	{ID: "m-s1", Email: "sales@example.com", Name: "Sales 1", Active: true},
	{ID: "m-s2", Email: "sales@example.com", Name: "Sales 2", Active: true},
	{ID: "M-CAP", Email: "cap@example.com", Name: "Cap", Active: true},
	{ID: "bad id!", Email: "weird@example.com", Name: "Weird", Active: true},
}

// resolveAll decodes in and resolves its rows as Import does.
func resolveAll(t *testing.T, in string, opts Options) ([]jobs.Row, error) {
	t.Helper()
	d, err := NewDecoder(strings.NewReader(in), "in.csv", FormatCSV, opts.IDFormat)
	if err != nil {
		t.Fatal(err)
	}
	rs := newResolver(opts)
	var rows []jobs.Row
	for {
		row, err := d.Next()
		if err == io.EOF {
			return rows, nil
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := rs.resolve(context.Background(), &row); err != nil {
			return rows, err
		}
		rows = append(rows, row)
	}
}

// counted is a Directory that counts its calls.
func counted(ms []Member, err error) (func(context.Context) ([]Member, error), *atomic.Int32) {
	var n atomic.Int32
	return func(context.Context) ([]Member, error) {
		n.Add(1)
		return ms, err
	}, &n
}

// TestResolveMembers: emails become ids, case-insensitively; unknown,
// ambiguous and inactive members make the row invalid; preflight checks
// ids too; the list is fetched once, and only when needed.
func TestResolveMembers(t *testing.T) {
	t.Parallel()
	type want struct{ member, reason, errIn string }
	tests := []struct {
		name      string
		ids       jobs.IDFormat // default jobs.IDAny
		in        string
		preflight bool
		want      []want
		calls     int32
	}{
		{
			name: "ids only, no preflight: the list is not fetched",
			in:   "aiContactId,teamMemberId\nc1,m-nobody\nc2,m-bob\n",
			want: []want{{member: "m-nobody"}, {member: "m-bob"}},
		},
		{
			name: "emails resolve case-insensitively",
			in:   "aiContactId,teamMemberEmail\nc1,ANN@example.COM\nc2,ann@example.com\nc3,cap@example.com\n",
			want: []want{{member: "m-ann"}, {member: "m-ann"}, {member: "m-cap"}},
			// once for the whole file
			calls: 1,
		},
		{
			name: "unknown, inactive, ambiguous and unusable",
			in: "aiContactId,teamMemberEmail\nc1,nobody@example.com\nc2,bob@example.com\n" +
				"c3,sales@example.com\nc4,weird@example.com\n",
			want: []want{
				{reason: "unknown_member_email", errIn: `"nobody@example.com" is not the email of any of the CRM's 6 team members`},
				{reason: "inactive_member", errIn: "team member Bob <bob@example.com> (id m-bob) is inactive"},
				{reason: "ambiguous_member_email", errIn: "is the email of 2 team members (ids m-s1, m-s2): give the teamMemberId instead"},
				{reason: "invalid_member_id", errIn: `gives Weird <weird@example.com> the id "bad id!"`},
			},
			calls: 1,
		},
		{
			name: "an id and an email must name the same member",
			in: "aiContactId,teamMemberId,agent_email\nc1,m-s1,ann@example.com\nc2,m-ann,ANN@example.com\nc3,,ann@example.com\n" +
				"c4,m-nobody,ann@example.com\nc5,m-ann,nobody@example.com\nc6,m-ann,ann at example.com\n",
			want: []want{
				{member: "m-s1", reason: "member_id_email_mismatch",
					errIn: `teamMemberId m-s1 is Sales 1 <sales@example.com>, but teamMemberEmail "ann@example.com" is the email of Ann <Ann@Example.com> (id m-ann)`},
				{member: "m-ann"},
				{member: "m-ann"},
				{member: "m-nobody", reason: "member_id_email_mismatch", errIn: "m-nobody is not among the CRM's 6 team members"},
				{member: "m-ann", reason: "member_id_email_mismatch", errIn: `"nobody@example.com" is the email of no team member`},
				{member: "m-ann", reason: "member_id_email_mismatch", errIn: `"ann at example.com" is not an email address`},
			},
			calls: 1,
		},
		{
			name:      "preflight checks ids",
			in:        "aiContactId,teamMemberId\nc1,m-ann\nc2,m-bob\nc3,m-nobody\nc4,M-Cap\n",
			preflight: true,
			want: []want{
				{member: "m-ann"},
				{member: "m-bob", reason: "inactive_member", errIn: "team member Bob <bob@example.com> (id m-bob) is inactive"},
				{member: "m-nobody", reason: "unknown_member", errIn: `teamMemberId "m-nobody" is not among the CRM's 6 team members`},
				{member: "m-cap"},
			},
			calls: 1,
		},
		{
			name:  "under the uuid rule a member list id must be a UUID too",
			ids:   jobs.IDUUID,
			in:    "aiContactId,teamMemberEmail\n0b6e4f8a-3c2d-4e1f-9a7b-5c6d7e8f9a0b,ann@example.com\n",
			want:  []want{{reason: "invalid_member_id", errIn: `gives Ann <Ann@Example.com> the id "m-ann", which is not a valid id: want a UUID`}},
			calls: 1,
		},
		{
			name:      "preflight leaves invalid rows alone",
			in:        "aiContactId,teamMemberId\n,m-ann\nc2,bad id\n",
			preflight: true,
			want:      []want{{member: "m-ann", reason: "missing_contact_id"}, {member: "bad id", reason: "invalid_member_id"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir, calls := counted(testMembers, nil)
			ids := tt.ids
			if ids == "" {
				ids = jobs.IDAny
			}
			rows, err := resolveAll(t, tt.in, Options{Directory: dir, Preflight: tt.preflight, IDFormat: ids})
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) != len(tt.want) {
				t.Fatalf("%d rows, want %d", len(rows), len(tt.want))
			}
			for i, w := range tt.want {
				r := rows[i]
				if r.MemberID != w.member || r.Reason != w.reason || !strings.Contains(r.Error, w.errIn) {
					t.Errorf("row %d: member %q reason %q error %q; want member %q reason %q error containing %q",
						i, r.MemberID, r.Reason, r.Error, w.member, w.reason, w.errIn)
				}
			}
			if got := calls.Load(); got != tt.calls {
				t.Errorf("member list fetched %d times, want %d", got, tt.calls)
			}
		})
	}
}

// TestImportDirectoryErrors: a member list that cannot be had makes the
// file unusable, and the message says why without the key.
func TestImportDirectoryErrors(t *testing.T) {
	t.Parallel()
	emails := "aiContactId,teamMemberEmail\nc1,ann@example.com\n"
	ids := "aiContactId,teamMemberId\nc1,m-ann\n"
	errRefused := errors.New("list team members: HTTP 401: the CRM refused the API key")
	tests := []struct {
		name      string
		in        string
		preflight bool
		dir       func(context.Context) ([]Member, error)
		errIn     string
		fileErr   bool
	}{
		{name: "fetch fails", in: emails, dir: func(context.Context) ([]Member, error) { return nil, errRefused },
			errIn: "in.csv: the team member list could not be fetched, so member emails cannot be resolved: list team members: HTTP 401", fileErr: true},
		{name: "preflight fetch fails", in: ids, preflight: true, dir: func(context.Context) ([]Member, error) { return nil, errRefused },
			errIn: "so member ids cannot be checked (preflight)", fileErr: true},
		{name: "no directory for an email", in: emails,
			errIn: "in.csv: line 2: member emails cannot be resolved: no team member list", fileErr: true},
		{name: "preflight without a directory", in: ids, preflight: true, errIn: "preflight: no team member list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := New(nil, nil, "").Import(context.Background(), strings.NewReader(tt.in),
				Options{File: "in.csv", DryRun: true, Directory: tt.dir, Preflight: tt.preflight, IDFormat: jobs.IDAny})
			if err == nil || !strings.Contains(err.Error(), tt.errIn) {
				t.Fatalf("error %v, want one containing %q", err, tt.errIn)
			}
			var fe *FileError
			if errors.As(err, &fe) != tt.fileErr {
				t.Errorf("*FileError: %v, want %v", errors.As(err, &fe), tt.fileErr)
			}
			if tt.dir != nil && !errors.Is(err, errRefused) {
				t.Errorf("the cause is not wrapped: %v", err)
			}
		})
	}
}

// TestImportResolvesIntoTheLedger: resolved ids are what the ledger keeps
// and the tasks carry; a failed fetch leaves no batch and no task behind.
func TestImportResolvesIntoTheLedger(t *testing.T) {
	t.Parallel()
	rdb, store, client, ns := testLedger(t)
	im := New(store, client, ns)
	ctx := context.Background()
	in := "aiContactId,teamMemberEmail,note\nc1,ANN@example.com,x\nc2,bob@example.com,y\n"

	dir, calls := counted(testMembers, nil)
	sum, err := im.Import(ctx, strings.NewReader(in), Options{File: "in.csv", Directory: dir, IDFormat: jobs.IDAny})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Valid != 1 || sum.Invalid != 1 || sum.Resolved != 1 || sum.Reasons["inactive_member"] != 1 || calls.Load() != 1 {
		t.Fatalf("summary %+v, %d fetches", sum, calls.Load())
	}
	if want := []string{"teamMemberEmail", "note"}; !reflect.DeepEqual(sum.Extras, want) {
		t.Errorf("extras %q, want %q", sum.Extras, want)
	}
	entries, err := store.Lookup(ctx, sum.BatchID, []int{2, 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Fatalf("%d ledger entries, want 2", len(entries))
	}
	if r := entries[0].Row; r.MemberID != "m-ann" || r.MemberEmail != "ann@example.com" || !reflect.DeepEqual(r.Extra, []string{"ANN@example.com", "x"}) {
		t.Errorf("line 2 in the ledger: %+v", r)
	}
	if e := entries[1]; e.Row.MemberID != "" || e.Result.Status != jobs.StatusInvalid || e.Result.Reason != "inactive_member" {
		t.Errorf("line 3 in the ledger: %+v", e)
	}

	before, err := store.IDs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	failing := func(context.Context) ([]Member, error) { return nil, errors.New("HTTP 503: down") }
	big := "aiContactId,teamMemberId,teamMemberEmail\n" + strings.Repeat("c0,m-ann,\n", 5000) + "c9,,ann@example.com\n"
	_, err = im.Import(ctx, bytes.NewReader([]byte(big)), Options{File: "big.csv", Directory: failing, IDFormat: jobs.IDAny})
	var fe *FileError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v, want a *FileError", err)
	}
	after, err := store.IDs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Errorf("batches %v after a failed fetch, want %v", after, before)
	}
	insp := asynq.NewInspectorFromRedisClient(rdb)
	if n, err := insp.GetQueueInfo(ns); err != nil || n.Size != 1 {
		t.Errorf("queue %+v (%v), want only the first import's 1 task", n, err)
	}
}
