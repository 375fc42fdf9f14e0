package simulator_test

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/simulator"
)

func TestGenerate(t *testing.T) {
	t.Parallel()
	want3 := []string{"c0000000-0000-8000-8000-000000000001", "c0000000-0000-8000-8000-000000000002", "c0000000-0000-8000-8000-000000000003"}
	if got := simulator.GenerateContacts(3); !slices.Equal(got, want3) {
		t.Errorf("GenerateContacts = %v, want %v", got, want3)
	}
	if got, want := simulator.ContactID(123456789012), "c0000000-0000-8000-8000-123456789012"; got != want {
		t.Errorf("ContactID(123456789012) = %s, want %s", got, want)
	}
	ms := simulator.GenerateMembers(2)
	want := simulator.Member{ID: "a0000000-0000-8000-8000-000000000002", Name: "Agent 0002", FirstName: "Agent", LastName: "0002",
		Email: "agent0002@example.com", Phone: "+15550000002", Active: true}
	if len(ms) != 2 || ms[1] != want {
		t.Errorf("GenerateMembers(2) = %+v", ms)
	}
	if !slices.Equal(simulator.GenerateMembers(5), simulator.GenerateMembers(5)) {
		t.Error("GenerateMembers is not deterministic")
	}
	if len(simulator.GenerateContacts(0)) != 0 || len(simulator.GenerateMembers(-1)) != 0 {
		t.Error("want no ids for n <= 0")
	}
	// The importer's default rule takes them: canonical, lower-case UUIDs.
	for _, id := range append(simulator.GenerateContacts(1000), simulator.MemberID(1), simulator.MemberID(999)) {
		if !jobs.IDUUID.Valid(id) {
			t.Errorf("generated id %s is not a canonical UUID", id)
		}
	}
}

func TestLoadContacts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in string
		want     []string
		err      string
	}{
		{"one per line", "C-1\nc-2\r\n\n  c-3  \n", []string{"c-1", "c-2", "c-3"}, ""},
		{"duplicates dropped", "a\nA\nb\n", []string{"a", "b"}, ""},
		{"csv id column", "\ufeffname,AI Contact-Id,x\nBob,c-9,1\nAmy,c-8,2\n", []string{"c-9", "c-8"}, ""},
		{"single id header", "id\nx1\nx2\n", []string{"x1", "x2"}, ""},
		{"empty", "", []string{}, ""},
		{"malformed id", "ok\nnot ok\n", nil, "line 2"},
		{"csv without id column", "a,b\n1,2\n", nil, "no id column"},
		{"short row", "x,contact_id\n1\n", nil, "line 2: missing id column"},
		{"bad quote", "\"abc\n", nil, "load contacts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := simulator.LoadContacts(strings.NewReader(tt.in))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) || got == nil {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestLoadMembers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in string
		want     []simulator.Member
		err      string
	}{
		{
			name: "active defaults to true",
			in:   `[{"id":"M-1","name":"Ann Lee","first_name":"Ann","last_name":"Lee","email":"ann@x.io","phone":"1"},{"id":"m-2","active":false,"extra":1}]`,
			want: []simulator.Member{
				{ID: "m-1", Name: "Ann Lee", FirstName: "Ann", LastName: "Lee", Email: "ann@x.io", Phone: "1", Active: true},
				{ID: "m-2"},
			},
		},
		{name: "empty array", in: `[]`, want: []simulator.Member{}},
		{name: "not an array", in: `{"id":"m"}`, err: "load members"},
		{name: "null", in: `null`, err: "JSON array"},
		{name: "malformed id", in: `[{"id":"a b"}]`, err: "element 1: malformed id"},
		{name: "missing id", in: `[{"name":"x"}]`, err: "element 1: malformed id"},
		{name: "duplicate id", in: `[{"id":"a"},{"id":"A"}]`, err: "element 2: duplicate id a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := simulator.LoadMembers(strings.NewReader(tt.in))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func FuzzLoadContacts(f *testing.F) {
	f.Add([]byte("id\nc-1\n"))
	f.Add([]byte("a,b\n\"x"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ids, err := simulator.LoadContacts(bytes.NewReader(data))
		for _, id := range ids {
			if err == nil && (!simulator.ValidID(id) || strings.ToLower(id) != id) {
				t.Fatalf("LoadContacts returned bad id %q", id)
			}
		}
	})
}

func FuzzLoadMembers(f *testing.F) {
	f.Add([]byte(`[{"id":"m-1","active":false}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ms, err := simulator.LoadMembers(bytes.NewReader(data))
		for _, m := range ms {
			if err == nil && !simulator.ValidID(m.ID) {
				t.Fatalf("LoadMembers returned bad id %q", m.ID)
			}
		}
	})
}
