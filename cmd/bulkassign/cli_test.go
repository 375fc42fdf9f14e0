package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/spf13/cobra"
)

// uuidFile writes a CSV of n rows, one contact each, with UUID ids, and
// returns its path.
func uuidFile(t *testing.T, n int) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("aiContactId,teamMemberId\n")
	for i := range n {
		fmt.Fprintf(&b, "3f0c6a2e-0000-4000-8000-%012d,9b1d2c3e-0000-4000-8000-%012d\n", i+1, i%3+1)
	}
	path := filepath.Join(t.TempDir(), "assignments.csv")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// simRun runs `run --simulate` of a file of rows rows on target with
// the extra arguments, and returns the result and the batch's id.
func simRun(t *testing.T, target redisTarget, rows int, extra ...string) (cliResult, string) {
	t.Helper()
	out := t.TempDir()
	args := append([]string{"run", uuidFile(t, rows), "--simulate", "--out", out}, fastFlags()...)
	args = append(args, target.flags()...)
	res := runCLI(t, nil, append(args, extra...)...)
	if res.code == exitFatal {
		t.Fatalf("run: exit 1: %v\n%s", res.err, res.stderr)
	}
	return res, filepath.Base(reportDir(t, out))
}

// TestFlagsAnywhere: flags before, between and after the arguments, and
// `--` ending them.
func TestFlagsAnywhere(t *testing.T) {
	t.Parallel()
	target := newRedisTarget(t)
	tests := []struct {
		name     string
		args     func(out, file string) []string
		wantCode int
		wantErr  string // in the error; "" = none
	}{
		{name: "flags first", wantCode: exitOK, args: func(out, file string) []string {
			return slices.Concat([]string{"run", "--simulate", "--out", out}, target.flags(), fastFlags(), []string{file})
		}},
		{name: "flags after the file", wantCode: exitOK, args: func(out, file string) []string {
			return slices.Concat([]string{"run", file, "--simulate", "--rate", "1000", "--out", out}, target.flags(), fastFlags())
		}},
		{name: "flags around the file", wantCode: exitOK, args: func(out, file string) []string {
			return slices.Concat([]string{"run", "--simulate"}, target.flags(), []string{file, "--out", out}, fastFlags())
		}},
		{name: "-- makes a flag an argument", wantCode: exitFatal, wantErr: "open --rate", args: func(out, file string) []string {
			return slices.Concat([]string{"run", "--simulate", "--out", out}, target.flags(), []string{"--", "--rate"})
		}},
		{name: "flags after -- are arguments", wantCode: exitFatal, wantErr: "want one FILE argument (or - for stdin), got 3", args: func(out, file string) []string {
			return slices.Concat([]string{"run", "--simulate", "--out", out}, target.flags(), []string{"--", file, "--rate", "20"})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out := t.TempDir()
			res := runCLI(t, nil, tt.args(out, uuidFile(t, 5))...)
			if res.code != tt.wantCode || !strings.Contains(res.errText(), tt.wantErr) {
				t.Fatalf("exit %d (%v), want %d and an error with %q\nstderr:\n%s", res.code, res.err, tt.wantCode, tt.wantErr, res.stderr)
			}
			if tt.wantCode == exitOK {
				if s := readSummary(t, reportDir(t, out)); s.Succeeded != 5 {
					t.Errorf("summary: %d succeeded, want 5", s.Succeeded)
				}
			}
		})
	}

	// report ID --wait --out DIR: the ID first, then its flags.
	_, id := simRun(t, target, 3)
	out := t.TempDir()
	res := runCLI(t, nil, slices.Concat([]string{"report", id, "--wait", "--out", out}, target.flags())...)
	if res.code != exitOK {
		t.Fatalf("report ID --wait --out DIR: exit %d (%v)\n%s", res.code, res.err, res.stderr)
	}
	if s := readSummary(t, filepath.Join(out, id)); s.BatchID != id || s.Succeeded != 3 {
		t.Errorf("report: summary %+v, want batch %s with 3 succeeded", s, id)
	}
}

// TestTypos: an unknown command or flag exits 1 naming it, with a
// suggestion when one is close; no command, or --help, shows the help.
func TestTypos(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args     []string
		wantCode int
		want     string // in the error, or on stdout for exit 0
	}{
		{args: []string{"nosuch"}, wantCode: exitFatal, want: `unknown command "nosuch" for "bulkassign" (see bulkassign --help)`},
		{args: []string{"rn", "file.csv"}, wantCode: exitFatal, want: "did you mean run?"},
		{args: []string{"reprot", "ID"}, wantCode: exitFatal, want: "did you mean report?"},
		{args: []string{"dlq", "lst", "ID"}, wantCode: exitFatal, want: `unknown command "lst" for "bulkassign dlq"; did you mean list?`},
		{args: []string{"completion", "bsh"}, wantCode: exitFatal, want: "did you mean bash"},
		{args: []string{"run", "--rat", "5", "file.csv"}, wantCode: exitFatal, want: "unknown flag: --rat; did you mean --rate? (see bulkassign run --help)"},
		{args: []string{"run", "file.csv", "--retry", "5"}, wantCode: exitFatal, want: "did you mean --retry-base or --retry-max?"},
		{args: []string{"report", "ID", "--wiat"}, wantCode: exitFatal, want: "did you mean --wait?"},
		{args: []string{"batches", "--jsn"}, wantCode: exitFatal, want: "did you mean --json?"},
		{args: []string{"dlq", "list", "ID", "--rediss", "x"}, wantCode: exitFatal, want: "did you mean --redis?"},
		{args: []string{"run", "--zzzzzz"}, wantCode: exitFatal, want: "unknown flag: --zzzzzz (see bulkassign run --help)"},
		{args: []string{"run", "-q"}, wantCode: exitFatal, want: "unknown shorthand flag"},
		{args: []string{"run", "--rate", "fast"}, wantCode: exitFatal, want: `invalid argument "fast" for "--rate"`},
		{args: []string{"batches", "-o", "yaml"}, wantCode: exitFatal, want: `--output "yaml": want table or json`},
		{args: []string{"worker", "extra"}, wantCode: exitFatal, want: `unknown command "extra" for "bulkassign worker"`},
		{args: []string{}, wantCode: exitOK, want: "Usage:\n  bulkassign [command]"},
		{args: []string{"--help"}, wantCode: exitOK, want: "Usage:\n  bulkassign [command]"},
		{args: []string{"dlq"}, wantCode: exitOK, want: "Usage:\n  bulkassign dlq [command]"},
		{args: []string{"help", "run"}, wantCode: exitOK, want: "Usage:\n  bulkassign run FILE [flags]"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Parallel()
			res := runCLI(t, nil, tt.args...)
			got := res.errText()
			if tt.wantCode == exitOK {
				got = res.stdout
			}
			if res.code != tt.wantCode || !strings.Contains(got, tt.want) {
				t.Errorf("exit %d, %q; want exit %d with %q", res.code, got, tt.wantCode, tt.want)
			}
		})
	}
}

// TestEnvTwins: every flag reads BULKASSIGN_<NAME> when the command line
// does not give it. Not parallel: it sets the environment.
func TestEnvTwins(t *testing.T) {
	target := newRedisTarget(t)
	tests := []struct {
		name     string
		env      map[string]string
		args     []string
		wantCode int
		wantErr  string
	}{
		{name: "env read", env: map[string]string{"BULKASSIGN_NAMESPACE": "no:colons"},
			args: []string{"batches", "--redis", target.url}, wantCode: exitFatal, wantErr: `--namespace "no:colons"`},
		{name: "command line wins", env: map[string]string{"BULKASSIGN_NAMESPACE": "no:colons"},
			args: slices.Concat([]string{"batches"}, target.flags()), wantCode: exitOK},
		{name: "env of a bool flag", env: map[string]string{"BULKASSIGN_JSON": "true"},
			args: slices.Concat([]string{"batches"}, target.flags()), wantCode: exitOK},
		{name: "env of a bool flag: BULKASSIGN_DRY_RUN", env: map[string]string{"BULKASSIGN_DRY_RUN": "true"},
			args: []string{"import", uuidFile(t, 2)}, wantCode: exitOK},
		{name: "env of --max-attempts", env: map[string]string{"BULKASSIGN_MAX_ATTEMPTS": "1000"},
			args: []string{"run", "--simulate", "--embedded", "memory"}, wantCode: exitFatal, wantErr: "--max-attempts 1000"},
		{name: "env of --max-retry-after", env: map[string]string{"BULKASSIGN_MAX_RETRY_AFTER": "-1s"},
			args: []string{"run", "--simulate", "--embedded", "memory"}, wantCode: exitFatal, wantErr: "--max-retry-after -1s"},
		{name: "bad env value", env: map[string]string{"BULKASSIGN_RATE": "fast"},
			args: []string{"run", "--simulate"}, wantCode: exitFatal, wantErr: "BULKASSIGN_RATE: not a valid value for --rate"},
		{name: "env of --server-token", env: map[string]string{"BULKASSIGN_SERVER_TOKEN": "a-token-from-the-env-0123"},
			args: []string{"serve", "--redis", target.url, "--workers", "-1"}, wantCode: exitFatal, wantErr: "--workers -1"},
		{name: "empty is unset", env: map[string]string{"BULKASSIGN_SERVER_TOKEN": ""},
			args: []string{"serve", "--redis", target.url, "--workers", "-1"}, wantCode: exitFatal, wantErr: "no access token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			res := runCLI(t, nil, tt.args...)
			if res.code != tt.wantCode || !strings.Contains(res.errText(), tt.wantErr) {
				t.Errorf("exit %d (%v), want %d with %q", res.code, res.err, tt.wantCode, tt.wantErr)
			}
			if tt.env["BULKASSIGN_DRY_RUN"] != "" && !strings.Contains(res.stdout, `"valid": 2`) {
				t.Errorf("import with BULKASSIGN_DRY_RUN=true: no dry-run summary on stdout:\n%s", res.stdout)
			}
			if tt.env["BULKASSIGN_JSON"] != "" && !json.Valid([]byte(res.stdout)) {
				t.Errorf("BULKASSIGN_JSON=true: stdout is not JSON:\n%s", res.stdout)
			}
		})
	}

	// --token is --server-token, so it wins over BULKASSIGN_SERVER_TOKEN
	// as well.
	t.Setenv("BULKASSIGN_SERVER_TOKEN", "from-the-env")
	cmd := (&app{}).serveCommand()
	if err := cmd.Flags().Parse([]string{"--token", "from-the-command-line"}); err != nil {
		t.Fatal(err)
	}
	if err := applyEnv(cmd); err != nil {
		t.Fatal(err)
	}
	if got := cmd.Flags().Lookup("server-token").Value.String(); got != "from-the-command-line" {
		t.Errorf("--token with BULKASSIGN_SERVER_TOKEN set: the token is %q, want the command line's", got)
	}
}

// commandPaths lists every command of the tree as its arguments, the
// root's first.
func commandPaths() [][]string {
	var paths [][]string
	walk((&app{}).rootCommand(), func(c *cobra.Command) {
		if c.Hidden {
			return
		}
		path := strings.Fields(c.CommandPath())[1:]
		paths = append(paths, path)
	})
	return append(paths, []string{"help"})
}

// TestHelpWidth: every command's --help fits in 100 columns, and every
// flag of a command with many is in a titled group.
func TestHelpWidth(t *testing.T) {
	t.Parallel()
	for _, path := range commandPaths() {
		t.Run(strings.Join(append([]string{"bulkassign"}, path...), " "), func(t *testing.T) {
			t.Parallel()
			res := runCLI(t, nil, append(slices.Clone(path), "--help")...)
			if res.code != exitOK || !strings.Contains(res.stdout, "Usage:") {
				t.Fatalf("exit %d (%v), stdout:\n%s", res.code, res.err, res.stdout)
			}
			for i, line := range strings.Split(res.stdout, "\n") {
				if n := utf8.RuneCountInString(line); n > helpWidth {
					t.Errorf("line %d is %d columns:\n%s", i+1, n, line)
				}
				if strings.HasSuffix(line, " ") {
					t.Errorf("line %d ends in a space: %q", i+1, line)
				}
			}
		})
	}

	res := runCLI(t, nil, "run", "--help")
	for _, group := range []string{"Input", "API", "Queue", "Worker", "Output", "Simulator"} {
		if !strings.Contains(res.stdout, "\n"+group+" flags:\n") {
			t.Errorf("run --help has no %s group:\n%s", group, res.stdout)
		}
	}
	// Only cobra's --help is left out of the groups.
	_, flags, _ := strings.Cut(res.stdout, "\nFlags:\n")
	if flags, _, _ = strings.Cut(flags, "\n\n"); !strings.HasPrefix(flags, "  -h, --help ") || strings.Count(flags, "--") != 1 {
		t.Errorf("run --help: ungrouped flags:\n%s", flags)
	}
	if !strings.Contains(res.stdout, "--api-key is BULKASSIGN_API_KEY") {
		t.Errorf("run --help does not name the env twins:\n%s", res.stdout)
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	for _, flag := range []string{"--version", "-v"} {
		res := runCLI(t, nil, flag)
		if res.code != exitOK || !regexp.MustCompile(`^bulkassign version \S+`).MatchString(res.stdout) {
			t.Errorf("%s: exit %d (%v), stdout %q", flag, res.code, res.err, res.stdout)
		}
	}
}

// TestCompletion: the scripts of each shell, and the completions they ask
// the binary for.
func TestCompletion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want []string // lines or fragments of stdout
	}{
		{args: []string{"completion", "bash"}, want: []string{"# bash completion V2 for bulkassign", "__start_bulkassign"}},
		{args: []string{"completion", "zsh"}, want: []string{"#compdef bulkassign"}},
		{args: []string{"completion", "fish"}, want: []string{"complete -c bulkassign"}},
		{args: []string{"__complete", "re"}, want: []string{"\nreport\t", "\nresume\t"}},
		{args: []string{"__complete", "run", "--max-"}, want: []string{"--max-attempts\t", "--max-retry-after\t"}},
		{args: []string{"__complete", "dlq", ""}, want: []string{"\nlist\t", "\nretry\t", "\nexport\t"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Parallel()
			res := runCLI(t, nil, tt.args...)
			if res.code != exitOK {
				t.Fatalf("exit %d (%v)", res.code, res.err)
			}
			for _, w := range tt.want {
				if !strings.Contains("\n"+res.stdout, w) {
					t.Errorf("stdout has no %q:\n%s", w, res.stdout)
				}
			}
		})
	}
}

// TestJSONOutput: batches, report and dlq list print JSON with --json or
// -o json, and batches keeps its table aligned.
func TestJSONOutput(t *testing.T) {
	t.Parallel()
	target := newRedisTarget(t)
	_, done := simRun(t, target, 4, "--name", "tab\there")
	// Every call fails with a 5xx: with one attempt, every row is
	// dead-lettered.
	failed, dead := simRun(t, target, 2, "--sim-transient", "1", "--sim-transient-attempts", "9", "--max-attempts", "1")
	if failed.code != exitPartial {
		t.Fatalf("run with failing calls: exit %d (%v), want 2", failed.code, failed.err)
	}

	for _, flag := range [][]string{{"--json"}, {"-o", "json"}, {"--output=json"}} {
		res := runCLI(t, nil, slices.Concat([]string{"batches"}, flag, target.flags())...)
		var got []batchJSON
		if err := json.Unmarshal([]byte(res.stdout), &got); res.code != exitOK || err != nil {
			t.Fatalf("batches %v: exit %d (%v), %v:\n%s", flag, res.code, res.err, err, res.stdout)
		}
		byID := map[string]batchJSON{}
		for _, b := range got {
			byID[b.ID] = b
		}
		if b := byID[done]; b.Status != jobs.BatchDone || b.Rows != 4 || b.Succeeded != 4 || b.Done != 4 || b.Name != "tab\there" || b.FinishedAt == nil {
			t.Errorf("batches %v: %s is %+v, want done, 4 of 4 succeeded", flag, done, b)
		}
		if b := byID[dead]; b.Failed != 2 || b.Errors == nil {
			t.Errorf("batches %v: %s is %+v, want 2 failed", flag, dead, b)
		}
	}

	// The table: every row's cells start where the header's do.
	res := runCLI(t, nil, slices.Concat([]string{"batches"}, target.flags())...)
	lines := strings.Split(strings.TrimSpace(res.stdout), "\n")
	if res.code != exitOK || len(lines) != 3 {
		t.Fatalf("batches: exit %d (%v):\n%s", res.code, res.err, res.stdout)
	}
	for _, col := range []string{"NAME", "STATUS", "DONE", "SUCCEEDED", "AGE"} {
		at := strings.Index(lines[0], col)
		for _, l := range lines[1:] {
			if len(l) <= at || l[at-1] != ' ' || (l[at] == ' ' && col != "NAME") {
				t.Errorf("batches: column %s (at %d) is not aligned:\n%s", col, at, res.stdout)
			}
		}
	}
	if !strings.Contains(res.stdout, " tab here ") {
		t.Errorf("batches: the tab in the name is not made a space:\n%s", res.stdout)
	}

	// report --json: summary.json's fields and the folder; the exit code stays.
	out := t.TempDir()
	res = runCLI(t, nil, slices.Concat([]string{"report", dead, "--json", "--out", out}, target.flags())...)
	var sum struct {
		BatchID   string `json:"batchId"`
		Failed    int64  `json:"failed"`
		ReportDir string `json:"reportDir"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &sum); err != nil || res.code != exitPartial {
		t.Fatalf("report --json: exit %d (%v), %v:\n%s", res.code, res.err, err, res.stdout)
	}
	if sum.BatchID != dead || sum.Failed != 2 || sum.ReportDir != filepath.Join(out, dead) {
		t.Errorf("report --json: %+v", sum)
	}

	// dlq list --json: the dead rows, in line order.
	res = runCLI(t, nil, slices.Concat([]string{"dlq", "list", dead, "-o", "json"}, target.flags())...)
	var rows []deadRowJSON
	if err := json.Unmarshal([]byte(res.stdout), &rows); err != nil || res.code != exitOK {
		t.Fatalf("dlq list --json: exit %d (%v), %v:\n%s", res.code, res.err, err, res.stdout)
	}
	if len(rows) != 2 || rows[0].Line != 2 || rows[1].Line != 3 || rows[0].Attempts != 1 || rows[0].Reason == "" {
		t.Errorf("dlq list --json: %+v, want lines 2 and 3 after 1 attempt", rows)
	}
	res = runCLI(t, nil, slices.Concat([]string{"dlq", "list", done, "--json"}, target.flags())...)
	if strings.TrimSpace(res.stdout) != "[]" {
		t.Errorf("dlq list --json of a batch without dead rows: exit %d (%v), %q, want []", res.code, res.err, res.stdout)
	}
	res = runCLI(t, nil, slices.Concat([]string{"dlq", "list", done}, target.flags())...)
	if res.code != exitOK || !strings.Contains(res.stdout, "has no dead-lettered rows") {
		t.Errorf("dlq list of a batch without dead rows: exit %d (%v), %q", res.code, res.err, res.stdout)
	}
}

func TestETA(t *testing.T) {
	t.Parallel()
	start := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		b      jobs.Batch
		now    time.Time
		want   time.Duration
		wantOK bool
	}{
		{name: "half done in a minute", b: jobs.Batch{Rows: 1000, Succeeded: 500, StartedAt: start}, now: start.Add(time.Minute), want: time.Minute, wantOK: true},
		{name: "invalid rows are done but not paced", b: jobs.Batch{Rows: 1000, Succeeded: 100, Invalid: 500, StartedAt: start}, now: start.Add(10 * time.Second), want: 40 * time.Second, wantOK: true},
		{name: "rounded to the second", b: jobs.Batch{Rows: 10, Succeeded: 3, StartedAt: start}, now: start.Add(time.Second), want: 2 * time.Second, wantOK: true},
		{name: "not started", b: jobs.Batch{Rows: 10}, now: start},
		{name: "nothing sent yet", b: jobs.Batch{Rows: 10, StartedAt: start}, now: start.Add(time.Minute)},
		{name: "all done", b: jobs.Batch{Rows: 10, Succeeded: 10, StartedAt: start}, now: start.Add(time.Minute)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := eta(tt.b, tt.now)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("eta() = %s, %t; want %s, %t", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestEditDistance(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"rate", "rate", 0}, {"rat", "rate", 1}, {"wiat", "wait", 2}, {"", "abc", 3}, {"kitten", "sitting", 3},
	} {
		if got := editDistance(tt.a, tt.b); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}
