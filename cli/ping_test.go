package cli

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fanscope/fanscope/internal/redistest"
)

func TestPingCommand(t *testing.T) {
	s := redistest.Start(t, "requirepass ping-secret")
	url := "redis://:ping-secret@" + s.Addr()
	res := runCmd(t, "ping", "--redis", url, "-n", "5", "--interval", "1ms")
	if res.code != 0 || !strings.HasPrefix(res.stdout, s.Addr()+": 5 round trips, min ") || !strings.Contains(res.stdout, "p50") {
		t.Fatalf("exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}
	res = runCmd(t, "ping", "--redis", url, "-n", "3", "--interval", "0s", "--json")
	var got struct {
		Target string `json:"target"`
		Nodes  []struct {
			Node          string
			Count         int
			Min, P50, Max float64
		} `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &got); err != nil || res.code != 0 {
		t.Fatalf("exit %d, stdout %q: %v", res.code, res.stdout, err)
	}
	if strings.Contains(res.stdout, "ping-secret") || !strings.Contains(got.Target, ":***@") {
		t.Errorf("the password is not masked: %s", res.stdout)
	}
	if len(got.Nodes) != 1 || got.Nodes[0].Count != 3 {
		t.Errorf("nodes %+v, want one with 3 round trips", got.Nodes)
	}
}

func TestPingMinP50Max(t *testing.T) {
	ms := time.Millisecond
	got := summarize("n", []time.Duration{5 * ms, ms, 3 * ms, 2 * ms})
	if got.Min != 1 || got.P50 != 2 || got.Max != 5 || got.Avg != 2.75 || got.Count != 4 {
		t.Fatalf("got %+v, want min 1, p50 2, avg 2.75, max 5", got)
	}
}

func TestPingUnreachable(t *testing.T) {
	s := redistest.Start(t, "requirepass right")
	tests := []struct {
		name string
		url  string
		want string
	}{
		{"refused", fmt.Sprintf("redis://127.0.0.1:%d", redistest.FreePort(t)), "connection refused"},
		{"wrong password", "redis://:bad-pw@" + s.Addr(), "wrong user name or password"},
		{"no password", s.URL(), "requires a password"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := runCmd(t, "ping", "--redis", tt.url, "-n", "1")
			if res.code != 3 || !strings.Contains(res.stderr, tt.want) {
				t.Fatalf("exit %d, stderr %q; want 3 naming %q", res.code, res.stderr, tt.want)
			}
		})
	}
	if res := runCmd(t, "ping", "--redis", s.URL(), "-n", "0"); res.code != 2 {
		t.Errorf("-n 0: exit %d, want 2", res.code)
	}
}

func TestPingServerDiesMidRun(t *testing.T) {
	s := redistest.Start(t)
	out, wait := startCmd(t, t.Context(), nil, "ping", "--redis", s.URL(), "-n", "1000", "--interval", "20ms")
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && s.CLI("CLIENT", "LIST") == "" {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	s.Kill()
	res := wait()
	if res.code != 3 || !strings.Contains(res.stdout, "round trips") {
		t.Fatalf("exit %d, stdout %q (%s), stderr %q; want 3 with the figures so far", res.code, res.stdout, out.String(), res.stderr)
	}
}

func TestDebugCommandsTakeTheURLFromTheEnvironment(t *testing.T) {
	s := redistest.Start(t)
	for _, args := range [][]string{{"ping", "-n", "1"}, {"channels"}, {"publish", "-c", "ch", "x"}} {
		_, wait := startCmd(t, t.Context(), map[string]string{"REDIS_URL": s.URL()}, args...)
		res := wait()
		if res.code != 0 {
			t.Errorf("%v with $REDIS_URL: exit %d, stderr %q", args, res.code, res.stderr)
		}
	}
}
