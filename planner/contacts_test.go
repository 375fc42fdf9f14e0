package planner_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/planner"
)

// TestReadContacts and TestReadContactsErrors read ids of the older form
// (jobs.IDAny): they are about the file. TestIDRules checks the ids.
func TestReadContacts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		data string
		want planner.Contacts
	}{
		{
			name: "canonical",
			data: "aiContactId,region,segment,currentAgent\nc-1,north,smb,m-1\nc-2,south,,\n",
			want: planner.Contacts{File: "c.csv", HasRegion: true, HasSegment: true, HasAgent: true, List: []planner.Contact{
				{ID: "c-1", Region: "north", Segment: "smb", Agent: "m-1", Line: 2},
				{ID: "c-2", Region: "south", Line: 3},
			}},
		},
		{
			name: "aliases, BOM, CRLF, padding, case, extra columns, blank lines",
			data: "\ufeffContact ID, Notes ,REGION,Owner\r\n C-1 ,x, North , M-1 \r\n\r\n\"c-2\",\"a,b\",south,\r\n",
			want: planner.Contacts{File: "c.csv", HasRegion: true, HasAgent: true, List: []planner.Contact{
				{ID: "c-1", Region: "North", Agent: "m-1", Line: 2},
				{ID: "c-2", Region: "south", Line: 4},
			}},
		},
		{
			name: "segment only, teamMemberId as the agent",
			data: "contact_id,segment,team_member_id\nc-1,enterprise,m-2\n",
			want: planner.Contacts{File: "c.csv", HasSegment: true, HasAgent: true, List: []planner.Contact{
				{ID: "c-1", Segment: "enterprise", Agent: "m-2", Line: 2},
			}},
		},
		{
			name: "a space before a quoted cell",
			data: "contact, region, note\nc-1, \"north\", \"a, b\"\n",
			want: planner.Contacts{File: "c.csv", HasRegion: true, List: []planner.Contact{
				{ID: "c-1", Region: "north", Line: 2},
			}},
		},
		{
			name: "a column named line is just another column",
			data: "line,contact,region\n7,c-1,north\n",
			want: planner.Contacts{File: "c.csv", HasRegion: true, List: []planner.Contact{
				{ID: "c-1", Region: "north", Line: 2},
			}},
		},
		{
			name: "a quoted cell over two lines",
			data: "contact,territory,note\nc-1,north,\"two\nlines\"\nc-2,north,x\n",
			want: planner.Contacts{File: "c.csv", HasRegion: true, List: []planner.Contact{
				{ID: "c-1", Region: "north", Line: 2},
				{ID: "c-2", Region: "north", Line: 4},
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := planner.ReadContacts(strings.NewReader(tt.data), "c.csv", jobs.IDAny)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", *got, tt.want)
			}
		})
	}
}

func TestReadContactsErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		data string
		want []string
	}{
		{"empty", "", []string{"c.csv", "empty file"}},
		{"header only", "contact,region\n", []string{"c.csv", "no contacts"}},
		{"no contact column", "id,region\n1,n\n", []string{"c.csv", "line 1", "no contact id column"}},
		{"no region or segment", "contact,agent\nc-1,m-1\n", []string{"c.csv", "line 1", "no region or segment"}},
		{"two contact columns", "contactId,contact_id,region\n", []string{"line 1", `"contactId" and "contact_id"`}},
		{"two agent columns", "contact,region,owner,agent\n", []string{"line 1", `"owner" and "agent"`, "current agent"}},
		{"empty contact id", "contact,region\nc-1,n\n ,n\n", []string{"c.csv", "line 3", "no contact id"}},
		{"bad contact id", "contact,region\nc-1,n\nc 2,n\n", []string{"c.csv", "line 3", `"c 2"`}},
		{"bad agent id", "contact,region,agent\nc-1,n,ana@example.com\n", []string{"c.csv", "line 2", `"ana@example.com"`}},
		{"duplicate contact", "contact,region\nc-1,n\nc-2,n\nC-1,s\n", []string{"c.csv", "line 4", "also on line 2"}},
		{"wrong field count", "contact,region\nc-1,n\nc-2,n,x\n", []string{"c.csv", "line 3", "number of fields (3, header has 2): quote cells"}},
		{"too few fields", "contact,region,segment\nc-1,n\n", []string{"c.csv", "line 2", "every line needs a cell for each column"}},
		{"bare quote", "contact,region\nc-1,n\"x\n", []string{"c.csv", "line 2", "put the whole cell in double quotes"}},
		{"unclosed quote", "contact,region\nc-1,\"n\"x\n", []string{"c.csv", "line 2", "not closed properly"}},
		{"the first bad row is the one reported", "contact,region\nc-1,n\n\n,n\nc-2,n\"x\nc-1,n\n", []string{"c.csv", "line 4", "no contact id"}},
		{"header after blank lines", "\n\ncontact,agent\n", []string{"c.csv", "line 3", "no region or segment"}},
		{"not UTF-8 header", "contact,r\xffegion\n", []string{"c.csv", "UTF-8"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cs, err := planner.ReadContacts(strings.NewReader(tt.data), "c.csv", jobs.IDAny)
			if err == nil {
				t.Fatalf("no error; contacts %+v", cs)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("message %q does not mention %q", err, w)
				}
			}
			var fe *planner.FileError
			if !errors.As(err, &fe) {
				t.Errorf("%T is not a *planner.FileError", err)
			}
		})
	}
}
