package server_test

import (
	"bytes"
	"mime/multipart"
	"net/http"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/bulkassign/bulkassign/importer"
	"github.com/bulkassign/bulkassign/server"
	"github.com/bulkassign/bulkassign/simulator"
)

const (
	legacyExport  = "../importer/testdata/legacy-export.csv"
	legacyMapping = "../importer/testdata/legacy-mapping.yaml"
)

// migrationMembers are the CRM's members for the legacy export: 1…8, 3
// and 5 inactive, 6 and 7 sharing team@example.com.
func migrationMembers() []simulator.Member {
	ms := simulator.GenerateMembers(8)
	ms[2].Active, ms[4].Active = false, false
	ms[5].Email, ms[6].Email = "team@example.com", "team@example.com"
	return ms
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// form posts fields (in order) and then the file as multipart.
func (b *bundle) form(t *testing.T, path, filename, content string, fields ...string) (*http.Response, []byte) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for i := 0; i+1 < len(fields); i += 2 {
		_ = mw.WriteField(fields[i], fields[i+1])
	}
	fw, _ := mw.CreateFormFile("file", filename)
	fw.Write([]byte(content))
	mw.Close()
	return b.do(t, "POST", path, token, &buf, http.Header{"Content-Type": {mw.FormDataContentType()}})
}

// TestPreview: the start of a legacy export shows its headers, which of
// them are known, its first 10 rows, and — with a mapping — the same rows
// as they will be read, with their errors.
func TestPreview(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	export := readFile(t, legacyExport)

	res, body := b.form(t, "/api/v1/preview", "legacy-export.csv", export)
	wantStatus(t, res, body, http.StatusOK)
	p := decode[server.Preview](t, body)
	wantHeaders := []string{"Contact Ref", "Account Name", "Owner E-mail", "Replace Owner?", "Region", "Last Touch"}
	if p.Format != "csv" || !reflect.DeepEqual(p.Headers, wantHeaders) || p.Recognised || len(p.Sample) != 10 ||
		p.Known[2] != "teamMemberEmail" || p.Known[0] != "" || p.Sample[0][0] != simulator.ContactID(1001) ||
		!strings.Contains(p.Error, "aiContactId") || len(p.Rows) != 0 {
		t.Errorf("preview without a mapping: %s", body)
	}

	mapping := `{"aiContactId": "Contact Ref", "teamMemberEmail": "Owner E-mail", "removeExistingAgents": "Replace Owner?"}`
	res, body = b.form(t, "/api/v1/preview", "legacy-export.csv", export, "mapping", mapping)
	wantStatus(t, res, body, http.StatusOK)
	p = decode[server.Preview](t, body)
	if p.Error != "" || len(p.Rows) != 10 {
		t.Fatalf("preview with the mapping: %s", body)
	}
	if r := p.Rows[0]; r.Line != 2 || r.ContactID != simulator.ContactID(1001) || r.MemberEmail != "agent0001@example.com" || r.Replace != "true" || !r.Valid {
		t.Errorf("row 2 as read: %+v", r)
	}
	if r := p.Rows[5]; r.Line != 7 || r.Valid || r.Reason != "invalid_member_email" {
		t.Errorf("row 7 (a bad email) as read: %+v", r)
	}

	res, body = b.form(t, "/api/v1/preview", "legacy-export.csv", export, "mapping", `{"aiContactId": "Contact No"}`)
	wantStatus(t, res, body, http.StatusOK)
	if p := decode[server.Preview](t, body); !strings.Contains(p.Error, `no column "Contact No"`) || len(p.Headers) != 6 {
		t.Errorf("a mapping naming a missing column: %s", body)
	}
	res, body = b.form(t, "/api/v1/preview", "legacy-export.csv", export, "mapping", `{"nonsense": "Contact Ref"}`)
	wantStatus(t, res, body, http.StatusUnprocessableEntity)

	// JSON Lines: the keys of the first objects.
	res, body = b.form(t, "/api/v1/preview", "x.jsonl", `{"Ref": "c-1", "Owner": "a@example.com"}`+"\n"+`{"Ref": "c-2", "Extra": 3}`+"\n")
	wantStatus(t, res, body, http.StatusOK)
	if p := decode[server.Preview](t, body); p.Format != "jsonl" || strings.Join(p.Headers, ",") != "Ref,Owner,Extra" || len(p.Sample) != 2 || p.Sample[1][2] != "3" {
		t.Errorf("JSON Lines preview: %s", body)
	}
}

// TestMappingSavedAndUsed: a mapping saved from the page is stored as a
// --map file, listed, and used by name with an upload whose members are
// named by email; the CRM ends as the CLI's `run --map` leaves it.
func TestMappingSavedAndUsed(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{worker: true, directory: true, sim: simulator.Options{Members: migrationMembers()}})
	res, body := b.do(t, "PUT", "/api/v1/mappings/Legacy CRM", token, strings.NewReader(readFile(t, legacyMapping)), nil)
	wantStatus(t, res, body, http.StatusOK)
	res, body = b.do(t, "PUT", "/api/v1/mappings/json one", token, strings.NewReader(`{"contact_id": "Ref", "agent_email": "Mail"}`), nil)
	wantStatus(t, res, body, http.StatusOK)
	res, body = b.do(t, "PUT", "/api/v1/mappings/bad", token, strings.NewReader("aiContactId: Ref\nfoo: Bar\n"), nil)
	wantStatus(t, res, body, http.StatusUnprocessableEntity)
	if e := decode[map[string]any](t, body)["error"].(string); !strings.Contains(e, `unknown key "foo"`) || !strings.Contains(e, "line 2") {
		t.Errorf("a bad mapping: %s", e)
	}

	res, body = b.do(t, "GET", "/api/v1/mappings", token, nil, nil)
	wantStatus(t, res, body, http.StatusOK)
	list := decode[struct{ Mappings []server.SavedMapping }](t, body).Mappings
	if len(list) != 2 || list[0].Name != "Legacy CRM" || list[1].Name != "json one" {
		t.Fatalf("mappings %s", body)
	}
	// The saved YAML is a --map file: it loads as the original does.
	want, _ := importer.LoadMapping(strings.NewReader(readFile(t, legacyMapping)), "legacy-mapping.yaml")
	got, err := importer.LoadMapping(strings.NewReader(list[0].YAML), "saved")
	if err != nil || !reflect.DeepEqual(got, want) || !reflect.DeepEqual(list[0].Mapping, want) {
		t.Errorf("saved mapping %q loads as %v (%v), want %v", list[0].YAML, got, err, want)
	}
	if list[1].YAML != "aiContactId: Ref\nteamMemberEmail: Mail\n" {
		t.Errorf("a JSON mapping saved as %q", list[1].YAML)
	}

	export := readFile(t, legacyExport)
	res, body = b.form(t, "/api/v1/batches", "legacy-export.csv", export, "mappingName", "Legacy CRM", "dryRun", "true")
	wantStatus(t, res, body, http.StatusOK)
	dry := decode[server.UploadResult](t, body).Summary
	if dry.Rows != 12 || dry.Valid != 6 || dry.Resolved != 6 || dry.Reasons["unknown_member_email"] != 1 || dry.Reasons["inactive_member"] != 2 {
		t.Errorf("dry run with the saved mapping: %+v", dry)
	}
	b.wantNothingQueued(t)

	res, body = b.form(t, "/api/v1/batches", "legacy-export.csv", export, "mappingName", "Legacy CRM", "name", "migration")
	wantStatus(t, res, body, http.StatusCreated)
	done := b.waitDone(t, decode[server.UploadResult](t, body).BatchID)
	if done.Mapping != "Legacy CRM" || done.UploadedBy != server.DefaultTokenName {
		t.Errorf("batch %+v: want the mapping's name and who uploaded it", done)
	}
	c, m := simulator.ContactID, simulator.MemberID
	wantState := map[string][]string{c(1001): {m(1), m(2)}, c(1002): {m(4)}, c(1007): {m(4)}, c(1009): {m(1)}}
	if got := b.sim.State(); !reflect.DeepEqual(got, wantState) {
		t.Errorf("CRM state %v, want %v", got, wantState)
	}

	res, body = b.form(t, "/api/v1/batches", "legacy-export.csv", export, "mappingName", "nope", "dryRun", "true")
	wantStatus(t, res, body, http.StatusBadRequest)
	res, body = b.form(t, "/api/v1/batches", "legacy-export.csv", export, "mappingName", "Legacy CRM", "mapping", "aiContactId: x", "dryRun", "true")
	wantStatus(t, res, body, http.StatusBadRequest)

	res, body = b.do(t, "DELETE", "/api/v1/mappings/json one", token, nil, nil)
	wantStatus(t, res, body, http.StatusNoContent)
	res, body = b.do(t, "DELETE", "/api/v1/mappings/json one", token, nil, nil)
	wantStatus(t, res, body, http.StatusNotFound)
}

// TestPreflight: with preflight, member ids are checked against the
// member list first; an inactive member's rows are invalid and never sent.
func TestPreflight(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{directory: true, sim: simulator.Options{Members: migrationMembers()}})
	file := "aiContactId,teamMemberId\n" + simulator.ContactID(1) + "," + simulator.MemberID(1) + "\n" + simulator.ContactID(2) + "," + simulator.MemberID(3) + "\n"
	for preflight, wantInvalid := range map[string]int{"false": 0, "true": 1} {
		res, body := b.form(t, "/api/v1/batches", "f.csv", file, "preflight", preflight, "dryRun", "true")
		wantStatus(t, res, body, http.StatusOK)
		if s := decode[server.UploadResult](t, body).Summary; s.Invalid != wantInvalid {
			t.Errorf("preflight=%s: %d invalid, want %d: %+v", preflight, s.Invalid, wantInvalid, s)
		}
	}
	c := setup(t, setupOptions{}) // no member list
	res, body := c.form(t, "/api/v1/batches", "f.csv", file, "preflight", "true", "dryRun", "true")
	wantStatus(t, res, body, http.StatusBadRequest)
}
