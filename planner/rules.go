package planner

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/bulkassign/bulkassign/jobs"
)

// Rules is a territory rules file, validated: ordered rules, the fallback
// member and the share of the planned contacts above which one member's
// load is flagged.
type Rules struct {
	// File names the rules file in messages.
	File string
	// Rules in file order: the first rule that matches a contact wins.
	Rules []Rule
	// Fallback takes the contacts that match no rule and those a full pool
	// cannot hold; "" leaves them unassigned.
	Fallback string
	// FallbackEmail is the fallback as the file names it by email, until
	// Check resolves it into Fallback; FallbackLine is its line.
	FallbackEmail string
	FallbackLine  int
	// MaxShare, between 0 and 1, is the share of the contacts a member may
	// own after the plan before it draws a warning; 0 means no warning.
	MaxShare float64

	ids jobs.IDFormat // the rule of member ids, for Check
}

// Rule maps the contacts it matches to a pool of members.
type Rule struct {
	// Name identifies the rule in messages and in the plan's rule column.
	Name string
	// Line is where the rule starts in the rules file.
	Line int
	// Regions and Segments, trimmed and lower-case, are the values the rule
	// matches; an empty list matches any value. A contact must match both.
	Regions, Segments []string
	// Pool is the members that share the rule's contacts, in file order.
	Pool []PoolMember

	label string // `rule 2 "north"`, for messages
}

// PoolMember is one member of a rule's pool.
type PoolMember struct {
	// Member is the team member id, lower-case. A member the file names by
	// email has it once Check has found the email in the member list.
	Member string
	// Email is the member's email, lower-case, when the file names the
	// member by email ("" when by id).
	Email string
	// Line is the pool entry's line in the rules file.
	Line int
	// Weight is the member's relative share of the rule's contacts (1 or more).
	Weight int
	// Cap bounds how many of this rule's contacts the member gets; 0 means
	// no bound. It counts this rule's contacts only.
	Cap int
}

// catchAll reports whether r matches every contact.
func (r Rule) catchAll() bool { return len(r.Regions) == 0 && len(r.Segments) == 0 }

// Limits of a rules file.
const (
	maxRulesBytes = 1 << 20
	maxWeight     = 1_000_000
	maxCap        = 1_000_000_000
	maxNameLen    = 200
)

// The YAML shapes. Unknown fields are rejected (yaml KnownFields).
type rulesYAML struct {
	Rules    []ruleYAML `yaml:"rules"`
	Fallback string     `yaml:"fallback"`
	MaxShare *float64   `yaml:"maxShare"`
}

type ruleYAML struct {
	Name  string     `yaml:"name"`
	Match matchYAML  `yaml:"match"`
	Pool  []poolYAML `yaml:"pool"`
}

type matchYAML struct {
	Region  stringList `yaml:"region"`
	Segment stringList `yaml:"segment"`
}

// Weight and cap are read as numbers and checked to be whole: yaml
// would read 1.5 into an int as 1 without a word.
type poolYAML struct {
	Member string   `yaml:"member"`
	Weight *float64 `yaml:"weight"`
	Cap    *float64 `yaml:"cap"`
}

// stringList is a YAML sequence of strings, or one string.
type stringList []string

// UnmarshalYAML reads `region: north` as well as `region: [north, south]`.
func (l *stringList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		var s string
		if err := n.Decode(&s); err != nil {
			return err
		}
		*l = stringList{s}
		return nil
	}
	var ss []string
	if err := n.Decode(&ss); err != nil {
		return err
	}
	*l = ss
	return nil
}

// yamlTypeName is the Go type yaml names in its messages, which mean
// nothing to whoever wrote the file; yamlTypes says them in the file's
// terms.
var (
	yamlTypeName = regexp.MustCompile(` in type [][*\w.]+`)
	yamlTypes    = strings.NewReplacer(
		"[]planner.ruleYAML", "a list of rules",
		"planner.rulesYAML", "a rules file (a mapping with rules, fallback, maxShare)",
		"planner.ruleYAML", "a rule (a mapping with name, match, pool)",
		"planner.matchYAML", "match (a mapping with region, segment)",
		"[]planner.poolYAML", "a pool (a list of members)",
		"planner.poolYAML", "a pool entry (a mapping with member, weight, cap)",
		"planner.stringList", "a list of values",
		"float64", "a number",
	)
)

const fieldsHint = "(a rules file has rules, fallback and maxShare; a rule has name, match and pool; match has region and segment; a pool entry has member, weight and cap)"

// ParseRules reads and validates a rules file; file names it in messages.
// Member ids (the pools' and the fallback) must follow the rule ids. Every
// problem found is returned, each as a *FileError, joined.
func ParseRules(r io.Reader, file string, ids jobs.IDFormat) (*Rules, error) {
	name := displayName(file)
	data, err := io.ReadAll(io.LimitReader(r, maxRulesBytes+1))
	if err != nil {
		return nil, &FileError{File: name, Err: fmt.Errorf("read: %w", err)}
	}
	if len(data) > maxRulesBytes {
		return nil, &FileError{File: name, Err: errors.New("longer than 1 MiB: this is not a rules file")}
	}
	var raw rulesYAML
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := decodeYAML(dec, &raw); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &FileError{File: name, Err: errors.New("empty file: want `rules:` with at least one rule")}
		}
		return nil, yamlError(name, err)
	}
	if err := decodeYAML(dec, new(yaml.Node)); !errors.Is(err, io.EOF) {
		return nil, &FileError{File: name, Err: errors.New("more than one YAML document (---): put every rule in one")}
	}
	var root yaml.Node
	_ = yaml.Unmarshal(data, &root) // decoded above already: only for line numbers
	ruleLines, poolLines := lines(&root)
	rs, err := validate(name, ids, raw, ruleLines, poolLines)
	if rs != nil && root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		if n := mapValue(root.Content[0], "fallback"); n != nil {
			rs.FallbackLine = n.Line
		}
	}
	return rs, err
}

// decodeYAML decodes the next document, and turns a panic of the YAML
// library on a hostile input into an error.
func decodeYAML(dec *yaml.Decoder, v any) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("unreadable YAML: %v", p)
		}
	}()
	return dec.Decode(v)
}

// yamlError turns the YAML library's error into one *FileError per
// problem, without Go type names.
func yamlError(name string, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		msg := yamlTypes.Replace(strings.TrimPrefix(err.Error(), "yaml: "))
		return &FileError{File: name, Err: errors.New(msg)}
	}
	var errs []error
	hint := false
	for _, e := range te.Errors {
		msg := yamlTypes.Replace(yamlTypeName.ReplaceAllString(e, ""))
		if strings.Contains(msg, "not found") && !hint {
			msg += " " + fieldsHint
			hint = true
		}
		errs = append(errs, &FileError{File: name, Err: errors.New(msg)})
	}
	return errors.Join(errs...)
}

// lines finds where each rule and each pool entry starts in the file.
func lines(root *yaml.Node) (rules []int, pools [][]int) {
	if root.Kind != yaml.DocumentNode || len(root.Content) == 0 {
		return nil, nil
	}
	rs := mapValue(root.Content[0], "rules")
	if rs == nil || rs.Kind != yaml.SequenceNode {
		return nil, nil
	}
	for _, r := range rs.Content {
		rules = append(rules, r.Line)
		var pl []int
		if p := mapValue(r, "pool"); p != nil && p.Kind == yaml.SequenceNode {
			for _, e := range p.Content {
				pl = append(pl, e.Line)
			}
		}
		pools = append(pools, pl)
	}
	return rules, pools
}

func mapValue(m *yaml.Node, key string) *yaml.Node {
	if m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// at returns s[i], or 0 when there is none.
func at(s []int, i int) int {
	if i < len(s) {
		return s[i]
	}
	return 0
}

// validate checks the decoded file and builds Rules.
func validate(name string, ids jobs.IDFormat, raw rulesYAML, ruleLines []int, poolLines [][]int) (*Rules, error) {
	var errs []error
	fail := func(line int, rule string, format string, args ...any) {
		errs = append(errs, &FileError{File: name, Line: line, Rule: rule, Err: fmt.Errorf(format, args...)})
	}
	rs := &Rules{File: name, ids: ids}

	rs.Fallback = strings.ToLower(strings.TrimSpace(raw.Fallback))
	switch {
	case strings.Contains(rs.Fallback, "@"):
		rs.FallbackEmail, rs.Fallback = rs.Fallback, ""
		if why := badEmail(rs.FallbackEmail); why != "" {
			fail(0, "", "fallback %q is not an email address: %s", clip(raw.Fallback), why)
		}
	case raw.Fallback != "" && !ids.Valid(rs.Fallback):
		fail(0, "", "fallback %q is not a valid member id: want %s", clip(raw.Fallback), ids.Want())
	}
	if raw.MaxShare != nil {
		s := *raw.MaxShare
		if math.IsNaN(s) || s < 0 || s > 1 {
			fail(0, "", "maxShare %v: want a share between 0 and 1 (0.4 warns above 40%%; 0 never warns)", s)
		} else {
			rs.MaxShare = s
		}
	}
	if len(raw.Rules) == 0 {
		fail(0, "", "no rules: want `rules:` with at least one rule (name, match, pool)")
	}

	names := map[string]int{} // lower-case name -> 1-based rule number
	catchAll := 0             // the first rule that matches everything
	for i, ry := range raw.Rules {
		line := at(ruleLines, i)
		label := fmt.Sprintf("rule %d", i+1)
		r := Rule{Name: strings.TrimSpace(ry.Name), Line: line}
		switch {
		case r.Name == "":
			fail(line, label, "no name: give every rule a name (it goes in the plan's rule column)")
		case len(r.Name) > maxNameLen || strings.ContainsAny(r.Name, "\r\n"):
			fail(line, label, "name: want one line of at most %d characters", maxNameLen)
			r.Name = ""
		default:
			label = fmt.Sprintf("rule %d %q", i+1, r.Name)
			if prev, dup := names[strings.ToLower(r.Name)]; dup {
				fail(line, label, "the name is taken by rule %d: names must differ", prev)
			}
			names[strings.ToLower(r.Name)] = i + 1
		}
		var ok bool
		if r.Regions, ok = matchValues(ry.Match.Region); !ok {
			fail(line, label, "match.region has an empty value")
		}
		if r.Segments, ok = matchValues(ry.Match.Segment); !ok {
			fail(line, label, "match.segment has an empty value")
		}
		if catchAll > 0 {
			fail(line, label, "is never used: rule %d before it matches every contact (move the catch-all rule last)", catchAll)
		} else if r.catchAll() {
			catchAll = i + 1
		}
		if len(ry.Pool) == 0 {
			fail(line, label, "empty pool: list at least one member")
		}
		seen := map[string]int{}
		for j, py := range ry.Pool {
			pline := at(at2(poolLines, i), j)
			if pline == 0 {
				pline = line
			}
			where := fmt.Sprintf("pool entry %d", j+1)
			m := PoolMember{Member: strings.ToLower(strings.TrimSpace(py.Member)), Weight: 1, Line: pline}
			if strings.Contains(m.Member, "@") {
				m.Email, m.Member = m.Member, ""
			}
			switch {
			case py.Member == "":
				fail(pline, label, "%s: no member id or email", where)
			case m.Email != "" && badEmail(m.Email) != "":
				fail(pline, label, "%s: member %q is not an email address: %s", where, clip(py.Member), badEmail(m.Email))
			case m.Email == "" && !ids.Valid(m.Member):
				fail(pline, label, "%s: member %q is not a valid id: want %s", where, clip(py.Member), ids.Want())
			default:
				key := m.Member + m.Email
				where = fmt.Sprintf("member %s", key)
				if prev, dup := seen[key]; dup {
					fail(pline, label, "%s is in the pool twice (entries %d and %d)", where, prev, j+1)
				}
				seen[key] = j + 1
			}
			if py.Weight != nil {
				w := *py.Weight
				if w != math.Trunc(w) || w < 1 || w > maxWeight {
					fail(pline, label, "%s: weight %v: want a whole number from 1 to %d (leave it out for 1; for 1.5:1 write 3 and 2)", where, w, maxWeight)
				} else {
					m.Weight = int(w)
				}
			}
			if py.Cap != nil {
				c := *py.Cap
				if c != math.Trunc(c) || c < 0 || c > maxCap {
					fail(pline, label, "%s: cap %v: want a whole number from 0 (no cap) to %d", where, c, maxCap)
				} else {
					m.Cap = int(c)
				}
			}
			r.Pool = append(r.Pool, m)
		}
		r.label = label
		rs.Rules = append(rs.Rules, r)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return rs, nil
}

func at2(s [][]int, i int) []int {
	if i < len(s) {
		return s[i]
	}
	return nil
}

// matchValues trims and lower-cases a match list; ok is false if a value
// is empty.
func matchValues(l stringList) (vals []string, ok bool) {
	ok = true
	for _, v := range l {
		v = strings.ToLower(strings.TrimSpace(v))
		if v == "" {
			ok = false
			continue
		}
		vals = append(vals, v)
	}
	return vals, ok
}

// clip shortens a value quoted in a message.
func clip(s string) string {
	const n = 60
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
