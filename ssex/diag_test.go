package ssex

import (
	"compress/gzip"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/internal/feedtest"
)

func TestDiagnosticsHeaderWarnings(t *testing.T) {
	cases := []struct {
		name     string
		headers  map[string]string
		gzip     bool
		want     []string // substrings of warnings, in order
		wantHdrs map[string]string
	}{
		{
			name:     "well behaved",
			headers:  map[string]string{"Cache-Control": "no-cache"},
			wantHdrs: map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "Transfer-Encoding": "chunked"},
		},
		{
			name:    "no-store is enough",
			headers: map[string]string{"Cache-Control": "private, no-store"},
		},
		{
			name:     "gzip",
			headers:  map[string]string{"Cache-Control": "no-cache", "Content-Encoding": "gzip"},
			gzip:     true,
			want:     []string{"Content-Encoding: gzip: compression makes servers and proxies buffer the stream"},
			wantHdrs: map[string]string{"Content-Encoding": "gzip"},
		},
		{
			name: "no Cache-Control",
			want: []string{"response lacks Cache-Control: no-cache (got none)"},
		},
		{
			name:    "Cache-Control without no-cache",
			headers: map[string]string{"Cache-Control": "max-age=60"},
			want:    []string{`response lacks Cache-Control: no-cache (got "max-age=60")`},
		},
		{
			name:    "X-Accel-Buffering yes",
			headers: map[string]string{"Cache-Control": "no-cache", "X-Accel-Buffering": "yes"},
			want:    []string{"X-Accel-Buffering: yes asks nginx to buffer"},
		},
		{
			name:    "all at once",
			headers: map[string]string{"Content-Encoding": "gzip", "X-Accel-Buffering": "yes"},
			gzip:    true,
			want:    []string{"Content-Encoding: gzip", "Cache-Control: no-cache", "X-Accel-Buffering"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				for k, v := range tc.headers {
					w.Header().Set(k, v)
				}
				w.WriteHeader(http.StatusOK)
				if tc.gzip {
					zw := gzip.NewWriter(w)
					_, _ = zw.Write([]byte("data: zipped\n\n"))
					_ = zw.Flush()
				} else {
					_, _ = w.Write([]byte("data: plain\n\n"))
				}
				w.(http.Flusher).Flush()
				<-r.Context().Done()
			}))
			rn := startClient(t, Config{URL: srv.URL}, nil)
			recs := rn.sink.WaitFor(t, 0, "an event", feedtest.CountKind(feed.KindEvent, 1))
			wantData := "plain"
			if tc.gzip {
				wantData = "zipped" // decoded, as a browser decodes it
			}
			if e := feedtest.OfKind(recs, feed.KindEvent)[0]; e.Data != wantData {
				t.Errorf("event data: got %q, want %q", e.Data, wantData)
			}
			d := rn.c.Diagnostics()
			if len(d.Warnings) != len(tc.want) {
				t.Fatalf("warnings: got %q, want %d containing %q", d.Warnings, len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if !strings.Contains(d.Warnings[i], w) {
					t.Errorf("warning %d: got %q, want it to contain %q", i, d.Warnings[i], w)
				}
			}
			for k, v := range tc.wantHdrs {
				if d.Headers[k] != v {
					t.Errorf("header %s: got %q, want %q", k, d.Headers[k], v)
				}
			}
		})
	}
}

func TestDiagnosticsTimingAndCounts(t *testing.T) {
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		streamHeaders(w)
		write(w, ": ping\n\n")
		time.Sleep(20 * time.Millisecond)
		write(w, "data: a\n\ndata: b\n\n")
		<-r.Context().Done()
	}))
	before := time.Now()
	rn := startClient(t, Config{Name: "n", URL: srv.URL, Conn: 2}, nil)
	recs := rn.sink.WaitFor(t, 0, "two events", feedtest.CountKind(feed.KindEvent, 2))
	d := waitDiag(t, rn.c, eventsAtLeast(2))
	if d.Name != "n" || d.Conn != 2 || d.URL != srv.URL || d.State != feed.StateConnected || d.Status != 200 || d.Proto != "HTTP/1.1" {
		t.Errorf("identity: got %q conn %d url %q state %s status %d proto %s", d.Name, d.Conn, d.URL, d.State, d.Status, d.Proto)
	}
	if d.TTFB <= 0 || d.TimeToFirstEvent < d.TTFB {
		t.Errorf("timing: got TTFB %s and time to first event %s, want 0 < TTFB <= time to first event", d.TTFB, d.TimeToFirstEvent)
	}
	if d.Events != 2 || d.Comments != 1 || d.Bytes != int64(len(": ping\n\ndata: a\n\ndata: b\n\n")) {
		t.Errorf("counts: got %d events %d comments %d bytes", d.Events, d.Comments, d.Bytes)
	}
	events := feedtest.OfKind(recs, feed.KindEvent)
	if !d.LastEvent.Equal(events[1].TS) || d.LastEvent.Before(before) || d.LastComment.After(d.LastEvent) || d.ConnectedAt.After(d.LastComment) {
		t.Errorf("times: got connected %v, last comment %v, last event %v (record %v)", d.ConnectedAt, d.LastComment, d.LastEvent, events[1].TS)
	}
	if d.LastEventIDHonoured != "" || d.LastEventIDSent != "" {
		t.Errorf("resume before any reconnect: got sent %q honoured %q, want both empty", d.LastEventIDSent, d.LastEventIDHonoured)
	}
	// The copy is the caller's: changing it must not touch the client.
	d.Headers["Content-Type"] = "changed"
	if rn.c.Diagnostics().Headers["Content-Type"] != "text/event-stream" {
		t.Errorf("Diagnostics shares its Headers map with the client")
	}
}

func TestDiagnosticsBurstWarning(t *testing.T) {
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		streamHeaders(w)
		for range 4 {
			select {
			case <-r.Context().Done():
				return
			case <-time.After(150 * time.Millisecond):
			}
			// What a buffering proxy does: hold events, then pass them on at once.
			write(w, "data: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4\n\ndata: 5\n\n")
		}
		<-r.Context().Done()
	}))
	rn := startClient(t, Config{URL: srv.URL}, func(c *Client) { c.burstQuiet = 100 * time.Millisecond })
	rn.sink.WaitFor(t, 0, "20 events", feedtest.CountKind(feed.KindEvent, 20))
	d := waitDiag(t, rn.c, eventsAtLeast(20))
	if d.Bursts < 3 {
		t.Fatalf("bursts: got %d, want at least 3", d.Bursts)
	}
	if w := strings.Join(d.Warnings, "\n"); !strings.Contains(w, "events arrive in bursts") || !strings.Contains(w, "buffering") {
		t.Errorf("warnings: got %q, want one about bursts from a buffering proxy", d.Warnings)
	}
}

func TestDiagnosticsSteadyStreamIsNoBurst(t *testing.T) {
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		streamHeaders(w)
		for range 10 {
			select {
			case <-r.Context().Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
			write(w, "data: x\n\n")
		}
		<-r.Context().Done()
	}))
	rn := startClient(t, Config{URL: srv.URL}, nil)
	rn.sink.WaitFor(t, 0, "10 events", feedtest.CountKind(feed.KindEvent, 10))
	if d := waitDiag(t, rn.c, eventsAtLeast(10)); d.Bursts != 0 || len(d.Warnings) != 0 {
		t.Errorf("got %d bursts and warnings %q, want none", d.Bursts, d.Warnings)
	}
}

func TestLastEventIDNotHonoured(t *testing.T) {
	var n atomic.Int32
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		streamHeaders(w)
		// A server that ignores Last-Event-ID and replays from the start.
		write(w, "id: 1\ndata: a\n\nid: 2\ndata: b\n\n")
		if n.Add(1) == 1 {
			return
		}
		<-r.Context().Done()
	}))
	rn := startClient(t, Config{URL: srv.URL}, nil)
	rn.sink.WaitFor(t, 0, "the replayed events", feedtest.CountKind(feed.KindEvent, 4))
	d := rn.c.Diagnostics()
	if d.LastEventIDSent != "2" || d.LastEventIDHonoured != "no" || !strings.Contains(d.ResumeDetail, "replayed") {
		t.Errorf("resume: got sent %q honoured %q detail %q, want 2, no, and a detail about replaying", d.LastEventIDSent, d.LastEventIDHonoured, d.ResumeDetail)
	}
	if w := strings.Join(d.Warnings, "\n"); !strings.Contains(w, "server did not honour Last-Event-ID") {
		t.Errorf("warnings: got %q, want one about Last-Event-ID", d.Warnings)
	}
}

func TestResumeCheck(t *testing.T) {
	cases := []struct {
		name    string
		sent    string
		ids     []string // last event ID in force after each event
		verdict string
		detail  string
	}{
		{"next id", "42", []string{"43", "44"}, "yes", "was 43"},
		{"gap", "42", []string{"50"}, "yes", "ids 43 to 49 were not replayed"},
		{"replay from start", "42", []string{"1", "2"}, "no", "sent id 1"},
		{"replay of the same id after others", "42", []string{"43", "42"}, "no", "sent id \"42\" again"},
		{"late replay", "42", []string{"43", "44", "40"}, "no", "sent id 40"},
		{"no verdict while the id stays", "42", []string{"42", "42"}, "unknown", ""},
		{"events without ids", "42", nil, "unknown", ""},
		{"empty id", "42", []string{""}, "unknown", ""},
		{"opaque ids differ", "abc", []string{"abd"}, "yes", `was "abd"`},
		{"opaque id replayed", "abc", []string{"xyz", "abc"}, "no", "again"},
		{"numeric then opaque", "7", []string{"x"}, "yes", `was "x"`},
		{"no stays no", "42", []string{"1", "43"}, "no", "sent id 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var r resumeCheck
			r.start(tc.sent)
			for _, id := range tc.ids {
				r.see(id)
			}
			if r.verdict != tc.verdict || !strings.Contains(r.detail, tc.detail) {
				t.Errorf("got %q (%q), want %q with a detail containing %q", r.verdict, r.detail, tc.verdict, tc.detail)
			}
		})
	}
}

func TestHasDirective(t *testing.T) {
	cases := []struct {
		cc   string
		want bool
	}{
		{"no-cache", true},
		{"No-Cache", true},
		{"private, no-cache", true},
		{`no-cache="Set-Cookie"`, true},
		{"no-cache-please", false},
		{"", false},
		{"max-age=0", false},
	}
	for _, tc := range cases {
		if got := hasDirective(tc.cc, "no-cache"); got != tc.want {
			t.Errorf("hasDirective(%q, no-cache): got %v, want %v", tc.cc, got, tc.want)
		}
	}
}

// TestStatusFromDiagnostics: Path and Status describe the connection as
// every delivery path does (feed.Status), filled from Diagnostics.
func TestStatusFromDiagnostics(t *testing.T) {
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		streamHeaders(w)
		write(w, "retry: 1500\n: hi\n\nid: 7\ndata: a\n\n")
		<-r.Context().Done()
	}))
	rn := startClient(t, Config{Name: "app-1", URL: strings.Replace(srv.URL, "http://", "http://u:pw@", 1) + "/e?token=tok42", Conn: 2}, nil)
	if got := rn.c.Path(); got != "sse:app-1" {
		t.Errorf("Path() = %q, want sse:app-1", got)
	}
	waitDiag(t, rn.c, eventsAtLeast(1))
	s := rn.c.Status()
	if s.Source != feed.SourceSSE || s.Name != "app-1" || s.Conn != 2 || s.State != feed.StateConnected ||
		s.HTTPStatus != 200 || s.Events != 1 || s.ConnectedAt.IsZero() || s.LastKeepAlive.IsZero() || s.Error != "" {
		t.Errorf("Status() = %+v, want connected sse app-1 conn 2, 200, 1 event, a keep-alive, no error", s)
	}
	if strings.Contains(s.URL, "pw") || strings.Contains(s.URL, "tok42") {
		t.Errorf("Status().URL = %q, want secrets masked", s.URL)
	}
	if d := strings.Join(s.Details, "; "); !strings.Contains(d, "HTTP/1.1") || !strings.Contains(d, "retry 1500 ms (from the server)") || !strings.Contains(d, `last event id "7"`) {
		t.Errorf("Status().Details = %q, want the protocol, the server's retry and the last event id", s.Details)
	}
	if s.Path() != rn.c.Path() {
		t.Errorf("Status().Path() = %q, want %q", s.Path(), rn.c.Path())
	}
}
