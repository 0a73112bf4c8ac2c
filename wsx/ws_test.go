package wsx

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/internal/feedtest"
)

// wsHandler serves one accepted connection; n counts connections from 1.
// done closes when the test ends, so a handler that never reads returns.
type wsHandler func(ctx context.Context, c *websocket.Conn, n int, done <-chan struct{})

func wsServer(t *testing.T, h wsHandler) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	wsServe(t, srv, h)
	srv.Start()
	return srv
}

func wsServe(t *testing.T, srv *httptest.Server, h wsHandler) {
	var n atomic.Int32
	done := make(chan struct{})
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		h(r.Context(), c, int(n.Add(1)), done)
	})
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(done) })
}

func wsURL(srv *httptest.Server) string { return "ws" + strings.TrimPrefix(srv.URL, "http") }

// hold keeps a connection open, answering pings, until it closes or the
// test ends.
func hold(ctx context.Context, c *websocket.Conn, done <-chan struct{}) {
	rctx := c.CloseRead(ctx)
	select {
	case <-rctx.Done():
	case <-done:
	}
}

func newTestClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "app"
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 10 * time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 80 * time.Millisecond
	}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	c.jitter = maxJitter
	return c
}

func TestWSMessages(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	binary := []byte{0xff, 0x00, 0xfe, 'x'}
	srv := wsServer(t, func(ctx context.Context, c *websocket.Conn, _ int, done <-chan struct{}) {
		c.Write(ctx, websocket.MessageText, []byte("hello"))
		c.Write(ctx, websocket.MessageBinary, binary)
		// One message in three frames.
		w, _ := c.Writer(ctx, websocket.MessageText)
		for _, part := range []string{"frag", "ment", "ed"} {
			w.Write([]byte(part))
		}
		w.Close()
		c.Write(ctx, websocket.MessageText, big)
		c.Write(ctx, websocket.MessageText, []byte(""))
		hold(ctx, c, done)
	})
	cl := newTestClient(t, Config{URL: wsURL(srv)})
	if got, want := cl.Path(), "ws:app"; got != want {
		t.Errorf("Path() = %q, want %q", got, want)
	}
	sink := feedtest.NewSink()
	feedtest.Start(t, cl, sink)
	recs := sink.WaitFor(t, 0, "five messages", feedtest.CountKind(feed.KindEvent, 5))
	want := []string{"hello", string(binary), "fragmented", string(big), ""}
	ev := feedtest.OfKind(recs, feed.KindEvent)
	for i, w := range want {
		r := ev[i]
		if r.Data != w {
			t.Errorf("message %d: got %d bytes %.20q, want %d bytes %.20q", i, len(r.Data), r.Data, len(w), w)
		}
		if r.Source != feed.SourceWS || r.Type != "message" || r.Endpoint != "app" || r.Path() != "ws:app" {
			t.Errorf("message %d: got source %s type %q endpoint %q, want ws, message, app", i, r.Source, r.Type, r.Endpoint)
		}
		if r.TS.IsZero() {
			t.Errorf("message %d has no timestamp", i)
		}
	}
	if got := feedtest.States(recs); len(got) < 2 || got[0] != feed.StateConnecting || got[1] != feed.StateConnected {
		t.Errorf("states = %v, want connecting, connected first", got)
	}
	select {
	case <-cl.Connected():
	default:
		t.Error("Connected() not closed after the connection was established")
	}
	st := cl.Status()
	if st.State != feed.StateConnected || st.Events != 5 || st.HTTPStatus != http.StatusSwitchingProtocols {
		t.Errorf("Status: state %s, events %d, http %d; want connected, 5, 101", st.State, st.Events, st.HTTPStatus)
	}
}

func TestWSCloseCodes(t *testing.T) {
	tests := []struct {
		code      websocket.StatusCode
		reason    string
		fatal     bool
		wantRetry string // the backoff after the close: the floor for a clean close
		wantText  string
	}{
		{websocket.StatusNormalClosure, "bye", false, "retry in 10ms", "close 1000 normal closure: bye"},
		{websocket.StatusGoingAway, "restarting", false, "retry in 10ms", "close 1001 going away: restarting"},
		{websocket.StatusInternalError, "boom", false, "retry in 20ms", "close 1011 internal error: boom"},
		{websocket.StatusPolicyViolation, "banned", true, "", "close 1008 policy violation: banned"},
	}
	for _, tc := range tests {
		t.Run(tc.wantText, func(t *testing.T) {
			srv := wsServer(t, func(ctx context.Context, c *websocket.Conn, n int, done <-chan struct{}) {
				c.Write(ctx, websocket.MessageText, []byte("before"))
				if n == 1 {
					c.Close(tc.code, tc.reason)
					return
				}
				hold(ctx, c, done)
			})
			cl := newTestClient(t, Config{URL: wsURL(srv)})
			sink := feedtest.NewSink()
			r := feedtest.Start(t, cl, sink)
			if tc.fatal {
				err := r.Wait(t)
				if !errors.Is(err, ErrFatal) || !strings.Contains(err.Error(), tc.wantText) {
					t.Fatalf("Run = %v, want an ErrFatal naming %q", err, tc.wantText)
				}
				recs := sink.All()
				f, ok := feedtest.LastState(recs, feed.StateFailed)
				if !ok || !strings.Contains(f.Error, tc.wantText) {
					t.Errorf("no failed state naming %q:\n%s", tc.wantText, feedtest.Dump(recs))
				}
				if n := len(feedtest.StateRecords(recs, feed.StateReconnecting)); n != 0 {
					t.Errorf("%d reconnecting states after a fatal close, want 0", n)
				}
				if st := cl.Status(); st.State != feed.StateFailed || !strings.Contains(strings.Join(st.Details, "; "), tc.wantText) {
					t.Errorf("Status: state %s details %v, want failed with %q", st.State, st.Details, tc.wantText)
				}
				return
			}
			recs := sink.WaitFor(t, 0, "a second connection", func(r []feed.Record) bool {
				return len(feedtest.StateRecords(r, feed.StateConnected)) >= 2 && len(feedtest.OfKind(r, feed.KindEvent)) >= 2
			})
			re, _ := feedtest.LastState(recs, feed.StateReconnecting)
			if !strings.Contains(re.Error, tc.wantText) || !strings.Contains(re.Error, tc.wantRetry) {
				t.Errorf("reconnecting error = %q, want %q and %q", re.Error, tc.wantText, tc.wantRetry)
			}
			d, _ := feedtest.LastState(recs, feed.StateDisconnected)
			if !strings.Contains(d.Error, tc.wantText) {
				t.Errorf("disconnected error = %q, want %q", d.Error, tc.wantText)
			}
			st := cl.Status()
			if st.Reconnects != 1 || !strings.Contains(strings.Join(st.Details, "; "), tc.wantText) {
				t.Errorf("Status: reconnects %d details %v, want 1 and %q", st.Reconnects, st.Details, tc.wantText)
			}
		})
	}
}

func TestWSHandshakeRefused(t *testing.T) {
	tests := []struct {
		code  int
		fatal bool
		want  string
	}{
		{http.StatusUnauthorized, true, "401 Unauthorized: \"no token\" (check -H/--bearer-env)"},
		{http.StatusForbidden, true, "403 Forbidden"},
		{http.StatusNotFound, true, "check the URL path"},
		{http.StatusOK, true, "not a WebSocket endpoint"},
		{http.StatusServiceUnavailable, false, "503 Service Unavailable"},
	}
	for _, tc := range tests {
		t.Run(http.StatusText(tc.code), func(t *testing.T) {
			var hits atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				w.Header().Set("Retry-After", "0")
				w.WriteHeader(tc.code)
				w.Write([]byte("no token\n"))
			}))
			defer srv.Close()
			cl := newTestClient(t, Config{URL: wsURL(srv) + "/feed?token=hunter2"})
			sink := feedtest.NewSink()
			r := feedtest.Start(t, cl, sink)
			if tc.fatal {
				err := r.Wait(t)
				if !errors.Is(err, ErrFatal) || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("Run = %v, want ErrFatal with %q", err, tc.want)
				}
				if strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "token=***") {
					t.Errorf("error %q shows the token or not the masked URL", err)
				}
				f, _ := feedtest.LastState(sink.All(), feed.StateFailed)
				if f.Status != tc.code {
					t.Errorf("failed state status = %d, want %d", f.Status, tc.code)
				}
				if hits.Load() != 1 {
					t.Errorf("%d handshakes, want 1 (no retry)", hits.Load())
				}
				return
			}
			recs := sink.WaitFor(t, 0, "three attempts", func(r []feed.Record) bool { return len(feedtest.StateRecords(r, feed.StateReconnecting)) >= 3 })
			re, _ := feedtest.LastState(recs, feed.StateReconnecting)
			if re.Status != tc.code || !strings.Contains(re.Error, tc.want) {
				t.Errorf("reconnecting = status %d %q, want %d %q", re.Status, re.Error, tc.code, tc.want)
			}
			if err := r.Stop(t); err != nil {
				t.Errorf("Run after cancel = %v, want nil", err)
			}
		})
	}
}

func TestWSPing(t *testing.T) {
	srv := wsServer(t, func(ctx context.Context, c *websocket.Conn, _ int, done <-chan struct{}) { hold(ctx, c, done) })
	cl := newTestClient(t, Config{URL: wsURL(srv), PingInterval: 20 * time.Millisecond})
	sink := feedtest.NewSink()
	feedtest.Start(t, cl, sink)
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := cl.Status()
		if !st.LastKeepAlive.IsZero() && strings.Contains(strings.Join(st.Details, ";"), "ping rtt") {
			if !st.LastByte.Equal(st.LastKeepAlive) && st.LastByte.Before(st.LastKeepAlive) {
				t.Errorf("LastByte %v before LastKeepAlive %v", st.LastByte, st.LastKeepAlive)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pong seen: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A server that stops answering (here: it never reads, so it never
// answers pings) goes stalled, then the client reconnects.
func TestWSStalledThenReconnect(t *testing.T) {
	srv := wsServer(t, func(ctx context.Context, c *websocket.Conn, n int, done <-chan struct{}) {
		if n == 1 {
			c.Write(ctx, websocket.MessageText, []byte("then silence"))
			select {
			case <-ctx.Done():
			case <-done:
			}
			return
		}
		c.Write(ctx, websocket.MessageText, []byte("back"))
		hold(ctx, c, done)
	})
	cl := newTestClient(t, Config{URL: wsURL(srv), StallTimeout: 300 * time.Millisecond, PingInterval: 50 * time.Millisecond})
	sink := feedtest.NewSink()
	feedtest.Start(t, cl, sink)
	recs := sink.WaitFor(t, 0, "stalled and a new connection", func(r []feed.Record) bool {
		return len(feedtest.StateRecords(r, feed.StateConnected)) >= 2
	})
	got := strings.Join(feedtest.States(recs), " ")
	if want := "connecting connected stalled reconnecting connecting connected"; !strings.HasPrefix(got, want) {
		t.Errorf("states = %q, want %q first", got, want)
	}
	s, _ := feedtest.LastState(recs, feed.StateStalled)
	if !strings.Contains(s.Error, "nothing received for 300ms") {
		t.Errorf("stalled error = %q, want it to name the 300ms threshold", s.Error)
	}
	if st := cl.Status(); st.Stalls < 1 {
		t.Errorf("Status.Stalls = %d, want at least 1", st.Stalls)
	}
}

// The default threshold follows SPEC.md: once two keep-alives came, 3× the
// longest gap between bytes (with a floor), so a frozen path is noticed
// long before the 45 s a new connection gets.
func TestWSAdaptiveStall(t *testing.T) {
	srv := wsServer(t, func(ctx context.Context, c *websocket.Conn, _ int, done <-chan struct{}) { hold(ctx, c, done) })
	fz := newFreezer(t, strings.TrimPrefix(srv.URL, "http://"))
	cl := newTestClient(t, Config{URL: "ws://" + fz.addr(), PingInterval: 30 * time.Millisecond})
	cl.stallBefore = time.Hour // only the measured threshold can fire
	cl.stallFloor = 500 * time.Millisecond
	sink := feedtest.NewSink()
	feedtest.Start(t, cl, sink)
	<-cl.Connected()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := cl.Status()
		if st.StallAfter < time.Hour {
			if st.StallAfter < 500*time.Millisecond {
				t.Fatalf("StallAfter = %s, below the floor", st.StallAfter)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("threshold never measured: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	fz.freeze()
	recs := sink.WaitFor(t, 0, "stalled, then connected again", func(r []feed.Record) bool {
		return len(feedtest.StateRecords(r, feed.StateStalled)) == 1 && len(feedtest.StateRecords(r, feed.StateConnected)) >= 2
	})
	got := feedtest.States(recs)
	if i := strings.Index(strings.Join(got, " "), "stalled reconnecting connecting connected"); i < 0 {
		t.Errorf("states = %v, want stalled before the reconnect", got)
	}
}

func TestWSOversizedMessageSkipped(t *testing.T) {
	srv := wsServer(t, func(ctx context.Context, c *websocket.Conn, _ int, done <-chan struct{}) {
		c.Write(ctx, websocket.MessageText, []byte("small"))
		c.Write(ctx, websocket.MessageText, bytes.Repeat([]byte("x"), 5000))
		c.Write(ctx, websocket.MessageText, bytes.Repeat([]byte("y"), 1024))
		hold(ctx, c, done)
	})
	cl := newTestClient(t, Config{URL: wsURL(srv), MaxMessage: 1024})
	sink := feedtest.NewSink()
	feedtest.Start(t, cl, sink)
	recs := sink.WaitFor(t, 0, "two messages", feedtest.CountKind(feed.KindEvent, 2))
	ev := feedtest.OfKind(recs, feed.KindEvent)
	if ev[0].Data != "small" || len(ev[1].Data) != 1024 {
		t.Errorf("got %q and %d bytes, want small and the 1024-byte message", ev[0].Data, len(ev[1].Data))
	}
	if n := len(feedtest.StateRecords(recs, feed.StateConnected)); n != 1 {
		t.Errorf("%d connections, want 1: an oversized message must not cost the connection", n)
	}
	st := cl.Status()
	if len(st.Warnings) != 1 || !strings.Contains(st.Warnings[0], "1 messages over 1024 bytes skipped") {
		t.Errorf("Warnings = %v, want one counting the skipped message", st.Warnings)
	}
}

func TestWSTLS(t *testing.T) {
	srv := httptest.NewUnstartedServer(nil)
	wsServe(t, srv, func(ctx context.Context, c *websocket.Conn, _ int, done <-chan struct{}) {
		c.Write(ctx, websocket.MessageText, []byte("secure"))
		hold(ctx, c, done)
	})
	srv.StartTLS()
	url := "wss" + strings.TrimPrefix(srv.URL, "https")
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}

	t.Run("test CA", func(t *testing.T) {
		cl := newTestClient(t, Config{URL: url, TLSCA: ca})
		sink := feedtest.NewSink()
		feedtest.Start(t, cl, sink)
		recs := sink.WaitFor(t, 0, "a message over TLS", feedtest.CountKind(feed.KindEvent, 1))
		if d := feedtest.OfKind(recs, feed.KindEvent)[0].Data; d != "secure" {
			t.Errorf("data = %q, want secure", d)
		}
	})
	t.Run("unknown CA is fatal", func(t *testing.T) {
		cl := newTestClient(t, Config{URL: url})
		err := feedtest.Start(t, cl, feedtest.NewSink()).Wait(t)
		if !errors.Is(err, ErrFatal) || !strings.Contains(err.Error(), "--tls-ca") {
			t.Errorf("Run = %v, want ErrFatal with a --tls-ca hint", err)
		}
	})
	t.Run("insecure", func(t *testing.T) {
		cl := newTestClient(t, Config{URL: url, TLSInsecure: true})
		sink := feedtest.NewSink()
		feedtest.Start(t, cl, sink)
		sink.WaitFor(t, 0, "a message over TLS", feedtest.CountKind(feed.KindEvent, 1))
	})
}

func TestWSHeadersSent(t *testing.T) {
	got := make(chan http.Header, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Clone()
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer srv.Close()
	cl := newTestClient(t, Config{URL: wsURL(srv), Header: http.Header{"Authorization": {"Bearer sekrit"}, "X-Team": {"a"}}})
	err := feedtest.Start(t, cl, feedtest.NewSink()).Wait(t)
	h := <-got
	if h.Get("Authorization") != "Bearer sekrit" || h.Get("X-Team") != "a" {
		t.Errorf("handshake headers = %v, want Authorization and X-Team", h)
	}
	if err == nil || strings.Contains(err.Error(), "sekrit") {
		t.Errorf("Run = %v, want an error without the token", err)
	}
}

func TestWSUnreachableRetries(t *testing.T) {
	ln := httptest.NewServer(http.NotFoundHandler())
	addr := strings.TrimPrefix(ln.URL, "http://")
	ln.Close() // nothing listens there now
	cl := newTestClient(t, Config{URL: "ws://" + addr + "/?apikey=k3y"})
	sink := feedtest.NewSink()
	r := feedtest.Start(t, cl, sink)
	recs := sink.WaitFor(t, 0, "retries", func(r []feed.Record) bool { return len(feedtest.StateRecords(r, feed.StateReconnecting)) >= 3 })
	re, _ := feedtest.LastState(recs, feed.StateReconnecting)
	if !strings.Contains(re.Error, "refused") || strings.Contains(re.Error, "k3y") {
		t.Errorf("reconnecting error = %q, want a refused connection without the key", re.Error)
	}
	if st := cl.Status(); !strings.Contains(st.URL, "apikey=***") {
		t.Errorf("Status.URL = %q, want apikey masked", st.URL)
	}
	if err := r.Stop(t); err != nil {
		t.Errorf("Run = %v, want nil after cancel", err)
	}
}

func TestWSBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"scheme", Config{URL: "ftp://x/"}, "scheme"},
		{"no host", Config{URL: "ws:///path"}, "no host"},
		{"header name", Config{URL: "ws://x/", Header: http.Header{"Bad Name": {"v"}}}, "invalid header name"},
		{"header value", Config{URL: "ws://x/", Header: http.Header{"X": {"a\nb"}}}, "control characters"},
		{"ca file", Config{URL: "wss://x/", TLSCA: "/nonexistent/ca.pem"}, "--tls-ca"},
		{"negative backoff", Config{URL: "ws://x/", MaxBackoff: -time.Second}, "negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewClient(tc.cfg)
			if !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewClient = %v, want ErrUsage with %q", err, tc.want)
			}
		})
	}
}

func TestParseEndpoint(t *testing.T) {
	tests := []struct {
		in, name, url, err string
	}{
		{"ws://h:9/x", "h:9", "ws://h:9/x", ""},
		{"app=wss://h/x?token=a=b", "app", "wss://h/x?token=a=b", ""},
		{"wss://h/x", "h:443", "wss://h/x", ""},
		{"https://h/x", "h:443", "https://h/x", ""},
		{"", "", "", "empty value"},
		{"=ws://h/", "", "", "empty NAME"},
		{"app=h/x", "", "", "no scheme"},
		{"app=ftp://h/?token=zz", "", "", "not one of"},
	}
	for _, tc := range tests {
		name, url, err := ParseEndpoint(tc.in)
		if tc.err != "" {
			if !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), tc.err) || strings.Contains(err.Error(), "zz") {
				t.Errorf("ParseEndpoint(%q) error = %v, want ErrUsage with %q and no secret", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || name != tc.name || url != tc.url {
			t.Errorf("ParseEndpoint(%q) = %q, %q, %v; want %q, %q", tc.in, name, url, err, tc.name, tc.url)
		}
	}
}

func TestWSSubprotocol(t *testing.T) {
	got := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"graphql-ws"}})
		if err != nil {
			return
		}
		defer c.CloseNow()
		got <- c.Subprotocol()
		c.Close(websocket.StatusNormalClosure, "")
	}))
	defer srv.Close()
	cl := newTestClient(t, Config{URL: wsURL(srv), Subprotocols: []string{"graphql-ws"}})
	feedtest.Start(t, cl, feedtest.NewSink())
	select {
	case p := <-got:
		if p != "graphql-ws" {
			t.Errorf("negotiated %q, want graphql-ws", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no handshake")
	}
}

// TestSecretsNeverShown: the URL's password and token, the -H credentials
// and the Socket.IO auth token appear in no record, Status or error,
// whatever went wrong; and masking is by field, so a one-letter password
// that also occurs in the error's words leaves those words whole.
func TestSecretsNeverShown(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	closedAddr := strings.TrimPrefix(closed.URL, "http://")
	closed.Close() // nothing listens there now
	refuses := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer refuses.Close()
	refusesAddr := strings.TrimPrefix(refuses.URL, "http://")
	header := http.Header{"Authorization": {"Bearer b3arer-s3cret"}, "Cookie": {"sid=c00kie-s3cret"}}
	secrets := []string{"pw-s3cret", "tok-s3cret", "b3arer-s3cret", "c00kie-s3cret", "auth-s3cret"}
	tests := []struct {
		name, url string
		socketIO  bool
		fatal     bool
		want      string // in the last state record's error
	}{
		{"refused", "ws://u:pw-s3cret@" + closedAddr + "/x?token=tok-s3cret", false, false, "connection refused"},
		{"socketio refused", "http://u:pw-s3cret@" + closedAddr + "/ns?token=tok-s3cret", true, false, "connection refused"},
		{"401", "ws://u:pw-s3cret@" + refusesAddr + "/x?token=tok-s3cret", false, true, "401 Unauthorized"},
		{"socketio 401", "http://u:pw-s3cret@" + refusesAddr + "/ns?token=tok-s3cret", true, true, "401 Unauthorized"},
		// A password that is a letter of the error's words: by field, the
		// words stay whole (substring masking would print "conn***ction").
		{"short password", "ws://u:e@" + closedAddr + "/x", false, false, "connection refused"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Name: "app", URL: tc.url, Header: header, Token: "auth-s3cret",
				MinBackoff: 10 * time.Millisecond, MaxBackoff: 80 * time.Millisecond}
			var src feedtest.StatusSource
			var err error
			if tc.socketIO {
				src, err = NewSocketIO(cfg)
			} else {
				src, err = NewClient(cfg)
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := feedtest.CheckMasked(t, src, tc.fatal, tc.want, secrets...); tc.fatal && !errors.Is(err, ErrFatal) {
				t.Errorf("Run = %v, want ErrFatal", err)
			}
		})
	}
}

// TestWSRedirects: a handshake redirected to another origin goes there
// without the credentials and -H headers, and the redirect is shown,
// masked; a redirect loop is refused after netx.MaxRedirects, not
// followed until the dial timeout.
func TestWSRedirects(t *testing.T) {
	got := make(chan http.Header, 4)
	b := wsServer(t, func(ctx context.Context, c *websocket.Conn, n int, done <-chan struct{}) {
		c.Write(ctx, websocket.MessageText, []byte("from b"))
		hold(ctx, c, done)
	})
	inner := b.Config.Handler
	b.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Clone()
		inner.ServeHTTP(w, r)
	})
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/loop" {
			http.Redirect(w, r, "/loop", http.StatusFound)
			return
		}
		http.Redirect(w, r, wsURL(b)+"/feed?token=tok-s3cret", http.StatusFound)
	}))
	defer a.Close()
	header := http.Header{"Authorization": {"Bearer b3arer-s3cret"}, "X-Team": {"t"}}

	cl := newTestClient(t, Config{URL: wsURL(a) + "/away", Header: header})
	sink := feedtest.NewSink()
	feedtest.Start(t, cl, sink)
	recs := sink.WaitFor(t, 0, "the message from b", feedtest.CountKind(feed.KindEvent, 1))
	h := <-got
	if h.Get("Authorization") != "" || h.Get("X-Team") != "" || h.Get("Referer") != "" {
		t.Errorf("the other origin got %v, want no credentials, -H headers or Referer", h)
	}
	if !feedtest.HasState(feed.StateConnecting, "redirected (302) to ")(recs) {
		t.Errorf("no state record showing the redirect:\n%s", feedtest.Dump(recs))
	}
	feedtest.NoSecrets(t, recs, nil, "tok-s3cret", "b3arer-s3cret")

	loop := newTestClient(t, Config{URL: wsURL(a) + "/loop", Header: header})
	err := feedtest.Start(t, loop, feedtest.NewSink()).Wait(t)
	if !errors.Is(err, ErrFatal) || !strings.Contains(err.Error(), "stopped after 10 redirects") {
		t.Errorf("Run = %v, want ErrFatal saying it stopped after 10 redirects", err)
	}
}
