package relay

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fanscope/fanscope/ssex"
)

// syncBuffer is a bytes.Buffer safe for the logger and the test at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type testRelay struct {
	*Relay
	addr string
	logs *syncBuffer
	stop func() // ends Serve and waits for it
}

// startRelay serves a relay for cfg on a free loopback port until the test ends.
func startRelay(t testing.TB, cfg Config) *testRelay {
	t.Helper()
	logs := &syncBuffer{}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatalf("new relay: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Serve(ctx, ln) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("serve: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Errorf("serve did not return within 15s of its context ending")
			}
		})
	}
	t.Cleanup(stop)
	return &testRelay{Relay: r, addr: ln.Addr().String(), logs: logs, stop: stop}
}

// sseConn is one raw HTTP/1.1 connection reading an event stream with
// ssex's parser (an independent, WHATWG-exact reader). One goroutine per
// connection, no transport goroutines, so a thousand fit under -race.
type sseConn struct {
	conn net.Conn
	resp *http.Response
	rd   *ssex.Reader
}

func dialSSE(addr, target string, header map[string]string) (*sseConn, error) {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	var req strings.Builder
	fmt.Fprintf(&req, "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n", target, addr)
	for k, v := range header {
		fmt.Fprintf(&req, "%s: %s\r\n", k, v)
	}
	req.WriteString("\r\n")
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(conn, req.String()); err != nil {
		conn.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		conn.Close()
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return &sseConn{conn: conn, resp: resp, rd: ssex.NewReader(resp.Body, 0)}, nil
}

func mustDial(t testing.TB, addr, target string, header map[string]string) *sseConn {
	t.Helper()
	c, err := dialSSE(addr, target, header)
	if err != nil {
		t.Fatalf("connect %s: %v", target, err)
	}
	t.Cleanup(func() { c.conn.Close() })
	if c.resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: got status %d, want 200", target, c.resp.StatusCode)
	}
	if ct := c.resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("GET %s: got Content-Type %q, want text/event-stream", target, ct)
	}
	return c
}

// next returns the next observation, failing after timeout.
func (c *sseConn) next(timeout time.Duration) (ssex.Observation, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(timeout))
	return c.rd.Next()
}

// nextEvent skips comments and returns the next event.
func (c *sseConn) nextEvent(timeout time.Duration) (ssex.Observation, error) {
	for {
		o, err := c.next(timeout)
		if err != nil || o.Kind == ssex.ObsEvent {
			return o, err
		}
	}
}

type wantEvent struct{ typ, id, data string }

func expectEvents(t *testing.T, c *sseConn, want ...wantEvent) {
	t.Helper()
	for i, w := range want {
		o, err := c.nextEvent(10 * time.Second)
		if err != nil {
			t.Fatalf("event %d: %v, want %+v", i, err, w)
		}
		got := wantEvent{o.Type, o.LastEventID, o.Data}
		if got != w {
			t.Fatalf("event %d: got %+v, want %+v", i, got, w)
		}
	}
}

// waitFor polls cond for up to 10 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 10s waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitConnections(t testing.TB, r *testRelay, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d live connections", n), func() bool { return r.Stats().Connections == n })
}

func TestPublishBecomesEvent(t *testing.T) {
	r := startRelay(t, Config{History: 100})
	c := mustDial(t, r.addr, DefaultPath, nil)
	waitConnections(t, r, 1)
	tests := []struct {
		name, channel, payload string
		want                   wantEvent
	}{
		{"json", "story:published", `{"storyId":"s1","title":"Hi"}`, wantEvent{"story-published", "", `{"storyId":"s1","title":"Hi"}`}},
		{"nested channel", "story:comment:new", "x", wantEvent{"story-comment-new", "", "x"}},
		{"no colon", "plain", "x", wantEvent{"plain", "", "x"}},
		{"multi-line", "c", "line1\nline2\nline3", wantEvent{"c", "", "line1\nline2\nline3"}},
		{"trailing newline", "c", "a\n", wantEvent{"c", "", "a\n"}},
		{"empty lines inside", "c", "a\n\n\nb", wantEvent{"c", "", "a\n\n\nb"}},
		{"crlf and cr", "c", "a\r\nb\rc", wantEvent{"c", "", "a\nb\nc"}},
		{"leading colon", "c", ":not a comment", wantEvent{"c", "", ":not a comment"}},
		{"leading spaces", "c", "  two spaces", wantEvent{"c", "", "  two spaces"}},
		{"field-like line", "c", "x\nevent: evil\nid: 999", wantEvent{"c", "", "x\nevent: evil\nid: 999"}},
		{"unicode", "c", "héllo ✓ 🙂", wantEvent{"c", "", "héllo ✓ 🙂"}},
		{"newline in channel", "a:b\nevent: x", "p", wantEvent{"a-b-event- x", "", "p"}},
		{"invalid utf-8 (a browser decodes it to U+FFFD)", "c", "a\xffb", wantEvent{"c", "", "a\uFFFDb"}},
		{"nul byte", "c", "a\x00b", wantEvent{"c", "", "a\x00b"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := r.Publish(tt.channel, tt.payload)
			if id != uint64(i+1) {
				t.Fatalf("publish returned id %d, want %d", id, i+1)
			}
			tt.want.id = strconv.Itoa(i + 1)
			expectEvents(t, c, tt.want)
		})
	}
}

func TestEmptyPayloadIsSkippedAndStreamSurvives(t *testing.T) {
	r := startRelay(t, Config{History: 10})
	c := mustDial(t, r.addr, DefaultPath, nil)
	waitConnections(t, r, 1)
	if id := r.Publish("c", ""); id != 0 {
		t.Fatalf("empty payload: got id %d, want 0 (not relayed)", id)
	}
	r.Publish("c", "after")
	expectEvents(t, c, wantEvent{"c", "1", "after"})
	if got := r.Stats().EmptySkipped; got != 1 {
		t.Errorf("empty_payloads_skipped: got %d, want 1", got)
	}
}

func TestLastEventIDReplaysExactlyTheMissedEvents(t *testing.T) {
	r := startRelay(t, Config{History: 100})
	a := mustDial(t, r.addr, DefaultPath, nil)
	waitConnections(t, r, 1)
	for i := 1; i <= 5; i++ {
		r.Publish("story:published", "m"+strconv.Itoa(i))
	}
	expectEvents(t, a, wantEvent{"story-published", "1", "m1"}, wantEvent{"story-published", "2", "m2"}, wantEvent{"story-published", "3", "m3"})
	a.conn.Close()
	waitConnections(t, r, 0)
	r.Publish("story:published", "m6")
	r.Publish("other:thing", "m7")

	b := mustDial(t, r.addr, DefaultPath, map[string]string{"Last-Event-ID": "3"})
	expectEvents(t, b,
		wantEvent{"story-published", "4", "m4"}, wantEvent{"story-published", "5", "m5"},
		wantEvent{"story-published", "6", "m6"}, wantEvent{"other-thing", "7", "m7"})
	waitConnections(t, r, 1)
	r.Publish("story:published", "m8")
	// Exactly the missed ones: the next thing after the replay is live m8,
	// not a repeat.
	expectEvents(t, b, wantEvent{"story-published", "8", "m8"})

	// A new client (no Last-Event-ID) gets no replay at all.
	n := mustDial(t, r.addr, DefaultPath, nil)
	waitConnections(t, r, 2)
	r.Publish("story:published", "m9")
	expectEvents(t, n, wantEvent{"story-published", "9", "m9"})

	// Up to date: nothing replayed.
	u := mustDial(t, r.addr, DefaultPath, map[string]string{"Last-Event-ID": "9"})
	waitConnections(t, r, 3)
	r.Publish("story:published", "m10")
	expectEvents(t, u, wantEvent{"story-published", "10", "m10"})
}

func TestReplayIsBoundedByHistory(t *testing.T) {
	tests := []struct {
		name, last string
		want       []wantEvent
	}{
		{"older than history: what is held", "1", []wantEvent{{"c", "5", "m5"}, {"c", "6", "m6"}, {"c", "7", "m7"}}},
		{"inside history", "5", []wantEvent{{"c", "6", "m6"}, {"c", "7", "m7"}}},
		{"unknown id (relay restarted)", "99", nil},
		{"not a number", "abc", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := startRelay(t, Config{History: 3})
			for i := 1; i <= 7; i++ {
				r.Publish("c", "m"+strconv.Itoa(i))
			}
			c := mustDial(t, r.addr, DefaultPath, map[string]string{"Last-Event-ID": tt.last})
			waitConnections(t, r, 1)
			// A live marker after the replay shows where the replay ended.
			marker := r.Publish("c", "marker")
			want := append(append([]wantEvent(nil), tt.want...), wantEvent{"c", strconv.FormatUint(marker, 10), "marker"})
			expectEvents(t, c, want...)
			if got := r.Stats().HistoryHeld; got != 3 {
				t.Errorf("history_held: got %d, want 3", got)
			}
		})
	}
}

func TestToken(t *testing.T) {
	r := startRelay(t, Config{Token: "s3cret"})
	tests := []struct {
		name   string
		target string
		header map[string]string
		want   int
	}{
		{"no token", DefaultPath, nil, 401},
		{"wrong query token", DefaultPath + "?token=nope", nil, 401},
		{"query token", DefaultPath + "?token=s3cret", nil, 200},
		{"bearer", DefaultPath, map[string]string{"Authorization": "Bearer s3cret"}, 200},
		{"bearer lower-case scheme", DefaultPath, map[string]string{"Authorization": "bearer s3cret"}, 200},
		{"wrong bearer", DefaultPath, map[string]string{"Authorization": "Bearer s3cre"}, 401},
		{"basic", DefaultPath, map[string]string{"Authorization": "Basic s3cret"}, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := dialSSE(r.addr, tt.target, tt.header)
			if err != nil {
				t.Fatal(err)
			}
			defer c.conn.Close()
			if c.resp.StatusCode != tt.want {
				t.Fatalf("got status %d, want %d", c.resp.StatusCode, tt.want)
			}
			if tt.want == 401 && !strings.HasPrefix(c.resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("got WWW-Authenticate %q, want a Bearer challenge", c.resp.Header.Get("WWW-Authenticate"))
			}
			if tt.want == 200 {
				waitConnections(t, r, 1)
				r.Publish("c", tt.name)
				o, err := c.nextEvent(10 * time.Second)
				if err != nil || o.Data != tt.name {
					t.Fatalf("got %+v, %v; want the event %q", o, err, tt.name)
				}
				c.conn.Close()
				waitConnections(t, r, 0)
			}
		})
	}
	// /healthz stays open for load balancers.
	resp, err := http.Get("http://" + r.addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/healthz with a token set: got %d, want 200", resp.StatusCode)
	}
}

func TestKeepAliveComments(t *testing.T) {
	const period = 100 * time.Millisecond
	r := startRelay(t, Config{KeepAlive: period})
	c := mustDial(t, r.addr, DefaultPath, nil)
	start := time.Now()
	var pings int
	for pings < 5 {
		o, err := c.next(10 * time.Second)
		if err != nil {
			t.Fatalf("after %d pings: %v", pings, err)
		}
		if o.Kind != ssex.ObsComment || o.Data != "ping" {
			t.Fatalf("got %v %q, want the comment \"ping\"", o.Kind, o.Data)
		}
		pings++
	}
	// Five pings cannot come faster than four periods apart (loose, one-sided).
	if el := time.Since(start); el < 4*period-10*time.Millisecond {
		t.Errorf("5 pings in %s, want them at least a %s period apart", el, period)
	}
	if got := r.Stats().KeepAlivesSent; got < 5 {
		t.Errorf("keepalives_sent: got %d, want >= 5", got)
	}
}

func TestNoKeepAliveWhenZero(t *testing.T) {
	r := startRelay(t, Config{})
	c := mustDial(t, r.addr, DefaultPath, nil)
	waitConnections(t, r, 1)
	time.Sleep(100 * time.Millisecond)
	r.Publish("c", "x")
	o, err := c.next(10 * time.Second)
	if err != nil || o.Kind != ssex.ObsEvent {
		t.Fatalf("got %+v, %v; want the event first (no pings)", o, err)
	}
}

func TestThousandClientsGetEveryEvent(t *testing.T) {
	if testing.Short() {
		t.Skip("1000 connections")
	}
	const clients, events = 1000, 20
	// PUBLISH on a real redis-server → redisx → relay → 1000 loopback clients.
	r := startRelay(t, Config{History: 64, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	conns := make([]*sseConn, clients)
	for i := range conns {
		conns[i] = mustDial(t, r.addr, DefaultPath, nil)
	}
	ctx, rc := feedFromRedis(t, r, "story:published")
	waitConnections(t, r, clients)
	for i := 1; i <= events; i++ {
		if _, err := rc.Publish(ctx, "story:published", fmt.Sprintf(`{"storyId":"s%d"}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	for ci, c := range conns {
		wg.Go(func() {
			for i := 1; i <= events; i++ {
				o, err := c.nextEvent(30 * time.Second)
				want := fmt.Sprintf(`{"storyId":"s%d"}`, i)
				if err != nil || o.Type != "story-published" || o.LastEventID != strconv.Itoa(i) || o.Data != want {
					errs <- fmt.Errorf("client %d event %d: got %+v, %v; want id %d data %s", ci, i, o, err, i, want)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	n := 0
	for err := range errs {
		if n < 5 {
			t.Error(err)
		}
		n++
	}
	if n > 0 {
		t.Fatalf("%d of %d clients missed events", n, clients)
	}
	if st := r.Stats(); st.Connections != clients || st.SlowClientsDropped != 0 {
		t.Errorf("stats: got %d connections, %d dropped; want %d, 0", st.Connections, st.SlowClientsDropped, clients)
	}
}

// TestStuckClientDoesNotDelayOthers: one client stops reading. The write
// timeout is an hour, so only the per-client queues keep the rest flowing
// (r3labs/sse/v2's fan-out, which the relay once used, stalled the good
// client once the stuck one's socket and 64-event channel filled).
func TestStuckClientDoesNotDelayOthers(t *testing.T) {
	r := startRelay(t, Config{History: 8, ClientQueue: 8, WriteTimeout: time.Hour})
	stuck, err := net.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	_ = stuck.(*net.TCPConn).SetReadBuffer(4096)
	fmt.Fprintf(stuck, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", DefaultPath)
	good := mustDial(t, r.addr, DefaultPath, nil)
	waitConnections(t, r, 2)

	payload := strings.Repeat("x", 16<<10)
	const max = 4000
	dropped := 0
	for i := 1; i <= max; i++ {
		id := r.Publish("c", payload+strconv.Itoa(i))
		// The good client gets each event before the next is published.
		o, err := good.nextEvent(10 * time.Second)
		if err != nil {
			t.Fatalf("good client, event %d (stuck client dropped: %v): %v", i, r.Stats().SlowClientsDropped, err)
		}
		if o.LastEventID != strconv.FormatUint(id, 10) || o.Data != payload+strconv.Itoa(i) {
			t.Fatalf("good client, event %d: got id %s (%d bytes), want id %d", i, o.LastEventID, len(o.Data), id)
		}
		if r.Stats().SlowClientsDropped == 1 {
			if dropped == 0 {
				t.Logf("stuck client dropped after event %d (%d KiB sent)", i, i*16)
			}
			dropped++
			if dropped == 50 { // and it keeps flowing after the drop
				break
			}
		}
	}
	st := r.Stats()
	if st.SlowClientsDropped != 1 {
		t.Fatalf("after %d events of 16 KiB: got %d slow clients dropped, want 1", max, st.SlowClientsDropped)
	}
	waitConnections(t, r, 1)
	if !strings.Contains(r.logs.String(), "too slow") {
		t.Errorf("log has no line saying the stuck client was dropped as too slow:\n%s", r.logs.String())
	}
}

func TestHealthzAndStats(t *testing.T) {
	r := startRelay(t, Config{History: 10})
	c := mustDial(t, r.addr, DefaultPath, nil)
	waitConnections(t, r, 1)
	r.Publish("story:published", "a")
	r.Publish("story:published", "b")
	r.Publish("story:liked", "c")
	expectEvents(t, c, wantEvent{"story-published", "1", "a"}, wantEvent{"story-published", "2", "b"}, wantEvent{"story-liked", "3", "c"})

	resp, err := http.Get("http://" + r.addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok\n" {
		t.Errorf("/healthz: got %d %q, want 200 \"ok\\n\"", resp.StatusCode, body)
	}

	resp, err = http.Get("http://" + r.addr + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatalf("/stats: %v", err)
	}
	want := map[string]any{
		"connections":    1.0,
		"events_relayed": 3.0,
		"per_channel":    map[string]any{"story:published": 2.0, "story:liked": 1.0},
		"last_event_id":  3.0,
	}
	for k, w := range want {
		if fmt.Sprint(got[k]) != fmt.Sprint(w) {
			t.Errorf("/stats %s: got %v, want %v", k, got[k], w)
		}
	}

	resp2, err := http.Get("http://" + r.addr + "/nope")
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != 404 {
		t.Errorf("/nope: got %d, want 404", resp2.StatusCode)
	}
}

func TestConnectDisconnectLogLines(t *testing.T) {
	r := startRelay(t, Config{})
	a := mustDial(t, r.addr, DefaultPath, nil)
	waitConnections(t, r, 1)
	b := mustDial(t, r.addr, DefaultPath, nil)
	waitConnections(t, r, 2)
	a.conn.Close()
	waitConnections(t, r, 1)
	b.conn.Close()
	waitConnections(t, r, 0)
	waitFor(t, "two disconnect lines", func() bool { return strings.Count(r.logs.String(), "sse client disconnected") == 2 })
	logs := r.logs.String()
	for _, want := range []string{
		`msg="sse client connected" remote=` + a.conn.LocalAddr().String() + " active=1",
		`msg="sse client connected" remote=` + b.conn.LocalAddr().String() + " active=2",
		"active=1", "active=0",
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
}

func TestShutdownEndsStreams(t *testing.T) {
	r := startRelay(t, Config{KeepAlive: time.Hour})
	c := mustDial(t, r.addr, DefaultPath, nil)
	waitConnections(t, r, 1)
	r.stop()
	for {
		_, err := c.next(10 * time.Second)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			t.Fatalf("after shutdown: got %v, want the stream to end (EOF)", err)
		}
	}
	if !strings.Contains(r.logs.String(), "reason=\"relay shutting down\"") {
		t.Errorf("log lacks the shutdown disconnect:\n%s", r.logs.String())
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"relative path", Config{Path: "events"}},
		{"path clash", Config{Path: "/stats"}},
		{"negative history", Config{History: -1}},
		{"negative keepalive", Config{KeepAlive: -time.Second}},
		{"token with space", Config{Token: "a b"}},
		{"two origins", Config{AllowOrigin: "http://a,http://b"}},
		{"path with a space (panicked after listening)", Config{Path: "/a b"}},
		{"path with a mux wildcard", Config{Path: "/a/{b}"}},
		{"path with a query", Config{Path: "/a?b"}},
		{"path with a trailing slash", Config{Path: "/a/"}},
		{"path /", Config{Path: "/"}},
		{"path ..", Config{Path: "/a/../b"}},
		{"path /ws", Config{Path: WSPath}},
		{"path clashing with a poll endpoint", Config{Path: "/a/poll"}},
		{"origin null", Config{AllowOrigin: "null"}},
		{"origin file", Config{AllowOrigin: "file:///tmp/x"}},
		{"origin with a path", Config{AllowOrigin: "http://a/b"}},
		{"origin without a scheme", Config{AllowOrigin: "localhost:3000"}},
		{"keepalive 1ns", Config{KeepAlive: time.Nanosecond}},
		{"write timeout 1ns", Config{WriteTimeout: time.Nanosecond}},
		{"negative history bytes", Config{HistoryBytes: -1}},
		{"negative client queue bytes", Config{ClientQueueBytes: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.cfg); err == nil {
				t.Fatalf("got no error, want one wrapping ErrConfig")
			}
		})
	}
}

func TestEventType(t *testing.T) {
	tests := []struct{ in, want string }{
		{"story:published", "story-published"},
		{"a:b:c", "a-b-c"},
		{"plain", "plain"},
		{"x\r\ny", "x--y"},
	}
	for _, tt := range tests {
		if got := EventType(tt.in); got != tt.want {
			t.Errorf("EventType(%q): got %q, want %q", tt.in, got, tt.want)
		}
	}
}

// dialStuck opens an event stream and never reads it.
func dialStuck(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.(*net.TCPConn).SetReadBuffer(4096)
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", DefaultPath)
	return c
}

// TestWriteTimeoutDropsStuckClient: with a queue too large to fill, the
// per-client write timeout is what drops a client that stops reading.
func TestWriteTimeoutDropsStuckClient(t *testing.T) {
	r := startRelay(t, Config{WriteTimeout: 200 * time.Millisecond, ClientQueue: 100000})
	dialStuck(t, r.addr)
	good := mustDial(t, r.addr, DefaultPath, nil)
	waitConnections(t, r, 2)
	payload := strings.Repeat("y", 16<<10)
	for i := 1; r.Stats().WriteTimeouts == 0; i++ {
		if i > 4000 {
			t.Fatalf("after %d events of 16 KiB: no write timed out", i-1)
		}
		r.Publish("c", payload)
		if _, err := good.nextEvent(10 * time.Second); err != nil {
			t.Fatalf("good client, event %d: %v", i, err)
		}
		if i%50 == 0 {
			time.Sleep(50 * time.Millisecond) // let the stuck write reach its deadline
		}
	}
	waitConnections(t, r, 1)
	st := r.Stats()
	if st.WriteTimeouts != 1 || st.SlowClientsDropped != 0 {
		t.Errorf("got %d write timeouts and %d queue drops, want 1 and 0", st.WriteTimeouts, st.SlowClientsDropped)
	}
	// The disconnect is logged once the connection is let go, which may
	// come a moment after the counters moved.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(r.logs.String(), `reason="write timed out"`) {
		if time.Now().After(deadline) {
			t.Fatalf("log lacks the write timeout:\n%s", r.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestShutdownWithStuckClient: a client whose writes are blocked (an hour's
// write timeout, a queue that never fills) does not hold up the shutdown.
func TestShutdownWithStuckClient(t *testing.T) {
	r := startRelay(t, Config{WriteTimeout: time.Hour, ClientQueue: 100000})
	dialStuck(t, r.addr)
	waitConnections(t, r, 1)
	payload := strings.Repeat("z", 16<<10)
	for range 1000 { // 16 MiB: far more than the socket buffers hold
		r.Publish("c", payload)
	}
	r.stop() // fails the test if Serve does not return within 15s
	if r.Stats().Connections != 0 {
		t.Errorf("after shutdown: got %d connections, want 0", r.Stats().Connections)
	}
}

// TestLongReplayFitsASmallClientQueue: a connection's queue is sized for
// its own replay, so a replay far longer than ClientQueue arrives whole.
func TestLongReplayFitsASmallClientQueue(t *testing.T) {
	r := startRelay(t, Config{History: 500, ClientQueue: 4})
	for i := 1; i <= 300; i++ {
		r.Publish("c", "m"+strconv.Itoa(i))
	}
	c := mustDial(t, r.addr, DefaultPath, map[string]string{"Last-Event-ID": "0"})
	want := make([]wantEvent, 0, 301)
	for i := 1; i <= 300; i++ {
		want = append(want, wantEvent{"c", strconv.Itoa(i), "m" + strconv.Itoa(i)})
	}
	expectEvents(t, c, want...)
	waitConnections(t, r, 1)
	r.Publish("c", "live")
	expectEvents(t, c, wantEvent{"c", "301", "live"})
	if st := r.Stats(); st.SlowClientsDropped != 0 {
		t.Errorf("got %d clients dropped, want 0", st.SlowClientsDropped)
	}
}

// TestReconnectingClientsSeeEveryIDOnce: while events flood in and pings
// go out, clients keep dropping and reconnecting with Last-Event-ID; across
// all their connections each sees every id exactly once, in order. This
// is the replay → live hand-over under load.
func TestReconnectingClientsSeeEveryIDOnce(t *testing.T) {
	const clients, events = 12, 1200
	r := startRelay(t, Config{History: events, KeepAlive: MinKeepAlive, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	published := make(chan struct{})
	go func() {
		defer close(published)
		for i := 1; i <= events; i++ {
			r.Publish("c", "m"+strconv.Itoa(i))
			if i%100 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	for ci := range clients {
		wg.Go(func() {
			last := 0
			for conn := 0; last < events; conn++ {
				// "0" on the first connection: everything from id 1.
				c, err := dialSSE(r.addr, DefaultPath, map[string]string{"Last-Event-ID": strconv.Itoa(last)})
				if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
					continue // dropped during its replay (a flood overran it): reconnect
				}
				if err != nil {
					errs <- fmt.Errorf("client %d: connect: %v", ci, err)
					return
				}
				// Read a few events on this connection, then drop it.
				for n := 0; n < 37+ci && last < events; n++ {
					o, err := c.nextEvent(20 * time.Second)
					if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
						break // dropped as too slow: reconnect, as EventSource does
					}
					if err != nil {
						c.conn.Close()
						errs <- fmt.Errorf("client %d conn %d after id %d: %v", ci, conn, last, err)
						return
					}
					if o.LastEventID != strconv.Itoa(last+1) || o.Data != "m"+strconv.Itoa(last+1) {
						c.conn.Close()
						errs <- fmt.Errorf("client %d conn %d: got id %s %q after id %d, want id %d", ci, conn, o.LastEventID, o.Data, last, last+1)
						return
					}
					last++
				}
				c.conn.Close()
			}
		})
	}
	wg.Wait()
	<-published
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st := r.Stats()
	t.Logf("%d connections, %d dropped as too slow on the way", st.ConnectionsTotal, st.SlowClientsDropped)
}

func TestCORS(t *testing.T) {
	tests := []struct {
		name, allow, method string
		token               bool
		wantStatus          int
		wantHeader          map[string]string
	}{
		{"off", "", "GET", false, 200, map[string]string{"Access-Control-Allow-Origin": ""}},
		{"off preflight", "", "OPTIONS", false, 405, map[string]string{"Access-Control-Allow-Origin": ""}},
		{"any origin", "*", "GET", false, 200, map[string]string{"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Credentials": ""}},
		{"one origin", "http://localhost:3000", "GET", false, 200, map[string]string{
			"Access-Control-Allow-Origin": "http://localhost:3000", "Access-Control-Allow-Credentials": "true", "Vary": "Origin"}},
		{"preflight", "http://localhost:3000", "OPTIONS", true, 204, map[string]string{
			"Access-Control-Allow-Origin": "http://localhost:3000", "Access-Control-Allow-Methods": "GET",
			"Access-Control-Allow-Headers": "Authorization, Last-Event-ID, Cache-Control, If-None-Match"}},
		{"401 is readable cross-origin", "*", "GET", true, 401, map[string]string{"Access-Control-Allow-Origin": "*"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{AllowOrigin: tt.allow}
			if tt.token {
				cfg.Token = "tok"
			}
			r := startRelay(t, cfg)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, tt.method, "http://"+r.addr+DefaultPath, nil)
			req.Header.Set("Origin", "http://localhost:3000")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("got status %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			for k, v := range tt.wantHeader {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s: got %q, want %q", k, got, v)
				}
			}
		})
	}
}
