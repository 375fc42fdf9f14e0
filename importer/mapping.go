package importer

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// A column mapping lets a file with other headers be imported as it is:
// an export of a legacy CRM names the contact "Contact Ref" and the owner
// "Owner E-mail". It is a YAML file of our field ← their header:
//
//	aiContactId: "Contact Ref"
//	teamMemberEmail: "Owner E-mail"
//	removeExistingAgents: "Replace Owner?"
//
// Headers match with the usual normalisation (case, spaces, '_' and '-'
// are ignored). A mapped column wins over a column that would otherwise
// mean the same field, which is then kept as an extra column. A file that
// has no column by the mapped name but one named exactly as our field (a
// failed.csv fed back in: its header is ours) uses that one.

// mappingKeys are the fields a mapping may name, in the order messages
// list them.
var mappingKeys = []field{fieldContact, fieldMember, fieldEmail, fieldReplace}

// maxMappingSize bounds a mapping file: it has four lines.
const maxMappingSize = 64 << 10

// LoadMapping reads a column mapping (YAML: our field: their header) from
// r; name is the mapping file, used in messages. The keys of the result
// are our field names (aiContactId, teamMemberId, teamMemberEmail,
// removeExistingAgents): a key may be written as any spelling the file
// headers accept (contact_id, agent_email, ...). An unknown key, a field
// named twice, an empty header or two fields given the same header is a
// *FileError naming the file, the line and the key.
func LoadMapping(r io.Reader, name string) (map[string]string, error) {
	file := displayName(name)
	fail := func(line int, format string, args ...any) error {
		return &FileError{File: file, Line: line, Err: fmt.Errorf(format, args...)}
	}
	b, err := io.ReadAll(io.LimitReader(r, maxMappingSize+1))
	if err != nil {
		return nil, &FileError{File: file, Err: fmt.Errorf("read: %w", err)}
	}
	if len(b) > maxMappingSize {
		return nil, fail(0, "longer than %d KiB: a mapping has one line per field", maxMappingSize>>10)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fail(0, "not valid YAML (%v): write one line per field, e.g. aiContactId: \"Contact Ref\"", err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, fail(0, "empty mapping: write one line per field, e.g. aiContactId: \"Contact Ref\"")
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, fail(root.Line, "not a mapping: write one line per field, e.g. aiContactId: \"Contact Ref\"")
	}
	out := map[string]string{}
	keyOf := map[field]string{}   // field -> key as written
	header := map[string]string{} // normalised header -> key that took it
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		key := strings.TrimSpace(k.Value)
		f, ok := mappingField(key)
		if k.Kind != yaml.ScalarNode || !ok {
			return nil, fail(k.Line, "unknown key %q: use %s", key, mappingKeyList())
		}
		if prev, dup := keyOf[f]; dup {
			return nil, fail(k.Line, "keys %q and %q both mean %s: keep only one of them", prev, key, fieldName(f))
		}
		keyOf[f] = key
		if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
			return nil, fail(v.Line, "%s: the value must be the file's header for it, e.g. %s: \"Contact Ref\"", key, key)
		}
		h := cleanHeader(v.Value)
		n := normalizeHeader(h)
		if n == "" {
			return nil, fail(v.Line, "%s: the header is empty: give the file's header for %s", key, fieldName(f))
		}
		if prev, dup := header[n]; dup {
			return nil, fail(v.Line, "%s and %s both name the column %q: a column can hold one field", prev, key, h)
		}
		header[n] = key
		out[fieldName(f)] = h
	}
	if len(out) == 0 {
		return nil, fail(0, "empty mapping: write one line per field, e.g. aiContactId: \"Contact Ref\"")
	}
	return out, nil
}

// mappingField returns the field a mapping key names.
func mappingField(key string) (field, bool) {
	f := fields[normalizeHeader(key)]
	return f, slices.Contains(mappingKeys, f)
}

func mappingKeyList() string {
	names := make([]string, len(mappingKeys))
	for i, f := range mappingKeys {
		names[i] = fieldName(f)
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// mapping is a column mapping ready for the decoders. A nil *mapping maps
// nothing: every header means what the fields table says.
type mapping struct {
	name    string           // the mapping file, for messages
	headers map[field]string // field -> the file's header, as the mapping gives it
	norm    map[string]field // normalised header -> field
}

// newMapping checks m (our field name -> their header), as LoadMapping
// returns it or a caller builds it. An empty m is no mapping.
func newMapping(m map[string]string, name string) (*mapping, error) {
	if len(m) == 0 {
		return nil, nil
	}
	mp := &mapping{name: displayName(name), headers: map[field]string{}, norm: map[string]field{}}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys) // the same message for the same mistake
	for _, k := range keys {
		f, ok := mappingField(k)
		if !ok {
			return nil, fmt.Errorf("unknown key %q: use %s", k, mappingKeyList())
		}
		if _, dup := mp.headers[f]; dup {
			return nil, fmt.Errorf("two keys mean %s: keep only one of them", fieldName(f))
		}
		h := cleanHeader(m[k])
		n := normalizeHeader(h)
		if n == "" {
			return nil, fmt.Errorf("%s: the header is empty: give the file's header for %s", k, fieldName(f))
		}
		if prev, dup := mp.norm[n]; dup {
			return nil, fmt.Errorf("%s and %s both name the column %q: a column can hold one field", fieldName(prev), fieldName(f), h)
		}
		mp.headers[f] = h
		mp.norm[n] = f
	}
	return mp, nil
}

// keyField returns the field of a normalised header or JSON key, and
// whether the mapping named it. A header that would mean a field the
// mapping gives to another column is an extra column.
func (mp *mapping) keyField(norm string) (f field, mapped bool) {
	if mp != nil {
		if f, ok := mp.norm[norm]; ok {
			return f, true
		}
		if f := fields[norm]; f != fieldExtra && mp.headers[f] != "" {
			return fieldExtra, false
		}
	}
	return fields[norm], false
}

// columns returns the field of each column of a CSV header. A mapped
// header that is not in the file is an error naming the mapping and its
// key, unless the file has a column named as our field (aiContactId, ...).
func (mp *mapping) columns(header []string) ([]field, error) {
	out := make([]field, len(header))
	var seen [fieldIgnore]bool
	for i, h := range header {
		f, mapped := mp.keyField(normalizeHeader(cleanHeader(h)))
		out[i] = f
		if mapped {
			seen[f] = true
		}
	}
	if mp == nil {
		return out, nil
	}
	for _, f := range mappingKeys {
		if mp.headers[f] == "" || seen[f] {
			continue
		}
		// Our own name for the field stands in for the mapped one; an
		// alias does not, so that a typo in the mapping is not hidden.
		own := false
		for i, h := range header {
			if normalizeHeader(cleanHeader(h)) == normalizeHeader(fieldName(f)) {
				out[i], own = f, true
			}
		}
		if !own {
			return nil, mp.missing(f, header)
		}
	}
	return out, nil
}

// missingKeys is the error for mapped JSON keys no object had.
func (mp *mapping) missingKeys(seen [fieldIgnore]bool) error {
	if mp == nil {
		return nil
	}
	for _, f := range mappingKeys {
		if mp.headers[f] != "" && !seen[f] {
			return fmt.Errorf("mapping %s: %s: no object has the key %q: fix the mapping or the file", mp.name, fieldName(f), mp.headers[f])
		}
	}
	return nil
}

// missing explains a mapped header that the CSV header does not have.
func (mp *mapping) missing(f field, header []string) error {
	var found []string
	for _, h := range header {
		if h = cleanHeader(h); h != "" && len(found) < 8 {
			if r := []rune(h); len(r) > 40 {
				h = string(r[:40]) + "…"
			}
			found = append(found, fmt.Sprintf("%q", h))
		}
	}
	has := "no named columns"
	if len(found) > 0 {
		has = strings.Join(found, ", ")
	}
	return fmt.Errorf("mapping %s: %s: no column %q in the header (it has %s): fix the mapping or the file",
		mp.name, fieldName(f), mp.headers[f], has)
}
