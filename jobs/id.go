package jobs

import (
	"fmt"
	"strings"
)

// IDFormat is the rule a contact or team member id must follow before a
// row may be sent. Whichever the rule, a well-formed id is safe in a URL
// path, a Redis key and a file name. The zero value is IDUUID.
type IDFormat string

// The id rules of --id-format.
const (
	// IDUUID accepts the canonical text of a UUID and nothing else: 36
	// characters, 8-4-4-4-12 hex digits with hyphens between, as the CRM
	// documents both ids ("string (UUID)"). Braces, a urn:uuid: prefix and
	// the 32 digits without hyphens are malformed: they are other spellings
	// that the API does not document, so they are refused with a message
	// showing the canonical form rather than rewritten. The version and
	// variant digits are not checked: the API does not say which it issues.
	IDUUID IDFormat = "uuid"
	// IDAny accepts 1 to 128 of a-z, 0-9, '-' and '_', for CRMs whose ids
	// are not UUIDs (the path template is a setting).
	IDAny IDFormat = "any"
)

// ExampleUUID is the UUID messages show as the form to follow.
const ExampleUUID = "0b6e4f8a-3c2d-4e1f-9a7b-5c6d7e8f9a0b"

// ParseIDFormat reads an --id-format value: uuid or any, in any case and
// with spaces around; "" is IDUUID.
func ParseIDFormat(s string) (IDFormat, error) {
	switch f := IDFormat(strings.ToLower(strings.TrimSpace(s))); f {
	case "", IDUUID:
		return IDUUID, nil
	case IDAny:
		return IDAny, nil
	}
	return IDUUID, fmt.Errorf("id format %q: want uuid (the default) or any", s)
}

// Valid reports whether id, trimmed and lower-cased, is well formed under
// f. A value of f other than IDAny is IDUUID.
func (f IDFormat) Valid(id string) bool {
	if f == IDAny {
		return validAnyID(id)
	}
	return validUUID(id)
}

// Want says what f accepts, for a message that follows "want": "a UUID,
// 8-4-4-4-12 hex digits like …".
func (f IDFormat) Want() string {
	if f == IDAny {
		return "1-128 letters, digits, - or _"
	}
	return "a UUID, 8-4-4-4-12 hex digits like " + ExampleUUID + ", without braces or urn:uuid: (--id-format any accepts other ids)"
}

// validUUID reports whether s is a lower-case UUID in canonical form.
func validUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
				return false
			}
		}
	}
	return true
}

// validAnyID reports whether s is 1 to 128 of a-z, 0-9, '-' and '_'.
func validAnyID(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
