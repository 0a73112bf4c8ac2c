package ssex

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/internal/feedtest"
)

// running is a client started by startClient.
type running struct {
	*feedtest.Running
	c    *Client
	sink *feedtest.Sink
}

// startClient runs a client for cfg (with tune applied before Run) until
// the test ends, then checks that Run returned.
func startClient(t *testing.T, cfg Config, tune func(*Client)) *running {
	t.Helper()
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	c.retry = 10 * time.Millisecond
	c.floor = time.Millisecond
	if tune != nil {
		tune(c)
	}
	sink := feedtest.NewSink()
	return &running{Running: feedtest.Start(t, c, sink), c: c, sink: sink}
}

// waitDiag waits until cond holds for c's diagnostics and returns them.
// Counters are updated once per read, just after that read's records went
// out, so a test that saw a record may have to wait a moment for them.
func waitDiag(t testing.TB, c *Client, cond func(Diagnostics) bool) Diagnostics {
	t.Helper()
	deadline := time.Now().Add(feedtest.Eventually)
	for {
		d := c.Diagnostics()
		if cond(d) || time.Now().After(deadline) {
			return d
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func eventsAtLeast(n int64) func(Diagnostics) bool {
	return func(d Diagnostics) bool { return d.Events >= n }
}

// newServer starts a test server that closes after the clients started
// later in the test have stopped (cleanups run last-in first-out), since
// Close waits for every open request.
func newServer(t testing.TB, h http.Handler) *httptest.Server {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func newTLSServer(t testing.TB, h http.Handler) *httptest.Server {
	srv := httptest.NewUnstartedServer(h)
	// Handshakes the client refuses are the point of some tests; keep the log quiet.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// streamHeaders writes the headers of a well-behaved SSE response and flushes.
func streamHeaders(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	w.(http.Flusher).Flush()
}

func write(w http.ResponseWriter, s string) {
	_, _ = w.Write([]byte(s))
	w.(http.Flusher).Flush()
}

func TestReconnectAfterCleanCloseSendsLastEventID(t *testing.T) {
	var n atomic.Int32
	var mu sync.Mutex
	var sent []string
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		sent = append(sent, r.Header.Get("Last-Event-ID"))
		mu.Unlock()
		streamHeaders(w)
		switch n.Add(1) {
		case 1:
			write(w, "retry: 20\n: hello\nid: 7\ndata: one\n\n")
			return // clean close
		default:
			write(w, "id: 8\ndata: two\n\n")
		}
		<-r.Context().Done()
	}))

	rn := startClient(t, Config{Name: "app-1", URL: srv.URL, Conn: 3}, nil)
	recs := rn.sink.WaitFor(t, 0, "two events", feedtest.CountKind(feed.KindEvent, 2))

	mu.Lock()
	gotSent := append([]string(nil), sent...)
	mu.Unlock()
	if len(gotSent) != 2 || gotSent[0] != "" || gotSent[1] != "7" {
		t.Errorf("Last-Event-ID per request: got %q, want [\"\" \"7\"]", gotSent)
	}
	events := feedtest.OfKind(recs, feed.KindEvent)
	for i, want := range []struct{ id, data string }{{"7", "one"}, {"8", "two"}} {
		if e := events[i]; e.ID != want.id || e.Data != want.data || e.Type != "message" {
			t.Errorf("event %d: got id %q type %q data %q, want id %q type message data %q", i, e.ID, e.Type, e.Data, want.id, want.data)
		}
	}
	if c := feedtest.OfKind(recs, feed.KindComment); len(c) != 1 || c[0].Data != "hello" {
		t.Errorf("comments: got %+v, want one with data %q", c, "hello")
	}
	if r := feedtest.OfKind(recs, feed.KindRetry); len(r) != 1 || r[0].RetryMS != 20 {
		t.Errorf("retry records: got %+v, want one with 20 ms", r)
	}
	for _, r := range recs {
		if r.Source != feed.SourceSSE || r.Endpoint != "app-1" || r.Conn != 3 || r.TS.IsZero() {
			t.Errorf("record %s: got source %s endpoint %q conn %d ts %v, want sse app-1 3 and a time", r.Kind, r.Source, r.Endpoint, r.Conn, r.TS)
		}
	}
	var states []string
	for _, r := range feedtest.OfKind(recs, feed.KindState) {
		states = append(states, fmt.Sprintf("%s/%d", r.State, r.Attempt))
	}
	// The attempt count starts again after a connection that worked.
	want := []string{"connecting/1", "connected/1", "disconnected/1", "reconnecting/1", "connecting/1", "connected/1"}
	if strings.Join(states, " ") != strings.Join(want, " ") {
		t.Errorf("states: got %v, want %v", states, want)
	}
	if !feedtest.HasState(feed.StateDisconnected, "server closed the stream")(recs) {
		t.Errorf("no disconnected record saying the server closed the stream:\n%s", feedtest.Dump(recs))
	}
	d := waitDiag(t, rn.c, eventsAtLeast(2))
	if d.LastEventIDSent != "7" || d.LastEventIDHonoured != "yes" || d.Connects != 2 || d.Reconnects != 1 ||
		d.State != feed.StateConnected || d.Events != 2 || d.Comments != 1 || d.LastEventID != "8" || d.RetryMS != 20 || !d.RetryFromServer {
		t.Errorf("diagnostics: got %+v", d)
	}
	select {
	case <-rn.c.Connected():
	default:
		t.Errorf("Connected() not closed after connecting")
	}
}

func TestRetryFieldSetsReconnectionTime(t *testing.T) {
	const retryMS = 300
	var n atomic.Int32
	var closedAt, reconnectedAt atomic.Int64
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		streamHeaders(w)
		if n.Add(1) == 1 {
			write(w, fmt.Sprintf("retry: %d\ndata: x\n\n", retryMS))
			closedAt.Store(time.Now().UnixNano())
			return
		}
		reconnectedAt.CompareAndSwap(0, time.Now().UnixNano())
		write(w, "data: y\n\n")
		<-r.Context().Done()
	}))

	rn := startClient(t, Config{URL: srv.URL}, nil)
	recs := rn.sink.WaitFor(t, 0, "event after reconnect", feedtest.CountKind(feed.KindEvent, 2))
	// A lower bound only: the client must wait at least the retry time.
	if gap := time.Duration(reconnectedAt.Load() - closedAt.Load()); gap < retryMS*time.Millisecond {
		t.Errorf("reconnected %s after the close, want at least %d ms", gap, retryMS)
	}
	// The wait announced is the real one: the retry time and up to a
	// quarter more of jitter.
	found := false
	for _, w := range announcedWaits(recs) {
		if w >= retryMS*time.Millisecond && w <= retryMS*time.Millisecond*5/4 {
			found = true
		}
	}
	if !found {
		t.Errorf("no reconnecting record announcing a wait of 300 to 375ms:\n%s", feedtest.Dump(recs))
	}
	if d := rn.c.Diagnostics(); d.RetryMS != retryMS || !d.RetryFromServer {
		t.Errorf("diagnostics retry: got %d ms (from server %v), want %d ms from server", d.RetryMS, d.RetryFromServer, retryMS)
	}
}

func TestTransientErrorsRetryThenConnect(t *testing.T) {
	cases := []struct {
		name   string
		status int
		header map[string]string
		want   string
	}{
		{"500", 500, nil, "500 Internal Server Error: \"boom\""},
		{"502", 502, nil, "502 Bad Gateway"},
		{"503 with Retry-After", 503, map[string]string{"Retry-After": "0"}, "503 Service Unavailable"},
		{"408", 408, nil, "408 Request Timeout"},
		{"429", 429, nil, "429 Too Many Requests"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int32
			srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if n.Add(1) <= 2 {
					for k, v := range tc.header {
						w.Header().Set(k, v)
					}
					w.WriteHeader(tc.status)
					_, _ = w.Write([]byte("boom\n"))
					return
				}
				streamHeaders(w)
				write(w, "data: ok\n\n")
				<-r.Context().Done()
			}))

			rn := startClient(t, Config{URL: srv.URL}, nil)
			recs := rn.sink.WaitFor(t, 0, "an event after the errors", feedtest.CountKind(feed.KindEvent, 1))
			var retries []feed.Record
			for _, r := range feedtest.OfKind(recs, feed.KindState) {
				if r.State == feed.StateReconnecting {
					retries = append(retries, r)
				}
			}
			if len(retries) != 2 {
				t.Fatalf("reconnecting records: got %d, want 2:\n%s", len(retries), feedtest.Dump(recs))
			}
			for i, r := range retries {
				if r.Status != tc.status || !strings.Contains(r.Error, tc.want) || r.Attempt != i+2 {
					t.Errorf("reconnecting record %d: got status %d attempt %d error %q, want status %d attempt %d error containing %q",
						i, r.Status, r.Attempt, r.Error, tc.status, i+2, tc.want)
				}
			}
			d := rn.c.Diagnostics()
			if d.State != feed.StateConnected || d.Status != 200 || d.Reconnects != 2 || d.Connects != 1 {
				t.Errorf("diagnostics: got state %s status %d reconnects %d connects %d, want connected 200 2 1",
					d.State, d.Status, d.Reconnects, d.Connects)
			}
		})
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	var n atomic.Int32
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		streamHeaders(w)
		write(w, "data: ok\n\n")
		<-r.Context().Done()
	}))
	rn := startClient(t, Config{URL: srv.URL}, nil)
	recs := rn.sink.WaitFor(t, 0, "an event", feedtest.CountKind(feed.KindEvent, 1))
	// The backoff alone would wait about 100-200 ms here.
	if !feedtest.HasState(feed.StateReconnecting, "503 Service Unavailable (retry in 1s)")(recs) {
		t.Errorf("no reconnecting record waiting the 1 s the server asked for:\n%s", feedtest.Dump(recs))
	}
}

func TestFatalResponsesStop(t *testing.T) {
	cases := []struct {
		name        string
		status      int
		contentType string // "-" means none at all
		want        []string
	}{
		{"401", 401, "text/plain", []string{"401 Unauthorized", "check -H/--bearer-env", `"nope"`}},
		{"403", 403, "text/plain", []string{"403 Forbidden", "--bearer-env"}},
		{"404", 404, "text/plain", []string{"404 Not Found", "URL path"}},
		{"410", 410, "text/plain", []string{"410 Gone"}},
		{"204", 204, "", []string{"server asked to stop (204 No Content)"}},
		{"html", 200, "text/html; charset=utf-8", []string{"200 OK", `Content-Type "text/html; charset=utf-8"`, "want text/event-stream"}},
		{"json", 200, "application/json", []string{`"application/json"`}},
		{"no content type", 200, "-", []string{"without a Content-Type"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int32
			srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n.Add(1)
				switch tc.contentType {
				case "-":
					w.Header()["Content-Type"] = nil // no sniffing
				case "":
				default:
					w.Header().Set("Content-Type", tc.contentType)
				}
				w.WriteHeader(tc.status)
				if tc.status != 204 {
					_, _ = w.Write([]byte("nope\n"))
				}
			}))

			rn := startClient(t, Config{Name: "app", URL: srv.URL}, nil)
			err := rn.Wait(t)
			if !errors.Is(err, ErrFatal) {
				t.Fatalf("Run: got %v, want an error wrapping ErrFatal", err)
			}
			if errors.Is(err, ErrUsage) {
				t.Errorf("Run: error %v also wraps ErrUsage", err)
			}
			for _, w := range append(tc.want, "sse endpoint app", srv.URL) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error: got %q, want it to contain %q", err, w)
				}
			}
			if got := n.Load(); got != 1 {
				t.Errorf("requests: got %d, want 1 (no retry)", got)
			}
			var se *StatusError
			if !errors.As(err, &se) || se.Code != tc.status {
				t.Errorf("Run: got %v, want it to wrap a StatusError with code %d", err, tc.status)
			}
			recs := rn.sink.All()
			last := recs[len(recs)-1]
			if last.Kind != feed.KindState || last.State != feed.StateFailed || last.Status != tc.status {
				t.Errorf("last record: got %s %s status %d, want state failed status %d", last.Kind, last.State, last.Status, tc.status)
			}
			if d := rn.c.Diagnostics(); d.State != feed.StateFailed || d.Status != tc.status || d.LastError == "" {
				t.Errorf("diagnostics: got state %s status %d error %q, want failed %d and an error", d.State, d.Status, d.LastError, tc.status)
			}
		})
	}
}

func TestContentTypeWithParametersAccepted(t *testing.T) {
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "Text/Event-Stream; charset=utf-8")
		w.WriteHeader(200)
		write(w, "data: ok\n\n")
		<-r.Context().Done()
	}))
	rn := startClient(t, Config{URL: srv.URL}, nil)
	rn.sink.WaitFor(t, 0, "an event", feedtest.CountKind(feed.KindEvent, 1))
}

func TestStallWatchdogReconnects(t *testing.T) {
	cases := []struct {
		name    string
		headers bool // send headers and one event before going silent
	}{
		{"silent after an event", true},
		{"silent before headers", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int32
			srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if n.Add(1) > 1 {
					streamHeaders(w)
					write(w, "data: after\n\n")
				} else if tc.headers {
					streamHeaders(w)
					write(w, "data: before\n\n")
				}
				<-r.Context().Done()
			}))

			rn := startClient(t, Config{URL: srv.URL, StallTimeout: 200 * time.Millisecond}, nil)
			recs := rn.sink.WaitFor(t, 0, "the event after the stall", func(recs []feed.Record) bool {
				for _, r := range recs {
					if r.Kind == feed.KindEvent && r.Data == "after" {
						return true
					}
				}
				return false
			})
			if !feedtest.HasState(feed.StateReconnecting, "stalled: no bytes for 200ms")(recs) {
				t.Errorf("no reconnecting record reporting the stall:\n%s", feedtest.Dump(recs))
			}
			if tc.headers && !feedtest.HasState(feed.StateDisconnected, "stalled")(recs) {
				t.Errorf("no disconnected record reporting the stall:\n%s", feedtest.Dump(recs))
			}
			if tc.headers && !inOrder(recs, feed.StateStalled, feed.StateDisconnected, feed.StateReconnecting) {
				t.Errorf("want stalled before disconnected and reconnecting:\n%s", feedtest.Dump(recs))
			}
			if !tc.headers && !inOrder(recs, feed.StateStalled, feed.StateReconnecting) {
				t.Errorf("want stalled before reconnecting:\n%s", feedtest.Dump(recs))
			}
			if d := rn.c.Diagnostics(); d.Stalls < 1 {
				t.Errorf("diagnostics stalls: got %d, want at least 1", d.Stalls)
			}
		})
	}
}

func TestKeepAliveCommentsPreventStall(t *testing.T) {
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		streamHeaders(w)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < 40; i++ {
			select {
			case <-r.Context().Done():
				return
			case <-tick.C:
				write(w, ": ping\n")
			}
		}
		write(w, "data: done\n\n")
		<-r.Context().Done()
	}))
	rn := startClient(t, Config{URL: srv.URL, StallTimeout: 2 * time.Second}, nil)
	rn.sink.WaitFor(t, 0, "the event after the pings", feedtest.CountKind(feed.KindEvent, 1))
	d := waitDiag(t, rn.c, eventsAtLeast(1))
	if d.Stalls != 0 || d.Connects != 1 || d.Comments != 40 || d.LastComment.IsZero() {
		t.Errorf("diagnostics: got stalls %d connects %d comments %d last comment %v, want 0 1 40 and a time",
			d.Stalls, d.Connects, d.Comments, d.LastComment)
	}
}

func TestFiveMegabyteEventArrivesWhole(t *testing.T) {
	data := make([]byte, 5<<20)
	for i := range data {
		data[i] = 'a' + byte(i%26)
	}
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		streamHeaders(w)
		write(w, "event: big\ndata: ")
		for off := 0; off < len(data); off += 64 << 10 {
			write(w, string(data[off:min(off+64<<10, len(data))]))
		}
		write(w, "\n\ndata: small\n\n")
		<-r.Context().Done()
	}))
	rn := startClient(t, Config{URL: srv.URL}, nil)
	recs := rn.sink.WaitFor(t, 0, "two events", feedtest.CountKind(feed.KindEvent, 2))
	events := feedtest.OfKind(recs, feed.KindEvent)
	if events[0].Type != "big" || len(events[0].Data) != len(data) || events[0].Data != string(data) {
		t.Errorf("big event: got type %q and %d bytes, want type big and the %d bytes sent", events[0].Type, len(events[0].Data), len(data))
	}
	if events[1].Data != "small" {
		t.Errorf("second event: got %q, want %q", events[1].Data, "small")
	}
	if d := waitDiag(t, rn.c, eventsAtLeast(2)); d.Bytes < int64(len(data)) {
		t.Errorf("diagnostics bytes: got %d, want at least %d", d.Bytes, len(data))
	}
}

func TestThousandEventsPerSecondForTenSecondsNoneLost(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 10 s")
	}
	const total = 10000
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		streamHeaders(w)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		var b strings.Builder
		for id := 1; id <= total; {
			select {
			case <-r.Context().Done():
				return
			case <-tick.C:
			}
			b.Reset()
			for k := 0; k < 10 && id <= total; k++ {
				fmt.Fprintf(&b, "event: story-published\nid: %d\ndata: {\"storyId\":\"s%d\"}\n\n", id, id)
				id++
			}
			write(w, b.String())
		}
		<-r.Context().Done()
	}))

	rn := startClient(t, Config{URL: srv.URL}, nil)
	deadline := time.Now().Add(60 * time.Second)
	var events []feed.Record
	for time.Now().Before(deadline) {
		events = feedtest.OfKind(rn.sink.All(), feed.KindEvent)
		if len(events) >= total {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(events) != total {
		t.Fatalf("events: got %d, want %d", len(events), total)
	}
	for i, e := range events {
		want := strconv.Itoa(i + 1)
		if e.ID != want || e.Data != `{"storyId":"s`+want+`"}` || e.Type != "story-published" {
			t.Fatalf("event %d: got id %q type %q data %q, want id %s in order", i, e.ID, e.Type, e.Data, want)
		}
		if i > 0 && e.TS.Before(events[i-1].TS) {
			t.Fatalf("event %d: time %v before the previous event's %v", i, e.TS, events[i-1].TS)
		}
	}
	if d := waitDiag(t, rn.c, eventsAtLeast(total)); d.Events != total || d.Connects != 1 {
		t.Errorf("diagnostics: got %d events over %d connections, want %d over 1", d.Events, d.Connects, total)
	}
}

func TestDataBytesDeliveredRaw(t *testing.T) {
	// Escaping is the encoders' job; records carry the bytes as sent.
	data := "\x1b[31mred\x1b[0m \x07bell\ttab \x00nul é😀 \x1b]52;c;aGk=\x07"
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		streamHeaders(w)
		write(w, "event: \x1b[1mtype\ndata: "+data+"\n: \x1b[2Jcomment\n\n")
		<-r.Context().Done()
	}))
	rn := startClient(t, Config{URL: srv.URL}, nil)
	recs := rn.sink.WaitFor(t, 0, "an event", feedtest.CountKind(feed.KindEvent, 1))
	e := feedtest.OfKind(recs, feed.KindEvent)[0]
	if e.Data != data || e.Type != "\x1b[1mtype" {
		t.Errorf("event: got type %q data %q, want type %q data %q", e.Type, e.Data, "\x1b[1mtype", data)
	}
	if c := feedtest.OfKind(recs, feed.KindComment); len(c) != 1 || c[0].Data != "\x1b[2Jcomment" {
		t.Errorf("comment: got %+v, want data %q", c, "\x1b[2Jcomment")
	}
}

func TestRequestHeaders(t *testing.T) {
	got := make(chan *http.Request, 1)
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case got <- r.Clone(context.Background()):
		default:
		}
		streamHeaders(w)
		<-r.Context().Done()
	}))
	h := http.Header{}
	h.Set("Authorization", "Bearer s3cret")
	h.Add("X-Trace", "abc")
	h.Set("Host", "app.example")
	startClient(t, Config{URL: srv.URL + "/api/community/events?x=1", Header: h}, nil)
	var r *http.Request
	select {
	case r = <-got:
	case <-time.After(feedtest.Eventually):
		t.Fatal("no request arrived")
	}
	want := map[string]string{
		"Accept":        "text/event-stream",
		"Cache-Control": "no-cache",
		"Authorization": "Bearer s3cret",
		"X-Trace":       "abc",
		"Last-Event-ID": "",
	}
	for k, v := range want {
		if g := r.Header.Get(k); g != v {
			t.Errorf("header %s: got %q, want %q", k, g, v)
		}
	}
	if r.Host != "app.example" || r.URL.RequestURI() != "/api/community/events?x=1" || r.Method != http.MethodGet {
		t.Errorf("request: got %s %s host %q, want GET /api/community/events?x=1 host app.example", r.Method, r.URL.RequestURI(), r.Host)
	}
}

func TestUserHeaderOverridesAccept(t *testing.T) {
	got := make(chan string, 1)
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case got <- r.Header.Get("Accept"):
		default:
		}
		streamHeaders(w)
		<-r.Context().Done()
	}))
	startClient(t, Config{URL: srv.URL, Header: http.Header{"Accept": {"*/*"}}}, nil)
	select {
	case a := <-got:
		if a != "*/*" {
			t.Errorf("Accept: got %q, want the user's %q", a, "*/*")
		}
	case <-time.After(feedtest.Eventually):
		t.Fatal("no request arrived")
	}
}

// writeCA writes the TLS server's certificate as a PEM file.
func writeCA(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ca.pem")
	der := srv.Certificate().Raw
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestTLS(t *testing.T) {
	srv := newTLSServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		streamHeaders(w)
		write(w, "data: secure\n\n")
		<-r.Context().Done()
	}))
	ca := writeCA(t, srv)

	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"CA file", Config{URL: srv.URL, TLSCA: ca}},
		{"insecure", Config{URL: srv.URL, TLSInsecure: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rn := startClient(t, tc.cfg, nil)
			recs := rn.sink.WaitFor(t, 0, "an event", feedtest.CountKind(feed.KindEvent, 1))
			if e := feedtest.OfKind(recs, feed.KindEvent)[0]; e.Data != "secure" {
				t.Errorf("event data: got %q, want %q", e.Data, "secure")
			}
			if d := rn.c.Diagnostics(); d.Proto != "HTTP/1.1" {
				t.Errorf("protocol: got %q, want HTTP/1.1", d.Proto)
			}
		})
	}

	t.Run("untrusted", func(t *testing.T) {
		rn := startClient(t, Config{URL: srv.URL}, nil)
		err := rn.Wait(t)
		if !errors.Is(err, ErrFatal) || !strings.Contains(err.Error(), "--tls-ca") {
			t.Errorf("Run: got %v, want an ErrFatal naming --tls-ca", err)
		}
		var unknownCA x509.UnknownAuthorityError
		var verifyErr *tls.CertificateVerificationError
		if !errors.As(err, &unknownCA) && !errors.As(err, &verifyErr) {
			t.Errorf("Run: got %v (%T), want it to wrap the certificate error", err, errors.Unwrap(err))
		}
	})

	t.Run("bad CA file", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "bad.pem")
		if err := os.WriteFile(bad, []byte("not a certificate"), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, path := range []string{bad, filepath.Join(t.TempDir(), "missing.pem")} {
			if _, err := NewClient(Config{URL: srv.URL, TLSCA: path}); !errors.Is(err, ErrUsage) {
				t.Errorf("NewClient with TLSCA %s: got %v, want ErrUsage", filepath.Base(path), err)
			}
		}
	})
}

func TestSharedTransportServesManyConnections(t *testing.T) {
	const conns = 50
	var open atomic.Int32
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		open.Add(1)
		defer open.Add(-1)
		streamHeaders(w)
		write(w, "data: hi\n\n")
		<-r.Context().Done()
	}))
	tr, err := NewTransport("", false)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.CloseIdleConnections()
	var clients []*running
	for i := range conns {
		clients = append(clients, startClient(t, Config{URL: srv.URL, Conn: i, Transport: tr}, nil))
	}
	for i, rn := range clients {
		select {
		case <-rn.c.Connected():
		case <-time.After(feedtest.Eventually):
			t.Fatalf("connection %d never connected", i)
		}
		rn.sink.WaitFor(t, 0, "an event", feedtest.CountKind(feed.KindEvent, 1))
	}
	if got := open.Load(); got != conns {
		t.Errorf("open server connections: got %d, want %d", got, conns)
	}
}

// baseOf is the transport a client's connections are configured from.
func baseOf(c *Client) http.RoundTripper {
	if d, ok := c.hc.Transport.(*directTransport); ok {
		return d.base
	}
	return c.hc.Transport
}

func TestTLSOptionsWithSharedTransport(t *testing.T) {
	srv := newTLSServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		streamHeaders(w)
		write(w, "data: secure\n\n")
		<-r.Context().Done()
	}))
	ca := writeCA(t, srv)
	// A shared transport built without TLS settings, as a caller might.
	base := &http.Transport{MaxIdleConnsPerHost: 100}
	t.Cleanup(base.CloseIdleConnections)

	rn := startClient(t, Config{URL: srv.URL, TLSCA: ca, Transport: base}, nil)
	rn.sink.WaitFor(t, 0, "an event", feedtest.CountKind(feed.KindEvent, 1))

	c2, err := NewClient(Config{URL: srv.URL, TLSCA: ca, Transport: base, Conn: 1})
	if err != nil {
		t.Fatal(err)
	}
	if baseOf(c2) != baseOf(rn.c) {
		t.Errorf("clients with the same transport and TLS options got different transports")
	}
	if baseOf(rn.c) == http.RoundTripper(base) {
		t.Errorf("the TLS options were not applied to a copy of the shared transport")
	}
	plain, err := NewClient(Config{URL: srv.URL, Transport: base})
	if err != nil {
		t.Fatal(err)
	}
	if baseOf(plain) != http.RoundTripper(base) {
		t.Errorf("without TLS options the shared transport was not used as given")
	}
	_, err = NewClient(Config{URL: srv.URL, TLSInsecure: true, Transport: roundTripFunc(nil)})
	if !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), "TLS options need an *http.Transport") {
		t.Errorf("NewClient with TLS options and a custom RoundTripper: got %v, want an ErrUsage", err)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestConnectionRefusedRetries(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	rn := startClient(t, Config{URL: "http://" + addr + "/events"}, nil)
	rn.sink.WaitFor(t, 0, "two retries", func(recs []feed.Record) bool {
		n := 0
		for _, r := range recs {
			if r.Kind == feed.KindState && r.State == feed.StateReconnecting && strings.Contains(r.Error, "refused") {
				n++
			}
		}
		return n >= 2
	})
	if err, ok := rn.Returned(); ok {
		t.Fatalf("Run returned %v, want it to keep retrying", err)
	}
	if d := rn.c.Diagnostics(); !strings.Contains(d.LastError, "refused") || d.Connects != 0 {
		t.Errorf("diagnostics: got error %q connects %d, want a refused error and 0", d.LastError, d.Connects)
	}
}

func TestUnknownHostIsFatal(t *testing.T) {
	const host = "fanscope-no-such-host.invalid"
	var dnsErr *net.DNSError
	if _, err := net.LookupHost(host); !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		t.Skipf("resolver does not answer NXDOMAIN here: %v", err)
	}
	rn := startClient(t, Config{URL: "http://" + host + "/events"}, nil)
	if err := rn.Wait(t); !errors.Is(err, ErrFatal) || !strings.Contains(err.Error(), "not found") {
		t.Errorf("Run: got %v, want an ErrFatal saying the host was not found", err)
	}
}

func TestRunEndsWithContext(t *testing.T) {
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		streamHeaders(w)
		<-r.Context().Done()
	}))
	rn := startClient(t, Config{URL: srv.URL}, nil)
	select {
	case <-rn.c.Connected():
	case <-time.After(feedtest.Eventually):
		t.Fatal("never connected")
	}
	// Diagnostics is read while Run writes; -race checks the locking.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				_ = rn.c.Diagnostics()
			}
		}
	})
	if err := rn.Stop(t); err != nil {
		t.Errorf("Run after cancel: got %v, want nil", err)
	}
	close(stop)
	wg.Wait()
	if d := rn.c.Diagnostics(); d.State != feed.StateDisconnected {
		t.Errorf("state after cancel: got %s, want disconnected", d.State)
	}
	if err := rn.c.Run(context.Background(), feedtest.NewSink()); err == nil {
		t.Errorf("second Run: got nil, want an error")
	}
}

func TestUnsendableLastEventID(t *testing.T) {
	var n atomic.Int32
	sent := make(chan []string, 2)
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sent <- r.Header.Values("Last-Event-ID")
		streamHeaders(w)
		if n.Add(1) == 1 {
			write(w, "id: a\x01b\ndata: x\n\n")
			return
		}
		<-r.Context().Done()
	}))
	rn := startClient(t, Config{URL: srv.URL}, nil)
	rn.sink.WaitFor(t, 0, "the reconnect", func(recs []feed.Record) bool {
		c := 0
		for _, r := range recs {
			if r.State == feed.StateConnected {
				c++
			}
		}
		return c == 2
	})
	<-sent
	if v := <-sent; len(v) != 0 {
		t.Errorf("Last-Event-ID on reconnect: got %q, want none", v)
	}
	if w := strings.Join(rn.c.Diagnostics().Warnings, "\n"); !strings.Contains(w, "cannot be sent as Last-Event-ID") {
		t.Errorf("warnings: got %q, want one about the unsendable id", w)
	}
}

// TestOversizedEventSkipped: an event over the cap is skipped and counted
// and the stream goes on; no reconnect, so its id is never replayed
// through Last-Event-ID.
func TestOversizedEventSkipped(t *testing.T) {
	var n atomic.Int32
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		streamHeaders(w)
		write(w, "id: 1\ndata: "+strings.Repeat("x", 100)+"\n\n")
		write(w, "id: 2\ndata: short\n\n")
		<-r.Context().Done()
	}))
	rn := startClient(t, Config{URL: srv.URL, MaxLine: 50}, nil)
	recs := rn.sink.WaitFor(t, 0, "the event after the oversized one", feedtest.CountKind(feed.KindEvent, 1))
	if e := feedtest.OfKind(recs, feed.KindEvent)[0]; e.Data != "short" || e.ID != "2" {
		t.Errorf("event: got %q id %q, want %q id 2", e.Data, e.ID, "short")
	}
	d := rn.c.Diagnostics()
	if d.Skipped != 1 || d.LastSkippedID != "1" || d.Connects != 1 || n.Load() != 1 {
		t.Errorf("diagnostics: skipped %d (id %q) connects %d requests %d, want 1 (id 1), 1, 1", d.Skipped, d.LastSkippedID, d.Connects, n.Load())
	}
	if w := strings.Join(rn.c.Status().Warnings, "\n"); !strings.Contains(w, "1 events skipped") || !strings.Contains(w, "50-byte cap") {
		t.Errorf("Status warnings: got %q, want the skipped event named", w)
	}
	if feedtest.HasState(feed.StateDisconnected, "")(recs) {
		t.Errorf("the oversized event ended the stream:\n%s", feedtest.Dump(recs))
	}
}

// TestGzipBombSkipped: a gzip stream whose one event inflates to 8 MiB is
// read with bounded memory (the parser holds at most the cap) and skipped;
// the next event arrives.
func TestGzipBombSkipped(t *testing.T) {
	const maxLine = 64 << 10
	stream := "data: " + strings.Repeat("x", 8<<20) + "\n\nid: 9\ndata: after\n\n"
	u := rawServer(t, []string{"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Encoding: gzip\r\n\r\n", gzipped(t, stream)}, false)
	rn := startClient(t, Config{URL: u, MaxLine: maxLine}, nil)
	recs := rn.sink.WaitFor(t, 0, "the event after the bomb", feedtest.CountKind(feed.KindEvent, 1))
	if e := feedtest.OfKind(recs, feed.KindEvent)[0]; e.Data != "after" {
		t.Errorf("event: got %q, want %q", e.Data, "after")
	}
	// Events are counted after the read is parsed: waiting for the count
	// orders the parser's last writes before the reads below.
	d := waitDiag(t, rn.c, eventsAtLeast(1))
	if d.Skipped != 1 || d.Bytes < 8<<20 {
		t.Errorf("diagnostics: skipped %d bytes %d, want 1 skipped of at least 8 MiB inflated", d.Skipped, d.Bytes)
	}
	// The parser's buffers are what an event costs; none passed the cap.
	p := rn.c.parser
	if c := max(cap(p.line), cap(p.data), cap(p.dec), cap(p.both)); c > 2*maxLine {
		t.Errorf("parser buffers hold %d bytes, want at most twice the %d-byte cap", c, maxLine)
	}
}

func TestBackoff(t *testing.T) {
	maxJitter := func(n int64) int64 { return n - 1 }
	noJitter := func(int64) int64 { return 0 }
	const floor = 500 * time.Millisecond
	cases := []struct {
		name     string
		retry    time.Duration
		failures int
		jitter   func(int64) int64
		want     time.Duration
	}{
		{"after a connection: the retry time", 3 * time.Second, 0, noJitter, 3 * time.Second},
		{"after a connection: up to a quarter more", 3 * time.Second, 0, maxJitter, 3750 * time.Millisecond},
		{"server asked for 0: the floor", 0, 0, noJitter, floor},
		{"server asked for 0: the floor and jitter", 0, 0, maxJitter, floor + floor/4},
		{"first failure, top", 3 * time.Second, 1, maxJitter, 6 * time.Second},
		{"first failure, bottom", 3 * time.Second, 1, noJitter, 3 * time.Second},
		{"second failure", 3 * time.Second, 2, maxJitter, 12 * time.Second},
		{"capped", 3 * time.Second, 10, maxJitter, 30 * time.Second},
		{"capped, bottom", 3 * time.Second, 10, noJitter, 15 * time.Second},
		{"many failures", 3 * time.Second, 1000, maxJitter, 30 * time.Second},
		{"retry 0 still backs off", 0, 1, maxJitter, 2 * floor},
		{"retry 0, bottom, not below the floor", 0, 1, noJitter, floor},
		{"retry above the cap wins", time.Minute, 3, maxJitter, time.Minute},
		{"the longest retry", MaxRetry, 3, maxJitter, MaxRetry},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := backoff(tc.retry, 30*time.Second, floor, tc.failures, tc.jitter); got != tc.want {
				t.Errorf("backoff(%s, 30s, %s, %d): got %s, want %s", tc.retry, floor, tc.failures, got, tc.want)
			}
		})
	}
	for _, ms := range []int64{-1, 0, 1, 1 << 40, 1<<63 - 1} {
		if d := retryDuration(ms); d < 0 || d > MaxRetry {
			t.Errorf("retryDuration(%d) = %s, want within [0, %s]", ms, d, MaxRetry)
		}
	}
}
