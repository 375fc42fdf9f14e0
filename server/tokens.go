package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"io"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Credential is one named access token. The server keeps only the
// token's SHA-256: a tokens file holds no secret an attacker could use.
type Credential struct {
	// Name says who holds the token; batches uploaded with it record it.
	Name string
	// Hash is the SHA-256 of the token.
	Hash [sha256.Size]byte
}

// DefaultTokenName is the name of the single token of --token.
const DefaultTokenName = "token"

// HashToken returns the Credential of a token under name.
func HashToken(name, token string) Credential {
	return Credential{Name: name, Hash: sha256.Sum256([]byte(token))}
}

// maxTokensFile bounds a tokens file.
const maxTokensFile = 1 << 20

// LoadTokens reads a tokens file (YAML: name: "sha256:<hex of the
// token's SHA-256>", one line a person) from r; file names it in
// messages. A name is 1 to 64 letters, digits, '.', '_', '@' or '-'.
// A bad line is an error naming the file, the line and the fix.
func LoadTokens(r io.Reader, file string) ([]Credential, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxTokensFile+1))
	if err != nil {
		return nil, fmt.Errorf("tokens file %s: %w", file, err)
	}
	if len(b) > maxTokensFile {
		return nil, fmt.Errorf("tokens file %s: longer than 1 MiB", file)
	}
	fail := func(line int, format string, args ...any) error {
		return fmt.Errorf("tokens file %s, line %d: %s", file, line, fmt.Sprintf(format, args...))
	}
	const example = `alice: "sha256:$(printf %s "$TOKEN" | sha256sum | cut -d' ' -f1)"`
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("tokens file %s: not valid YAML (%v): write one line a person, e.g. %s", file, err, example)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode || len(doc.Content[0].Content) == 0 {
		return nil, fmt.Errorf("tokens file %s: no token: write one line a person, e.g. %s", file, example)
	}
	root := doc.Content[0]
	var out []Credential
	seen := map[string]bool{}
	hashes := map[[sha256.Size]byte]string{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		name := k.Value
		if k.Kind != yaml.ScalarNode || !validName(name) {
			return nil, fail(k.Line, "name %q: use 1 to 64 letters, digits, '.', '_', '@' or '-'", truncate(name, 64))
		}
		if seen[name] {
			return nil, fail(k.Line, "%s is named twice: keep one line a person", name)
		}
		seen[name] = true
		hexHash, ok := strings.CutPrefix(strings.TrimSpace(v.Value), "sha256:")
		sum, err := hex.DecodeString(hexHash)
		if v.Kind != yaml.ScalarNode || !ok || err != nil || len(sum) != sha256.Size {
			return nil, fail(v.Line, "%s: want \"sha256:\" and the 64 hex digits of the token's SHA-256 (never the token itself), e.g. %s", name, example)
		}
		c := Credential{Name: name}
		copy(c.Hash[:], sum)
		if other, dup := hashes[c.Hash]; dup {
			return nil, fail(v.Line, "%s has the same token as %s: give each person their own", name, other)
		}
		hashes[c.Hash] = name
		out = append(out, c)
	}
	return out, nil
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '@', c == '-':
		default:
			return false
		}
	}
	return true
}

// match returns the credential a presented token belongs to. Every
// credential is compared, in constant time, whichever matches.
func match(creds []Credential, token string) (Credential, bool) {
	h := sha256.Sum256([]byte(token))
	var found Credential
	ok := 0
	for _, c := range creds {
		if subtle.ConstantTimeCompare(h[:], c.Hash[:]) == 1 {
			found, ok = c, 1
		}
	}
	return found, ok == 1
}
