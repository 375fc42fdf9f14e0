package importer

import (
	"slices"
	"testing"
)

func TestHeaderField(t *testing.T) {
	for h, want := range map[string]string{
		"aiContactId": "aiContactId", " Contact_ID ": "aiContactId", "\ufeffcontact": "aiContactId",
		"Agent": "teamMemberId", "team-member-id": "teamMemberId",
		"Owner Email": "teamMemberEmail", "replace": "removeExistingAgents",
		"Contact Ref": "", "Owner E-mail": "teamMemberEmail", "Owner": "", "status": "", "": "",
	} {
		if got := HeaderField(h); got != want {
			t.Errorf("HeaderField(%q) = %q, want %q", h, got, want)
		}
	}
	if got := MappingFields(); !slices.Equal(got, []string{"aiContactId", "teamMemberId", "teamMemberEmail", "removeExistingAgents"}) {
		t.Errorf("MappingFields() = %v", got)
	}
}
