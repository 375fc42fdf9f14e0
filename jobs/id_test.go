package jobs_test

import (
	"strings"
	"testing"

	"github.com/bulkassign/bulkassign/jobs"
)

func TestIDFormatValid(t *testing.T) {
	t.Parallel()
	const uuid = "550e8400-e29b-41d4-a716-446655440000"
	tests := []struct {
		id       string
		uuid     bool // valid under IDUUID
		any      bool // valid under IDAny
		whatItIs string
	}{
		{uuid, true, true, "a UUID"},
		{"00000000-0000-0000-0000-000000000000", true, true, "the nil UUID"},
		{"ffffffff-ffff-ffff-ffff-ffffffffffff", true, true, "the max UUID"},
		{"c0000000-0000-8000-8000-000000000001", true, true, "a version 8 UUID, as the simulator generates"},
		{"550E8400-E29B-41D4-A716-446655440000", false, false, "upper case: ids are lower-cased before they are checked"},
		{uuid[:35], false, true, "a truncated UUID"},
		{uuid + "0", false, true, "a UUID with a digit too many"},
		{"550e8400e29b41d4a716446655440000", false, true, "32 hex digits without hyphens"},
		{"{" + uuid + "}", false, false, "braces"},
		{"urn:uuid:" + uuid, false, false, "a URN"},
		{"550e8400-e29b-41d4-a716-44665544000g", false, true, "a letter that is not hex"},
		{"550e8400_e29b-41d4-a716-446655440000", false, true, "an underscore where a hyphen goes"},
		{"550e840-0e29b-41d4-a716-446655440000", false, true, "hyphens in the wrong places"},
		{"agent-1a2b3c4d", false, true, "an id of the older form"},
		{"c-000001", false, true, "a short id"},
		{"12345", false, true, "digits"},
		{"a", false, true, "one letter"},
		{"abc-123_x", false, true, "letters, digits, - and _"},
		{strings.Repeat("z", 128), false, true, "128 characters"},
		{strings.Repeat("z", 129), false, false, "129 characters"},
		{"", false, false, "empty"},
		{" " + uuid, false, false, "a space: ids are trimmed before they are checked"},
		{"a b", false, false, "a space inside"},
		{"a/b", false, false, "a slash"},
		{"a.b", false, false, "a dot"},
		{"a@b", false, false, "an at sign"},
		{"ñ", false, false, "a letter outside ASCII"},
	}
	for _, tt := range tests {
		if got := jobs.IDUUID.Valid(tt.id); got != tt.uuid {
			t.Errorf("IDUUID.Valid(%q) (%s) = %t, want %t", tt.id, tt.whatItIs, got, tt.uuid)
		}
		if got := jobs.IDFormat("").Valid(tt.id); got != tt.uuid {
			t.Errorf("IDFormat(\"\").Valid(%q) (%s) = %t, want IDUUID's %t", tt.id, tt.whatItIs, got, tt.uuid)
		}
		if got := jobs.IDAny.Valid(tt.id); got != tt.any {
			t.Errorf("IDAny.Valid(%q) (%s) = %t, want %t", tt.id, tt.whatItIs, got, tt.any)
		}
	}
	if !jobs.IDUUID.Valid(jobs.ExampleUUID) {
		t.Errorf("ExampleUUID %s is not a valid UUID", jobs.ExampleUUID)
	}
}

func TestParseIDFormat(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]jobs.IDFormat{"": jobs.IDUUID, "uuid": jobs.IDUUID, " UUID ": jobs.IDUUID, "any": jobs.IDAny, "Any": jobs.IDAny} {
		if got, err := jobs.ParseIDFormat(in); err != nil || got != want {
			t.Errorf("ParseIDFormat(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"guid", "uuid4", "string"} {
		if _, err := jobs.ParseIDFormat(in); err == nil || !strings.Contains(err.Error(), "uuid") || !strings.Contains(err.Error(), "any") {
			t.Errorf("ParseIDFormat(%q) = %v, want an error naming uuid and any", in, err)
		}
	}
}
