package pollx

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/internal/feedtest"
)

// server answers poll n (from 1) with h; it records each request's
// headers and arrival time.
type server struct {
	*httptest.Server
	mu    sync.Mutex
	reqs  []*http.Request
	times []time.Time
	n     atomic.Int32
}

func newServer(t *testing.T, h func(w http.ResponseWriter, r *http.Request, n int)) *server {
	t.Helper()
	s := &server{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.reqs = append(s.reqs, r.Clone(context.Background()))
		s.times = append(s.times, time.Now())
		s.mu.Unlock()
		h(w, r, int(s.n.Add(1)))
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) polls() int { return int(s.n.Load()) }

func (s *server) request(i int) (*http.Request, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reqs[i], s.times[i]
}

func newTestClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "app"
	}
	if cfg.Interval == 0 {
		cfg.Interval = 10 * time.Millisecond
	}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	c.jitter = func(n int64) int64 { return n - 1 }
	return c
}

func runToEnd(t *testing.T, c *Client, sink feed.Sink) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return c.Run(ctx, sink)
}

func TestPollETag(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		version := "v1"
		if n >= 4 {
			version = "v2"
		}
		etag := `"` + version + `"`
		w.Header().Set("ETag", etag)
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		fmt.Fprintf(w, `{"version":%q}`, version)
	})
	c := newTestClient(t, Config{URL: srv.URL})
	if c.Path() != "poll:app" {
		t.Errorf("Path() = %q, want poll:app", c.Path())
	}
	sink := feedtest.NewSink()
	run := feedtest.Start(t, c, sink)
	recs := sink.WaitFor(t, 0, "two versions and more polls", func(r []feed.Record) bool {
		return len(feedtest.OfKind(r, feed.KindEvent)) >= 2 && srv.polls() >= 6
	})
	run.Stop(t)
	ev := feedtest.OfKind(recs, feed.KindEvent)
	if len(ev) != 2 || ev[0].Data != `{"version":"v1"}` || ev[1].Data != `{"version":"v2"}` {
		t.Fatalf("events = %+v, want v1 then v2 only", ev)
	}
	if ev[0].Source != feed.SourcePoll || ev[0].Status != 200 || ev[0].ID != `"v1"` || ev[0].Type != "message" {
		t.Errorf("event = %+v, want source poll, status 200, id \"v1\"", ev[0])
	}
	if r, _ := srv.request(1); r.Header.Get("If-None-Match") != `"v1"` {
		t.Errorf("second poll If-None-Match = %q, want \"v1\"", r.Header.Get("If-None-Match"))
	}
	st := c.Status()
	d := strings.Join(st.Details, "; ")
	// Polls 2 and 3 were 304, and so were all after 4: all but two.
	var n304, n int
	if i := strings.Index(d, "304 on "); i >= 0 {
		fmt.Sscanf(d[i:], "304 on %d of %d polls", &n304, &n)
	}
	if n < 6 || n304 != n-2 || !strings.Contains(d, "interval 10ms") || !strings.Contains(d, "last change") {
		t.Errorf("Details = %q, want 304 on all polls but two, the interval and the last change", d)
	}
	if st.Events != 2 {
		t.Errorf("Status.Events = %d, want 2", st.Events)
	}
	if got := len(feedtest.StateRecords(recs, feed.StateConnected)); got != 1 {
		t.Errorf("%d connected states, want 1", got)
	}
}

func TestPollLastModified(t *testing.T) {
	t1 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		w.Header().Set("Last-Modified", t1.Format(http.TimeFormat))
		if since, err := http.ParseTime(r.Header.Get("If-Modified-Since")); err == nil && !t1.After(since) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Write([]byte("snapshot"))
	})
	c := newTestClient(t, Config{URL: srv.URL})
	sink := feedtest.NewSink()
	run := feedtest.Start(t, c, sink)
	sink.WaitFor(t, 0, "several polls", func([]feed.Record) bool { return srv.polls() >= 4 })
	run.Stop(t)
	if ev := feedtest.OfKind(sink.All(), feed.KindEvent); len(ev) != 1 || ev[0].Data != "snapshot" {
		t.Errorf("events = %+v, want one snapshot", ev)
	}
	if r, _ := srv.request(1); r.Header.Get("If-Modified-Since") != t1.Format(http.TimeFormat) {
		t.Errorf("If-Modified-Since = %q, want %q", r.Header.Get("If-Modified-Since"), t1.Format(http.TimeFormat))
	}
}

// Without validators, a body equal to the last one is counted, not recorded.
func TestPollUnchangedBody(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) { w.Write([]byte("same")) })
	c := newTestClient(t, Config{URL: srv.URL})
	sink := feedtest.NewSink()
	run := feedtest.Start(t, c, sink)
	sink.WaitFor(t, 0, "several polls", func([]feed.Record) bool { return srv.polls() >= 4 })
	run.Stop(t)
	if ev := feedtest.OfKind(sink.All(), feed.KindEvent); len(ev) != 1 {
		t.Errorf("%d events, want 1", len(ev))
	}
	if d := strings.Join(c.Status().Details, "; "); !strings.Contains(d, "unchanged bodies") || !strings.Contains(d, "304 on 0 of") {
		t.Errorf("Details = %q, want unchanged bodies counted and no 304", d)
	}
}

func TestPollGrowingBody(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		for i := 1; i <= n; i++ {
			fmt.Fprintf(w, "line %d\n", i)
		}
	})
	c := newTestClient(t, Config{URL: srv.URL})
	sink := feedtest.NewSink()
	run := feedtest.Start(t, c, sink)
	sink.WaitFor(t, 0, "five bodies", feedtest.CountKind(feed.KindEvent, 5))
	run.Stop(t)
	ev := feedtest.OfKind(sink.All(), feed.KindEvent)
	for i, e := range ev[:5] {
		want := ""
		for j := 1; j <= i+1; j++ {
			want += fmt.Sprintf("line %d\n", j)
		}
		if e.Data != want {
			t.Errorf("body %d = %q, want %q", i+1, e.Data, want)
		}
	}
}

// A token that appears in the N-th poll is in exactly one record: the
// body of that poll (later equal bodies are not recorded).
func TestPollTokenInNthPoll(t *testing.T) {
	const token = "fsp-0123abcd-1"
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n < 3 {
			w.Write([]byte(`[]`))
			return
		}
		fmt.Fprintf(w, `[{"data":"{\"fanscope_probe\":\"%s\"}"}]`, token)
	})
	c := newTestClient(t, Config{URL: srv.URL})
	sink := feedtest.NewSink()
	run := feedtest.Start(t, c, sink)
	sink.WaitFor(t, 0, "polls after the token", func(r []feed.Record) bool { return srv.polls() >= 6 })
	run.Stop(t)
	var with []feed.Record
	ev := feedtest.OfKind(sink.All(), feed.KindEvent)
	for _, e := range ev {
		if strings.Contains(e.Data, token) {
			with = append(with, e)
		}
	}
	if len(ev) != 2 || len(with) != 1 {
		t.Fatalf("events = %+v, want [] then one body with the token", ev)
	}
	_, third := srv.request(2)
	_, fourth := srv.request(3)
	if with[0].TS.Before(third) || with[0].TS.After(fourth) {
		t.Errorf("token record at %v, want between the third poll (%v) and the fourth (%v)", with[0].TS, third, fourth)
	}
}

func TestPollRetryAfter(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 2 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			w.Write([]byte("slow down"))
			return
		}
		fmt.Fprintf(w, "body %d", n)
	})
	c := newTestClient(t, Config{URL: srv.URL})
	sink := feedtest.NewSink()
	run := feedtest.Start(t, c, sink)
	recs := sink.WaitFor(t, 0, "the poll after the 429", func(r []feed.Record) bool { return len(feedtest.StateRecords(r, feed.StateConnected)) >= 2 })
	run.Stop(t)
	re := feedtest.StateRecords(recs, feed.StateReconnecting)
	if len(re) != 1 || re[0].Status != 429 || !strings.Contains(re[0].Error, `429 Too Many Requests: "slow down" (retry in 1s)`) {
		t.Fatalf("reconnecting = %+v, want one 429 naming the Retry-After wait", re)
	}
	_, second := srv.request(1)
	_, third := srv.request(2)
	if gap := third.Sub(second); gap < time.Second {
		t.Errorf("next poll %s after the 429, want at least the Retry-After (1s)", gap)
	}
}

func TestPollServerErrorBackoff(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n >= 2 && n <= 4 {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		fmt.Fprintf(w, "body %d", n)
	})
	c := newTestClient(t, Config{URL: srv.URL, Interval: 20 * time.Millisecond})
	sink := feedtest.NewSink()
	run := feedtest.Start(t, c, sink)
	recs := sink.WaitFor(t, 0, "recovery", func(r []feed.Record) bool { return len(feedtest.StateRecords(r, feed.StateConnected)) >= 2 })
	st := c.Status()
	run.Stop(t)
	var got []string
	for _, r := range feedtest.StateRecords(recs, feed.StateReconnecting) {
		got = append(got, r.Error)
	}
	want := []string{"502 Bad Gateway (retry in 40ms)", "502 Bad Gateway (retry in 80ms)", "502 Bad Gateway (retry in 160ms)"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("reconnecting = %q, want %q (doubling from the interval)", got, want)
	}
	if st.State != feed.StateConnected || st.Reconnects != 3 || st.Error != "" {
		t.Errorf("Status: %s reconnects %d error %q, want connected, 3, no error", st.State, st.Reconnects, st.Error)
	}
}

func TestPollFatal(t *testing.T) {
	tests := []struct {
		code int
		want string
	}{
		{http.StatusUnauthorized, "401 Unauthorized: \"who are you\" (check -H/--bearer-env)"},
		{http.StatusForbidden, "403 Forbidden"},
		{http.StatusNotFound, "check the --poll URL path"},
	}
	for _, tc := range tests {
		t.Run(http.StatusText(tc.code), func(t *testing.T) {
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
				w.WriteHeader(tc.code)
				w.Write([]byte("who are you"))
			})
			c := newTestClient(t, Config{URL: srv.URL + "/events?token=t0psecret", Header: http.Header{"Authorization": {"Bearer b3arer"}}})
			sink := feedtest.NewSink()
			err := runToEnd(t, c, sink)
			if !errors.Is(err, ErrFatal) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run = %v, want ErrFatal with %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "t0psecret") || !strings.Contains(err.Error(), "token=***") {
				t.Errorf("error %q shows the token or not the masked URL", err)
			}
			if f := feedtest.StateRecords(sink.All(), feed.StateFailed); len(f) != 1 || f[0].Status != tc.code {
				t.Errorf("failed states = %+v, want one with status %d", f, tc.code)
			}
			if srv.polls() != 1 {
				t.Errorf("%d polls, want 1", srv.polls())
			}
		})
	}
}

func TestPollOversizedBody(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 2 {
			w.Write([]byte(strings.Repeat("x", 100)))
			return
		}
		fmt.Fprintf(w, "body %d", n)
	})
	c := newTestClient(t, Config{URL: srv.URL, MaxBody: 64})
	sink := feedtest.NewSink()
	run := feedtest.Start(t, c, sink)
	sink.WaitFor(t, 0, "three polls", feedtest.CountKind(feed.KindEvent, 2))
	run.Stop(t)
	ev := feedtest.OfKind(sink.All(), feed.KindEvent)
	if ev[0].Data != "body 1" || ev[1].Data != "body 3" {
		t.Errorf("events %q, %q; want body 1, body 3", ev[0].Data, ev[1].Data)
	}
	if w := c.Status().Warnings; len(w) != 1 || !strings.Contains(w[0], "1 bodies over 64 bytes skipped") {
		t.Errorf("Warnings = %v", w)
	}
}

func TestPollUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL + "/?key=k3y"
	srv.Close()
	c := newTestClient(t, Config{URL: url})
	sink := feedtest.NewSink()
	run := feedtest.Start(t, c, sink)
	recs := sink.WaitFor(t, 0, "retries", func(r []feed.Record) bool { return len(feedtest.StateRecords(r, feed.StateReconnecting)) >= 2 })
	if err := run.Stop(t); err != nil {
		t.Errorf("Run = %v, want nil after cancel", err)
	}
	re := feedtest.StateRecords(recs, feed.StateReconnecting)[0]
	if !strings.Contains(re.Error, "refused") || strings.Contains(re.Error, "k3y") {
		t.Errorf("reconnecting error = %q, want refused without the key", re.Error)
	}
	select {
	case <-c.Connected():
		t.Error("Connected() closed without a successful poll")
	default:
	}
}

func TestPollBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"scheme", Config{URL: "ws://h/"}, "scheme"},
		{"interval", Config{URL: "http://h/", Interval: -time.Second}, "interval -1s is negative"},
		{"header", Config{URL: "http://h/", Header: http.Header{"X": {"a\rb"}}}, "control characters"},
		{"body", Config{URL: "http://h/", MaxBody: -1}, "negative"},
	}
	for _, tc := range tests {
		if _, err := NewClient(tc.cfg); !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: NewClient = %v, want ErrUsage with %q", tc.name, err, tc.want)
		}
	}
	for _, in := range []string{"", "x=ftp://h/", "=http://h/"} {
		if _, _, err := ParseEndpoint(in); !errors.Is(err, ErrUsage) {
			t.Errorf("ParseEndpoint(%q) = %v, want ErrUsage", in, err)
		}
	}
	if name, u, err := ParseEndpoint("feed=https://h/x?token=a"); err != nil || name != "feed" || u != "https://h/x?token=a" {
		t.Errorf("ParseEndpoint = %q %q %v", name, u, err)
	}
}

// TestPollSecretsNeverShown: the URL's password and token and the bearer
// token appear in no record, Status or error, whatever went wrong; and
// masking is by field, so a one-letter password that also occurs in the
// error's words leaves those words whole.
func TestPollSecretsNeverShown(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	closedAddr := strings.TrimPrefix(closed.URL, "http://")
	closed.Close() // nothing listens there now
	loop := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		http.Redirect(w, r, fmt.Sprintf("/again%d?token=tok-s3cret", n), http.StatusFound)
	})
	refuses := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		w.WriteHeader(http.StatusUnauthorized)
	})
	header := http.Header{"Authorization": {"Bearer b3arer-s3cret"}, "Cookie": {"sid=c00kie-s3cret"}}
	secrets := []string{"pw-s3cret", "tok-s3cret", "b3arer-s3cret", "c00kie-s3cret"}
	tests := []struct {
		name, url string
		fatal     bool
		want      string // in the last state record's error
	}{
		{"refused", "http://u:pw-s3cret@" + closedAddr + "/x?token=tok-s3cret", false, "connection refused"},
		{"redirect loop", strings.Replace(loop.URL, "://", "://u:pw-s3cret@", 1) + "/?token=tok-s3cret", true, "stopped after 10 redirects"},
		{"401", strings.Replace(refuses.URL, "://", "://u:pw-s3cret@", 1) + "/?token=tok-s3cret", true, "401 Unauthorized"},
		// A password that is a letter of the error's words: by field, the
		// words stay whole (substring masking would print "conn***ction").
		{"short password", "http://u:e@" + closedAddr + "/x", false, "connection refused"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newTestClient(t, Config{URL: tc.url, Header: header})
			if err := feedtest.CheckMasked(t, c, tc.fatal, tc.want, secrets...); tc.fatal && !errors.Is(err, ErrFatal) {
				t.Errorf("Run = %v, want ErrFatal", err)
			}
		})
	}
}

// TestPollRedirectKeepsCredentials: a poll redirected to another origin
// goes there without the credentials and -H headers (and no Referer);
// within the origin they go along.
func TestPollRedirectKeepsCredentials(t *testing.T) {
	b := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		w.Write([]byte("from b"))
	})
	a := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if r.URL.Path == "/same" {
			http.Redirect(w, r, "/here", http.StatusFound)
			return
		}
		if r.URL.Path == "/here" {
			w.Write([]byte("from a"))
			return
		}
		http.Redirect(w, r, b.URL+"/x?token=tok-s3cret", http.StatusFound)
	})
	header := http.Header{"Authorization": {"Bearer b3arer-s3cret"}, "Cookie": {"sid=c"}, "X-Team": {"t"}}
	for _, tc := range []struct {
		path string
		srv  *server
		keep bool
	}{{"/away", b, false}, {"/same", a, true}} {
		c := newTestClient(t, Config{URL: a.URL + tc.path, Header: header})
		sink := feedtest.NewSink()
		run := feedtest.Start(t, c, sink)
		sink.WaitFor(t, 0, "a body", feedtest.CountKind(feed.KindEvent, 1))
		run.Stop(t)
		r, _ := tc.srv.request(tc.srv.polls() - 1)
		kept := r.Header.Get("Authorization") != "" && r.Header.Get("Cookie") != "" && r.Header.Get("X-Team") != ""
		if kept != tc.keep || r.Header.Get("Referer") != "" {
			t.Errorf("%s: the redirect target got %v, want credentials kept %v and no Referer", tc.path, r.Header, tc.keep)
		}
	}
}
