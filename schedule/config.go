// Package schedule runs territory plans on a timetable: it reads the
// schedule file, registers its entries with asynq's Scheduler, and turns
// each tick into a normal batch (plan -> CSV -> importer), with at most one
// run of a schedule going at a time and one batch per tick however many
// schedulers fire it.
//
// It imports both planner and importer, which the worker may not: the
// command wires its Runner into the worker's mux.
package schedule

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/notify"
	"github.com/robfig/cron/v3"
	"go.yaml.in/yaml/v3"
)

// Entry is one schedule of the file.
type Entry struct {
	// Name identifies the schedule: its batches are "<Name> <tick>" and its
	// Redis keys are under NS:schedule:<Name>.
	Name string
	// Cron is the spec as written: five fields, or a descriptor such as
	// @daily or @every 1h.
	Cron string
	// Contacts and Rules are the plan's input files, absolute.
	Contacts, Rules string
	// Timezone is the IANA zone Cron is read in; "" is UTC.
	Timezone string
	// Live reads the contacts' current agents from the CRM at each tick
	// instead of trusting the contacts file's.
	Live bool
	// RecordPrevious gives each tick's batch a rollback.csv in its report.
	RecordPrevious bool
	// Notify is where each tick's batch announces its end, and where a
	// tick held up by a paused batch is announced (package notify); ""
	// for nowhere. NotifyFormat is json or slack (notify.ParseTarget).
	Notify, NotifyFormat string
	// Line is where the entry starts in the file.
	Line int
}

// Payload is the task payload of the entry's ticks; ids is the rule of
// its files' ids.
func (e Entry) Payload(ids jobs.IDFormat) jobs.PlanPayload {
	return jobs.PlanPayload{Name: e.Name, Contacts: e.Contacts, Rules: e.Rules, Timezone: e.Timezone, IDFormat: ids,
		Live: e.Live, RecordPrevious: e.RecordPrevious, Notify: e.Notify, NotifyFormat: e.NotifyFormat}
}

// Spec is the cron spec as asynq's Scheduler (robfig/cron) takes it, with
// the entry's zone as a CRON_TZ prefix.
func (e Entry) Spec() string {
	if e.Timezone == "" {
		return e.Cron
	}
	return "CRON_TZ=" + e.Timezone + " " + e.Cron
}

// Config is a schedule file, validated.
type Config struct {
	// File names the file in messages.
	File    string
	Entries []Entry
}

// Entry returns the entry called name.
func (c *Config) Entry(name string) (Entry, bool) {
	for _, e := range c.Entries {
		if e.Name == name {
			return e, true
		}
	}
	return Entry{}, false
}

// Names lists the entries' names in file order.
func (c *Config) Names() []string {
	names := make([]string, len(c.Entries))
	for i, e := range c.Entries {
		names[i] = e.Name
	}
	return names
}

// ConfigError is a problem with the schedule file: the file, the line,
// the entry when the problem is in one, and what is wrong.
type ConfigError struct {
	File  string
	Line  int
	Entry string // `schedule 2 "nightly"`, or ""
	Err   error
}

// Error returns "FILE: line N: schedule E: problem", leaving out what is
// unknown.
func (e *ConfigError) Error() string {
	s := e.File
	if e.Line > 0 {
		s += fmt.Sprintf(": line %d", e.Line)
	}
	if e.Entry != "" {
		s += ": " + e.Entry
	}
	return s + ": " + e.Err.Error()
}

// Unwrap returns the underlying problem.
func (e *ConfigError) Unwrap() error { return e.Err }

// cronParser reads specs as asynq's Scheduler does (robfig/cron's default
// parser: five fields or a descriptor, CRON_TZ prefix allowed).
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// nameRE keeps names safe in a Redis key, a batch name and a log line.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)

const maxConfigBytes = 1 << 20

type fileYAML struct {
	Schedules []entryYAML `yaml:"schedules"`
}

type entryYAML struct {
	Name     string `yaml:"name"`
	Cron     string `yaml:"cron"`
	Contacts string `yaml:"contacts"`
	Rules    string `yaml:"rules"`
	Timezone string `yaml:"timezone"`
	Live     bool   `yaml:"live"`
	// RecordPrevious is the schedule's --record-previous.
	RecordPrevious bool `yaml:"recordPrevious"`
	// Notify and NotifyFormat are the schedule's --notify and
	// --notify-format.
	Notify       string `yaml:"notify"`
	NotifyFormat string `yaml:"notifyFormat"`
}

// LoadFile reads and validates the schedule file at path. Relative
// contacts and rules paths are taken from the file's folder.
func LoadFile(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &ConfigError{File: path, Err: fmt.Errorf("open: %w", err)}
	}
	defer f.Close()
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, &ConfigError{File: path, Err: err}
	}
	return Load(f, path, filepath.Dir(abs))
}

// Load reads and validates a schedule file; file names it in messages and
// dir is the folder relative contacts and rules paths start from. Every
// problem found is returned, each as a *ConfigError, joined.
func Load(r io.Reader, file, dir string) (*Config, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxConfigBytes+1))
	if err != nil {
		return nil, &ConfigError{File: file, Err: fmt.Errorf("read: %w", err)}
	}
	if len(data) > maxConfigBytes {
		return nil, &ConfigError{File: file, Err: errors.New("longer than 1 MiB: this is not a schedule file")}
	}
	var raw fileYAML
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := decode(dec, &raw); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &ConfigError{File: file, Err: errors.New("empty file: want `schedules:` with at least one entry")}
		}
		return nil, yamlError(file, data, err)
	}
	if err := decode(dec, new(yaml.Node)); !errors.Is(err, io.EOF) {
		return nil, &ConfigError{File: file, Err: errors.New("more than one YAML document (---): put every schedule in one")}
	}
	var root yaml.Node
	_ = yaml.Unmarshal(data, &root) // decoded above already: only for line numbers
	lines := entryLines(&root)

	if len(raw.Schedules) == 0 {
		return nil, &ConfigError{File: file, Err: errors.New("no schedules: want `schedules:` with at least one entry")}
	}
	cfg := &Config{File: file}
	var errs []error
	seen := map[string]int{}
	for i, y := range raw.Schedules {
		line := 0
		if i < len(lines) {
			line = lines[i]
		}
		label := fmt.Sprintf("schedule %d", i+1)
		if y.Name != "" {
			label += fmt.Sprintf(" %q", y.Name)
		}
		fail := func(format string, args ...any) {
			errs = append(errs, &ConfigError{File: file, Line: line, Entry: label, Err: fmt.Errorf(format, args...)})
		}
		e := Entry{Name: y.Name, Cron: y.Cron, Timezone: y.Timezone, Live: y.Live, RecordPrevious: y.RecordPrevious, Line: line}
		switch {
		case y.Notify != "":
			// ParseTarget's messages name the flags; these name the fields.
			if f := y.NotifyFormat; f != "" && f != notify.FormatJSON && f != notify.FormatSlack {
				fail("notifyFormat %q: want json or slack", f)
				break
			}
			t, err := notify.ParseTarget(y.Notify, y.NotifyFormat)
			if err != nil {
				fail("notify %s: want an http:// or https:// URL", notify.Redact(y.Notify))
				break
			}
			e.Notify, e.NotifyFormat = t.URL, t.Format
		case y.NotifyFormat != "":
			fail("notifyFormat without notify: give notify, the URL to post to")
		}
		switch {
		case y.Name == "":
			fail("no name")
		case !nameRE.MatchString(y.Name):
			fail("name %q: use 1-100 letters, digits, '.', '-' or '_', starting with a letter or digit", y.Name)
		case seen[y.Name] > 0:
			fail("name %q is used by the entry on line %d too", y.Name, seen[y.Name])
		default:
			seen[y.Name] = line
		}
		if y.Timezone != "" {
			if _, err := time.LoadLocation(y.Timezone); err != nil {
				fail("timezone %q: want an IANA zone such as America/Santiago (%v)", y.Timezone, err)
				e.Timezone = ""
			}
		}
		if y.Cron == "" {
			fail(`no cron: want a spec such as "0 2 * * *", "@daily" or "@every 1h"`)
		} else if _, err := cronParser.Parse(e.Spec()); err != nil {
			fail("cron %q: %v (want five fields, minute hour day-of-month month day-of-week, or @daily, @every 1h, ...)", y.Cron, err)
		}
		for _, f := range []struct {
			what string
			path *string
			v    string
		}{{"contacts", &e.Contacts, y.Contacts}, {"rules", &e.Rules, y.Rules}} {
			switch {
			case f.v == "":
				fail("no %s file", f.what)
			case f.v == "-":
				fail("%s: a schedule reads files, not stdin", f.what)
			case filepath.IsAbs(f.v):
				*f.path = filepath.Clean(f.v)
			default:
				*f.path = filepath.Join(dir, f.v)
			}
		}
		cfg.Entries = append(cfg.Entries, e)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return cfg, nil
}

var (
	yamlLine  = regexp.MustCompile(`^line (\d+): (.*)$`)
	yamlTypes = regexp.MustCompile(` in type [][*\w.]+`)
	goTypes   = strings.NewReplacer(
		"[]schedule.entryYAML", "a list of schedules",
		"schedule.entryYAML", "a schedule (a mapping)",
		"schedule.fileYAML", "a schedule file (a mapping with schedules)",
	)
)

const fieldsHint = "(a schedule file has schedules; an entry has name, cron, contacts, rules, timezone, live, recordPrevious, notify and notifyFormat)"

// yamlError turns the YAML library's error into one *ConfigError per
// problem, naming the entry it is in and without Go type names.
func yamlError(file string, data []byte, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return &ConfigError{File: file, Err: fmt.Errorf("%s %s", strings.TrimPrefix(err.Error(), "yaml: "), fieldsHint)}
	}
	var root yaml.Node
	_ = yaml.Unmarshal(data, &root)
	starts := entryLines(&root)
	var errs []error
	for _, msg := range te.Errors {
		ce := &ConfigError{File: file}
		if m := yamlLine.FindStringSubmatch(msg); m != nil {
			ce.Line, _ = strconv.Atoi(m[1])
			msg = m[2]
			for i, l := range starts {
				if l <= ce.Line {
					ce.Entry = fmt.Sprintf("schedule %d", i+1)
				}
			}
		}
		ce.Err = fmt.Errorf("%s %s", goTypes.Replace(yamlTypes.ReplaceAllString(msg, "")), fieldsHint)
		errs = append(errs, ce)
	}
	return errors.Join(errs...)
}

// decode decodes the next document, and turns a panic of the YAML library
// on a hostile input into an error.
func decode(dec *yaml.Decoder, v any) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("unreadable YAML: %v", p)
		}
	}()
	return dec.Decode(v)
}

// entryLines finds where each entry starts in the file.
func entryLines(root *yaml.Node) []int {
	if root.Kind != yaml.DocumentNode || len(root.Content) == 0 || root.Content[0].Kind != yaml.MappingNode {
		return nil
	}
	m := root.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value != "schedules" || m.Content[i+1].Kind != yaml.SequenceNode {
			continue
		}
		var lines []int
		for _, e := range m.Content[i+1].Content {
			lines = append(lines, e.Line)
		}
		return lines
	}
	return nil
}

// interval is the time between two activations of spec after now, the
// period of a regular schedule.
func interval(spec string, now time.Time) time.Duration {
	s, err := cronParser.Parse(spec)
	if err != nil {
		return 0
	}
	a := s.Next(now)
	return s.Next(a).Sub(a)
}
