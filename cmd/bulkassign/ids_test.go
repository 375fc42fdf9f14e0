package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestIDFormatFlag: --id-format is a flag of every command that reads an
// assignment or plan file, and of no other; uuid is the default, any takes
// the older ids, from the command line or BULKASSIGN_ID_FORMAT, and any
// other value is refused. Not parallel: it sets the environment.
func TestIDFormatFlag(t *testing.T) {
	readers := []string{"bulkassign run", "bulkassign import", "bulkassign plan", "bulkassign schedule", "bulkassign serve", "bulkassign verify"}
	walk((&app{}).rootCommand(), func(c *cobra.Command) {
		f := c.Flags().Lookup("id-format")
		switch want := slices.Contains(readers, c.CommandPath()); {
		case want && (f == nil || f.DefValue != "uuid"):
			t.Errorf("%s: --id-format %+v, want one with the default uuid", c.CommandPath(), f)
		case !want && f != nil:
			t.Errorf("%s has --id-format, but reads no assignment or plan file", c.CommandPath())
		}
	})

	older := filepath.Join(t.TempDir(), "older.csv")
	if err := os.WriteFile(older, []byte("aiContactId,teamMemberId\nc-1,m-1\nC-2,agent_2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		env      map[string]string
		args     []string
		wantCode int
		wantOut  string // in stdout: the dry run's summary
		wantErr  string
	}{
		{name: "uuid by default", args: []string{"import", "--dry-run", older}, wantOut: `"invalid": 2`},
		{name: "any", args: []string{"import", "--dry-run", "--id-format", "any", older}, wantOut: `"valid": 2`},
		{name: "any from the env", env: map[string]string{"BULKASSIGN_ID_FORMAT": "any"},
			args: []string{"import", "--dry-run", older}, wantOut: `"valid": 2`},
		{name: "the command line wins", env: map[string]string{"BULKASSIGN_ID_FORMAT": "any"},
			args: []string{"import", "--dry-run", "--id-format", "uuid", older}, wantOut: `"invalid": 2`},
		{name: "an unknown rule", args: []string{"import", "--dry-run", "--id-format", "guid", older},
			wantCode: exitFatal, wantErr: `invalid argument "guid" for "--id-format" flag: id format "guid": want uuid (the default) or any`},
		{name: "an unknown rule in the env", env: map[string]string{"BULKASSIGN_ID_FORMAT": "guid"},
			args: []string{"run", "--simulate", older}, wantCode: exitFatal, wantErr: "BULKASSIGN_ID_FORMAT: not a valid value for --id-format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			res := runCLI(t, nil, tt.args...)
			if res.code != tt.wantCode || !strings.Contains(res.errText(), tt.wantErr) || !strings.Contains(res.stdout, tt.wantOut) {
				t.Errorf("exit %d (%v), stdout:\n%s\nwant %d with %q and %q on stdout", res.code, res.err, res.stdout, tt.wantCode, tt.wantErr, tt.wantOut)
			}
		})
	}
}
