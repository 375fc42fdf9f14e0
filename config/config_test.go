package config

import (
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
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
		{name: "sentinel url", change: func(c *Config) { c.Redis = "redis-sentinel://10.0.0.1:26379,10.0.0.2:26379?master=main" }},
		{name: "sentinel without a master", change: func(c *Config) { c.Redis = "redis-sentinel://10.0.0.1:26379" }, wantErr: "no master named (add ?master=NAME"},
		{name: "sentinel without a port", change: func(c *Config) { c.Redis = "redis-sentinel://10.0.0.1,10.0.0.2:26379?master=main" }, wantErr: `Sentinel "10.0.0.1" is not host:port`},
		{name: "sentinel with a bad DB", change: func(c *Config) { c.Redis = "redis-sentinel://10.0.0.1:26379/x?master=main" }, wantErr: "the path is not a DB number"},
		{name: "cluster url", change: func(c *Config) { c.RedisCluster = "redis://10.0.0.1:7000?addr=10.0.0.2:7000&addr=10.0.0.3:7000" }},
		{name: "cluster and redis", change: func(c *Config) { c.Redis, c.RedisCluster = "redis://h:6379/1", "redis://h:7000" }, wantErr: "--redis and --redis-cluster: give one"},
		{name: "cluster with a DB", change: func(c *Config) { c.RedisCluster = "redis://10.0.0.1:7000/3" }, wantErr: "a cluster has only DB 0"},
		{name: "cluster with a bad addr", change: func(c *Config) { c.RedisCluster = "redis://10.0.0.1:7000?addr=10.0.0.2" }, wantErr: "--redis-cluster redis://10.0.0.1:7000?addr=10.0.0.2: unable to parse addr param"},
		{name: "cluster setting asynq drops", change: func(c *Config) { c.RedisCluster = "redis://10.0.0.1:7000?pool_size=5" }, wantErr: `setting "pool_size" is not supported`},
		{name: "cluster of http", change: func(c *Config) { c.RedisCluster = "http://10.0.0.1:7000" }, wantErr: "invalid URL scheme: http; want redis://"},
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

func TestRedisOptTopologies(t *testing.T) {
	t.Parallel()
	c := Default()
	c.Redis = "redis://app:pw@10.0.0.1:6379/4"
	if o, err := c.RedisOpt(); err != nil || o != (asynq.RedisClientOpt{Addr: "10.0.0.1:6379", Username: "app", Password: "pw", DB: 4}) {
		t.Errorf("--redis %s: %#v, %v", c.Redis, o, err)
	}

	c.Redis = "redis-sentinel://:spw@10.0.0.1:26379,10.0.0.2:26379/2?master=main"
	want := asynq.RedisFailoverClientOpt{MasterName: "main", SentinelAddrs: []string{"10.0.0.1:26379", "10.0.0.2:26379"}, SentinelPassword: "spw", DB: 2}
	o, err := c.RedisOpt()
	if err != nil || !reflect.DeepEqual(o, want) {
		t.Fatalf("--redis %s: %#v, %v; want %#v", c.Redis, o, err, want)
	}
	if rc := client(t, o); !isType[*redis.Client](rc) {
		t.Errorf("a Sentinel's client is %T, want *redis.Client", rc)
	}

	c.Redis, c.RedisCluster = "", "redis://app:pw@10.0.0.1:7000?addr=10.0.0.2:7001&addr=10.0.0.3:7002&dial_timeout=2s"
	wantC := asynq.RedisClusterClientOpt{Addrs: []string{"10.0.0.1:7000", "10.0.0.2:7001", "10.0.0.3:7002"}, Username: "app", Password: "pw", DialTimeout: 2 * time.Second}
	o, err = c.RedisOpt()
	if err != nil || !reflect.DeepEqual(o, wantC) {
		t.Fatalf("--redis-cluster %s: %#v, %v; want %#v", c.RedisCluster, o, err, wantC)
	}
	if rc := client(t, o); !isType[*redis.ClusterClient](rc) {
		t.Errorf("a cluster's client is %T, want *redis.ClusterClient", rc)
	}
}

// client is the Redis client o makes (it connects only when used), closed
// when the test ends.
func client(t *testing.T, o asynq.RedisConnOpt) redis.UniversalClient {
	t.Helper()
	rc, ok := o.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		t.Fatalf("%T makes no redis.UniversalClient", o)
	}
	t.Cleanup(func() { rc.Close() })
	return rc
}

func isType[T any](v any) bool { _, ok := v.(T); return ok }

func TestRedisDisplayHidesPasswords(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ redis, cluster, want string }{
		{"", "", "the embedded queue"},
		{"redis://:hunter2@h:6379/1", "", "redis://:xxxxx@h:6379/1"},
		{"redis-sentinel://:hunter2@h1:26379,h2:26379?master=main", "", "redis-sentinel://:xxxxx@h1:26379,h2:26379?master=main"},
		{"", "redis://u:hunter2@h:7000?addr=h2:7000", "the Redis Cluster at redis://u:xxxxx@h:7000?addr=h2:7000"},
	} {
		c := Default()
		c.Redis, c.RedisCluster = tt.redis, tt.cluster
		if got := c.RedisDisplay(); got != tt.want {
			t.Errorf("RedisDisplay() of %q/%q = %q, want %q", tt.redis, tt.cluster, got, tt.want)
		}
		// A bad URL's error hides the password too.
		if tt.redis != "" {
			c.Redis = strings.Replace(tt.redis, "?", "/x?", 1)
		} else if tt.cluster != "" {
			c.RedisCluster += "&pool_size=1"
		}
		if err := c.Validate(); strings.Contains(fmt.Sprint(err), "hunter2") {
			t.Errorf("Validate() shows the password: %v", err)
		}
	}
}

func TestEnvName(t *testing.T) {
	t.Parallel()
	for flag, want := range map[string]string{
		"api-key":         "BULKASSIGN_API_KEY",
		"max-attempts":    "BULKASSIGN_MAX_ATTEMPTS",
		"max-retry-after": "BULKASSIGN_MAX_RETRY_AFTER",
		"redis":           "BULKASSIGN_REDIS",
		"redis-cluster":   "BULKASSIGN_REDIS_CLUSTER",
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
			name:  "the cluster URL has a twin",
			env:   map[string]string{"BULKASSIGN_REDIS_CLUSTER": "redis://h:7000?addr=h2:7000"},
			check: func(c Config) bool { return c.RedisCluster == "redis://h:7000?addr=h2:7000" && c.Redis == "" },
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
