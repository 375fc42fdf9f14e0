package importer

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/bulkassign/bulkassign/jobs"
)

// decoded is everything a Decoder produced for one input.
type decoded struct {
	format Format
	rows   []jobs.Row
	extras []string
	err    error // first error other than io.EOF, from NewDecoder or Next
}

// decodeAll decodes r with the id rule ids.
func decodeAll(t testing.TB, r io.Reader, file string, format Format, ids jobs.IDFormat) decoded {
	t.Helper()
	d, err := NewDecoder(r, file, format, ids)
	if err != nil {
		return decoded{err: err}
	}
	out := decoded{format: d.Format()}
	for {
		row, err := d.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			out.err = err
			break
		}
		out.rows = append(out.rows, row)
	}
	out.extras = d.Extras()
	return out
}

// ok is a valid row.
func ok(line int, contact, member string, replace bool, extra ...string) jobs.Row {
	return jobs.Row{Line: line, ContactID: contact, MemberID: member, Replace: replace, Extra: extraOrNil(extra)}
}

// bad is an invalid row; its Error is checked apart, for being non-empty.
func bad(line int, reason, contact, member, replaceText string, extra ...string) jobs.Row {
	return jobs.Row{Line: line, ContactID: contact, MemberID: member, ReplaceText: replaceText, Reason: reason, Extra: extraOrNil(extra)}
}

func extraOrNil(x []string) []string {
	if len(x) == 0 {
		return nil
	}
	return x
}

// TestDecode reads files whose ids follow the older rule, with
// jobs.IDAny: it is about headers, encodings and formats. TestDecodeIDs
// checks the ids under each rule.
func TestDecode(t *testing.T) {
	long := strings.Repeat("a", 128)
	tests := []struct {
		name     string
		file     string
		format   Format
		in       string
		want     []jobs.Row
		extras   []string
		errLine  int    // with errIn: the *FileError's line
		errIn    string // a part of the *FileError's message
		wantForm Format
	}{
		// Headers.
		{name: "canonical", file: "a.csv", in: "aiContactId,teamMemberId,removeExistingAgents\nc1,m1,true\n",
			want: []jobs.Row{ok(2, "c1", "m1", true)}},
		{name: "aliases snake", file: "a.csv", in: "contact_id,team_member_id,replace\nc1,m1,1\n",
			want: []jobs.Row{ok(2, "c1", "m1", true)}},
		{name: "aliases camel", file: "a.csv", in: "contactId,memberId,removeExisting\nc1,m1,0\n",
			want: []jobs.Row{ok(2, "c1", "m1", false)}},
		{name: "aliases agent", file: "a.csv", in: "contact,agent_id,replaceExisting\nc1,m1,yes\n",
			want: []jobs.Row{ok(2, "c1", "m1", true)}},
		{name: "aliases short", file: "a.csv", in: "aicontact,agent,x\nc1,m1,\n",
			want: []jobs.Row{ok(2, "c1", "m1", false)}, extras: []string{"x"}},
		{name: "aliases teammember agentId", file: "a.csv", in: "AICONTACTID,TeamMember\nc1,m1\n",
			want: []jobs.Row{ok(2, "c1", "m1", false)}},
		{name: "header case spaces dashes", file: "a.csv", in: " AI Contact-ID , Team_Member Id ,REMOVE existing-AGENTS\nc1,m1,false\n",
			want: []jobs.Row{ok(2, "c1", "m1", false)}},
		{name: "header order free", file: "a.csv", in: "removeExistingAgents,teamMemberId,aiContactId\ntrue,m1,c1\n",
			want: []jobs.Row{ok(2, "c1", "m1", true)}},

		// Encoding details.
		{name: "bom crlf", file: "a.csv", in: "\ufeffaiContactId,teamMemberId\r\nc1,m1\r\nc2,m2\r\n",
			want: []jobs.Row{ok(2, "c1", "m1", false), ok(3, "c2", "m2", false)}},
		{name: "no final newline", file: "a.csv", in: "aiContactId,teamMemberId\nc1,m1",
			want: []jobs.Row{ok(2, "c1", "m1", false)}},
		{name: "quoted multi-line cells keep start line", file: "a.csv",
			in: "aiContactId,teamMemberId,note\nc1,m1,\"one\ntwo\nthree\"\nc2,m2,\"a,b \"\"q\"\"\"\n\"c3\",\"m\n\",x\n",
			want: []jobs.Row{
				ok(2, "c1", "m1", false, "one\ntwo\nthree"),
				ok(5, "c2", "m2", false, `a,b "q"`),
				ok(6, "c3", "m", false, "x"),
			},
			extras: []string{"note"}},
		{name: "quoted after space", file: "a.csv", in: "aiContactId,teamMemberId,note\nc1, m1, \"x, y\"\n",
			want: []jobs.Row{ok(2, "c1", "m1", false, "x, y")}, extras: []string{"note"}},
		{name: "whitespace trimmed", file: "a.csv", in: "aiContactId,teamMemberId,removeExistingAgents,note\n  c1 \t,\tm1  , yes , n \n",
			want: []jobs.Row{ok(2, "c1", "m1", true, "n")}, extras: []string{"note"}},
		{name: "non-breaking space trimmed", file: "a.csv", in: "aiContactId,teamMemberId\n\u00a0c1\u00a0,m1\n",
			want: []jobs.Row{ok(2, "c1", "m1", false)}},
		{name: "blank lines skipped and counted", file: "a.csv", in: "aiContactId,teamMemberId\n\nc1,m1\n   \n , \nc2,m2\n\n",
			want: []jobs.Row{ok(3, "c1", "m1", false), ok(6, "c2", "m2", false)}},
		{name: "mixed case ids lower-cased", file: "a.csv", in: "aiContactId,teamMemberId\nAbC-9_x,MEMBER-1\n",
			want: []jobs.Row{ok(2, "abc-9_x", "member-1", false)}},

		// removeExistingAgents.
		{name: "booleans", file: "a.csv",
			in: "aiContactId,teamMemberId,removeExistingAgents\n" +
				"c,m,true\nc,m,TRUE\nc,m,True\nc,m,1\nc,m,yes\nc,m,YES\nc,m,y\nc,m,Y\nc,m,t\nc,m,T\n" +
				"c,m,false\nc,m,FALSE\nc,m,0\nc,m,no\nc,m,No\nc,m,n\nc,m,N\nc,m,f\nc,m,F\nc,m,\nc,m,  \n" +
				"c,m,maybe\nc,m,2\nc,m,truee\nc,m,-1\n",
			want: []jobs.Row{
				ok(2, "c", "m", true), ok(3, "c", "m", true), ok(4, "c", "m", true), ok(5, "c", "m", true),
				ok(6, "c", "m", true), ok(7, "c", "m", true), ok(8, "c", "m", true), ok(9, "c", "m", true),
				ok(10, "c", "m", true), ok(11, "c", "m", true),
				ok(12, "c", "m", false), ok(13, "c", "m", false), ok(14, "c", "m", false), ok(15, "c", "m", false),
				ok(16, "c", "m", false), ok(17, "c", "m", false), ok(18, "c", "m", false), ok(19, "c", "m", false),
				ok(20, "c", "m", false), ok(21, "c", "m", false), ok(22, "c", "m", false),
				bad(23, "invalid_remove_existing_agents", "c", "m", "maybe"),
				bad(24, "invalid_remove_existing_agents", "c", "m", "2"),
				bad(25, "invalid_remove_existing_agents", "c", "m", "truee"),
				bad(26, "invalid_remove_existing_agents", "c", "m", "-1"),
			}},

		// Ids.
		{name: "malformed ids", file: "a.csv",
			in: "aiContactId,teamMemberId,removeExistingAgents\n" +
				"a b,m,\nc,a/b,\nc,ñ,\n" + long + "," + long + ",\n" + long + "x,m,\n" +
				",m,\nc,,\n,,true\nBAD ID,BAD ID,maybe\nc,BAD ID,maybe\nC1,m,Maybe\n",
			want: []jobs.Row{
				bad(2, "invalid_contact_id", "a b", "m", ""),
				bad(3, "invalid_member_id", "c", "a/b", ""),
				bad(4, "invalid_member_id", "c", "ñ", ""),
				ok(5, long, long, false),
				bad(6, "invalid_contact_id", long+"x", "m", ""),
				bad(7, "missing_contact_id", "", "m", ""),
				bad(8, "missing_member_id", "c", "", ""),
				bad(9, "missing_contact_id", "", "", "true"),
				bad(10, "invalid_contact_id", "BAD ID", "BAD ID", "maybe"),
				bad(11, "invalid_member_id", "c", "BAD ID", "maybe"),
				bad(12, "invalid_remove_existing_agents", "C1", "m", "Maybe"),
			}},

		// Columns.
		{name: "missing contact column", file: "a.csv", in: "id,teamMemberId\nc,m\n",
			errLine: 1, errIn: `no aiContactId column`},
		{name: "missing member column", file: "a.csv", in: "aiContactId,note\nc,m\n",
			errLine: 1, errIn: `no teamMemberId column`},
		{name: "no header row", file: "a.csv", in: "c1,m1\nc2,m2\n",
			errLine: 1, errIn: `the header has "c1", "m1"`},
		{name: "semicolon separator hint", file: "a.csv", in: "aiContactId;teamMemberId\nc;m\n",
			errLine: 1, errIn: `separate cells with ";"`},
		{name: "duplicate contact column", file: "a.csv", in: "contactId,teamMemberId,AI Contact Id\nc,m,c\n",
			errLine: 1, errIn: `columns "contactId" and "AI Contact Id" both mean aiContactId`},
		{name: "duplicate member column", file: "a.csv", in: "aiContactId,agent,agent_id\nc,m,m\n",
			errLine: 1, errIn: `columns "agent" and "agent_id" both mean teamMemberId`},
		{name: "duplicate replace column", file: "a.csv", in: "aiContactId,agent,replace,removeExistingAgents\nc,m,1,1\n",
			errLine: 1, errIn: `both mean removeExistingAgents`},
		{name: "report columns ignored", file: "failed.csv",
			in: "line,aiContactId,teamMemberId,removeExistingAgents,region,status,httpStatus,attempts,error\n" +
				"7,c1,m1,false,north,failed,404,1,\"teamMemberId \"\"x\"\" not found\"\n",
			want:   []jobs.Row{ok(2, "c1", "m1", false, "north")},
			extras: []string{"region"}},
		{name: "extras order and unnamed column", file: "a.csv",
			in:     "note,aiContactId,,teamMemberId,\ufeffAlpha ,zeta\nn1,c1,x,m1,a1,\nn2,c2,,m2,,\n",
			want:   []jobs.Row{ok(2, "c1", "m1", false, "n1", "x", "a1"), ok(3, "c2", "m2", false, "n2")},
			extras: []string{"note", "column 3", "Alpha", "zeta"}},
		{name: "formula prefix undone", file: "a.csv",
			in: "aiContactId,teamMemberId,a,b,c,d,e,f\n'-c1,'@m1,'=SUM(A1),'+1,'-2,'x,',''=\n",
			want: []jobs.Row{bad(2, "invalid_member_id", "-c1", "@m1", "",
				"=SUM(A1)", "+1", "-2", "'x", "'", "''=")},
			extras: []string{"a", "b", "c", "d", "e", "f"}},
		{name: "header only", file: "a.csv", in: "aiContactId,teamMemberId\n"},

		// CSV file errors.
		{name: "empty file", file: "a.csv", in: "", errIn: "empty file"},
		{name: "blank file", file: "a.csv", in: "\n \r\n\t\n", errIn: "empty file"},
		{name: "bom only", file: "a.csv", in: "\ufeff", errIn: "empty file"},
		{name: "too many fields", file: "data.csv", in: "aiContactId,teamMemberId,note\nc,m,x\n\nc,m,x,y\n",
			errLine: 4, errIn: "data.csv: line 4: wrong number of fields (4, header has 3): quote cells that contain commas"},
		{name: "too few fields", file: "a.csv", in: "aiContactId,teamMemberId,note\nc,m\n",
			errLine: 2, errIn: "wrong number of fields (2, header has 3)"},
		{name: "bare quote", file: "a.csv", in: "aiContactId,teamMemberId\nc,m\nc,m\"x\n",
			errLine: 3, errIn: "unquoted cell"},
		{name: "unclosed quote", file: "a.csv", in: "aiContactId,teamMemberId\nc,m\nc,\"m\nx,y\nz,w\n",
			errLine: 3, errIn: "not closed"},
		{name: "text after closing quote", file: "a.csv", in: "aiContactId,teamMemberId\n\"c\"x,m\n",
			errLine: 2, errIn: "not closed properly"},
		{name: "utf-16", file: "a.csv", in: "\xff\xfea\x00,\x00b\x00", errIn: "UTF-16"},
		{name: "invalid utf-8", file: "a.csv", in: "aiContactId,teamMemberId,name\nc,m,Jos\xe9\n",
			errLine: 2, errIn: "not valid UTF-8"},

		// JSON arrays.
		{name: "json array", file: "a.json",
			in: `[{"aiContactId":"C1","teamMemberId":"M1","removeExistingAgents":true},` + "\n" +
				`{"contact_id":"c2","agent_id":"m2","replace":"no"},{"contactId":" c3 ","memberId":"m3","removeExisting":false}]`,
			want: []jobs.Row{ok(1, "c1", "m1", true), ok(2, "c2", "m2", false), ok(3, "c3", "m3", false)}},
		{name: "json values", file: "a.json",
			in:     `[{"aiContactId":"123","teamMemberId":"m","removeExistingAgents":null,"meta":{"a": [1, 2]},"n":1.50,"b":false,"z":null,"s":"  t  "}]`,
			want:   []jobs.Row{ok(1, "123", "m", false, `{"a":[1,2]}`, "1.50", "false", "", "t")},
			extras: []string{"meta", "n", "b", "z", "s"}},
		{name: "json replace forms", file: "a.json",
			in: `[{"aiContactId":"c","teamMemberId":"m","removeExistingAgents":1},` +
				`{"aiContactId":"c","teamMemberId":"m","removeExistingAgents":"YES"},` +
				`{"aiContactId":"c","teamMemberId":"m","removeExistingAgents":false},` +
				`{"aiContactId":"c","teamMemberId":"m","removeExistingAgents":2},` +
				`{"aiContactId":"c","teamMemberId":"m","removeExistingAgents":[true]},` +
				`{"aiContactId":"c","teamMemberId":"m","removeExistingAgents":{}}]`,
			want: []jobs.Row{ok(1, "c", "m", true), ok(2, "c", "m", true), ok(3, "c", "m", false),
				bad(4, "invalid_remove_existing_agents", "c", "m", "2"),
				bad(5, "invalid_remove_existing_agents", "c", "m", "[true]"),
				bad(6, "invalid_remove_existing_agents", "c", "m", "{}")}},
		{name: "json bad ids", file: "a.json",
			in: `[{"aiContactId":{"id":"c"},"teamMemberId":"m"},{"aiContactId":"c","teamMemberId":["m"]},` +
				`{"aiContactId":true,"teamMemberId":"m"},{"aiContactId":null,"teamMemberId":"m"},{"teamMemberId":"m"},` +
				`{"aiContactId":"c","teamMemberId":"M","removeExistingAgents":true},{"aiContactId":"c\u0020d","teamMemberId":"m"},` +
				`{"aiContactId":123,"teamMemberId":"m"},{"aiContactId":"c","teamMemberId":4.5e1},{"aiContactId":"123","teamMemberId":"45"}]`,
			want: []jobs.Row{
				bad(1, "invalid_contact_id", `{"id":"c"}`, "m", ""),
				bad(2, "invalid_member_id", "c", `["m"]`, ""),
				bad(3, "invalid_contact_id", "true", "m", ""),
				bad(4, "missing_contact_id", "", "m", ""),
				bad(5, "missing_contact_id", "", "m", ""),
				ok(6, "c", "m", true),
				bad(7, "invalid_contact_id", "c d", "m", ""),
				bad(8, "invalid_contact_id", "123", "m", ""), // a JSON number is never an id, even under any
				bad(9, "invalid_member_id", "c", "4.5e1", ""),
				ok(10, "123", "45", false), // the same digits as a string are
			}},
		{name: "json extras order across objects", file: "a.json",
			in: `[{"b":1,"aiContactId":"c","teamMemberId":"m"},{"a":"2","aiContactId":"c","teamMemberId":"m","B":3},` +
				`{"aiContactId":"c","teamMemberId":"m","status":"failed","line":4,"error":"x","attempts":1,"httpStatus":500}]`,
			want:   []jobs.Row{ok(1, "c", "m", false, "1"), ok(2, "c", "m", false, "3", "2"), ok(3, "c", "m", false)},
			extras: []string{"b", "a"}},
		{name: "json empty array", file: "a.json", in: " [ ] "},
		{name: "json no contact key anywhere", file: "a.json",
			in: `[{"id":"c","teamMemberId":"m"},{"id":"d","teamMemberId":"m"}]`, errIn: "no object has an aiContactId key"},
		{name: "json no member key anywhere", file: "a.json",
			in: `[{"aiContactId":"c"}]`, errIn: "no object has a teamMemberId key"},
		{name: "json duplicate field keys", file: "a.json",
			in:      "[\n{\"aiContactId\":\"c\",\"teamMemberId\":\"m\"},\n{\"aiContactId\":\"c\",\"contact_id\":\"d\",\"teamMemberId\":\"m\"}]",
			errLine: 3, errIn: `element 2: keys "aiContactId" and "contact_id" both mean aiContactId`},
		{name: "json duplicate extra keys", file: "a.json",
			in:      `[{"aiContactId":"c","teamMemberId":"m","note":1,"Note":2}]`,
			errLine: 1, errIn: `key "Note" is given twice`},
		{name: "csv too many columns", file: "a.csv", in: manyColumns(maxExtras + 1),
			errLine: 1, errIn: "the header has 1001 extra columns, more than 1000: keep only the columns you need"},
		{name: "csv 20,000 columns", file: "a.csv", in: manyColumns(20_000), errLine: 1, errIn: "the header has 20000 extra columns"},
		{name: "csv too many columns, an email column counts", file: "a.csv", in: "agent_email," + manyColumns(maxExtras),
			errLine: 1, errIn: "1001 extra columns"},
		{name: "csv many columns", file: "a.csv", in: manyColumns(maxExtras), want: []jobs.Row{ok(2, "c", "m", false)},
			extras: keyNames(maxExtras)},
		{name: "csv report columns are not extras", file: "a.csv",
			in:   strings.Repeat("status,", maxExtras+1) + "aiContactId,teamMemberId\n" + strings.Repeat(",", maxExtras+1) + "c,m\n",
			want: []jobs.Row{ok(2, "c", "m", false)}},
		{name: "json too many keys", file: "a.jsonl", in: manyKeys(maxExtras + 1), errLine: 1, errIn: "more than 1000 different keys"},
		{name: "json many keys", file: "a.jsonl", in: manyKeys(maxExtras), want: []jobs.Row{ok(1, "c", "m", false)},
			extras: keyNames(maxExtras)},
		{name: "json element not an object", file: "a.json",
			in:      "[\n  {\"aiContactId\":\"c\",\"teamMemberId\":\"m\"},\n  \"c2\"\n]",
			errLine: 3, errIn: "element 2: found a string where an object was expected"},
		{name: "json single object", file: "a.json", format: FormatJSON,
			in: `{"aiContactId":"c","teamMemberId":"m"}`, errLine: 1, errIn: "single JSON object, not an array"},
		{name: "json syntax error inside element", file: "a.json",
			in: "[\n {\"aiContactId\":\"a\",\"teamMemberId\":\"b\"},\n {\"aiContactId\":\"c\",\n  \"teamMemberId\" \"d\"},\n" +
				" {\"aiContactId\":\"e\",\"teamMemberId\":\"f\"}\n]\n",
			errLine: 4, errIn: "invalid JSON (invalid character '\"' after object key)"},
		{name: "json syntax error in first element", file: "a.json",
			in:      "\n\n[{\"aiContactId\":\"a\",\n\"teamMemberId\":b}]",
			errLine: 4, errIn: "invalid JSON"},
		{name: "json missing comma", file: "a.json",
			in:      "[\n{\"aiContactId\":\"a\",\"teamMemberId\":\"b\"}\n{\"aiContactId\":\"c\",\"teamMemberId\":\"d\"}\n]",
			errLine: 3, errIn: "expected comma after array element"},
		{name: "json trailing comma", file: "a.json",
			in:      "[\n{\"aiContactId\":\"a\",\"teamMemberId\":\"b\"},\n]",
			errLine: 3, errIn: "invalid JSON"},
		{name: "json unclosed array", file: "a.json",
			in:      "[\n{\"aiContactId\":\"a\",\"teamMemberId\":\"b\"},\n{\"aiContactId\":\"c\",\n\n",
			errLine: 3, errIn: "the file ends inside the JSON array"},
		{name: "json data after array", file: "a.json",
			in:      "[{\"aiContactId\":\"a\",\"teamMemberId\":\"b\"}]\n\n[]",
			errLine: 3, errIn: "more data after the closing ]"},
		{name: "json garbage after array", file: "a.json",
			in:      "[{\"aiContactId\":\"a\",\"teamMemberId\":\"b\"}]\nx",
			errLine: 2, errIn: "invalid JSON"},
		{name: "json not json", file: "a.json", in: "aiContactId,teamMemberId\n", errLine: 1, errIn: "invalid JSON"},
		{name: "json single object after blank lines", file: "a.json", format: FormatJSON,
			in: "\n\n{\"aiContactId\":\"c\",\n\"teamMemberId\":\"m\"}", errLine: 3, errIn: "single JSON object"},
		{name: "json scalar", file: "a.json", format: FormatJSON, in: "\n 42 ", errLine: 2, errIn: "single JSON value"},
		{name: "json not json after blank lines", file: "-", format: FormatJSON, in: "\n\n  nope\n", errLine: 3, errIn: "invalid JSON"},
		{name: "json bad literal in element", file: "a.json",
			in:      "[\n{\"aiContactId\":\"a\",\"teamMemberId\":\"b\"},\n\n  {\"aiContactId\":\"c\",\n\"teamMemberId\":\"d\",\n\"x\":tru}]",
			errLine: 6, errIn: "invalid character '}' in literal true"},
		{name: "json with bom and crlf", file: "a.json",
			in:   "\ufeff[\r\n{\"aiContactId\":\"a\",\"teamMemberId\":\"b\"}\r\n]\r\n",
			want: []jobs.Row{ok(1, "a", "b", false)}},

		// JSON Lines.
		{name: "jsonl blank lines", file: "a.jsonl",
			in:     "{\"aiContactId\":\"a\",\"teamMemberId\":\"b\"}\n\n   \n{\"aiContactId\":\"C\",\"teamMemberId\":\"d\",\"x\":[1, {}]}\r\n\n",
			want:   []jobs.Row{ok(1, "a", "b", false), ok(4, "c", "d", false, "[1,{}]")},
			extras: []string{"x"}},
		{name: "jsonl syntax error", file: "a.jsonl",
			in:      "{\"aiContactId\":\"a\",\"teamMemberId\":\"b\"}\n\n{\"aiContactId\":\"a\",\"teamMemberId\":\"b\"\n{}\n",
			errLine: 3, errIn: "a.jsonl: line 3: invalid JSON (unexpected end of JSON input)"},
		{name: "jsonl two values on a line", file: "a.jsonl",
			in:      "{\"aiContactId\":\"a\",\"teamMemberId\":\"b\"} {}\n",
			errLine: 1, errIn: "after top-level value"},
		{name: "jsonl array line", file: "a.jsonl",
			in:      "{\"aiContactId\":\"a\",\"teamMemberId\":\"b\"}\n[1]\n",
			errLine: 2, errIn: "found an array where an object was expected"},
		{name: "jsonl missing member key everywhere", file: "a.jsonl",
			in: "{\"aiContactId\":\"a\"}\n", errIn: "no object has a teamMemberId key"},
		{name: "jsonl row without keys", file: "a.jsonl",
			in:   "{\"aiContactId\":\"a\",\"teamMemberId\":\"b\"}\n{\"note\":\"x\"}\n",
			want: []jobs.Row{ok(1, "a", "b", false), bad(2, "missing_contact_id", "", "", "", "x")}, extras: []string{"note"}},

		// Sniffing.
		{name: "sniff json", file: "-", in: " \n [{\"aiContactId\":\"a\",\"teamMemberId\":\"b\"}]",
			want: []jobs.Row{ok(1, "a", "b", false)}, wantForm: FormatJSON},
		{name: "sniff json after bom", file: "upload", in: "\ufeff[{\"aiContactId\":\"a\",\"teamMemberId\":\"b\"}]",
			want: []jobs.Row{ok(1, "a", "b", false)}, wantForm: FormatJSON},
		{name: "sniff jsonl", file: "-", in: "\n{\"aiContactId\":\"a\",\"teamMemberId\":\"b\"}\n",
			want: []jobs.Row{ok(2, "a", "b", false)}, wantForm: FormatJSONL},
		{name: "sniff csv", file: "data.txt", in: "aiContactId,teamMemberId\nc,m\n",
			want: []jobs.Row{ok(2, "c", "m", false)}, wantForm: FormatCSV},
		{name: "extension csv wins over content", file: "x.CSV", in: "[x]\n", errLine: 1, errIn: "no aiContactId column", wantForm: FormatCSV},
		{name: "json extension with lines", file: "x.json", in: "{\"aiContactId\":\"a\",\"teamMemberId\":\"b\"}\n",
			want: []jobs.Row{ok(1, "a", "b", false)}, wantForm: FormatJSONL},
		{name: "jsonl extension with array", file: "x.jsonl", in: "[{\"aiContactId\":\"a\",\"teamMemberId\":\"b\"}]",
			want: []jobs.Row{ok(1, "a", "b", false)}, wantForm: FormatJSON},
		{name: "ndjson extension", file: "x.ndjson", in: "{\"aiContactId\":\"a\",\"teamMemberId\":\"b\"}",
			want: []jobs.Row{ok(1, "a", "b", false)}, wantForm: FormatJSONL},
		{name: "format overrides extension", file: "x.json", format: FormatCSV, in: "aiContactId,teamMemberId\nc,m\n",
			want: []jobs.Row{ok(2, "c", "m", false)}, wantForm: FormatCSV},
		{name: "explicit jsonl", file: "x.csv", format: FormatJSONL, in: "{\"aiContactId\":\"a\",\"teamMemberId\":\"b\"}",
			want: []jobs.Row{ok(1, "a", "b", false)}, wantForm: FormatJSONL},
		{name: "stdin name in errors", file: "-", in: "", errIn: "stdin: empty file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := decodeAll(t, strings.NewReader(tt.in), tt.file, tt.format, jobs.IDAny)
			if tt.errIn != "" {
				var fe *FileError
				if !errors.As(got.err, &fe) {
					t.Fatalf("err = %v (%T), want a *FileError containing %q", got.err, got.err, tt.errIn)
				}
				if !strings.Contains(fe.Error(), tt.errIn) {
					t.Errorf("err = %q, want it to contain %q", fe.Error(), tt.errIn)
				}
				if fe.Line != tt.errLine {
					t.Errorf("err line = %d, want %d (%v)", fe.Line, tt.errLine, fe)
				}
			} else if got.err != nil {
				t.Fatalf("unexpected error: %v", got.err)
			}
			if tt.wantForm != FormatAuto && got.format != tt.wantForm && got.format != FormatAuto {
				t.Errorf("format = %q, want %q", got.format, tt.wantForm)
			}
			if tt.errIn != "" && tt.want == nil {
				return
			}
			for i := range got.rows {
				if got.rows[i].Valid() != (got.rows[i].Error == "") {
					t.Errorf("row %d: Reason %q with Error %q", i, got.rows[i].Reason, got.rows[i].Error)
				}
				got.rows[i].Error = ""
			}
			if !reflect.DeepEqual(got.rows, tt.want) {
				t.Errorf("rows:\n got  %+v\n want %+v", got.rows, tt.want)
			}
			if !reflect.DeepEqual(got.extras, tt.extras) && (len(got.extras) > 0 || len(tt.extras) > 0) {
				t.Errorf("extras = %q, want %q", got.extras, tt.extras)
			}
		})
	}
}

// manyKeys is a JSON Lines file whose one object has n extra keys, all null.
func manyKeys(n int) string {
	var b strings.Builder
	b.WriteString(`{"aiContactId":"c","teamMemberId":"m"`)
	for i := range n {
		fmt.Fprintf(&b, `,"k%d":null`, i)
	}
	b.WriteString("}\n")
	return b.String()
}

// manyColumns is a CSV file of n extra columns k0, k1, ... then the
// contact and member columns, and one row with the extra cells empty.
func manyColumns(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "k%d,", i)
	}
	b.WriteString("aiContactId,teamMemberId\n")
	b.WriteString(strings.Repeat(",", n) + "c,m\n")
	return b.String()
}

func keyNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("k%d", i)
	}
	return names
}

func TestDecodeSniffFormat(t *testing.T) {
	tests := []struct {
		file, in string
		given    Format
		want     Format
	}{
		{"a.csv", "aiContactId,teamMemberId\n", FormatAuto, FormatCSV},
		{"a.json", "[]", FormatAuto, FormatJSON},
		{"a.JSON", "\n[]", FormatAuto, FormatJSON},
		{"a.jsonl", "{}", FormatAuto, FormatJSONL},
		{"a.ndjson", "{}", FormatAuto, FormatJSONL},
		{"-", "[]", FormatAuto, FormatJSON},
		{"-", "\ufeff\t{}", FormatAuto, FormatJSONL},
		{"-", "aiContactId,teamMemberId\n", FormatAuto, FormatCSV},
		{"a.tsv", "aiContactId,teamMemberId\n", FormatAuto, FormatCSV},
		{"a.json", "aiContactId,teamMemberId\n", FormatCSV, FormatCSV},
		{"a.csv", "[]", FormatJSON, FormatJSON},
	}
	for _, tt := range tests {
		d, err := NewDecoder(strings.NewReader(tt.in), tt.file, tt.given, jobs.IDUUID)
		if err != nil {
			t.Errorf("%s %q: %v", tt.file, tt.in, err)
			continue
		}
		if d.Format() != tt.want {
			t.Errorf("%s %q given %q: format %q, want %q", tt.file, tt.in, tt.given, d.Format(), tt.want)
		}
	}
}

func TestRowErrorMessages(t *testing.T) {
	in := "aiContactId,teamMemberId,removeExistingAgents\n,m,\nc,,\nc d,m,\nc,ab c,\nc,m,maybe\n"
	got := decodeAll(t, strings.NewReader(in), "a.csv", FormatAuto, jobs.IDAny)
	if got.err != nil {
		t.Fatal(got.err)
	}
	want := []string{
		"aiContactId is empty: fill in the contact's id",
		"teamMemberId is empty: fill in the team member's id",
		`aiContactId "c d" is not a valid id: want 1-128 letters, digits, - or _`,
		`teamMemberId "ab c" is not a valid id: want 1-128 letters, digits, - or _`,
		`removeExistingAgents "maybe" is not true or false: use true/false, yes/no or 1/0, or leave it empty for false`,
	}
	if len(got.rows) != len(want) {
		t.Fatalf("got %d rows, want %d", len(got.rows), len(want))
	}
	for i, w := range want {
		if got.rows[i].Error != w {
			t.Errorf("row %d: Error = %q, want %q", i, got.rows[i].Error, w)
		}
	}
}

// TestDecodeIDs checks contact and member ids under each rule: the default
// takes UUIDs only, in any case, and sends them lower-case; any takes the
// older rule; a JSON number is never an id. A malformed id makes the row
// invalid with its own reason, and the message shows the form wanted.
func TestDecodeIDs(t *testing.T) {
	const (
		contact = "0b6e4f8a-3c2d-4e1f-9a7b-5c6d7e8f9a0b"
		member  = "550e8400-e29b-41d4-a716-446655440000"
	)
	uuidWant := "want a UUID, 8-4-4-4-12 hex digits like " + jobs.ExampleUUID + ", without braces or urn:uuid: (--id-format any accepts other ids)"
	anyWant := "want 1-128 letters, digits, - or _"
	tests := []struct {
		name    string
		ids     jobs.IDFormat
		file    string
		in      string // one data row
		want    jobs.Row
		wantErr string // the row's Error, when it is invalid
	}{
		{name: "uuids", ids: jobs.IDUUID, file: "a.csv", in: contact + "," + member,
			want: ok(2, contact, member, false)},
		{name: "the zero value is uuid", file: "a.csv", in: contact + ",agent-1a2b3c4d",
			want: bad(2, "invalid_member_id", contact, "agent-1a2b3c4d", ""), wantErr: `teamMemberId "agent-1a2b3c4d" is not a valid id: ` + uuidWant},
		{name: "upper case and padding", ids: jobs.IDUUID, file: "a.csv", in: " " + strings.ToUpper(contact) + " ,	" + strings.ToUpper(member),
			want: ok(2, contact, member, false)},
		{name: "a truncated contact", ids: jobs.IDUUID, file: "a.csv", in: contact[:35] + "," + member,
			want: bad(2, "invalid_contact_id", contact[:35], member, ""), wantErr: `aiContactId "` + contact[:35] + `" is not a valid id: ` + uuidWant},
		{name: "an older member id", ids: jobs.IDUUID, file: "a.csv", in: contact + ",agent-1a2b3c4d",
			want: bad(2, "invalid_member_id", contact, "agent-1a2b3c4d", "")},
		{name: "a bad contact is reported before a bad member", ids: jobs.IDUUID, file: "a.csv", in: "c-1,m-1",
			want: bad(2, "invalid_contact_id", "c-1", "m-1", "")},
		{name: "braces", ids: jobs.IDUUID, file: "a.csv", in: "{" + contact + "}," + member,
			want: bad(2, "invalid_contact_id", "{"+contact+"}", member, "")},
		{name: "a urn", ids: jobs.IDUUID, file: "a.csv", in: contact + ",urn:uuid:" + member,
			want: bad(2, "invalid_member_id", contact, "urn:uuid:"+member, "")},
		{name: "no hyphens", ids: jobs.IDUUID, file: "a.csv", in: strings.ReplaceAll(contact, "-", "") + "," + member,
			want: bad(2, "invalid_contact_id", strings.ReplaceAll(contact, "-", ""), member, "")},
		{name: "empty ids stay missing", ids: jobs.IDUUID, file: "a.csv", in: "," + member,
			want: bad(2, "missing_contact_id", "", member, "")},
		{name: "an empty member stays missing", ids: jobs.IDUUID, file: "a.csv", in: contact + ",",
			want: bad(2, "missing_member_id", contact, "", "")},
		{name: "a json number contact", ids: jobs.IDUUID, file: "a.jsonl", in: `{"aiContactId":202,"teamMemberId":"` + member + `"}`,
			want:    bad(1, "invalid_contact_id", "202", member, ""),
			wantErr: "aiContactId 202 is a JSON number, not an id: write the id as a string in quotes; " + uuidWant},
		{name: "a json number member", ids: jobs.IDUUID, file: "a.json", in: `[{"aiContactId":"` + contact + `","teamMemberId":1e3}]`,
			want: bad(1, "invalid_member_id", contact, "1e3", "")},
		{name: "a json string uuid", ids: jobs.IDUUID, file: "a.json", in: `[{"aiContactId":"` + strings.ToUpper(contact) + `","teamMemberId":"` + member + `"}]`,
			want: ok(1, contact, member, false)},
		{name: "any takes older ids", ids: jobs.IDAny, file: "a.csv", in: "C-000001,agent-1a2b3c4d",
			want: ok(2, "c-000001", "agent-1a2b3c4d", false)},
		{name: "any takes uuids", ids: jobs.IDAny, file: "a.csv", in: contact + "," + member,
			want: ok(2, contact, member, false)},
		{name: "any still refuses a space", ids: jobs.IDAny, file: "a.csv", in: "c 1,m",
			want: bad(2, "invalid_contact_id", "c 1", "m", ""), wantErr: `aiContactId "c 1" is not a valid id: ` + anyWant},
		{name: "any still refuses braces", ids: jobs.IDAny, file: "a.csv", in: "{" + contact + "}," + member,
			want: bad(2, "invalid_contact_id", "{"+contact+"}", member, "")},
		{name: "any refuses a json number", ids: jobs.IDAny, file: "a.jsonl", in: `{"aiContactId":"c-1","teamMemberId":42}`,
			want:    bad(1, "invalid_member_id", "c-1", "42", ""),
			wantErr: "teamMemberId 42 is a JSON number, not an id: write the id as a string in quotes; " + anyWant},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in + "\n"
			if strings.HasSuffix(tt.file, ".csv") {
				in = "aiContactId,teamMemberId\n" + in
			}
			got := decodeAll(t, strings.NewReader(in), tt.file, FormatAuto, tt.ids)
			if got.err != nil {
				t.Fatal(got.err)
			}
			if len(got.rows) != 1 {
				t.Fatalf("%d rows, want 1", len(got.rows))
			}
			row := got.rows[0]
			if tt.wantErr != "" && row.Error != tt.wantErr {
				t.Errorf("Error = %q\nwant    %q", row.Error, tt.wantErr)
			}
			if row.Valid() == (row.Error != "") {
				t.Errorf("Reason %q with Error %q", row.Reason, row.Error)
			}
			row.Error = ""
			if !reflect.DeepEqual(row, tt.want) {
				t.Errorf("row:\n got  %+v\n want %+v", row, tt.want)
			}
		})
	}
}

func TestFixtures(t *testing.T) {
	tests := []struct {
		file   string
		format Format
		want   []jobs.Row
		extras []string
	}{
		{file: "messy.csv", format: FormatCSV,
			extras: []string{"Region", "Notes", "column 7"},
			want: []jobs.Row{
				ok(2, fc(100), fa(7), true, "North", "Key account, VIP", "x"),
				ok(3, fc(101), fa(7), false, "South", "two-line\nnote"),
				ok(6, fc(102), fa(8), false, `=HYPERLINK("http://evil")`, "plain"),
				ok(7, fc(100), fa(7), true, "North", "Key account, VIP", "x"),
				bad(8, "invalid_contact_id", fc(103)[:35], fa(9), "false", "East", "bad contact: a digit short"),
				bad(9, "missing_member_id", fc(104), "", "yes", "East", "missing member"),
				bad(10, "invalid_remove_existing_agents", fc(105), fa(9), "maybe", "West", "bad flag"),
				bad(11, "invalid_contact_id", "-"+fc(106), "@"+fa(10), "1", "West", "formula undo"),
				bad(13, "invalid_member_id", fc(107), `agent "x"`, "0", "", "quoted id"),
			}},
		{file: "assignments.json", format: FormatJSON,
			extras: []string{"region", "priority", "meta"},
			want: []jobs.Row{
				ok(1, fc(200), fa(1), true, "north"),
				ok(2, fc(201), fa(2), false, "", "3"),
				bad(3, "invalid_contact_id", "202", fa(3), "", "", "", `{"source":"legacy","tags":["a","b"]}`),
				bad(4, "invalid_member_id", fc(203), "true", ""),
				bad(5, "invalid_remove_existing_agents", fc(204), fa(4), "sometimes"),
			}},
		{file: "assignments.jsonl", format: FormatJSONL,
			extras: []string{"note", "score"},
			want: []jobs.Row{
				ok(1, fc(300), fa(1), false),
				ok(3, fc(301), fa(2), false, "hello, world"),
				ok(5, fc(302), fa(3), true, "", "4.5e1"),
				bad(6, "missing_contact_id", "", fa(4), ""),
			}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			f, err := os.Open(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got := decodeAll(t, f, tt.file, FormatAuto, jobs.IDUUID)
			if got.err != nil {
				t.Fatal(got.err)
			}
			if got.format != tt.format {
				t.Errorf("format = %q, want %q", got.format, tt.format)
			}
			for i := range got.rows {
				got.rows[i].Error = ""
			}
			if !reflect.DeepEqual(got.rows, tt.want) {
				t.Errorf("rows:\n got  %+v\n want %+v", got.rows, tt.want)
			}
			if !reflect.DeepEqual(got.extras, tt.extras) {
				t.Errorf("extras = %q, want %q", got.extras, tt.extras)
			}
		})
	}
}

// fc and fa are the fixtures' contact and member (agent) ids: UUIDs that
// end in n.
func fc(n int) string { return fmt.Sprintf("c0000000-0000-8000-8000-%012d", n) }
func fa(n int) string { return fmt.Sprintf("a0000000-0000-8000-8000-%012d", n) }

func TestTooLongBoundary(t *testing.T) {
	header := "aiContactId,teamMemberId,note\n"
	record := func(n int) string { return "c,m," + strings.Repeat("x", n-len("c,m,\n")) + "\n" }
	got := decodeAll(t, strings.NewReader(header+record(maxRecord)+"c,m,x\n"), "a.csv", FormatAuto, jobs.IDAny)
	if got.err != nil || len(got.rows) != 2 {
		t.Errorf("a record of exactly 1 MiB: %d rows, err %v", len(got.rows), got.err)
	}
	got = decodeAll(t, strings.NewReader(header+record(maxRecord+1)+"c,m,x\n"), "a.csv", FormatAuto, jobs.IDAny)
	if got.err == nil {
		t.Errorf("a record of 1 MiB + 1 byte: no error")
	}
}

// TestTooLong: a record past the 1 MiB cap is a file error on the line it
// starts on that says which limit it broke, and for CSV whether the record
// is one long line (for a header: too many columns) or runs over lines
// (a quoted cell not closed).
func TestTooLong(t *testing.T) {
	big := strings.Repeat("x", maxRecord+10)
	rows := strings.Repeat("c,m,x\n", maxRecord/6+10)
	tests := []struct {
		name, file, in string
		line           int
		want           string
	}{
		{"csv cell", "a.csv", "aiContactId,teamMemberId,note\nc,m,x\n\nc,m," + big + "\nc,m,x\n", 4,
			"line 4: the row is longer than 1 MiB, the limit for one row: shorten its longest cells"},
		{"csv unclosed quote", "a.csv", "aiContactId,teamMemberId,note\nc,m,\"x\n" + rows, 2,
			"line 2: the row that starts here is longer than 1 MiB, the limit for one row, and runs over several lines: " +
				"a quoted cell in it is probably not closed"},
		{"csv header", "a.csv", "\n" + manyColumns(maxRecord/6), 2,
			"line 2: the header is longer than 1 MiB, the limit for one line: keep only the columns you need (at most 1000 besides"},
		{"csv header unclosed quote", "a.csv", "aiContactId,\"teamMemberId,note\n" + rows, 1,
			"line 1: the header is longer than 1 MiB, the limit for one record, and runs over several lines: " +
				"a quoted cell in it is probably not closed"},
		{"json element", "a.json", "[\n{\"aiContactId\":\"c\",\"teamMemberId\":\"m\"},\n{\"aiContactId\":\"c\",\"teamMemberId\":\"m\",\"x\":\"" + big + "\"}]", 3,
			"element 2 is longer than 1 MiB"},
		{"jsonl line", "a.jsonl", "{\"aiContactId\":\"c\",\"teamMemberId\":\"m\"}\n\n{\"x\":\"" + big + "\"}\n", 3,
			"line longer than 1 MiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := decodeAll(t, strings.NewReader(tt.in), tt.file, FormatAuto, jobs.IDAny)
			var fe *FileError
			if !errors.As(got.err, &fe) {
				t.Fatalf("err = %v, want a *FileError", got.err)
			}
			if fe.Line != tt.line || !strings.Contains(fe.Error(), tt.want) {
				t.Errorf("err = %v\nwant line %d and %q", fe, tt.line, tt.want)
			}
		})
	}
}

// TestStreaming checks that reading a large file keeps only about one
// record in memory, and that a minified JSON array (one huge line) is fine.
func TestStreaming(t *testing.T) {
	const n = 50_000
	var csvIn, jsonIn bytes.Buffer
	csvIn.WriteString("aiContactId,teamMemberId,removeExistingAgents,note\n")
	jsonIn.WriteString("[")
	for i := range n {
		fmt.Fprintf(&csvIn, "contact-%d,member-%d,%t,\"note %d\"\n", i, i%50, i%2 == 0, i)
		if i > 0 {
			jsonIn.WriteString(",")
		}
		fmt.Fprintf(&jsonIn, `{"aiContactId":"contact-%d","teamMemberId":"member-%d","note":"n %d"}`, i, i%50, i)
	}
	jsonIn.WriteString("]")
	for _, in := range []struct {
		file string
		data []byte
	}{{"big.csv", csvIn.Bytes()}, {"big.json", jsonIn.Bytes()}} {
		d, err := NewDecoder(bytes.NewReader(in.data), in.file, FormatAuto, jobs.IDAny)
		if err != nil {
			t.Fatal(err)
		}
		var pr *posReader
		switch s := d.src.(type) {
		case *csvSource:
			pr = s.pr
		case *jsonArraySource:
			pr = s.pr
		}
		rows, maxKept := 0, 0
		for {
			row, err := d.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", in.file, err)
			}
			rows++
			if row.Line <= 0 || !row.Valid() {
				t.Fatalf("%s: bad row %+v", in.file, row)
			}
			maxKept = max(maxKept, cap(pr.buf))
		}
		if rows != n {
			t.Errorf("%s: %d rows, want %d", in.file, rows, n)
		}
		if maxKept > 4*readChunk {
			t.Errorf("%s: kept up to %d bytes, want about one read", in.file, maxKept)
		}
	}
}

func TestParseFormat(t *testing.T) {
	for in, want := range map[string]Format{"": FormatAuto, "auto": FormatAuto, "CSV": FormatCSV, " json ": FormatJSON,
		"jsonl": FormatJSONL, "ndjson": FormatJSONL} {
		got, err := ParseFormat(in)
		if err != nil || got != want {
			t.Errorf("ParseFormat(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseFormat("xlsx"); err == nil {
		t.Error("ParseFormat(xlsx): no error")
	}
	if _, err := NewDecoder(strings.NewReader("x"), "a", Format("xlsx"), jobs.IDUUID); err == nil {
		t.Error("NewDecoder with an unknown format: no error")
	}
}

func TestFileError(t *testing.T) {
	inner := errors.New("boom")
	e := &FileError{File: "a.csv", Line: 7, Err: inner}
	if got := e.Error(); got != "a.csv: line 7: boom" {
		t.Errorf("Error() = %q", got)
	}
	if got := (&FileError{File: "a.csv", Err: inner}).Error(); got != "a.csv: boom" {
		t.Errorf("Error() without line = %q", got)
	}
	if !errors.Is(e, inner) {
		t.Error("errors.Is does not see the wrapped error")
	}
}

// TestReadError checks that a failing reader is a *FileError, not a panic
// or a silent end.
func TestReadError(t *testing.T) {
	boom := errors.New("disk on fire")
	for _, file := range []string{"a.csv", "a.json", "a.jsonl"} {
		var in string
		switch file {
		case "a.csv":
			in = "aiContactId,teamMemberId\nc,m\n"
		case "a.json":
			in = "[{\"aiContactId\":\"c\",\"teamMemberId\":\"m\"},"
		default:
			in = "{\"aiContactId\":\"c\",\"teamMemberId\":\"m\"}\n"
		}
		r := io.MultiReader(strings.NewReader(in), errReader{boom})
		got := decodeAll(t, r, file, FormatAuto, jobs.IDAny)
		var fe *FileError
		if !errors.As(got.err, &fe) || !errors.Is(got.err, boom) {
			t.Errorf("%s: err = %v, want a *FileError wrapping %v", file, got.err, boom)
		}
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }
