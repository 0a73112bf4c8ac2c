package cli

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/internal/redistest"
	"github.com/fanscope/fanscope/probes"
	"github.com/fanscope/fanscope/redisx"
)

// waitMonitoring waits until n MONITOR connections of fanscope are open on s.
func waitMonitoring(t *testing.T, s *redistest.Server, n int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		m := 0
		for _, line := range strings.Split(s.CLI("CLIENT", "LIST"), "\n") {
			if strings.Contains(line, " name=fanscope-monitor ") && strings.Contains(line, " flags=O ") {
				m++
			}
		}
		if m >= n {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no MONITOR connection of fanscope on %s", s.Addr())
}

func TestMonitorCommandPublishers(t *testing.T) {
	s := redistest.Start(t)
	_, wait := startCmd(t, context.Background(), nil, "monitor", "--redis", s.URL(), "-c", "story:published", "-p", "feed:*", "--json", "-n", "5")
	waitMonitoring(t, s, 1)
	pub, err := redisx.Open(context.Background(), redisx.Options{URLs: []string{s.URL()}, ClientName: "backend-7"})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	payloads := []string{`{"storyId":"s1","title":"a \"quoted\" \\ title"}`, "line\nbreak\r\n\ttab", "\x00\x01binary\xff\xfe", "caf\xe9 latin-1", "feed:x"}
	channels := []string{"story:published", "story:published", "feed:1", "story:published", "feed:2"}
	ctx := context.Background()
	_, _ = pub.Publish(ctx, "story:other", "filtered out")
	for i, p := range payloads {
		if _, err := pub.Publish(ctx, channels[i], p); err != nil {
			t.Fatal(err)
		}
	}
	res := wait()
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	if !strings.Contains(res.stderr, "half") || !strings.HasPrefix(res.stderr, "fanscope: warning: MONITOR") {
		t.Errorf("stderr %q, want the cost warning first", res.stderr)
	}
	var pubs []map[string]any
	for _, r := range decodeLines(t, res.stdout) {
		if r["kind"] == "publish" {
			pubs = append(pubs, r)
		}
	}
	if len(pubs) != len(payloads) {
		t.Fatalf("got %d publish records, want %d:\n%s", len(pubs), len(payloads), res.stdout)
	}
	for i, r := range pubs {
		data, ok := r["data"].(string)
		if b64, isB64 := r["data_b64"].(string); isB64 {
			raw, err := base64.StdEncoding.DecodeString(b64)
			if err != nil {
				t.Fatal(err)
			}
			data, ok = string(raw), true
		}
		if !ok || data != payloads[i] {
			t.Errorf("record %d: data %q, want %q", i, data, payloads[i])
		}
		if r["source"] != "monitor" || r["channel"] != channels[i] || r["client_name"] != "backend-7" ||
			!strings.HasPrefix(r["client"].(string), "127.0.0.1:") {
			t.Errorf("record %d: %v", i, r)
		}
		ts, _ := r["server_ts"].(string)
		if _, err := time.Parse(time.RFC3339Nano, ts); err != nil || len(ts) != len("2026-12-01T10:00:00.000000Z") {
			t.Errorf("record %d: server_ts %q, want RFC 3339 with microseconds", i, ts)
		}
	}
}

func TestMonitorCommandText(t *testing.T) {
	s := redistest.Start(t)
	_, wait := startCmd(t, context.Background(), nil, "monitor", "--redis", s.URL(), "-n", "1", "--no-state")
	waitMonitoring(t, s, 1)
	s.CLI("PUBLISH", "story:published", "\x1b[2J")
	res := wait()
	if res.code != 0 || !strings.Contains(res.stdout, "monitor  story:published by 127.0.0.1:") || !strings.Contains(res.stdout, `\x1b[2J`) ||
		strings.Contains(res.stdout, "\x1b") || strings.Contains(res.stdout, "state") {
		t.Fatalf("exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}
}

func TestMonitorCommandRefused(t *testing.T) {
	s := redistest.Start(t)
	s.CLI("ACL", "SETUSER", "viewer", "on", ">viewer-pw", "allchannels", "~*", "+@all", "-monitor")
	res := runCmd(t, "monitor", "--redis", "redis://viewer:viewer-pw@"+s.Addr(), "--duration", "30s")
	if res.code != 3 || !strings.Contains(res.stderr, "NOPERM") || !strings.Contains(res.stderr, "'monitor'") || strings.Contains(res.stderr+res.stdout, "viewer-pw") {
		t.Fatalf("exit %d, stderr %q; want 3 with the ACL's reason", res.code, res.stderr)
	}
	r := redistest.Start(t, `rename-command MONITOR ""`)
	res = runCmd(t, "monitor", "--redis", r.URL(), "--duration", "30s")
	if res.code != 3 || !strings.Contains(res.stderr, "disabled or renamed") {
		t.Fatalf("renamed: exit %d, stderr %q", res.code, res.stderr)
	}
	res = runCmd(t, "monitor", "--redis", r.URL(), "-n", "-1")
	if res.code != 2 {
		t.Fatalf("-n -1: exit %d, want 2", res.code)
	}
}

func TestMonitorCommandCluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	_, wait := startCmd(t, context.Background(), nil, "monitor", "--cluster", "--redis", cl.URLs()[0], "--json", "-n", "3", "-p", "story:*")
	for _, n := range cl.Nodes {
		waitMonitoring(t, n, 1)
	}
	for _, n := range cl.Nodes {
		n.CLI("PUBLISH", "story:published", "via "+n.Addr())
	}
	res := wait()
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	seen := map[string]bool{}
	for _, r := range decodeLines(t, res.stdout) {
		if r["kind"] == "publish" {
			seen[r["data"].(string)] = true
		}
	}
	for _, n := range cl.Nodes {
		if !seen["via "+n.Addr()] {
			t.Errorf("the publish on %s was not seen; got %v", n.Addr(), seen)
		}
	}
}

// publish_us on loopback against the true delay: a relay that holds each
// message 100 ms, timed on both sides of the PUBLISH call. This is the
// fan-in's use of redisx.Monitor and probes.Publishes, without the TUI.
func TestPublishUSWithinTrueDelay(t *testing.T) {
	s := redistest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := redisx.Open(ctx, redisx.Options{URLs: []string{s.URL()}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m := c.NewMonitor(redisx.MonitorFilter{Channels: []string{"story:published"}})
	monitored := make(chan feed.Record, 16)
	runDone := make(chan error, 1)
	go func() {
		runDone <- m.Run(ctx, feed.SinkFunc(func(r feed.Record) {
			if r.Kind == feed.KindPublish {
				monitored <- r
			}
		}))
	}()
	select {
	case <-m.Connected():
	case err := <-runDone:
		t.Fatalf("monitor ended: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("monitor did not connect")
	}
	delivered := make(chan feed.Record, 16)
	sub, err := c.Subscribe(ctx, redisx.Subscription{Channels: []string{"story:published"}}, feed.SinkFunc(func(r feed.Record) {
		if r.Kind != feed.KindMessage {
			return
		}
		go func() {
			time.Sleep(100 * time.Millisecond) // the relay's delay
			delivered <- feed.Record{TS: time.Now(), Source: feed.SourceSSE, Kind: feed.KindEvent, Endpoint: "app-1", Data: r.Data}
		}()
	}))
	if err != nil {
		t.Fatal(err)
	}
	pubs := probes.NewPublishes("storyId", 0, 0)
	for i := 0; i < 5; i++ {
		payload := fmt.Sprintf(`{"storyId":"s%d"}`, i)
		before := time.Now()
		if _, err := c.Publish(ctx, "story:published", payload); err != nil {
			t.Fatal(err)
		}
		after := time.Now()
		var mon, del feed.Record
		for _, ch := range []chan feed.Record{monitored, delivered} {
			select {
			case r := <-ch:
				if ch == monitored {
					mon = r
				} else {
					del = r
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("publish %d: no record", i)
			}
		}
		at, ok := m.LocalTime(&mon)
		if !ok {
			t.Fatal("no clock offset measured")
		}
		pubs.Add(&mon, at)
		if !pubs.Annotate(&del) {
			t.Fatalf("delivery %q not matched to its publish", del.Data)
		}
		got := time.Duration(del.PublishUS) * time.Microsecond
		// The PUBLISH ran between before and after; the corrected server
		// time is off by at most half the TIME round trip (plus the
		// microseconds both clocks are truncated to).
		slack := m.ClockOffsets()[s.Addr()].RTT/2 + 20*time.Microsecond
		lo, hi := del.TS.Sub(after)-slack, del.TS.Sub(before)+slack
		if got < lo || got > hi || got < 100*time.Millisecond-slack {
			t.Errorf("publish %d: publish_us %s, want within [%s, %s] and at least the relay's 100ms", i, got, lo, hi)
		}
	}
	cancel()
	<-sub.Done()
	if err := <-runDone; err != nil {
		t.Errorf("monitor Run: %v", err)
	}
}
