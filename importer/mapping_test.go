package importer

import (
	"errors"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/bulkassign/bulkassign/jobs"
)

func TestLoadMapping(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    map[string]string
		errIn   string
		errLine int
	}{
		{
			name: "all fields, any spelling of the keys",
			in: "# legacy CRM export\naiContactId: \"Contact Ref\"\nteam_member_id: Owner Id\n" +
				"Owner-Email: ' Owner E-mail '\nreplace: \"Replace Owner?\"\n",
			want: map[string]string{"aiContactId": "Contact Ref", "teamMemberId": "Owner Id",
				"teamMemberEmail": "Owner E-mail", "removeExistingAgents": "Replace Owner?"},
		},
		{name: "a number as a header", in: "aiContactId: 2024\n", want: map[string]string{"aiContactId": "2024"}},
		{name: "unknown key", in: "aiContactId: a\ncontactName: b\n", errLine: 2,
			errIn: `unknown key "contactName": use aiContactId, teamMemberId, teamMemberEmail or removeExistingAgents`},
		{name: "a report column is not a field", in: "status: s\n", errLine: 1, errIn: `unknown key "status"`},
		{name: "the same field twice", in: "aiContactId: a\ncontact_id: b\n", errLine: 2,
			errIn: `keys "aiContactId" and "contact_id" both mean aiContactId`},
		{name: "one header for two fields", in: "aiContactId: Ref\nteamMemberId: REF\n", errLine: 2,
			errIn: `aiContactId and teamMemberId both name the column "REF"`},
		{name: "empty header", in: "aiContactId: \" \"\n", errLine: 1, errIn: "aiContactId: the header is empty"},
		{name: "null header", in: "aiContactId:\n", errLine: 1, errIn: "aiContactId: the value must be the file's header"},
		{name: "a list as header", in: "aiContactId: [a, b]\n", errLine: 1, errIn: "the value must be the file's header"},
		{name: "not a mapping", in: "- aiContactId\n- Ref\n", errLine: 1, errIn: "not a mapping"},
		{name: "empty file", in: "", errIn: "empty mapping"},
		{name: "only comments", in: "# nothing\n", errIn: "empty mapping"},
		{name: "empty mapping", in: "{}\n", errIn: "empty mapping"},
		{name: "bad YAML", in: "aiContactId: \"Ref\nteamMemberId: x\n", errIn: "not valid YAML"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := LoadMapping(strings.NewReader(tt.in), "legacy.yaml")
			if tt.errIn != "" {
				var fe *FileError
				if !errors.As(err, &fe) || !strings.Contains(err.Error(), tt.errIn) {
					t.Fatalf("error %v, want a *FileError containing %q", err, tt.errIn)
				}
				if fe.File != "legacy.yaml" || fe.Line != tt.errLine {
					t.Errorf("error at %s line %d, want legacy.yaml line %d", fe.File, fe.Line, tt.errLine)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("mapping %q, want %q", got, tt.want)
			}
		})
	}
}

func TestMappedDecoder(t *testing.T) {
	t.Parallel()
	legacy := map[string]string{"aiContactId": "Contact Ref", "teamMemberEmail": "Owner E-mail", "removeExistingAgents": "Replace Owner?"}
	tests := []struct {
		name    string
		file    string
		in      string
		mapping map[string]string
		rows    []jobs.Row
		extras  []string
		errIn   string
	}{
		{
			name: "foreign headers, with the usual normalisation", file: "x.csv", mapping: legacy,
			in: "contact ref,Region,owner e-mail,REPLACE OWNER?\nC-1,North,Ann@X.io,Yes\nc-2,South,b@x.io,no\n",
			rows: []jobs.Row{
				{Line: 2, ContactID: "c-1", MemberEmail: "ann@x.io", Replace: true, Extra: []string{"North", "Ann@X.io"}},
				{Line: 3, ContactID: "c-2", MemberEmail: "b@x.io", Extra: []string{"South", "b@x.io"}},
			},
			extras: []string{"Region", "owner e-mail"},
		},
		{
			name: "a column that looks like a mapped field is an extra", file: "x.csv",
			mapping: map[string]string{"aiContactId": "Contact Ref", "teamMemberId": "Owner"},
			in:      "Contact Ref,contact_id,Owner,agent_id\nc1,legacy-9,m1,old-7\n",
			rows:    []jobs.Row{{Line: 2, ContactID: "c1", MemberID: "m1", Extra: []string{"legacy-9", "old-7"}}},
			extras:  []string{"contact_id", "agent_id"},
		},
		{
			name: "a mapped header not in the file", file: "x.csv", mapping: legacy,
			in:    "Contact Ref,Owner Mail\nc1,a@x.io\n",
			errIn: `x.csv: line 1: mapping legacy.yaml: teamMemberEmail: no column "Owner E-mail" in the header (it has "Contact Ref", "Owner Mail")`,
		},
		{
			name: "our own header stands in for a mapped one (failed.csv fed back in)", file: "failed.csv", mapping: legacy,
			in: "line,aiContactId,teamMemberId,removeExistingAgents,Owner E-mail,status,httpStatus,attempts,error\n" +
				"2,c1,m-ann,true,ann@x.io,failed,404,1,HTTP 404\n3,c2,,false,fixed@x.io,invalid,,0,unknown\n",
			rows: []jobs.Row{
				{Line: 2, ContactID: "c1", MemberID: "m-ann", MemberEmail: "ann@x.io", Replace: true, Extra: []string{"ann@x.io"}},
				{Line: 3, ContactID: "c2", MemberEmail: "fixed@x.io", Extra: []string{"fixed@x.io"}},
			},
			extras: []string{"Owner E-mail"},
		},
		{
			name: "an alias does not stand in for a mapped header (a typo in the mapping)", file: "x.csv",
			mapping: map[string]string{"aiContactId": "Contact Ref", "teamMemberEmail": "Owner Mail"},
			in:      "Contact Ref,owner_email\nc1,a@x.io\n",
			errIn:   `mapping legacy.yaml: teamMemberEmail: no column "Owner Mail" in the header`,
		},
		{
			name: "json keys", file: "x.jsonl", mapping: legacy,
			in: `{"Contact Ref":"c1","Owner E-mail":"A@x.io","Replace Owner?":true,"contact_id":"z"}` + "\n",
			rows: []jobs.Row{
				{Line: 1, ContactID: "c1", MemberEmail: "a@x.io", Replace: true, Extra: []string{"A@x.io", "z"}},
			},
			extras: []string{"Owner E-mail", "contact_id"},
		},
		{
			name: "a mapped json key no object has", file: "x.json", mapping: legacy,
			in:    `[{"Contact Ref":"c1","Owner E-mail":"a@x.io"}]`,
			errIn: `x.json: mapping legacy.yaml: removeExistingAgents: no object has the key "Replace Owner?"`,
		},
		{
			name: "an unknown key in a mapping built by hand", file: "x.csv", mapping: map[string]string{"owner": "Owner"},
			in:    "a,b\n",
			errIn: `legacy.yaml: unknown key "owner"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got decoded
			d, err := NewMappedDecoder(strings.NewReader(tt.in), tt.file, FormatAuto, jobs.IDAny, tt.mapping, "legacy.yaml")
			if err != nil {
				got.err = err
			} else {
				for {
					row, err := d.Next()
					if err == io.EOF {
						break
					}
					if err != nil {
						got.err = err
						break
					}
					got.rows = append(got.rows, row)
				}
				got.extras = d.Extras()
			}
			if tt.errIn != "" {
				var fe *FileError
				if !errors.As(got.err, &fe) || !strings.Contains(got.err.Error(), tt.errIn) {
					t.Fatalf("error %v, want a *FileError containing %q", got.err, tt.errIn)
				}
				return
			}
			if got.err != nil {
				t.Fatal(got.err)
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

// TestLegacyFixture reads the legacy export fixture through its mapping.
func TestLegacyFixture(t *testing.T) {
	t.Parallel()
	mf, err := os.Open("testdata/legacy-mapping.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer mf.Close()
	m, err := LoadMapping(mf, "testdata/legacy-mapping.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("testdata/legacy-export.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d, err := NewMappedDecoder(f, "legacy-export.csv", FormatAuto, jobs.IDUUID, m, "legacy-mapping.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// Before the member list is fetched, only these rows are invalid.
	invalid := map[int]string{7: "invalid_member_email", 13: "missing_contact_id"}
	n := 0
	for {
		row, err := d.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
		if row.Reason != invalid[row.Line] {
			t.Errorf("line %d: reason %q, want %q", row.Line, row.Reason, invalid[row.Line])
		}
		if row.Valid() && (row.MemberID != "" || !strings.HasSuffix(row.MemberEmail, "@example.com")) {
			t.Errorf("line %d: want a member by email only: %+v", row.Line, row)
		}
	}
	if n != 12 {
		t.Fatalf("%d rows, want 12", n)
	}
	for _, x := range []string{"Owner E-mail", "Account Name", "Region"} {
		found := false
		for _, e := range d.Extras() {
			found = found || e == x
		}
		if !found {
			t.Errorf("extra column %q missing from %q", x, d.Extras())
		}
	}
}
