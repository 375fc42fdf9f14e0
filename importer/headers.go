package importer

// HeaderField returns the field a file's header (or JSON key) means
// without a mapping: "aiContactId", "teamMemberId", "teamMemberEmail",
// "removeExistingAgents", or "" for a column that is kept as an extra
// (or, like "status" of a report fed back in, dropped). A page that maps
// columns uses it to show which headers it recognised.
func HeaderField(header string) string {
	switch f := fields[normalizeHeader(cleanHeader(header))]; f {
	case fieldContact, fieldMember, fieldEmail, fieldReplace:
		return fieldName(f)
	}
	return ""
}

// MappingFields are the fields a column mapping may name, in the order a
// mapping file lists them.
func MappingFields() []string {
	out := make([]string, len(mappingKeys))
	for i, f := range mappingKeys {
		out[i] = fieldName(f)
	}
	return out
}
