package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestServeRefusesBadSettings: a tokens file that is missing or holds a
// token in clear, or a read timeout of zero, stops serve before it starts,
// with a message naming the file, the line and the fix.
func TestServeRefusesBadSettings(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	clear := filepath.Join(dir, "tokens.yaml")
	if err := os.WriteFile(clear, []byte("alice: 0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--tokens", filepath.Join(dir, "none.yaml")}, "--tokens: open " + filepath.Join(dir, "none.yaml")},
		{[]string{"--tokens", clear}, "tokens file " + clear + ", line 1: alice: want \"sha256:\""},
		{[]string{"--token", "serve-test-token-0123456789", "--read-timeout", "0s"}, "--read-timeout 0s: want a positive duration"},
	} {
		res := runCLI(t, nil, append([]string{"serve", "--redis", "redis://127.0.0.1:1/0"}, tc.args...)...)
		if res.code != exitFatal || !strings.Contains(res.errText(), tc.want) {
			t.Errorf("serve %v: exit %d, %q; want 1 and %q", tc.args, res.code, res.errText(), tc.want)
		}
	}
}
