package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/bulkassign/bulkassign/config"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// helpWidth is the widest line the help prints.
const helpWidth = 100

// The flag column of the help: flags wider than maxFlagColumn put their
// description on the lines below, indented by belowIndent.
const (
	maxFlagColumn = 34
	belowIndent   = 10
)

// writeHelp is every command's --help, on stdout: the description, then
// the usage.
func writeHelp(cmd *cobra.Command, _ []string) {
	w := cmd.OutOrStdout()
	text := cmd.Long
	if text == "" {
		text = cmd.Short
	}
	fmt.Fprintf(w, "%s\n\n", strings.TrimSpace(text))
	printUsage(w, cmd)
}

// writeUsage is the usage cobra prints on its own (after `help nosuch`).
func writeUsage(cmd *cobra.Command) error {
	printUsage(cmd.OutOrStderr(), cmd)
	return nil
}

func printUsage(w io.Writer, cmd *cobra.Command) {
	fmt.Fprintln(w, "Usage:")
	if cmd.HasAvailableSubCommands() {
		fmt.Fprintf(w, "  %s [command]\n", cmd.CommandPath())
	} else {
		fmt.Fprintf(w, "  %s\n", cmd.UseLine())
	}
	if cmd.Example != "" {
		fmt.Fprintf(w, "\nExamples:\n%s\n", strings.TrimRight(cmd.Example, "\n"))
	}
	printCommands(w, cmd)
	printFlags(w, cmd)
	if cmd.HasAvailableSubCommands() {
		fmt.Fprintf(w, "\nRun \"%s [command] --help\" for more about a command.\n", cmd.CommandPath())
	}
}

// printCommands lists the subcommands of cmd by group.
func printCommands(w io.Writer, cmd *cobra.Command) {
	var subs []*cobra.Command
	pad := 0
	for _, c := range cmd.Commands() {
		if c.IsAvailableCommand() || c.Name() == "help" {
			subs = append(subs, c)
			pad = max(pad, len(c.Name()))
		}
	}
	list := func(title, id string) {
		first := true
		for _, c := range subs {
			if c.GroupID != id {
				continue
			}
			if first {
				fmt.Fprintf(w, "\n%s\n", title)
				first = false
			}
			fmt.Fprintf(w, "  %-*s  %s\n", pad, c.Name(), c.Short)
		}
	}
	for _, g := range cmd.Groups() {
		list(g.Title, g.ID)
	}
	if len(cmd.Groups()) > 0 {
		list("Other commands:", "")
	} else {
		list("Commands:", "")
	}
}

// printFlags writes the flags of cmd by their flagGroup, the groups in the
// order of their first flag; flags of no group come under "Flags:". A line
// at the end names the environment twin of one of the command's own flags:
// --api-key's if it has one.
func printFlags(w io.Writer, cmd *cobra.Command) {
	cmd.InheritedFlags() // merges the parents' persistent flags into Flags()
	var titles []string
	groups := map[string][]*pflag.Flag{}
	example := ""
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		title := "Flags:"
		if g := f.Annotations[groupAnnotation]; len(g) > 0 {
			title = g[0] + " flags:"
			if example == "" {
				example = f.Name
			}
		}
		if _, seen := groups[title]; !seen {
			titles = append(titles, title)
		}
		groups[title] = append(groups[title], f)
	})
	col := 0
	for _, fs := range groups {
		for _, f := range fs {
			if n := len(flagLeft(f)); n <= maxFlagColumn {
				col = max(col, n)
			}
		}
	}
	col += 2
	for _, title := range titles {
		fmt.Fprintf(w, "\n%s\n", title)
		for _, f := range groups[title] {
			printFlag(w, f, col)
		}
	}
	for _, name := range []string{"redis", "api-key"} {
		if cmd.Flags().Lookup(name) != nil {
			example = name
		}
	}
	if example != "" {
		lines, _ := wrap(fmt.Sprintf("Each flag has an environment twin: --%s is %s; the command line wins.",
			example, config.EnvName(example)), helpWidth)
		fmt.Fprintf(w, "\n%s\n", strings.Join(lines, "\n"))
	}
}

// flagLeft is the flag column of f: "  -o, --output FORMAT".
func flagLeft(f *pflag.Flag) string {
	s := "      --" + f.Name
	if f.Shorthand != "" {
		s = "  -" + f.Shorthand + ", --" + f.Name
	}
	if name, _ := pflag.UnquoteUsage(f); name != "" {
		s += " " + name
	}
	return s
}

// printFlag writes f with its description beside it in column col,
// wrapped to helpWidth; below it when the flag is wider than the column
// or a word of the description does not fit beside it.
func printFlag(w io.Writer, f *pflag.Flag, col int) {
	left := flagLeft(f)
	_, desc := pflag.UnquoteUsage(f)
	if d := defaultText(f); d != "" {
		desc += " (default " + d + ")"
	}
	if lines, ok := wrap(desc, helpWidth-col); ok && len(left) < col {
		for i, l := range lines {
			if i == 0 {
				fmt.Fprintf(w, "%-*s%s\n", col, left, l)
			} else {
				fmt.Fprintf(w, "%*s%s\n", col, "", l)
			}
		}
		return
	}
	fmt.Fprintln(w, left)
	lines, _ := wrap(desc, helpWidth-belowIndent)
	for _, l := range lines {
		fmt.Fprintf(w, "%*s%s\n", belowIndent, "", l)
	}
}

// defaultText is f's default as the help shows it; "" for a zero value.
func defaultText(f *pflag.Flag) string {
	if f.Value.Type() == "string" {
		if f.DefValue == "" {
			return ""
		}
		return fmt.Sprintf("%q", f.DefValue)
	}
	switch f.DefValue {
	case "", "0", "0s", "false", "[]":
		return ""
	}
	return f.DefValue
}

// wrap breaks s into lines of at most width runes at spaces; ok is false
// when a word is wider than width.
func wrap(s string, width int) (lines []string, ok bool) {
	ok = true
	line := ""
	for _, word := range strings.Fields(s) {
		if len([]rune(word)) > width {
			ok = false
		}
		switch {
		case line == "":
			line = word
		case len([]rune(line))+1+len([]rune(word)) <= width:
			line += " " + word
		default:
			lines = append(lines, line)
			line = word
		}
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines, ok
}
