package config

import (
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		change  func(*Config)
		wantErr string // "" = valid
	}{
		{name: "defaults", change: func(*Config) {}},
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
