package browserx

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fanscope/fanscope/feed"
)

// needChromium skips the test when no Chromium is installed; scripts/test
// installs Debian's chromium, so CI runs these tests.
func needChromium(t *testing.T) {
	t.Helper()
	if _, err := FindChromium(); err != nil {
		t.Skipf("browser tests need Chromium: %v", err)
	}
}

// newBrowser is one Chromium for the whole test.
func newBrowser(t *testing.T) *Browser {
	t.Helper()
	needChromium(t)
	b := New()
	t.Cleanup(func() { b.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.Start(ctx); err != nil {
		t.Fatalf("start browser: %v", err)
	}
	return b
}

// collector is a feed.Sink that keeps every record.
type collector struct {
	mu   sync.Mutex
	recs []feed.Record
}

func (c *collector) Emit(r feed.Record) {
	c.mu.Lock()
	c.recs = append(c.recs, r)
	c.mu.Unlock()
}

func (c *collector) all() []feed.Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]feed.Record(nil), c.recs...)
}

// waitFor polls the records until one satisfies ok, or fails the test.
func (c *collector) waitFor(t *testing.T, what string, d time.Duration, ok func(feed.Record) bool) feed.Record {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		for _, r := range c.all() {
			if ok(r) {
				return r
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no record %s within %s; got %s", what, d, describe(c.all()))
	return feed.Record{}
}

func describe(rs []feed.Record) string {
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "\n  %s conn=%d %s state=%q status=%d error=%q type=%q id=%q data=%q", r.Path(), r.Conn, r.Kind, r.State, r.Status, r.Error, r.Type, r.ID, r.Data)
	}
	return b.String()
}

// stream is an event-stream handler that writes each event sent on events
// after delay; ready, when set, gates the response (a session cookie).
type stream struct {
	events chan string
	delay  time.Duration
	before func(w http.ResponseWriter, r *http.Request) bool
	conns  sync.WaitGroup
}

func newStream() *stream { return &stream{events: make(chan string, 16)} }

func (s *stream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.before != nil && !s.before(w, r) {
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	w.(http.Flusher).Flush()
	for {
		select {
		case <-r.Context().Done():
			return
		case ev := <-s.events:
			if s.delay > 0 {
				select {
				case <-time.After(s.delay):
				case <-r.Context().Done():
					return
				}
			}
			fmt.Fprint(w, ev)
			w.(http.Flusher).Flush()
		}
	}
}

// newServer starts a test server closed at the test's end, after the
// paths using it (cleanups run last-registered first, and a server's Close
// waits for its open streams).
func newServer(t *testing.T, tls bool, h http.Handler) *httptest.Server {
	t.Helper()
	var srv *httptest.Server
	if tls {
		srv = httptest.NewTLSServer(h)
	} else {
		srv = httptest.NewServer(h)
	}
	t.Cleanup(srv.Close)
	return srv
}

// running is a Path's Run going in the background.
type running struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error // Run's result, once done is closed
}

// runPath runs p in the background until the test ends or stop is called.
func runPath(t *testing.T, p *Path, sink feed.Sink) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan struct{})}
	go func() {
		r.err = p.Run(ctx, sink)
		close(r.done)
	}()
	t.Cleanup(func() { r.stop() })
	return r
}

// stop cancels Run and returns its result.
func (r *running) stop() error {
	r.cancel()
	select {
	case <-r.done:
		return r.err
	case <-time.After(15 * time.Second):
		return errors.New("Run did not return within 15s of cancel")
	}
}

// failed waits for Run to return by itself and returns its error.
func (r *running) failed(t *testing.T, c *collector) error {
	t.Helper()
	select {
	case <-r.done:
		return r.err
	case <-time.After(20 * time.Second):
		t.Fatalf("Run did not end within 20s; records: %s", describe(c.all()))
		return nil
	}
}

func waitConnected(t *testing.T, p *Path, c *collector) {
	t.Helper()
	select {
	case <-p.Connected():
	case <-time.After(20 * time.Second):
		t.Fatalf("%s conn %d not connected within 20s; records: %s", p.Path(), p.cfg.Conn, describe(c.all()))
	}
}

func TestPathDelayAndContent(t *testing.T) {
	b := newBrowser(t)
	s := newStream()
	s.delay = 150 * time.Millisecond
	srv := newServer(t, false, s)

	p, err := NewPath(b, PathConfig{Name: "app-1", URL: srv.URL + "/events"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p.Path(), "browser:app-1"; got != want {
		t.Errorf("Path() = %q, want %q", got, want)
	}
	c := &collector{}
	run := runPath(t, p, c)
	waitConnected(t, p, c)

	events := []struct{ raw, typ, id, data string }{
		{"data: tok-1\n\n", "message", "", "tok-1"},
		{"event: story\nid: 7\ndata: tok-2\ndata: line 2\n\n", "story", "7", "tok-2\nline 2"},
		{"data: tok-3\n\n", "message", "7", "tok-3"},
	}
	for _, ev := range events {
		trigger := time.Now()
		s.events <- ev.raw
		r := c.waitFor(t, "with data "+ev.data, 10*time.Second, func(r feed.Record) bool {
			return r.Kind == feed.KindEvent && r.Data == ev.data
		})
		if r.Source != feed.SourceBrowser || r.Endpoint != "app-1" || r.Path() != "browser:app-1" {
			t.Errorf("record source/endpoint/path = %s/%s/%s, want browser/app-1/browser:app-1", r.Source, r.Endpoint, r.Path())
		}
		if r.Type != ev.typ || r.ID != ev.id {
			t.Errorf("event %q: type/id = %q/%q, want %q/%q", ev.data, r.Type, r.ID, ev.typ, ev.id)
		}
		// The server writes 150 ms after the trigger; Chromium's own
		// timestamp, mapped onto Go's clock, must say so. Generous bounds:
		// the check is that the time is Chromium's receipt, not that the
		// machine is fast.
		d := r.TS.Sub(trigger)
		t.Logf("event %q: delivered %s after the trigger (server delay 150ms)", ev.data, d.Round(100*time.Microsecond))
		if d < 145*time.Millisecond || d > 1500*time.Millisecond {
			t.Errorf("event %q: record time - trigger = %s, want about 150ms (145ms..1.5s)", ev.data, d)
		}
	}
	st := p.Status()
	if st.State != feed.StateConnected || st.Events != 3 || st.HTTPStatus != 200 || st.RSS <= 0 {
		t.Errorf("status: state %q events %d http %d rss %d, want connected 3 200 >0", st.State, st.Events, st.HTTPStatus, st.RSS)
	}
	if err := run.stop(); err != nil {
		t.Errorf("Run after cancel = %v, want nil", err)
	}
}

func TestPathCORS(t *testing.T) {
	b := newBrowser(t)
	other := newServer(t, false, http.NotFoundHandler()) // the page's origin

	t.Run("without Access-Control-Allow-Origin", func(t *testing.T) {
		s := newStream()
		srv := newServer(t, false, s)
		p, err := NewPath(b, PathConfig{Name: "cors", URL: srv.URL + "/events", Origin: other.URL})
		if err != nil {
			t.Fatal(err)
		}
		c := &collector{}
		err = runPath(t, p, c).failed(t, c)
		if !errors.Is(err, ErrCORS) || !errors.Is(err, ErrFatal) || !strings.Contains(err.Error(), "CORS rejected") || !strings.Contains(err.Error(), other.URL) {
			t.Errorf("Run = %v, want a CORS error naming origin %s", err, other.URL)
		}
		c.waitFor(t, "state failed naming CORS", time.Second, func(r feed.Record) bool {
			return r.Kind == feed.KindState && r.State == feed.StateFailed && strings.Contains(r.Error, "CORS")
		})
		if st := p.Status(); st.State != feed.StateFailed || !strings.Contains(st.Error, "CORS") {
			t.Errorf("status %q %q, want failed with CORS", st.State, st.Error)
		}
	})
	t.Run("with Access-Control-Allow-Origin", func(t *testing.T) {
		s := newStream()
		s.before = func(w http.ResponseWriter, r *http.Request) bool {
			if r.Header.Get("Origin") != other.URL {
				http.Error(w, "want the other origin, got "+r.Header.Get("Origin"), http.StatusBadRequest)
				return false
			}
			w.Header().Set("Access-Control-Allow-Origin", other.URL)
			return true
		}
		srv := newServer(t, false, s)
		p, err := NewPath(b, PathConfig{Name: "cors", URL: srv.URL + "/events", Origin: other.URL})
		if err != nil {
			t.Fatal(err)
		}
		c := &collector{}
		runPath(t, p, c)
		waitConnected(t, p, c)
		s.events <- "data: across\n\n"
		c.waitFor(t, "delivered across origins", 10*time.Second, func(r feed.Record) bool {
			return r.Kind == feed.KindEvent && r.Data == "across"
		})
	})
}

func TestPathConnectionLimit(t *testing.T) {
	b := newBrowser(t)
	s := newStream()
	srv := newServer(t, false, s) // HTTP/1.1

	c := &collector{}
	paths := make([]*Path, 7)
	runs := make([]*running, 7)
	for i := range paths {
		p, err := NewPath(b, PathConfig{Name: "limit", URL: fmt.Sprintf("%s/events?tab=%d", srv.URL, i), Conn: i, WaitAfter: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		paths[i] = p
		runs[i] = runPath(t, p, c)
		if i < 6 {
			// Open them in order so the seventh is the one that waits.
			waitConnected(t, p, c)
		}
	}
	r := c.waitFor(t, "reporting the seventh as waiting", 20*time.Second, func(r feed.Record) bool {
		return r.Kind == feed.KindState && r.Conn == 6 && strings.Contains(r.Error, "connection limit")
	})
	if r.State != feed.StateConnecting {
		t.Errorf("waiting record state %q, want %q", r.State, feed.StateConnecting)
	}
	if st := paths[6].Status(); len(st.Warnings) == 0 || !strings.Contains(st.Warnings[0], "6 HTTP/1.1 connections") {
		t.Errorf("seventh status warnings %q, want the connection limit named", st.Warnings)
	}
	select {
	case <-paths[6].Connected():
		t.Fatal("the seventh EventSource connected while six held the host")
	default:
	}
	// Closing one tab frees a connection: the seventh gets it.
	runs[0].stop()
	waitConnected(t, paths[6], c)
}

func TestPathCookieAuth(t *testing.T) {
	b := newBrowser(t)
	const secret = "s3cr3t-session"
	s := newStream()
	s.before = func(w http.ResponseWriter, r *http.Request) bool {
		if ck, err := r.Cookie("session"); err != nil || ck.Value != secret {
			http.Error(w, "login first", http.StatusUnauthorized)
			return false
		}
		return true
	}
	srv := newServer(t, false, s)

	t.Run("without the cookie", func(t *testing.T) {
		p, err := NewPath(b, PathConfig{Name: "auth", URL: srv.URL + "/events"})
		if err != nil {
			t.Fatal(err)
		}
		c := &collector{}
		err = runPath(t, p, c).failed(t, c)
		if !errors.Is(err, ErrHTTPStatus) || !strings.Contains(err.Error(), "401 Unauthorized") || !strings.Contains(err.Error(), "--browser-cookie") {
			t.Errorf("Run = %v, want a 401 named with the --browser-cookie hint", err)
		}
		if st := p.Status(); st.HTTPStatus != 401 || st.State != feed.StateFailed {
			t.Errorf("status http %d state %q, want 401 failed", st.HTTPStatus, st.State)
		}
	})
	t.Run("with the cookie", func(t *testing.T) {
		ck, err := ParseCookie("session=" + secret)
		if err != nil {
			t.Fatal(err)
		}
		if got := ck.String(); strings.Contains(got, secret) {
			t.Errorf("cookie shown as %q, want its value masked", got)
		}
		p, err := NewPath(b, PathConfig{Name: "auth", URL: srv.URL + "/events", Cookies: []Cookie{ck}})
		if err != nil {
			t.Fatal(err)
		}
		c := &collector{}
		runPath(t, p, c)
		waitConnected(t, p, c)
		s.events <- "data: hello member\n\n"
		c.waitFor(t, "delivered with the cookie", 10*time.Second, func(r feed.Record) bool {
			return r.Kind == feed.KindEvent && r.Data == "hello member"
		})
		for _, r := range c.all() {
			if strings.Contains(describe([]feed.Record{r}), secret) {
				t.Errorf("a record shows the cookie's value: %s", describe([]feed.Record{r}))
			}
		}
	})
}

// TestPathFailures: what retrying cannot fix ends Run with an error that
// names it.
func TestPathFailures(t *testing.T) {
	b := newBrowser(t)
	plain := newServer(t, false, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, "data: not a stream\n\n")
	}))
	missing := newServer(t, false, http.NotFoundHandler())
	tlsSrv := newServer(t, true, newStream()) // self-signed: Chromium rejects it

	cases := []struct {
		name, url string
		kind      error
		want      string
	}{
		{"wrong content type", plain.URL + "/events", ErrContentType, `wrong content type "text/plain"`},
		{"not found", missing.URL + "/events", ErrHTTPStatus, "HTTP 404 Not Found"},
		{"certificate", tlsSrv.URL + "/events", ErrCertificate, "certificate error: net::ERR_CERT_"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := NewPath(b, PathConfig{Name: "bad", URL: tc.url})
			if err != nil {
				t.Fatal(err)
			}
			c := &collector{}
			err = runPath(t, p, c).failed(t, c)
			if !errors.Is(err, tc.kind) || !errors.Is(err, ErrFatal) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Run = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestPathReopensAfter5xx: Chromium gives up after a 503; fanscope says
// so, reopens after 3 s and delivers once the server is back.
func TestPathReopensAfter5xx(t *testing.T) {
	b := newBrowser(t)
	var mu sync.Mutex
	down := true
	s := newStream()
	s.before = func(w http.ResponseWriter, r *http.Request) bool {
		mu.Lock()
		defer mu.Unlock()
		if down {
			down = false
			http.Error(w, "restarting", http.StatusServiceUnavailable)
			return false
		}
		return true
	}
	srv := newServer(t, false, s)
	p, err := NewPath(b, PathConfig{Name: "flaky", URL: srv.URL + "/events"})
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{}
	runPath(t, p, c)
	c.waitFor(t, "reconnecting after the 503", 10*time.Second, func(r feed.Record) bool {
		return r.Kind == feed.KindState && r.State == feed.StateReconnecting && strings.Contains(r.Error, "503")
	})
	waitConnected(t, p, c)
	s.events <- "data: back\n\n"
	c.waitFor(t, "delivered after the reopen", 10*time.Second, func(r feed.Record) bool {
		return r.Kind == feed.KindEvent && r.Data == "back"
	})
	if st := p.Status(); st.Reconnects < 1 {
		t.Errorf("status reconnects %d, want >= 1", st.Reconnects)
	}
}

func TestPathConfigErrors(t *testing.T) {
	b := New()
	defer b.Close()
	cases := []struct {
		name string
		cfg  PathConfig
		want string
	}{
		{"not http", PathConfig{URL: "ftp://x/events"}, "want an http:// or https:// URL"},
		{"no host", PathConfig{URL: "http:///events"}, "want an http:// or https:// URL"},
		{"secret masked", PathConfig{URL: "ws://u:hunter2@h/x?token=abc"}, "ws://u:***@h/x?token=***"},
		{"origin with path", PathConfig{URL: "http://h/x", Origin: "http://o/app"}, "an origin has no path"},
		{"origin not http", PathConfig{URL: "http://h/x", Origin: "file:///tmp"}, "want an origin"},
		{"header with newline", PathConfig{URL: "http://h/x", Header: http.Header{"X-A": {"a\r\nb"}}}, "invalid name or value"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewPath(b, tc.cfg)
			if err == nil || !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewPath = %v, want a usage error with %q", err, tc.want)
			}
			if err != nil && (strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "abc")) {
				t.Errorf("error shows a secret: %v", err)
			}
		})
	}
	if err := CheckConns(MaxConnsPerEndpoint); err != nil {
		t.Errorf("CheckConns(%d) = %v, want nil", MaxConnsPerEndpoint, err)
	}
	err := CheckConns(MaxConnsPerEndpoint + 1)
	if !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), "one Chromium tab per connection") {
		t.Errorf("CheckConns(7) = %v, want the rule named", err)
	}
	if _, err := NewPaths(b, PathConfig{URL: "http://h/x"}, 8); !errors.Is(err, ErrUsage) {
		t.Errorf("NewPaths(8) = %v, want a usage error", err)
	}
	ps, err := NewPaths(b, PathConfig{URL: "http://h:81/x"}, 3)
	if err != nil || len(ps) != 3 || ps[2].Status().Conn != 2 || ps[0].Path() != "browser:h:81" {
		t.Errorf("NewPaths(3) = %d paths, err %v; want 3 with conns 0..2 and path browser:h:81", len(ps), err)
	}
}

func TestParseCookie(t *testing.T) {
	cases := []struct {
		in, name, value, err string
	}{
		{in: "session=abc", name: "session", value: "abc"},
		{in: "s=a=b", name: "s", value: "a=b"},
		{in: "s=", name: "s", value: ""},
		{in: "justavalue", err: "no '=' found"},
		{in: "=abc", err: "the name is empty"},
		{in: "a b=c", err: "may not hold spaces"},
		{in: "s=a;b=c", err: "one cookie per flag"},
	}
	for _, tc := range cases {
		c, err := ParseCookie(tc.in)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseCookie(%q) = %v, want error %q", tc.in, err, tc.err)
			}
			if err != nil && (strings.Contains(err.Error(), "abc") || strings.Contains(err.Error(), "justavalue")) {
				t.Errorf("ParseCookie(%q) error shows the value: %v", tc.in, err)
			}
		case err != nil || c.Name != tc.name || c.Value != tc.value:
			t.Errorf("ParseCookie(%q) = %+v, %v; want %s=%s", tc.in, c, err, tc.name, tc.value)
		}
	}
}

func TestFindChromium(t *testing.T) {
	t.Setenv("FANSCOPE_CHROMIUM", "")
	t.Setenv("PATH", t.TempDir())
	_, err := FindChromium()
	if !errors.Is(err, ErrNoChromium) || !strings.Contains(err.Error(), "Debian package chromium") {
		t.Errorf("FindChromium with an empty PATH = %v, want the Debian package named", err)
	}
	t.Setenv("FANSCOPE_CHROMIUM", "/nonexistent/chromium")
	if _, err := FindChromium(); !errors.Is(err, ErrNoChromium) || !strings.Contains(err.Error(), "$FANSCOPE_CHROMIUM=/nonexistent/chromium") {
		t.Errorf("FindChromium with a bad $FANSCOPE_CHROMIUM = %v, want it named", err)
	}
	// A path fails with that error instead of hanging.
	p, err := NewPath(New(), PathConfig{URL: "http://127.0.0.1:1/x"})
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{}
	if err := p.Run(context.Background(), c); !errors.Is(err, ErrFatal) || !strings.Contains(err.Error(), "FANSCOPE_CHROMIUM") {
		t.Errorf("Run without Chromium = %v, want a fatal error naming it", err)
	}
}
