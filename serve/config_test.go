package serve

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fanscope/fanscope/feed"
)

const goodConfig = `# two regions' pipelines
listen: 127.0.0.1:9464
window: 2m
probe_every: 15s
log_format: json
labels:
  region: eu-west-1
targets:
  - name: prod
    redis: redis://:s3cret@10.0.0.1:6379
    channels: [story:published]
    endpoints:
      sse:
        - app-1=http://app-1:8080/api/community/events
        - http://app-2:8080/api/community/events?token=abc
      ws:
        - {name: ws-1, url: "wss://app-1/ws"}
    headers:
      X-Probe: fanscope
    timeout: 3s
    budgets:
      max_p50: 50ms
      max_p99: 200ms
      min_delivery: 0.99
      min_subscribers: 3
    labels:
      team: feeds
  - name: staging
    redis:
      - redis://10.0.1.1:7000
      - redis://10.0.1.2:7000
    cluster: true
    shard_channels: [s:events]
    probe_every: 0
`

func TestParseConfigGood(t *testing.T) {
	cfg, err := ParseConfig("fanscope.yaml", []byte(goodConfig))
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	if cfg.Listen != "127.0.0.1:9464" || cfg.Window != 2*time.Minute || cfg.LogFormat != "json" || cfg.Labels["region"] != "eu-west-1" {
		t.Errorf("top level: got %+v", cfg)
	}
	if len(cfg.Targets) != 2 {
		t.Fatalf("got %d targets, want 2", len(cfg.Targets))
	}
	p := cfg.Targets[0]
	if p.Name != "prod" || p.Line != 9 || p.ProbeEvery != 15*time.Second || p.Timeout != 3*time.Second || p.SSEClients != 1 {
		t.Errorf("prod: got name %q line %d every %v timeout %v clients %d", p.Name, p.Line, p.ProbeEvery, p.Timeout, p.SSEClients)
	}
	if b := p.Budgets; b.MaxP50 != 50*time.Millisecond || b.MaxP99 != 200*time.Millisecond || b.MinDelivery != 0.99 || b.MinSubscribers != 3 {
		t.Errorf("prod budgets: got %+v", b)
	}
	wantPaths := []string{"redis", "sse:app-1", "sse:app-2:8080", "ws:ws-1"}
	if got := p.Paths(); !slices.Equal(got, wantPaths) {
		t.Errorf("prod paths: got %v, want %v", got, wantPaths)
	}
	if e := p.Endpoints[1]; e.Kind != feed.SourceSSE || e.URL != "http://app-2:8080/api/community/events?token=abc" {
		t.Errorf("second endpoint: got %+v", e)
	}
	if ch, shard := p.ProbeTo(); ch != "story:published" || shard {
		t.Errorf("prod probes to %q shard %v", ch, shard)
	}
	s := cfg.Targets[1]
	if !s.Cluster || len(s.Redis) != 2 || s.ProbeEvery != 0 || s.Budgets.MinDelivery != 1 {
		t.Errorf("staging: got %+v", s)
	}
	if ch, shard := s.ProbeTo(); ch != "s:events" || !shard {
		t.Errorf("staging probes to %q shard %v", ch, shard)
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		line int
		want string // in the message
	}{
		{"unknown top-level key", "listen: :9464\nlsten: :1\ntargets: []\n", 2, `unknown key "lsten" in the file's top level (known keys: listen, window`},
		{"unknown target key", "targets:\n  - name: a\n    redis: redis://h:1\n    chanels: [x]\n", 4, `unknown key "chanels" in a target`},
		{"unknown budget key", "targets:\n  - name: a\n    redis: redis://h:1\n    channels: [x]\n    budgets:\n      max_p95: 1s\n", 6, `unknown key "max_p95" in budgets`},
		{"unknown endpoint key", "targets:\n  - name: a\n    redis: redis://h:1\n    channels: [x]\n    endpoints:\n      sse:\n        - {name: a, uri: http://x/}\n", 7, `unknown key "uri" in an endpoint`},
		{"duration as a number", "targets:\n  - name: a\n    redis: redis://h:1\n    channels: [x]\n    timeout: 5\n", 5, `wrong type: want a duration such as 10s or 250ms, got "5"`},
		{"bad duration", "targets:\n  - name: a\n    redis: redis://h:1\n    channels: [x]\n    probe_every: soon\n", 5, `want a duration`},
		{"channels as a map", "targets:\n  - name: a\n    redis: redis://h:1\n    channels: {x: 1}\n", 4, `wrong type: want a list of strings, got key: value pairs`},
		{"clients as text", "targets:\n  - name: a\n    redis: redis://h:1\n    channels: [x]\n    sse_clients: many\n", 5, `want a whole number, got a string "many"`},
		{"targets as a map", "targets:\n  name: a\n", 2, `want a list of targets`},
		{"duplicate target name", "targets:\n  - name: a\n    redis: redis://h:1\n    channels: [x]\n  - name: a\n    redis: redis://h:2\n    channels: [x]\n", 5, `target name "a" is already used by the target at line 2`},
		{"missing redis", "targets:\n  - name: a\n    channels: [x]\n", 2, `target "a" has no redis`},
		{"missing name", "targets:\n  - redis: redis://h:1\n    channels: [x]\n", 2, `a target has no name`},
		{"no targets", "listen: :9464\n", 1, `no targets`},
		{"empty file", "", 0, `the file is empty`},
		{"window too short", "window: 10ms\ntargets:\n  - name: a\n    redis: redis://h:1\n    channels: [x]\n", 1, `window 10ms: want at least 1s`},
		{"yaml syntax", "listen: :1\n  targets: 2\n", 2, `mapping values are not allowed in this context`},
		{"duplicate key", "targets:\n  - name: a\n    name: b\n    redis: redis://h:1\n    channels: [x]\n", 3, `already defined`},
		{"bad redis scheme", "targets:\n  - name: a\n    redis: http://h:1\n    channels: [x]\n", 3, `scheme "http": want redis, rediss or unix`},
		{"nothing to watch", "targets:\n  - name: a\n    redis: redis://h:1\n", 2, `watches nothing`},
		{"probe too often", "targets:\n  - name: a\n    redis: redis://h:1\n    channels: [x]\n    probe_every: 100ms\n", 5, `at least 1s`},
		{"passive without channel is fine but probing needs one", "targets:\n  - name: a\n    redis: redis://h:1\n    patterns: [x*]\n", 2, `no channel to publish to`},
		{"min_delivery above 1", "targets:\n  - name: a\n    redis: redis://h:1\n    channels: [x]\n    budgets:\n      min_delivery: 99\n", 6, `min_delivery 99: want a fraction`},
		{"template without token", "targets:\n  - name: a\n    redis: redis://h:1\n    channels: [x]\n    template: hello\n", 5, `token`},
		{"sse endpoint with ws scheme", "targets:\n  - name: a\n    redis: redis://h:1\n    channels: [x]\n    endpoints:\n      sse: [\"ws://h/x\"]\n", 6, `sse endpoint: scheme "ws", want http or https`},
		{"duplicate endpoint name", "targets:\n  - name: a\n    redis: redis://h:1\n    channels: [x]\n    endpoints:\n      sse:\n        - a=http://h/1\n        - a=http://h/2\n", 8, `endpoint name "a" is already used at line 7`},
		{"reserved label", "labels:\n  path: x\ntargets:\n  - name: a\n    redis: redis://h:1\n    channels: [x]\n", 2, `label name "path" is one fanscope or Prometheus sets itself`},
		{"bad label name", "targets:\n  - name: a\n    redis: redis://h:1\n    channels: [x]\n    labels:\n      my-team: x\n", 6, `label name "my-team"`},
		{"label twice", "labels:\n  team: x\ntargets:\n  - name: a\n    redis: redis://h:1\n    channels: [x]\n    labels:\n      team: y\n", 8, `label "team" is set both at the top level and in target "a"`},
		{"bad log format", "log_format: xml\ntargets:\n  - name: a\n    redis: redis://h:1\n    channels: [x]\n", 1, `log_format "xml": want text or json`},
		{"bad listen", "listen: 9464\ntargets:\n  - name: a\n    redis: redis://h:1\n    channels: [x]\n", 1, `want [HOST]:PORT`},
		{"header with line break", "targets:\n  - name: a\n    redis: redis://h:1\n    channels: [x]\n    headers:\n      X-A: \"a\\r\\nb\"\n", 6, `line break`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig("fanscope.yaml", []byte(tc.yaml))
			if err == nil {
				t.Fatalf("got no error, want one at line %d saying %q", tc.line, tc.want)
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("got %T %v, want a *ConfigError", err, err)
			}
			if ce.Line != tc.line {
				t.Errorf("got line %d, want %d (%v)", ce.Line, tc.line, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %q, want it to contain %q", err, tc.want)
			}
			prefix := "config fanscope.yaml"
			if tc.line > 0 {
				prefix += ", line "
			}
			if !strings.HasPrefix(err.Error(), prefix) {
				t.Errorf("got %q, want it to start with %q", err, prefix)
			}
		})
	}
}

// A mistake next to a password must not print the password.
func TestParseConfigErrorsHideSecrets(t *testing.T) {
	y := "targets:\n  - name: a\n    redis: redis://:hunter2@h:1\n    channels: [x]\n    endpoints:\n      sse: [\"ftp://u:hunter2@h/?token=hunter2\"]\n"
	_, err := ParseConfig("f.yaml", []byte(y))
	if err == nil {
		t.Fatal("got no error for an ftp endpoint")
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("the error shows the secret: %v", err)
	}
}

func TestParseConfigReportsEveryMistake(t *testing.T) {
	y := "targets:\n  - name: a\n    channels: [x]\n  - name: a\n    redis: redis://h:1\n"
	_, err := ParseConfig("f.yaml", []byte(y))
	var ces ConfigErrors
	if !errors.As(err, &ces) {
		t.Fatalf("got %T %v, want ConfigErrors", err, err)
	}
	var lines []int
	for _, e := range ces {
		lines = append(lines, e.Line)
	}
	if !slices.Equal(lines, []int{2, 4, 4}) {
		t.Errorf("got errors at lines %v, want [2 4 4]: %v", lines, err)
	}
}

func TestLoadConfigMissingFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "nope.yaml")
	_, err := LoadConfig(p)
	if err == nil || !strings.Contains(err.Error(), "cannot read it: no such file or directory") {
		t.Errorf("got %v, want a missing-file error", err)
	}
	if err := os.WriteFile(p, []byte(goodConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(p); err != nil {
		t.Errorf("LoadConfig of a good file: %v", err)
	}
}
