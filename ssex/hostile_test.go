package ssex

import (
	"errors"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/internal/feedtest"
)

var waitRE = regexp.MustCompile(`retry in ([0-9a-zµ.]+)\)$`)

// announcedWaits are the waits the reconnecting records announce.
func announcedWaits(recs []feed.Record) []time.Duration {
	var out []time.Duration
	for _, r := range recs {
		if r.Kind != feed.KindState || r.State != feed.StateReconnecting {
			continue
		}
		m := waitRE.FindStringSubmatch(r.Error)
		if m == nil {
			out = append(out, -1)
			continue
		}
		d, err := time.ParseDuration(m[1])
		if err != nil {
			d = -1
		}
		out = append(out, d)
	}
	return out
}

// TestRetryZeroNoStorm: hostile servers that ask for `retry: 0` and close
// at once, with or without an event, get attempts no faster than the
// floor allows, and each wait is announced as it is.
func TestRetryZeroNoStorm(t *testing.T) {
	for _, tc := range []struct{ name, body string }{
		{"no event", "retry: 0\n\n"},
		{"an event", "retry: 0\ndata: x\n\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int32
			srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n.Add(1)
				streamHeaders(w)
				write(w, tc.body)
			}))
			rn := startClient(t, Config{URL: srv.URL}, func(c *Client) { c.floor = MinRetry })
			recs := rn.sink.WaitFor(t, 0, "three reconnects", func(recs []feed.Record) bool {
				return len(announcedWaits(recs)) >= 3
			})
			for i, w := range announcedWaits(recs)[:3] {
				if w < MinRetry || w > 30*time.Second {
					t.Errorf("wait %d: got %s, want at least %s", i, w, MinRetry)
				}
			}
			// Waits of at least MinRetry between attempts: far fewer
			// requests than a storm, however fast the machine.
			start, before := time.Now(), n.Load()
			time.Sleep(2 * time.Second)
			elapsed := time.Since(start)
			if got, most := n.Load()-before, int32(elapsed/MinRetry)+1; got > most {
				t.Errorf("requests in %s: got %d, want at most %d", elapsed.Round(time.Millisecond), got, most)
			}
			if tc.name == "no event" {
				// Connections that deliver nothing back off like failures.
				waits := announcedWaits(rn.sink.All())
				if last := waits[len(waits)-1]; len(waits) >= 4 && last < 2*MinRetry {
					t.Errorf("after %d empty connections the wait is %s, want it to grow", len(waits), last)
				}
			}
		})
	}
}

// TestRetryOverflowClamped: a `retry:` too large for a Duration is clamped
// to MaxRetry, not turned negative (which reconnected at once).
func TestRetryOverflowClamped(t *testing.T) {
	var n atomic.Int32
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		streamHeaders(w)
		write(w, "retry: "+strconv.FormatInt(1<<63-1, 10)+"\ndata: x\n\n")
	}))
	rn := startClient(t, Config{URL: srv.URL}, nil)
	recs := rn.sink.WaitFor(t, 0, "a reconnecting record", func(recs []feed.Record) bool { return len(announcedWaits(recs)) >= 1 })
	if w := announcedWaits(recs)[0]; w < MaxRetry {
		t.Errorf("wait after retry: max int64: got %s, want at least %s", w, MaxRetry)
	}
	if got := n.Load(); got != 1 {
		t.Errorf("requests: got %d, want 1", got)
	}
}

// endlessServer answers every request with prefix, then repeat over and
// over until the client goes away. It returns the server's URL.
func endlessServer(t *testing.T, prefix, repeat string) string {
	t.Helper()
	chunk := []byte(strings.Repeat(repeat, max(1, 4096/len(repeat))))
	return tcpServer(t, func(c net.Conn) {
		if _, err := c.Write([]byte(prefix)); err != nil {
			return
		}
		// Bounded: 256 MiB at most, far past any limit.
		for i := 0; i < (256<<20)/len(chunk); i++ {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	})
}

// TestEndlessResponseHead: a head that never ends (one endless header
// line, endless headers, endless interim responses) is cut off at the
// limit with a clear error, having buffered at most the limit, and the
// client retries.
func TestEndlessResponseHead(t *testing.T) {
	const limit = 64 << 10
	for _, tc := range []struct{ name, prefix, repeat, want string }{
		{"one endless header line", "HTTP/1.1 200 OK\r\nX-Long: ", "a", "response head larger than 65536 bytes"},
		{"endless headers", "HTTP/1.1 200 OK\r\n", "X-N: v\r\n", "response head larger than 65536 bytes"},
		{"endless status line", "HTTP/1.1 200 ", "O", "response head larger than 65536 bytes"},
		{"endless interim responses", "", "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n", "interim (1xx) responses"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := endlessServer(t, tc.prefix, tc.repeat)
			rn := startClient(t, Config{URL: u, MaxHeadBytes: limit}, nil)
			recs := rn.sink.WaitFor(t, 0, "a reconnect naming the endless head", feedtest.HasState(feed.StateReconnecting, tc.want))
			if feedtest.HasState(feed.StateConnected, "")(recs) {
				t.Errorf("connected to an endless head:\n%s", feedtest.Dump(recs))
			}
			if d := rn.c.Diagnostics(); d.HeadBytes > limit {
				t.Errorf("head bytes buffered: got %d, want at most %d", d.HeadBytes, limit)
			}
		})
	}
}

// TestInterimResponsesSkipped: 100, 102 and 103 Early Hints before the
// 200 are skipped, as browsers and curl skip them.
func TestInterimResponsesSkipped(t *testing.T) {
	u := rawServer(t, []string{
		"HTTP/1.1 100 Continue\r\n\r\n",
		"HTTP/1.1 102 Processing\r\n\r\n",
		"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\n",
		streamHead + "\r\ndata: hi\n\n",
	}, false)
	rn := startClient(t, Config{URL: u}, nil)
	recs := rn.sink.WaitFor(t, 0, "the event after the interim responses", feedtest.CountKind(feed.KindEvent, 1))
	if e := feedtest.OfKind(recs, feed.KindEvent)[0]; e.Data != "hi" {
		t.Errorf("event: got %q, want hi", e.Data)
	}
	if d := rn.c.Diagnostics(); d.Interim != 3 || d.Status != 200 || d.HeadBytes <= 0 {
		t.Errorf("diagnostics: interim %d status %d head bytes %d, want 3, 200 and the head's size", d.Interim, d.Status, d.HeadBytes)
	}
}

// headerLog keeps the headers of the requests a server got.
type headerLog struct {
	mu   sync.Mutex
	seen []http.Header
}

func (l *headerLog) add(h http.Header) {
	l.mu.Lock()
	l.seen = append(l.seen, h.Clone())
	l.mu.Unlock()
}

func (l *headerLog) all() []http.Header {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]http.Header(nil), l.seen...)
}

// TestRedirectsKeepCredentialsAtHome: a redirect chain across origins
// (the same host on another port is another origin) carries no
// credentials, no -H header and no Referer; one within the origin keeps
// them but still sends no Referer; each redirect is a state record with
// the new URL masked; other schemes and loops are refused by name.
func TestRedirectsKeepCredentialsAtHome(t *testing.T) {
	var atB, atA headerLog
	b := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		atB.add(r.Header)
		streamHeaders(w)
		write(w, "data: b\n\n")
		<-r.Context().Done()
	}))
	a := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/cross":
			http.Redirect(w, r, b.URL+"/events?token=tok42", http.StatusFound)
		case "/hop":
			http.Redirect(w, r, "/cross", http.StatusTemporaryRedirect)
		case "/same":
			http.Redirect(w, r, "/stream", http.StatusMovedPermanently)
		case "/ftp":
			http.Redirect(w, r, "ftp://u:pw42@files.example/x?sig=sig42", http.StatusFound)
		case "/loop":
			http.Redirect(w, r, "/loop", http.StatusFound)
		case "/stream":
			atA.add(r.Header)
			streamHeaders(w)
			write(w, "data: a\n\n")
			<-r.Context().Done()
		default:
			http.NotFound(w, r)
		}
	}))
	header := http.Header{
		"Authorization": {"Bearer bearer42"},
		"Cookie":        {"sid=cookie42"},
		"X-Api-Key":     {"key42"},
		"X-Trace":       {"trace42"},
	}
	secretsIn := func(t *testing.T, recs []feed.Record) {
		t.Helper()
		for _, r := range recs {
			for _, s := range []string{"tok42", "orig42", "bearer42", "cookie42", "key42", "pw42", "sig42"} {
				if strings.Contains(r.Error, s) || strings.Contains(r.Data, s) {
					t.Errorf("record %s %s holds %q: %q", r.Kind, r.State, s, r.Error)
				}
			}
		}
	}

	for _, path := range []string{"/cross", "/hop"} {
		t.Run("across origins via "+path, func(t *testing.T) {
			before := len(atB.all())
			rn := startClient(t, Config{URL: a.URL + path + "?token=orig42", Header: header}, nil)
			recs := rn.sink.WaitFor(t, 0, "the event at the other origin", feedtest.CountKind(feed.KindEvent, 1))
			got := atB.all()[before]
			for _, k := range []string{"Authorization", "Cookie", "X-Api-Key", "X-Trace", "Referer"} {
				if v := got.Get(k); v != "" {
					t.Errorf("the other origin got %s: %q, want none", k, v)
				}
			}
			if got.Get("Accept") != "text/event-stream" {
				t.Errorf("the other origin got Accept %q, want text/event-stream", got.Get("Accept"))
			}
			if !feedtest.HasState(feed.StateConnecting, "redirected (302) to "+b.URL+"/events?token=***")(recs) {
				t.Errorf("no state record showing the redirect, masked:\n%s", feedtest.Dump(recs))
			}
			secretsIn(t, recs)
			if d := rn.c.Diagnostics(); d.Redirects < 1 {
				t.Errorf("diagnostics redirects: got %d, want at least 1", d.Redirects)
			}
		})
	}

	t.Run("within the origin", func(t *testing.T) {
		rn := startClient(t, Config{URL: a.URL + "/same?token=orig42", Header: header}, nil)
		recs := rn.sink.WaitFor(t, 0, "the event", feedtest.CountKind(feed.KindEvent, 1))
		got := atA.all()[0]
		if got.Get("Authorization") != "Bearer bearer42" || got.Get("X-Trace") != "trace42" || got.Get("Cookie") != "sid=cookie42" {
			t.Errorf("same origin got %v, want the credentials and -H headers", got)
		}
		if v := got.Get("Referer"); v != "" {
			t.Errorf("same origin got Referer %q, want none", v)
		}
		secretsIn(t, recs)
	})

	for _, tc := range []struct{ path, want string }{
		{"/ftp", `scheme "ftp" is not http or https`},
		{"/loop", "stopped after 10 redirects"},
	} {
		t.Run("refused "+tc.path, func(t *testing.T) {
			rn := startClient(t, Config{URL: a.URL + tc.path, Header: header}, nil)
			err := rn.Wait(t)
			var re *RedirectError
			if !errors.Is(err, ErrFatal) || !errors.As(err, &re) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run: got %v, want an ErrFatal RedirectError saying %q", err, tc.want)
			}
			for _, s := range []string{"pw42", "sig42"} {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error %q holds %q", err, s)
				}
			}
			recs := rn.sink.All()
			if last := recs[len(recs)-1]; last.State != feed.StateFailed || last.Status != http.StatusFound {
				t.Errorf("last record: got %s status %d, want failed 302", last.State, last.Status)
			}
			secretsIn(t, recs)
		})
	}
}
