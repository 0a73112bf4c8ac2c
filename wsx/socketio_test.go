package wsx

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/internal/feedtest"
)

// sioDir is the folder holding the reference server (server.js) and its
// node_modules: $FANSCOPE_SIOSERVER_DIR, else internal/sioserver.
func sioDir() string {
	if d := os.Getenv("FANSCOPE_SIOSERVER_DIR"); d != "" {
		return d
	}
	return filepath.Join("..", "internal", "sioserver")
}

type sioProc struct {
	cmd  *exec.Cmd
	port string
}

// startSIO runs the real Node socket.io v4 server; env adds settings such
// as PING_INTERVAL. The test skips when node or the package is missing.
func startSIO(t *testing.T, env ...string) *sioProc {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed: the Socket.IO tests need node and `npm ci --prefix internal/sioserver`")
	}
	dir, _ := filepath.Abs(sioDir())
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "socket.io")); err != nil {
		t.Skipf("socket.io is not installed in %s: run `npm ci --prefix internal/sioserver` (or set FANSCOPE_SIOSERVER_DIR)", dir)
	}
	cmd := exec.Command(node, "server.js")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), append([]string{"PORT=0"}, env...)...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start node server.js: %v", err)
	}
	p := &sioProc{cmd: cmd}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Signal(syscall.SIGCONT)
		cmd.Process.Kill()
		cmd.Wait()
	})
	line := make(chan string, 1)
	go func() {
		br := bufio.NewReader(out)
		s, _ := br.ReadString('\n')
		line <- s
		io.Copy(io.Discard, br)
	}()
	select {
	case s := <-line:
		port, ok := strings.CutPrefix(strings.TrimSpace(s), "listening ")
		if !ok {
			t.Fatalf("server.js said %q, want \"listening PORT\"", s)
		}
		p.port = port
	case <-time.After(20 * time.Second):
		t.Fatal("server.js did not start listening")
	}
	return p
}

func (p *sioProc) url(pathQuery string) string { return "http://127.0.0.1:" + p.port + pathQuery }

func newTestSIO(t *testing.T, cfg Config) *SocketIO {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "rt"
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 10 * time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 80 * time.Millisecond
	}
	s, err := NewSocketIO(cfg)
	if err != nil {
		t.Fatalf("NewSocketIO: %v", err)
	}
	s.jitter = maxJitter
	return s
}

func TestSocketIOEvents(t *testing.T) {
	srv := startSIO(t)
	s := newTestSIO(t, Config{URL: srv.url("/?token=qt0k")})
	if got, want := s.Path(), "socketio:rt"; got != want {
		t.Errorf("Path() = %q, want %q", got, want)
	}
	sink := feedtest.NewSink()
	feedtest.Start(t, s, sink)
	recs := sink.WaitFor(t, 0, "the done event", func(r []feed.Record) bool {
		ev := feedtest.OfKind(r, feed.KindEvent)
		return len(ev) > 0 && ev[len(ev)-1].Type == "done"
	})
	want := []struct{ typ, data string }{
		{"hello", "world"},
		{"obj", `{"a":1,"b":[1,2],"s":"x"}`},
		{"multi", "first"},
		{"num", "42"},
		{"quoted", "he said \"hi\"\n"},
		{"none", ""},
		{"bin", "\xff\x00\x01"},
		{"nested", `{"file":{"_placeholder":true,"num":0}}`},
		{"query", "qt0k"}, // the URL's query reached the handshake
		{"done", "end"},
	}
	ev := feedtest.OfKind(recs, feed.KindEvent)
	if len(ev) != len(want) {
		t.Fatalf("got %d events, want %d:\n%s", len(ev), len(want), feedtest.Dump(recs))
	}
	for i, w := range want {
		if ev[i].Type != w.typ || ev[i].Data != w.data || ev[i].Source != feed.SourceSocketIO || ev[i].Endpoint != "rt" {
			t.Errorf("event %d = %s %q %q, want socketio %q %q", i, ev[i].Source, ev[i].Type, ev[i].Data, w.typ, w.data)
		}
	}
	st := s.Status()
	details := strings.Join(st.Details, "; ")
	if st.State != feed.StateConnected || !strings.Contains(details, "ping 25s, timeout 20s") || !strings.Contains(details, "2 binary events") {
		t.Errorf("Status: state %s details %q, want connected with the ping settings and 2 binary events", st.State, details)
	}
	if st.StallAfter != 45*time.Second {
		t.Errorf("StallAfter = %s, want pingInterval + pingTimeout = 45s", st.StallAfter)
	}
	if strings.Contains(st.URL, "qt0k") {
		t.Errorf("Status.URL %q shows the token", st.URL)
	}
}

func TestSocketIONamespaceAuth(t *testing.T) {
	srv := startSIO(t)
	t.Run("rejected", func(t *testing.T) {
		s := newTestSIO(t, Config{URL: srv.url("/private"), Token: "wrong-t0ken"})
		sink := feedtest.NewSink()
		err := feedtest.Start(t, s, sink).Wait(t)
		want := `namespace /private refused the connection (44): not authorized (data: {"reason":"bad token"})`
		if !errors.Is(err, ErrFatal) || !strings.Contains(err.Error(), want) {
			t.Fatalf("Run = %v, want ErrFatal with %q", err, want)
		}
		if strings.Contains(err.Error(), "wrong-t0ken") {
			t.Errorf("error shows the token: %v", err)
		}
		recs := sink.All()
		if got := strings.Join(feedtest.States(recs), " "); got != "connecting failed" {
			t.Errorf("states = %q, want \"connecting failed\"", got)
		}
		st := s.Status()
		if st.State != feed.StateFailed || !strings.Contains(strings.Join(st.Details, "; "), "namespace error: not authorized") {
			t.Errorf("Status: %s %v, want failed with the namespace error", st.State, st.Details)
		}
		select {
		case <-s.Connected():
			t.Error("Connected() closed for a refused namespace")
		default:
		}
	})
	t.Run("admitted", func(t *testing.T) {
		s := newTestSIO(t, Config{URL: srv.url("/private"), Token: "s3cret"})
		sink := feedtest.NewSink()
		feedtest.Start(t, s, sink)
		recs := sink.WaitFor(t, 0, "welcome", feedtest.CountKind(feed.KindEvent, 1))
		if e := feedtest.OfKind(recs, feed.KindEvent)[0]; e.Type != "welcome" || e.Data != "s3cret" {
			t.Errorf("event = %q %q, want welcome s3cret (the auth payload)", e.Type, e.Data)
		}
	})
}

func TestSocketIOServerDisconnect(t *testing.T) {
	srv := startSIO(t)
	s := newTestSIO(t, Config{URL: srv.url("/?scenario=kick")})
	sink := feedtest.NewSink()
	feedtest.Start(t, s, sink)
	recs := sink.WaitFor(t, 0, "a reconnect after the kick", func(r []feed.Record) bool {
		return len(feedtest.StateRecords(r, feed.StateConnected)) >= 2 && len(feedtest.OfKind(r, feed.KindEvent)) >= 2
	})
	got := strings.Join(feedtest.States(recs), " ")
	if !strings.HasPrefix(got, "connecting connected disconnected reconnecting connecting connected") {
		t.Errorf("states = %q, want a disconnect then a reconnect", got)
	}
	d, _ := feedtest.LastState(recs, feed.StateDisconnected)
	if !strings.Contains(d.Error, "server disconnected the socket (41 on namespace /)") {
		t.Errorf("disconnected error = %q, want the 41 named", d.Error)
	}
}

// A server that stops sending pings (frozen with SIGSTOP) is stalled after
// pingInterval + pingTimeout; the client reconnects once it runs again.
func TestSocketIOPingTimeout(t *testing.T) {
	srv := startSIO(t, "PING_INTERVAL=300", "PING_TIMEOUT=300")
	s := newTestSIO(t, Config{URL: srv.url("/?scenario=tick"), DialTimeout: 300 * time.Millisecond})
	sink := feedtest.NewSink()
	feedtest.Start(t, s, sink)
	sink.WaitFor(t, 0, "ticks and a ping", func(r []feed.Record) bool {
		return len(feedtest.OfKind(r, feed.KindEvent)) >= 3 && !s.Status().LastKeepAlive.IsZero()
	})
	if st := s.Status(); st.StallAfter != 600*time.Millisecond {
		t.Errorf("StallAfter = %s, want 600ms", st.StallAfter)
	}
	if err := srv.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	recs := sink.WaitFor(t, 0, "stalled", func(r []feed.Record) bool { return len(feedtest.StateRecords(r, feed.StateReconnecting)) >= 1 })
	if got := strings.Join(feedtest.States(recs), " "); !strings.HasPrefix(got, "connecting connected stalled reconnecting") {
		t.Errorf("states = %q, want stalled before reconnecting", got)
	}
	if st, _ := feedtest.LastState(recs, feed.StateStalled); !strings.Contains(st.Error, "nothing received for 600ms") {
		t.Errorf("stalled error = %q", st.Error)
	}
	if err := srv.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	n := len(feedtest.OfKind(recs, feed.KindEvent))
	sink.WaitFor(t, 0, "ticks after the reconnect", func(r []feed.Record) bool {
		return len(feedtest.StateRecords(r, feed.StateConnected)) >= 2 && len(feedtest.OfKind(r, feed.KindEvent)) >= n+2
	})
}

// fakeSIO is a Go Engine.IO server that sends exact packets, for what the
// reference server does not send: other namespaces, ack ids, malformed
// packets.
func fakeSIO(t *testing.T, packets ...string) string {
	srv := wsServer(t, func(ctx context.Context, c *websocket.Conn, _ int, done <-chan struct{}) {
		c.Write(ctx, websocket.MessageText, []byte(`0{"sid":"s","upgrades":[],"pingInterval":1000,"pingTimeout":500}`))
		_, b, err := c.Read(ctx)
		if err != nil || string(b) != "40/ns,{\"token\":\"tk\"}" {
			c.Close(websocket.StatusPolicyViolation, "bad connect packet "+string(b))
			return
		}
		for _, p := range packets {
			typ := websocket.MessageText
			if strings.HasPrefix(p, "BIN:") {
				typ, p = websocket.MessageBinary, p[4:]
			}
			c.Write(ctx, typ, []byte(p))
		}
		hold(ctx, c, done)
	})
	return srv.URL
}

func TestSocketIOFraming(t *testing.T) {
	url := fakeSIO(t,
		`40/ns,{"sid":"x"}`,
		`42["root only","skip"]`,    // another namespace
		`42/other,["other","skip"]`, // another namespace
		`42/ns,17["acked","a"]`,     // with an ack id
		`42/ns,["nested",{"k":[1,"two"]}]`,
		`42/ns,not json`, // malformed
		`42/ns,[1,2]`,    // name not a string
		`BIN:stray`,      // binary frame with no event
		`452-/ns,["two",{"_placeholder":true,"num":1},{"_placeholder":true,"num":0}]`,
		`BIN:zero`,
		`BIN:one`,
		`6`,
		`9what`,
		`42/ns,["last","x"]`,
	)
	s := newTestSIO(t, Config{URL: url + "/ns", Token: "tk"})
	sink := feedtest.NewSink()
	feedtest.Start(t, s, sink)
	recs := sink.WaitFor(t, 0, "the last event", func(r []feed.Record) bool {
		ev := feedtest.OfKind(r, feed.KindEvent)
		return len(ev) > 0 && ev[len(ev)-1].Type == "last"
	})
	want := []string{`acked a`, `nested {"k":[1,"two"]}`, `two one`, `last x`}
	ev := feedtest.OfKind(recs, feed.KindEvent)
	var got []string
	for _, e := range ev {
		got = append(got, e.Type+" "+e.Data)
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("events = %q, want %q", got, want)
	}
	st := s.Status()
	if d := strings.Join(st.Details, "; "); !strings.Contains(d, "4 malformed packets") || !strings.Contains(d, "ping 1s, timeout 500ms") {
		t.Errorf("Details = %q, want 4 malformed packets and the ping settings", d)
	}
}

func TestSocketIOURL(t *testing.T) {
	tests := []struct {
		url, path, ns, dial string
	}{
		{"http://h:1", "", "/", "ws://h:1/socket.io/?EIO=4&transport=websocket"},
		{"https://h/admin/?token=a", "", "/admin", "wss://h/socket.io/?token=a&EIO=4&transport=websocket"},
		{"ws://h/chat", "/rt/", "/chat", "ws://h/rt/?EIO=4&transport=websocket"},
	}
	for _, tc := range tests {
		s, err := NewSocketIO(Config{URL: tc.url, EnginePath: tc.path})
		if err != nil {
			t.Fatalf("NewSocketIO(%q): %v", tc.url, err)
		}
		if s.Namespace() != tc.ns || s.dialURL != tc.dial {
			t.Errorf("%q: namespace %q dial %q, want %q %q", tc.url, s.Namespace(), s.dialURL, tc.ns, tc.dial)
		}
	}
	if _, err := NewSocketIO(Config{URL: "http://h/", EnginePath: "socket.io"}); !errors.Is(err, ErrUsage) {
		t.Errorf("engine path without a leading slash: %v, want ErrUsage", err)
	}
}

// A server that pings but never answers the namespace connect is given up
// on after the dial timeout, and retried.
func TestSocketIOConnectUnanswered(t *testing.T) {
	srv := wsServer(t, func(ctx context.Context, c *websocket.Conn, _ int, done <-chan struct{}) {
		c.Write(ctx, websocket.MessageText, []byte(`0{"sid":"s","upgrades":[],"pingInterval":50,"pingTimeout":5000}`))
		tk := time.NewTicker(50 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-done:
				return
			case <-tk.C:
				if c.Write(ctx, websocket.MessageText, []byte("2")) != nil {
					return
				}
			}
		}
	})
	s := newTestSIO(t, Config{URL: srv.URL, DialTimeout: 300 * time.Millisecond})
	sink := feedtest.NewSink()
	feedtest.Start(t, s, sink)
	recs := sink.WaitFor(t, 0, "a retry", func(r []feed.Record) bool { return len(feedtest.StateRecords(r, feed.StateReconnecting)) >= 1 })
	re, _ := feedtest.LastState(recs, feed.StateReconnecting)
	if !strings.Contains(re.Error, "namespace / did not answer the connect packet within 300ms") {
		t.Errorf("reconnecting error = %q", re.Error)
	}
	if n := len(feedtest.StateRecords(recs, feed.StateConnected)); n != 0 {
		t.Errorf("%d connected states, want 0", n)
	}
}
