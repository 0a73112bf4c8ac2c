package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/internal/redistest"
	"github.com/fanscope/fanscope/session"
	"github.com/fanscope/fanscope/tui"
)

// eventually polls cond every 20 ms for up to 30 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// openWatchSession opens and starts the session watch would for args.
func openWatchSession(t *testing.T, ctx context.Context, src SourceFlags, opts WatchOptions) *session.Session {
	t.Helper()
	if opts.ProbeInterval == 0 {
		opts.ProbeInterval = defaultProbeInterval
	}
	cfg, err := watchSessionConfig(src, opts, func(string) string { return "" })
	if err != nil {
		t.Fatalf("session config: %v", err)
	}
	s, err := session.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("open session: %v", err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatalf("start session: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

func TestWatchFallsBackToTail(t *testing.T) {
	srv := redistest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, wait := startCmd(t, ctx, nil, "watch", "--redis", srv.URL(), "-c", "story:published")
	eventually(t, "fanscope subscribed", func() bool {
		return strings.Contains(srv.CLI("PUBSUB", "NUMSUB", "story:published"), "1")
	})
	srv.CLI("PUBLISH", "story:published", "hello \x1b[31mred")
	eventually(t, "the message is printed as tail text", func() bool {
		return strings.Contains(out.String(), `redis  story:published  hello \x1b[31mred`)
	})
	cancel()
	if res := wait(); res.code != 0 {
		t.Errorf("got exit %d (stderr %q), want 0", res.code, res.stderr)
	}
}

func TestWatchFlagErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"watch", "--buffer", "0", "-c", "x"}, "--buffer"},
		{[]string{"watch", "--buffer", "100000000", "-c", "x"}, "--buffer"},
		{[]string{"watch", "--probe-interval", "0s", "-c", "x"}, "--probe-interval"},
	}
	for _, tt := range tests {
		_, wait := startCmd(t, context.Background(), nil, tt.args...)
		res := wait()
		if res.code != 2 || !strings.Contains(res.stderr, tt.want) {
			t.Errorf("%v: got exit %d stderr %q, want 2 naming %s", tt.args, res.code, res.stderr, tt.want)
		}
	}
}

func TestWatchBackend(t *testing.T) {
	srv := redistest.Start(t, "requirepass s3cret")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	url := "redis://:s3cret@" + srv.Addr()
	src := SourceFlags{Redis: []string{url}, Channels: []string{"story:published"}, Patterns: []string{"other:*"}}
	opts := WatchOptions{Buffer: 100, ProbeInterval: 30 * time.Millisecond}
	s := openWatchSession(t, ctx, src, opts)
	b := &watchBackend{ctx: ctx, s: s}
	eventually(t, "subscribed", func() bool { return s.Statuses()[0].Up() })

	snap := b.Snapshot(0)
	if len(snap.Header.Targets) != 1 || strings.Contains(snap.Header.Targets[0], "s3cret") || !strings.Contains(snap.Header.Targets[0], "***") {
		t.Errorf("got targets %q, want the password masked", snap.Header.Targets)
	}
	if snap.Header.Production {
		t.Errorf("got production for a loopback Redis")
	}

	n, err := b.Publish("story:published", `{"storyId":"s1"}`)
	if err != nil || n != 1 {
		t.Fatalf("Publish got %d, %v, want 1 receiver (fanscope itself)", n, err)
	}
	var last uint64
	eventually(t, "the message reaches the snapshot", func() bool {
		for _, r := range b.Snapshot(0).NewRecords {
			if r.Kind == feed.KindMessage && r.Data == `{"storyId":"s1"}` {
				last = r.Seq
				return true
			}
		}
		return false
	})
	if got := b.Snapshot(last).NewRecords; len(got) != 0 {
		t.Errorf("Snapshot(%d) got %d records, want none newer", last, len(got))
	}

	eventually(t, "introspection fills the counts and the radar", func() bool {
		sn := b.Snapshot(last)
		return sn.Redis != nil && len(sn.Redis.Subs) == 2 && sn.Redis.Subs[0].Subscribers == 1 &&
			sn.Redis.NumPat == 1 && sn.Radar.Available && len(sn.Radar.Clients) >= 1
	})
	sn := b.Snapshot(last)
	if sn.Redis.State != feed.StateSubscribed || sn.Redis.Subs[1].Kind != tui.SubPattern {
		t.Errorf("got redis %+v, want subscribed with a pattern row", *sn.Redis)
	}
	if sn.Radar.Hard == 0 && sn.Radar.Soft == 0 {
		t.Errorf("got no pubsub output-buffer limit, want redis-server's default")
	}

	if err := b.ProbeNow(); err != nil {
		t.Fatalf("ProbeNow: %v", err)
	}
	eventually(t, "the probe is delivered on the redis path", func() bool {
		l := b.Snapshot(last).Latency
		return l.Probes.Sent == 1 && len(l.Probes.Paths) == 1 && l.Probes.Paths[0].Path == "redis" && l.Probes.Paths[0].Delivered == 1 && l.Probes.Paths[0].Latency.P50 > 0
	})

	if err := b.SetContinuous(true); err != nil {
		t.Fatalf("SetContinuous(true): %v", err)
	}
	eventually(t, "continuous probes go out", func() bool {
		l := b.Snapshot(last).Latency
		return l.Continuous && l.Probes.Sent >= 4
	})
	if err := b.SetContinuous(false); err != nil {
		t.Fatalf("SetContinuous(false): %v", err)
	}
	sent := b.Snapshot(last).Latency.Probes.Sent
	time.Sleep(150 * time.Millisecond)
	if l := b.Snapshot(last).Latency; l.Continuous || l.Probes.Sent > sent+1 {
		t.Errorf("after stopping got continuous %v and %d sent (was %d), want probing stopped", l.Continuous, l.Probes.Sent, sent)
	}

	t.Chdir(t.TempDir())
	recs := s.Records(0)
	path, err := b.SaveNDJSON(recs)
	if err != nil {
		t.Fatalf("SaveNDJSON: %v", err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lines := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var v map[string]any
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("line %d of %s is not JSON: %v", lines+1, path, err)
		}
		lines++
	}
	if lines != len(recs) || filepath.Dir(path) == "" {
		t.Errorf("got %d lines in %s, want %d", lines, path, len(recs))
	}
}

func TestWatchBackendWithoutProbeChannel(t *testing.T) {
	srv := redistest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := SourceFlags{Redis: []string{srv.URL()}, Patterns: []string{"story:*"}}
	s := openWatchSession(t, ctx, src, WatchOptions{Buffer: 10})
	b := &watchBackend{ctx: ctx, s: s}
	eventually(t, "subscribed", func() bool { return s.Statuses()[0].Up() })
	if err := b.ProbeNow(); err == nil || !strings.Contains(err.Error(), "--probe-channel") {
		t.Errorf("ProbeNow got %v, want an error naming --probe-channel", err)
	}
	if err := b.SetContinuous(true); err == nil {
		t.Errorf("SetContinuous(true) got nil, want the same error")
	}
	if l := b.Snapshot(0).Latency; l.Error == "" || l.Continuous {
		t.Errorf("got latency %+v, want the error shown and no continuous probing", l)
	}
}

// TestWatchTUI runs the whole program against a real Redis, with keys
// from a pipe and the output recorded: a publish is drawn escaped (its
// raw control sequence never reaches the terminal), x sends a probe and q
// quits. (It reads the output bytes rather than a VT emulator's screen:
// x/vt v0.1.0 disagrees with the renderer about the cursor position.)
func TestWatchTUI(t *testing.T) {
	srv := redistest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := SourceFlags{Redis: []string{srv.URL()}, Channels: []string{"story:published"}}
	opts := WatchOptions{Buffer: 100, ProbeInterval: time.Second, programOptions: []tea.ProgramOption{
		tea.WithWindowSize(120, 30), tea.WithEnvironment([]string{"TERM=xterm-256color"})}}
	s := openWatchSession(t, ctx, src, opts)
	keys, keysW := io.Pipe()
	defer keysW.Close()
	var out, stderr lockedBuffer
	done := make(chan error, 1)
	go func() { done <- runWatch(ctx, s, opts, keys, &out, &stderr) }()
	// The renderer writes only the cells that changed and may move the
	// cursor over a blank instead of writing it, so compare without spaces.
	drawn := func() string { return strings.ReplaceAll(ansi.Strip(out.String()), " ", "") }
	defer func() {
		if t.Failed() {
			t.Logf("output so far (stripped):\n%s\nstderr: %s", drawn(), stderr.String())
		}
	}()

	waitNumSub(t, srv, "story:published", 1)
	eventually(t, "the TUI draws its sources", func() bool {
		return strings.Contains(drawn(), "story:published")
	})
	const evil = "hello \x1b]52;c;aGk=\x07 \x1b[2J from redis"
	srv.CLI("PUBLISH", "story:published", evil)
	eventually(t, "the message is drawn escaped", func() bool {
		return strings.Contains(drawn(), `hello\x1b]52;c;aGk=\x07\x1b[2Jfromredis`)
	})
	if raw := out.String(); strings.Contains(raw, "\x1b]52;c;aGk=") || strings.Contains(raw, "\x1b[2J from") {
		t.Fatalf("the payload's raw escape sequence reached the terminal")
	}
	io.WriteString(keysW, "x")
	eventually(t, "the probe shows in the stream", func() bool {
		return strings.Contains(drawn(), "[probe")
	})
	io.WriteString(keysW, "q")
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("runWatch got %v, want nil after q", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("q did not end the TUI")
	}
}

func TestWatchBackendRedisRestart(t *testing.T) {
	srv := redistest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := SourceFlags{Redis: []string{srv.URL()}, Channels: []string{"story:published"}}
	opts := WatchOptions{Buffer: 100}
	s := openWatchSession(t, ctx, src, opts)
	b := &watchBackend{ctx: ctx, s: s}
	eventually(t, "subscribed", func() bool { return s.Statuses()[0].Up() })
	var seq uint64
	snap := func() *tui.Redis {
		sn := b.Snapshot(seq)
		for _, r := range sn.NewRecords {
			seq = r.Seq
		}
		return sn.Redis
	}
	srv.Kill()
	eventually(t, "the sources show Redis down with a reason", func() bool {
		r := snap()
		return r.State != feed.StateSubscribed && r.Error != ""
	})
	srv.Restart()
	eventually(t, "the sources show Redis subscribed again", func() bool {
		r := snap()
		return r.State == feed.StateSubscribed && r.Error == "" && r.Reconnects >= 1
	})
}

// TestWatchSSEFatal: an endpoint answering 401 shows as failed in the
// TUI, which keeps running; after q the error gives exit status 3.
func TestWatchSSEFatal(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no token", http.StatusUnauthorized)
	}))
	defer hs.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := SourceFlags{SSE: []string{"app-1=" + hs.URL + "/events"}}
	opts := WatchOptions{Buffer: 100, programOptions: []tea.ProgramOption{
		tea.WithWindowSize(100, 30), tea.WithEnvironment([]string{"TERM=xterm-256color"})}}
	s := openWatchSession(t, ctx, src, opts)
	keys, keysW := io.Pipe()
	defer keysW.Close()
	var out, stderr lockedBuffer
	done := make(chan error, 1)
	go func() { done <- runWatch(ctx, s, opts, keys, &out, &stderr) }()
	// Only changed cells are redrawn, so look for the parts that are new.
	eventually(t, "the endpoint shows failed with its status", func() bool {
		d := ansi.Strip(out.String())
		return s.Sources()[0].Status().State == feed.StateFailed && strings.Contains(d, "401")
	})
	io.WriteString(keysW, "q")
	select {
	case err := <-done:
		if code := exitCode(err); code != exitUnreachable {
			t.Errorf("got %v (exit %d), want exit %d", err, code, exitUnreachable)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("q did not end the TUI")
	}
}

// TestWatchStartsWithRedisDown: watch opens while nothing listens on the
// Redis port, shows Redis retrying with the reason in the header, and
// subscribes once redis-server starts there.
func TestWatchStartsWithRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	srv.Kill()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := SourceFlags{Redis: []string{srv.URL()}, Channels: []string{"story:published"}}
	s := openWatchSession(t, ctx, src, WatchOptions{Buffer: 100})
	b := &watchBackend{ctx: ctx, s: s}
	eventually(t, "the header names why Redis is down", func() bool {
		sn := b.Snapshot(0)
		return sn.Redis != nil && sn.Redis.State != feed.StateSubscribed && strings.Contains(sn.Redis.Error, "refused")
	})
	if _, err := b.Publish("story:published", "x"); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("Publish while down: got %v, want an error saying the connection is refused", err)
	}
	srv.Restart()
	waitNumSub(t, srv, "story:published", 1)
	srv.CLI("PUBLISH", "story:published", "after the restart")
	eventually(t, "the message arrives and Redis shows subscribed", func() bool {
		sn := b.Snapshot(0)
		got := false
		for _, r := range sn.NewRecords {
			got = got || (r.Kind == feed.KindMessage && r.Data == "after the restart")
		}
		return got && sn.Redis.State == feed.StateSubscribed && sn.Redis.Error == ""
	})
}

func TestByNode(t *testing.T) {
	counts := map[string]map[string]int64{
		"127.0.0.1:7002": {"c": 0},
		"127.0.0.1:7000": {"c": 2, "d": 5},
		"127.0.0.1:7001": {},
	}
	got := byNode(counts, "c")
	want := []tui.NodeCount{{Node: "127.0.0.1:7000", Subscribers: 2}, {Node: "127.0.0.1:7001", Subscribers: 0}, {Node: "127.0.0.1:7002", Subscribers: 0}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if got := byNode(map[string]map[string]int64{"one": {"c": 1}}, "c"); got != nil {
		t.Errorf("single node: got %v, want nil (no breakdown outside a cluster)", got)
	}
}
