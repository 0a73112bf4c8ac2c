package cli

import (
	"regexp"
	"strings"
	"testing"

	"github.com/fanscope/fanscope/internal/redistest"
)

// checkDemoOutput checks a headless demo's stdout: probe deliveries on the
// redis and the sse path, relayed story events, and a passing report.
func checkDemoOutput(t *testing.T, res cmdResult) {
	t.Helper()
	if res.code != 0 {
		t.Fatalf("got exit %d, want 0; stderr:\n%s\nstdout:\n%s", res.code, res.stderr, res.stdout)
	}
	patterns := []struct{ what, re string }{
		{"a probe on the redis path", `(?m)^\S+ redis  story:published \(story:\*\)  \{"fanscope_probe":"fsp-[0-9a-f]{8}-1".*\[probe fsp-[0-9a-f]{8}-1 [0-9.]+ms\]$`},
		{"a probe on the sse path", `(?m)^\S+ sse\[demo\]  story-published #\d+  \{"fanscope_probe":"fsp-[0-9a-f]{8}-1".*\[probe fsp-[0-9a-f]{8}-1 [0-9.]+ms\]$`},
		{"the sse connection", `(?m)^\S+ sse\[demo\]  state connected  HTTP 200`},
		{"the report's redis row", `(?m)^redis\s+PASS\s+(\d+)/(\d+)\s+0\s+0`},
		{"the report's sse row", `(?m)^sse:demo\s+PASS\s+(\d+)/(\d+)\s+0\s+0`},
		{"the verdict", `(?m)^PASS: every check met$`},
	}
	for _, p := range patterns {
		if !regexp.MustCompile(p.re).MatchString(res.stdout) {
			t.Errorf("stdout lacks %s (%s):\n%s", p.what, p.re, res.stdout)
		}
	}
	for _, row := range []string{`(?m)^redis\s+PASS\s+(\d+)/(\d+)`, `(?m)^sse:demo\s+PASS\s+(\d+)/(\d+)`} {
		m := regexp.MustCompile(row).FindStringSubmatch(res.stdout)
		if m != nil && (m[1] != m[2] || m[1] == "0") {
			t.Errorf("report row %q: delivered %s of %s, want all of at least one", m[0], m[1], m[2])
		}
	}
	if !strings.Contains(res.stderr, "fanscope demo: redis redis://127.0.0.1:") {
		t.Errorf("stderr lacks the demo's where-is-what line:\n%s", res.stderr)
	}
}

func TestDemoHeadlessInProcessRedis(t *testing.T) {
	res := runCmd(t, "demo", "--headless", "--duration", "5s")
	checkDemoOutput(t, res)
	if !strings.Contains(res.stderr, "(in-process miniredis)") {
		t.Errorf("stderr does not say the redis is in-process:\n%s", res.stderr)
	}
}

func TestDemoHeadlessRealRedis(t *testing.T) {
	srv := redistest.Start(t)
	res := runCmd(t, "demo", "--redis", srv.URL(), "--headless", "--duration", "5s")
	checkDemoOutput(t, res)
	// Traffic went through the user's Redis: the relay and fanscope were
	// subscribed there.
	if strings.Contains(res.stderr, "miniredis") {
		t.Errorf("stderr mentions miniredis although --redis was given:\n%s", res.stderr)
	}
}

func TestDemoUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want int
	}{
		{"negative duration", []string{"demo", "--headless", "--duration", "-1s"}, 2},
		{"stray argument", []string{"demo", "now"}, 2},
		{"bad listen address", []string{"demo", "--headless", "--listen", "256.0.0.1:1"}, 2},
		{"bad redis url", []string{"demo", "--headless", "--redis", "http://x"}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := runCmd(t, tt.args...)
			if res.code != tt.want {
				t.Fatalf("got exit %d, want %d; stderr:\n%s", res.code, tt.want, res.stderr)
			}
		})
	}
}
