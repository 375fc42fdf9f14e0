package schedule

import (
	"bytes"
	"testing"
)

// FuzzLoad: no schedule file may panic the loader.
func FuzzLoad(f *testing.F) {
	f.Add([]byte("schedules:\n  - name: nightly\n    cron: \"0 2 * * *\"\n    contacts: c.csv\n    rules: r.yaml\n"))
	f.Add([]byte("schedules:\n  - name: x\n    cron: \"@every 1s\"\n    timezone: Europe/Madrid\n"))
	f.Add([]byte("schedules: {}\n"))
	f.Add([]byte("- - -\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Load(bytes.NewReader(data), "fuzz.yaml", t.TempDir())
		if err == nil && cfg == nil {
			t.Error("Load returned neither a config nor an error")
		}
	})
}
