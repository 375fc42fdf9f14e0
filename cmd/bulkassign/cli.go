package main

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/bulkassign/bulkassign/config"
	"github.com/bulkassign/bulkassign/jobs"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// The command groups of the root help.
const (
	groupBatches  = "batches"
	groupPlanning = "planning"
	groupServices = "services"
)

// rootCommand builds the command tree. A command is one constructor,
// a.xxxCommand() returning a *cobra.Command, added here under a group; it
// registers its flags with flagGroup and reads its settings in RunE. The
// root applies the flags' environment twins before any RunE runs, so a
// command must not set a PersistentPreRun of its own.
func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "bulkassign",
		Short: "apply bulk contact→agent assignments through the CRM API",
		Long: `bulkassign applies bulk contact→agent assignments through the CRM API: it
validates a file, queues each contact's rows on Redis, applies them with
rate-limited workers and writes a report for every batch.

Try it without a CRM, a key or Redis: bulkassign run --simulate`,
		Version:       version(),
		SilenceErrors: true, // main prints the error
		SilenceUsage:  true, // an error names the problem; --help shows the rest
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return applyEnv(cmd)
		},
	}
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.SetHelpFunc(writeHelp)
	root.SetUsageFunc(writeUsage)
	root.SetFlagErrorFunc(flagError)
	root.AddGroup(
		&cobra.Group{ID: groupBatches, Title: "Batches:"},
		&cobra.Group{ID: groupPlanning, Title: "Territory planning:"},
		&cobra.Group{ID: groupServices, Title: "Services:"},
	)
	addCommands(root, groupBatches,
		a.runCommand(),
		a.importCommand(),
		a.reportCommand(),
		a.verifyCommand(),
		a.batchesCommand(),
		a.controlCommand("pause", "hold a batch: workers leave its rows alone until resumed", jobs.BatchPaused),
		a.controlCommand("resume", "let workers take a paused batch again", jobs.BatchRunning),
		a.controlCommand("cancel", "stop a batch for good: rows not yet sent are reported as not processed", jobs.BatchCancelled),
		a.deleteCommand(),
		a.dlqCommand(),
	)
	addCommands(root, groupPlanning, a.planCommand(), a.scheduleCommand())
	addCommands(root, groupServices, a.workerCommand(), a.serveCommand(), a.simulateCommand(), a.healthcheckCommand())
	root.InitDefaultCompletionCmd() // now, so that the walk below sees it
	walk(root, func(c *cobra.Command) {
		// Help lists flags in the order they were registered.
		c.Flags().SortFlags = false
		c.PersistentFlags().SortFlags = false
		if c.HasSubCommands() && !c.Runnable() {
			c.SuggestionsMinimumDistance = 2
			c.Args = knownSubcommand
			c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
		}
	})
	return root
}

// addCommands adds cmds to parent under the help group id.
func addCommands(parent *cobra.Command, id string, cmds ...*cobra.Command) {
	for _, c := range cmds {
		c.GroupID = id
	}
	parent.AddCommand(cmds...)
}

// walk calls fn for c and every command below it.
func walk(c *cobra.Command, fn func(*cobra.Command)) {
	fn(c)
	for _, sub := range c.Commands() {
		walk(sub, fn)
	}
}

// knownSubcommand refuses an argument to a command that only groups
// others: `bulkassign nosuch` is a typo, not a request for help.
func knownSubcommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "; did you mean " + orList(s, "") + "?"
	}
	return errors.New(msg + seeHelp(cmd))
}

// flagError adds a suggestion and a pointer to the help to a flag that
// does not parse.
func flagError(cmd *cobra.Command, err error) error {
	var unknown *pflag.NotExistError
	if errors.As(err, &unknown) && unknown.GetSpecifiedShortnames() == "" {
		if s := similarFlags(cmd, unknown.GetSpecifiedName()); len(s) > 0 {
			return fmt.Errorf("%w; did you mean %s?%s", err, orList(s, "--"), seeHelp(cmd))
		}
	}
	return fmt.Errorf("%w%s", err, seeHelp(cmd))
}

func seeHelp(cmd *cobra.Command) string {
	return fmt.Sprintf(" (see %s --help)", cmd.CommandPath())
}

// orList writes names as `--a`, `--a or --b`, or `--a, --b or --c`.
func orList(names []string, prefix string) string {
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = prefix + n
	}
	if len(quoted) == 1 {
		return quoted[0]
	}
	return strings.Join(quoted[:len(quoted)-1], ", ") + " or " + quoted[len(quoted)-1]
}

// similarFlags returns up to three flags of cmd that the mistyped name
// may have meant: those it begins, else the closest within two edits.
func similarFlags(cmd *cobra.Command, typed string) []string {
	typed = strings.ToLower(typed)
	var best, prefixed []string
	bestDist := 3
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		switch d := editDistance(typed, f.Name); {
		case d < bestDist:
			best, bestDist = []string{f.Name}, d
		case d == bestDist:
			best = append(best, f.Name)
		}
		if len(typed) >= 3 && strings.HasPrefix(f.Name, typed) {
			prefixed = append(prefixed, f.Name)
		}
	})
	if prefixed != nil {
		best = prefixed
	}
	return best[:min(len(best), 3)]
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// applyEnv sets the flags of cmd that the command line left unset from
// their BULKASSIGN_* twins; cobra's own --help and --version have none.
func applyEnv(cmd *cobra.Command) error {
	fs := pflag.NewFlagSet(cmd.Name(), pflag.ContinueOnError)
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if _, cobras := f.Annotations[cobra.FlagSetByCobraAnnotation]; !cobras {
			fs.AddFlag(f)
		}
	})
	return config.ApplyEnv(fs, os.LookupEnv)
}

// version is the module version the binary was built from, with its
// commit when the build recorded one; "devel" when unknown.
func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	v := info.Main.Version
	if v == "" || v == "(devel)" {
		v = "devel"
	}
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value[:min(len(s.Value), 12)]
		case "vcs.modified":
			if s.Value == "true" {
				modified = ", modified"
			}
		}
	}
	if rev != "" && !strings.Contains(v, rev) {
		v += " (" + rev + modified + ")"
	}
	return v
}

// flagGroup registers the flags that register adds on fs (a command's
// Flags(), or PersistentFlags() for flags its subcommands share) and files
// them under title in the help: "API" shows as "API flags:".
func flagGroup(fs *pflag.FlagSet, title string, register func(*pflag.FlagSet)) {
	group := pflag.NewFlagSet(title, pflag.ContinueOnError)
	group.SortFlags = false
	register(group)
	group.VisitAll(func(f *pflag.Flag) {
		_ = group.SetAnnotation(f.Name, groupAnnotation, []string{title})
	})
	fs.AddFlagSet(group)
}

// groupAnnotation is the flag annotation that holds its help group.
const groupAnnotation = "bulkassign_help_group"

// The flag groups of the help.
const (
	groupInput     = "Input"
	groupAPI       = "API"
	groupQueue     = "Queue"
	groupWorker    = "Worker"
	groupOutput    = "Output"
	groupSimulator = "Simulator"
)

// outputFlags are --output and --json, of commands that print data.
type outputFlags struct {
	format string
	json   bool
}

// registerOutputFlags adds -o/--output and --json to fs.
func registerOutputFlags(fs *pflag.FlagSet) *outputFlags {
	o := &outputFlags{}
	fs.StringVarP(&o.format, "output", "o", "table", "`FORMAT` of what is printed on stdout: table or json")
	fs.BoolVar(&o.json, "json", false, "print JSON on stdout: the same as -o json")
	return o
}

// isJSON says whether JSON was asked for.
func (o *outputFlags) isJSON() (bool, error) {
	if !slices.Contains([]string{"table", "json"}, o.format) {
		return false, fmt.Errorf("--output %q: want table or json", o.format)
	}
	return o.json || o.format == "json", nil
}
