package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fanscope/fanscope/internal/redistest"
	"github.com/fanscope/fanscope/ssex"
)

// waitHTTP200 polls url until it answers 200.
func waitHTTP200(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s did not answer 200 within 15s", url)
}

func TestRelayCommandRelaysRedisToSSE(t *testing.T) {
	srv := redistest.Start(t)
	addr := fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, wait := startCmd(t, ctx, map[string]string{"RELAY_TOKEN": "tok"},
		"relay", "--redis", srv.URL(), "--listen", addr, "-c", "story:published", "-p", "news:*",
		"--keepalive", "100ms", "--token-env", "RELAY_TOKEN", "--history", "10")
	base := "http://" + addr
	waitHTTP200(t, base+"/healthz")

	resp, err := http.Get(base + "/api/community/events")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no token: got %d, want 401", resp.StatusCode)
	}

	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/api/community/events", nil)
	req.Header.Set("Authorization", "Bearer tok")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("bearer token: got %d, want 200", resp.StatusCode)
	}
	rd := ssex.NewReader(resp.Body, 0)
	// The first keep-alive shows the stream is live (and subscribed: the
	// relay subscribes before it serves).
	for {
		o, err := rd.Next()
		if err != nil {
			t.Fatal(err)
		}
		if o.Kind == ssex.ObsComment && o.Data == "ping" {
			break
		}
	}
	srv.CLI("PUBLISH", "story:published", `{"storyId":"s1"}`)
	srv.CLI("PUBLISH", "news:today", "line1\nline2")
	want := []struct{ typ, id, data string }{
		{"story-published", "1", `{"storyId":"s1"}`},
		{"news-today", "2", "line1\nline2"},
	}
	for i, w := range want {
		var o ssex.Observation
		for o.Kind != ssex.ObsEvent {
			if o, err = rd.Next(); err != nil {
				t.Fatalf("event %d: %v", i, err)
			}
		}
		if o.Type != w.typ || o.LastEventID != w.id || o.Data != w.data {
			t.Fatalf("event %d: got %s #%s %q, want %s #%s %q", i, o.Type, o.LastEventID, o.Data, w.typ, w.id, w.data)
		}
	}

	// /stats is behind the token too.
	stats, err := http.Get(base + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	stats.Body.Close()
	if stats.StatusCode != http.StatusUnauthorized {
		t.Errorf("/stats without the token: got %d, want 401", stats.StatusCode)
	}
	stats, err = http.Get(base + "/stats?token=tok")
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Connections   int               `json:"connections"`
		EventsRelayed int               `json:"events_relayed"`
		PerChannel    map[string]uint64 `json:"per_channel"`
		RedisState    string            `json:"redis_state"`
	}
	err = json.NewDecoder(stats.Body).Decode(&st)
	stats.Body.Close()
	if err != nil || st.Connections != 1 || st.EventsRelayed != 2 || st.PerChannel["news:today"] != 1 || st.RedisState != "subscribed" {
		t.Errorf("/stats: got %+v (%v), want 1 connection, 2 events, news:today 1, redis_state subscribed", st, err)
	}

	cancel()
	res := wait()
	if res.code != 0 {
		t.Fatalf("after the context ended: got exit %d, want 0; stderr:\n%s", res.code, res.stderr)
	}
	for _, line := range []string{"relay listening", "url=" + base + "/api/community/events", "token=true",
		`msg="sse client connected"`, "active=1", `msg="sse client disconnected"`, "active=0"} {
		if !strings.Contains(res.stderr, line) {
			t.Errorf("stderr lacks %q:\n%s", line, res.stderr)
		}
	}
	if strings.Contains(res.stderr, "tok ") || strings.Contains(res.stderr, "=tok") {
		t.Errorf("stderr shows the token:\n%s", res.stderr)
	}
}

func TestRelayExitCodes(t *testing.T) {
	srv := redistest.Start(t)
	refused := fmt.Sprintf("redis://127.0.0.1:%d", redistest.FreePort(t))
	listen := func() string { return fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t)) }
	tests := []struct {
		name string
		args []string
		want int
	}{
		{"nothing to relay", []string{"relay", "--redis", srv.URL(), "--listen", listen()}, 2},
		{"bad listen address", []string{"relay", "--redis", srv.URL(), "--listen", "256.0.0.1:1", "-c", "x"}, 2},
		{"negative history", []string{"relay", "--redis", srv.URL(), "--listen", listen(), "-c", "x", "--history", "-1"}, 2},
		{"relative path", []string{"relay", "--redis", srv.URL(), "--listen", listen(), "-c", "x", "--path", "events"}, 2},
		{"token and token-env", []string{"relay", "--redis", srv.URL(), "--listen", listen(), "-c", "x", "--token", "a", "--token-env", "B"}, 2},
		{"unset token-env", []string{"relay", "--redis", srv.URL(), "--listen", listen(), "-c", "x", "--token-env", "NOPE"}, 2},
		{"bad redis url", []string{"relay", "--redis", "http://x", "--listen", listen(), "-c", "x"}, 2},
		{"redis refused", []string{"relay", "--redis", refused, "--listen", listen(), "-c", "x"}, 3},
		{"unknown flag", []string{"relay", "--nope"}, 2},
		{"path with a space", []string{"relay", "--redis", srv.URL(), "--listen", listen(), "-c", "x", "--path", "/a b"}, 2},
		{"path with a mux wildcard", []string{"relay", "--redis", srv.URL(), "--listen", listen(), "-c", "x", "--path", "/a/{b}"}, 2},
		{"path /ws", []string{"relay", "--redis", srv.URL(), "--listen", listen(), "-c", "x", "--path", "/ws"}, 2},
		{"cors origin null", []string{"relay", "--redis", srv.URL(), "--listen", listen(), "-c", "x", "--cors-origin", "null"}, 2},
		{"cors origin not http", []string{"relay", "--redis", srv.URL(), "--listen", listen(), "-c", "x", "--cors-origin", "file:///tmp"}, 2},
		{"cors origin with a path", []string{"relay", "--redis", srv.URL(), "--listen", listen(), "-c", "x", "--cors-origin", "http://a/b"}, 2},
		{"keepalive 1ns", []string{"relay", "--redis", srv.URL(), "--listen", listen(), "-c", "x", "--keepalive", "1ns"}, 2},
		{"write timeout 0", []string{"relay", "--redis", srv.URL(), "--listen", listen(), "-c", "x", "--write-timeout", "0"}, 2},
		{"write timeout 1ns", []string{"relay", "--redis", srv.URL(), "--listen", listen(), "-c", "x", "--write-timeout", "1ns"}, 2},
		{"client queue 0", []string{"relay", "--redis", srv.URL(), "--listen", listen(), "-c", "x", "--client-queue", "0"}, 2},
		{"client queue bytes 0", []string{"relay", "--redis", srv.URL(), "--listen", listen(), "-c", "x", "--client-queue-bytes", "0"}, 2},
		{"history bytes -1", []string{"relay", "--redis", srv.URL(), "--listen", listen(), "-c", "x", "--history-bytes", "-1"}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := runCmd(t, tt.args...)
			if res.code != tt.want {
				t.Fatalf("got exit %d, want %d; stderr:\n%s", res.code, tt.want, res.stderr)
			}
			if !strings.HasPrefix(res.stderr, "fanscope: ") {
				t.Errorf("stderr: got %q, want it to start with \"fanscope: \"", res.stderr)
			}
			if strings.Contains(res.stderr, "listening") {
				t.Errorf("stderr says the relay was listening before it refused its flags:\n%s", res.stderr)
			}
		})
	}
}

// TestProbePassesAgainstRelay: fanscope's own probe, over many SSE
// connections, passes against the relay command.
func TestProbePassesAgainstRelay(t *testing.T) {
	srv := redistest.Start(t)
	addr := fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, wait := startCmd(t, ctx, nil, "relay", "--redis", srv.URL(), "--listen", addr, "-c", "story:published")
	waitHTTP200(t, "http://"+addr+"/healthz")

	res := runCmd(t, "probe", "--redis", srv.URL(), "-c", "story:published",
		"--sse", "relay=http://"+addr+"/api/community/events", "--sse-clients", "50", "-n", "20", "--interval", "10ms", "--json")
	if res.code != 0 {
		t.Fatalf("probe: got exit %d, want 0; stdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
	}
	var rep struct {
		Pass  bool `json:"pass"`
		Paths []struct {
			Path      string `json:"path"`
			Delivered int    `json:"delivered"`
		} `json:"paths"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &rep); err != nil {
		t.Fatalf("probe --json: %v\n%s", err, res.stdout)
	}
	got := map[string]int{}
	for _, p := range rep.Paths {
		got[p.Path] = p.Delivered
	}
	if !rep.Pass || got["redis"] != 20 || got["sse:relay"] != 20 {
		t.Fatalf("probe report: got pass=%v delivered %v, want pass and 20 on redis and sse:relay", rep.Pass, got)
	}
	cancel()
	if r := wait(); r.code != 0 {
		t.Fatalf("relay: got exit %d, want 0; stderr:\n%s", r.code, r.stderr)
	}
}
