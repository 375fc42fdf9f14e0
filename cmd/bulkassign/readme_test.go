package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// readmeCommands returns the commands of the README's section that starts
// with the heading title: its indented lines that run bulkassign and need
// nothing the reader must fill in (no URL, no ...).
func readmeCommands(t *testing.T, title string) [][]string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n"+title+"\n")
	if !ok {
		t.Fatalf("README has no section %q", title)
	}
	if end := strings.Index(section, "\n#"); end >= 0 {
		section = section[:end]
	}
	var cmds [][]string
	for _, line := range strings.Split(section, "\n") {
		line, _, _ = strings.Cut(line, "#")
		f := strings.Fields(line)
		if !strings.HasPrefix(line, "    bulkassign ") || strings.Contains(line, "...") || strings.Contains(line, "URL") {
			continue
		}
		cmds = append(cmds, f[1:])
	}
	if len(cmds) == 0 {
		t.Fatalf("README section %q has no command to run", title)
	}
	return cmds
}

// asFromRoot rewrites a README command, written for the repository's
// root, for this test: paths that exist there get the way up, and --out
// a temporary folder.
func asFromRoot(t *testing.T, args []string) (out string, _ []string) {
	t.Helper()
	out = t.TempDir()
	fixed := make([]string, 0, len(args)+1)
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch _, err := os.Stat(filepath.Join("../..", a)); {
		case a == "--out" && i+1 < len(args):
			fixed = append(fixed, a, filepath.Join(out, args[i+1]))
			i++
			continue
		case err == nil && strings.Contains(a, "/"):
			a = filepath.Join("../..", a)
		}
		fixed = append(fixed, a)
	}
	if !strings.Contains(strings.Join(args, " "), "--out") {
		fixed = append(fixed, "--out", out)
	}
	return out, append(fixed, "--progress-every", "1h")
}

// TestREADMEMigrationRuns: finding 6. The README's migration example runs
// as written from a fresh clone: the simulator has members with the
// sample's emails, and the sample's four bad rows are the only invalid ones.
func TestREADMEMigrationRuns(t *testing.T) {
	t.Parallel()
	for _, args := range readmeCommands(t, "### Legacy-CRM migration: emails and foreign headers") {
		out, fixed := asFromRoot(t, args)
		res := runCLI(t, nil, fixed...)
		if res.code != exitPartial {
			t.Fatalf("%v: exit %d (%v), want 2\n%s", args, res.code, res.err, res.stderr)
		}
		if s := readSummary(t, reportDir(t, out)); s.Rows != 12 || s.Succeeded != 8 || s.Invalid != 4 {
			t.Errorf("%v: %d rows, %d succeeded, %d invalid; want 12, 8, 4", args, s.Rows, s.Succeeded, s.Invalid)
		}
	}
}

// TestREADMEPlanRuns: the README's plan examples run as written.
func TestREADMEPlanRuns(t *testing.T) {
	t.Parallel()
	for _, args := range readmeCommands(t, "### Territory rebalancing: `plan`") {
		_, fixed := asFromRoot(t, args)
		if res := runCLI(t, nil, fixed...); res.code != exitOK {
			t.Errorf("%v: exit %d (%v)\n%s", args, res.code, res.err, res.stderr)
		}
	}
}
