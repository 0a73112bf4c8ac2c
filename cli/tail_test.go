package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fanscope/fanscope/internal/feedtest"
	"github.com/fanscope/fanscope/internal/redistest"
)

// lockedBuffer is a bytes.Buffer safe to read while a command writes it.
type lockedBuffer = feedtest.Buffer

type cmdResult struct {
	code           int
	stdout, stderr string
}

// startCmd runs fanscope with args in the background; wait returns its result.
func startCmd(t *testing.T, ctx context.Context, environ map[string]string, args ...string) (out *lockedBuffer, wait func() cmdResult) {
	t.Helper()
	out, errOut := &lockedBuffer{}, &lockedBuffer{}
	e := &env{stdin: strings.NewReader(""), stdout: out, stderr: errOut, getenv: func(k string) string { return environ[k] }}
	done := make(chan int, 1)
	go func() { done <- run(ctx, e, args) }()
	return out, func() cmdResult {
		t.Helper()
		select {
		case code := <-done:
			return cmdResult{code, out.String(), errOut.String()}
		case <-time.After(60 * time.Second):
			t.Fatalf("fanscope %v did not end within 60s; stdout so far:\n%s", args, out.String())
			return cmdResult{}
		}
	}
}

func runCmd(t *testing.T, args ...string) cmdResult {
	t.Helper()
	_, wait := startCmd(t, context.Background(), nil, args...)
	return wait()
}

// waitNumSub waits until channel has want subscribers on s.
func waitNumSub(t *testing.T, s *redistest.Server, channel string, want int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		out := strings.Fields(s.CLI("PUBSUB", "NUMSUB", channel))
		if len(out) == 2 && out[1] == fmt.Sprint(want) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("channel %s never reached %d subscribers", channel, want)
}

func decodeLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var recs []map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line is not JSON: %q: %v", sc.Text(), err)
		}
		recs = append(recs, m)
	}
	return recs
}

func TestTailRedisJSON(t *testing.T) {
	s := redistest.Start(t)
	_, wait := startCmd(t, context.Background(), nil,
		"tail", "--redis", s.URL(), "-c", "story:published", "-p", "story:*", "--json", "-n", "3")
	waitNumSub(t, s, "story:published", 1)
	s.CLI("PUBLISH", "story:published", `{"storyId":"s1"}`)
	s.CLI("PUBLISH", "story:other", "\x1b[2J")
	res := wait()
	if res.code != 0 {
		t.Fatalf("exit %d, stderr %s", res.code, res.stderr)
	}
	var msgs []map[string]any
	for _, r := range decodeLines(t, res.stdout) {
		for _, k := range []string{"ts", "source", "kind"} {
			if _, ok := r[k]; !ok {
				t.Errorf("record %v has no %q", r, k)
			}
		}
		if r["kind"] == "message" {
			msgs = append(msgs, r)
		}
	}
	want := []struct{ channel, pattern, data string }{
		{"story:published", "", `{"storyId":"s1"}`},
		{"story:published", "story:*", `{"storyId":"s1"}`},
		{"story:other", "story:*", "\x1b[2J"},
	}
	if len(msgs) != len(want) {
		t.Fatalf("got %d message records, want %d:\n%s", len(msgs), len(want), res.stdout)
	}
	// The plain and the pattern delivery of one PUBLISH may come in either order.
	seen := map[string]bool{}
	for _, m := range msgs {
		p, _ := m["pattern"].(string)
		seen[fmt.Sprintf("%v|%s|%v", m["channel"], p, m["data"])] = true
		if _, err := time.Parse(time.RFC3339Nano, m["ts"].(string)); err != nil {
			t.Errorf("ts %v: %v", m["ts"], err)
		}
	}
	for _, w := range want {
		if !seen[fmt.Sprintf("%s|%s|%s", w.channel, w.pattern, w.data)] {
			t.Errorf("missing message %+v in\n%s", w, res.stdout)
		}
	}
}

func TestTailTextEscapesControlCharacters(t *testing.T) {
	s := redistest.Start(t)
	_, wait := startCmd(t, context.Background(), nil, "tail", "--redis", s.URL(), "-c", "c", "-n", "1", "--no-state")
	waitNumSub(t, s, "c", 1)
	s.CLI("PUBLISH", "c", "\x1b]0;pwned\x07\x1b[31mred\nline2")
	res := wait()
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	if strings.ContainsAny(res.stdout, "\x1b\x07") || strings.Count(res.stdout, "\n") != 1 {
		t.Fatalf("raw control characters in text output: %q", res.stdout)
	}
	if !strings.Contains(res.stdout, `c  \x1b]0;pwned\x07\x1b[31mred\nline2`) {
		t.Fatalf("got %q, want the payload shown escaped", res.stdout)
	}
}

func TestTailRedisRestartResumes(t *testing.T) {
	s := redistest.Start(t)
	out, wait := startCmd(t, context.Background(), nil, "tail", "--redis", s.URL(), "-c", "c", "--json", "-n", "2")
	waitNumSub(t, s, "c", 1)
	s.CLI("PUBLISH", "c", "before")
	s.Restart()
	waitNumSub(t, s, "c", 1)
	s.CLI("PUBLISH", "c", "after")
	res := wait()
	if res.code != 0 {
		t.Fatalf("exit %d: %s\n%s", res.code, res.stderr, out.String())
	}
	var states, data []string
	for _, r := range decodeLines(t, res.stdout) {
		switch r["kind"] {
		case "state":
			states = append(states, r["state"].(string))
		case "message":
			data = append(data, r["data"].(string))
		}
	}
	if strings.Join(data, ",") != "before,after" {
		t.Errorf("got messages %v, want [before after]", data)
	}
	if !strings.Contains(strings.Join(states, ","), "subscribed") || len(states) < 3 {
		t.Errorf("got states %v, want a disconnect and a resubscribe reported", states)
	}
}

func TestTailExitCodes(t *testing.T) {
	secret := redistest.Start(t, "requirepass s3cret-pw")
	free := redistest.FreePort(t)
	unauthorized := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusUnauthorized)
	}))
	defer unauthorized.Close()
	tests := []struct {
		name     string
		args     []string
		code     int
		inStderr string
	}{
		{"no sources", []string{"tail"}, 2, "nothing to watch"},
		{"unknown flag", []string{"tail", "--bogus"}, 2, "bogus"},
		{"stray argument", []string{"tail", "-c", "c", "extra"}, 2, "extra"},
		{"unknown command", []string{"frobnicate"}, 2, "frobnicate"},
		{"bad header", []string{"tail", "--sse", unauthorized.URL, "-H", "nocolon"}, 2, "Key: Value"},
		{"bearer env unset", []string{"tail", "--sse", unauthorized.URL, "--bearer-env", "NOPE_UNSET"}, 2, "NOPE_UNSET"},
		{"wrong password", []string{"tail", "--redis", "redis://:wrong-pw@" + secret.Addr(), "-c", "c"}, 3, "***"},
		{"unreachable", []string{"tail", "--redis", fmt.Sprintf("redis://127.0.0.1:%d", free), "-c", "c"}, 3, fmt.Sprint(free)},
		{"sse 401", []string{"tail", "--sse", "app=" + unauthorized.URL}, 3, "401"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			res := runCmd(t, tt.args...)
			if res.code != tt.code {
				t.Fatalf("got exit %d, want %d; stderr: %s", res.code, tt.code, res.stderr)
			}
			if !strings.Contains(res.stderr, tt.inStderr) {
				t.Errorf("stderr %q does not mention %q", res.stderr, tt.inStderr)
			}
			if strings.Contains(res.stderr, "wrong-pw") {
				t.Errorf("stderr shows the password: %s", res.stderr)
			}
			if d := time.Since(start); d > 20*time.Second {
				t.Errorf("took %v to fail, want a few seconds", d)
			}
		})
	}
}

func TestTailSSE(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		fmt.Fprint(w, "retry: 1500\n: ping\n\nid: 7\nevent: story-published\ndata: {\"storyId\":\"s1\"}\n\ndata: \x1b[2Jwiped\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer srv.Close()
	res := runCmd(t, "tail", "--sse", "app-1="+srv.URL, "--json", "-n", "2", "--no-state")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	recs := decodeLines(t, res.stdout)
	var kinds []string
	for _, r := range recs {
		kinds = append(kinds, r["kind"].(string))
		if r["endpoint"] != "app-1" {
			t.Errorf("endpoint %v, want app-1", r["endpoint"])
		}
	}
	if got, want := strings.Join(kinds, ","), "retry,comment,event,event"; got != want {
		t.Fatalf("got kinds %s, want %s\n%s", got, want, res.stdout)
	}
	if recs[0]["retry_ms"] != 1500.0 || recs[1]["data"] != "ping" {
		t.Errorf("retry/comment wrong: %v %v", recs[0], recs[1])
	}
	ev := recs[2]
	if ev["type"] != "story-published" || ev["id"] != "7" || ev["data"] != `{"storyId":"s1"}` {
		t.Errorf("event = %v", ev)
	}
	if recs[3]["type"] != "message" || recs[3]["id"] != "7" || recs[3]["data"] != "\x1b[2Jwiped" {
		t.Errorf("second event = %v, want type message, id 7 kept, data raw in JSON", recs[3])
	}
}

// TestTailShortDuration: a --duration that ends before the sources have
// connected is a clean end (exit 0), not "no answer in time".
func TestTailShortDuration(t *testing.T) {
	srv := redistest.Start(t)
	for _, d := range []string{"1ns", "1ms"} {
		res := runCmd(t, "tail", "--redis", srv.URL(), "-c", "c", "--duration", d)
		if res.code != 0 {
			t.Errorf("--duration %s: got exit %d (stderr %q), want 0", d, res.code, res.stderr)
		}
	}
}

// TestTailEndpointDownAtStart: an endpoint that refuses connections from
// the start ends tail with exit 3, naming it (watch would keep retrying).
func TestTailEndpointDownAtStart(t *testing.T) {
	old := tailConnectWait
	tailConnectWait = 500 * time.Millisecond
	t.Cleanup(func() { tailConnectWait = old })
	refused := fmt.Sprintf("http://127.0.0.1:%d/events", redistest.FreePort(t))
	res := runCmd(t, "tail", "--sse", "gone="+refused, "-n", "3")
	if res.code != 3 || !strings.Contains(res.stderr, "endpoint gone") || !strings.Contains(res.stderr, "refused") {
		t.Errorf("got exit %d stderr %q, want 3 naming endpoint gone and the refusal", res.code, res.stderr)
	}
}
