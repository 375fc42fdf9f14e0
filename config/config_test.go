package config

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/spf13/pflag"
)

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		change  func(*Config)
		wantErr string // "" = valid
	}{
		{name: "defaults", change: func(*Config) {}},
		{name: "id format any", change: func(c *Config) { c.IDFormat = jobs.IDAny }},
		{name: "unknown id format", change: func(c *Config) { c.IDFormat = "guid" }, wantErr: "--id-format"},
		{name: "bad api url", change: func(c *Config) { c.APIURL = "ftp://x" }, wantErr: "--api-url"},
		{name: "path template without ids", change: func(c *Config) { c.PathTemplate = "/assign" }, wantErr: "{aiContactId}"},
		{name: "negative rate", change: func(c *Config) { c.Rate = -1 }, wantErr: "--rate"},
		{name: "zero concurrency", change: func(c *Config) { c.Concurrency = 0 }, wantErr: "--concurrency"},
		{name: "too many attempts", change: func(c *Config) { c.MaxAttempts = 1000 }, wantErr: "--max-attempts"},
		{name: "retry max below base", change: func(c *Config) { c.RetryMax = time.Millisecond }, wantErr: "--retry-base"},
		{name: "zero max retry-after", change: func(c *Config) { c.MaxRetryAfter = 0 }, wantErr: "--max-retry-after"},
		{name: "namespace with a colon", change: func(c *Config) { c.Namespace = "a:b" }, wantErr: "--namespace"},
		{name: "unknown embedded queue", change: func(c *Config) { c.Embedded = "sqlite" }, wantErr: "--embedded"},
		{name: "bad redis url", change: func(c *Config) { c.Redis = "http://h" }, wantErr: "--redis"},
		{name: "redis url", change: func(c *Config) { c.Redis = "redis://127.0.0.1:6379/3" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := Default()
			tt.change(&c)
			err := c.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Validate() = %v, want an error naming %s", err, tt.wantErr)
			}
		})
	}
}

func TestRedisURLPasswordHidden(t *testing.T) {
	t.Parallel()
	c := Default()
	c.Redis = "redis://:hunter2@127.0.0.1:6379/x"
	err := c.Validate()
	if err == nil {
		t.Fatal("Validate accepted a bad DB number")
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error shows the password: %v", err)
	}
	c.Redis = "redis://:hunter2@127.0.0.1:6379/1"
	if d := c.RedisDisplay(); strings.Contains(d, "hunter2") {
		t.Errorf("RedisDisplay() = %q shows the password", d)
	}
}

func TestEnvName(t *testing.T) {
	t.Parallel()
	for flag, want := range map[string]string{
		"api-key":         "BULKASSIGN_API_KEY",
		"max-attempts":    "BULKASSIGN_MAX_ATTEMPTS",
		"max-retry-after": "BULKASSIGN_MAX_RETRY_AFTER",
		"redis":           "BULKASSIGN_REDIS",
	} {
		if got := EnvName(flag); got != want {
			t.Errorf("EnvName(%q) = %q, want %q", flag, got, want)
		}
	}
}

func TestApplyEnv(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		check   func(Config) bool
		wantErr string // "" = no error
	}{
		{
			name: "defaults without env",
			check: func(c Config) bool {
				return c.MaxAttempts == 5 && c.MaxRetryAfter == 15*time.Minute && c.IDFormat == jobs.IDUUID
			},
		},
		{
			name:  "the id format from the env",
			env:   map[string]string{"BULKASSIGN_ID_FORMAT": "any"},
			check: func(c Config) bool { return c.IDFormat == jobs.IDAny },
		},
		{
			name:  "the id format from the command line wins",
			args:  []string{"--id-format", "UUID"},
			env:   map[string]string{"BULKASSIGN_ID_FORMAT": "any"},
			check: func(c Config) bool { return c.IDFormat == jobs.IDUUID },
		},
		{
			name:    "an unknown id format in the env",
			env:     map[string]string{"BULKASSIGN_ID_FORMAT": "guid"},
			wantErr: "BULKASSIGN_ID_FORMAT: not a valid value for --id-format (uuid|any)",
		},
		{
			name:  "env sets unset flags",
			env:   map[string]string{"BULKASSIGN_MAX_ATTEMPTS": "9", "BULKASSIGN_API_KEY": "k", "BULKASSIGN_MAX_RETRY_AFTER": "2m"},
			check: func(c Config) bool { return c.MaxAttempts == 9 && c.APIKey == "k" && c.MaxRetryAfter == 2*time.Minute },
		},
		{
			name:  "the command line wins",
			args:  []string{"--max-attempts", "3"},
			env:   map[string]string{"BULKASSIGN_MAX_ATTEMPTS": "9"},
			check: func(c Config) bool { return c.MaxAttempts == 3 },
		},
		{
			name:  "empty is unset",
			env:   map[string]string{"BULKASSIGN_API_URL": ""},
			check: func(c Config) bool { return c.APIURL == Default().APIURL },
		},
		{
			name:    "bad value names the variable, not the value",
			env:     map[string]string{"BULKASSIGN_RATE": "fast-secret"},
			wantErr: "BULKASSIGN_RATE",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := Default()
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			c.RegisterInput(fs)
			c.RegisterAPI(fs)
			c.RegisterRedis(fs, true)
			c.RegisterWorker(fs)
			c.RegisterOutput(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			err := ApplyEnv(fs, func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok })
			switch {
			case tt.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || strings.Contains(err.Error(), "secret") {
					t.Errorf("ApplyEnv() = %v, want an error naming %s without the value", err, tt.wantErr)
				}
			case err != nil:
				t.Errorf("ApplyEnv() = %v", err)
			case !tt.check(c):
				t.Errorf("settings after ApplyEnv: %+v", c)
			}
		})
	}
}

func TestIDFormatFlag(t *testing.T) {
	t.Parallel()
	c := Default()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.RegisterInput(fs)
	if f := fs.Lookup("id-format"); f == nil || f.DefValue != "uuid" {
		t.Fatalf("--id-format: %+v, want the default uuid", f)
	}
	if err := fs.Parse([]string{"--id-format", "any"}); err != nil || c.IDFormat != jobs.IDAny {
		t.Errorf("--id-format any: %v, IDFormat %q", err, c.IDFormat)
	}
	err := fs.Parse([]string{"--id-format", "guid"})
	if err == nil || !strings.Contains(err.Error(), "want uuid (the default) or any") {
		t.Errorf("--id-format guid: %v, want an error naming the choices", err)
	}
	if c.IDFormat != jobs.IDAny {
		t.Errorf("a refused value changed IDFormat to %q", c.IDFormat)
	}
}
