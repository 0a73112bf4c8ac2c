package ssex

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/internal/feedtest"
)

// tcpServer reads each request's head and hands the connection to answer,
// which writes exact bytes; the connection closes when answer returns. It
// returns the server's URL.
func tcpServer(t *testing.T, answer func(c net.Conn)) string {
	t.Helper()
	return "http://" + feedtest.ServeTCP(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if line == "\r\n" {
				break
			}
		}
		answer(c)
	}) + "/events"
}

// rawServer answers every request with the given pieces of bytes, each
// written on its own, then holds the connection until the client closes
// it, or closes it itself when hangUp is set. It returns the server's URL.
func rawServer(t *testing.T, pieces []string, hangUp bool) string {
	t.Helper()
	return tcpServer(t, func(c net.Conn) {
		for _, p := range pieces {
			if _, err := c.Write([]byte(p)); err != nil {
				return
			}
		}
		if !hangUp {
			_, _ = io.Copy(io.Discard, c) // until the client closes
		}
	})
}

// chunked frames body as chunks of the given sizes (the rest in one last
// chunk), each as its own piece, with the final zero chunk when last.
func chunked(body string, last bool, sizes ...int) []string {
	var out []string
	for _, n := range sizes {
		n = min(n, len(body))
		out = append(out, fmt.Sprintf("%x\r\n%s\r\n", n, body[:n]))
		body = body[n:]
	}
	if body != "" {
		out = append(out, fmt.Sprintf("%x\r\n%s\r\n", len(body), body))
	}
	if last {
		out = append(out, "0\r\n\r\n")
	}
	return out
}

const streamHead = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"

// gzipped is s compressed and flushed, as a server compressing a stream
// sends it: the gzip member stays open.
func gzipped(t *testing.T, s string) string {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Flush(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestDirectBodyFraming checks that events arrive whole through every body
// framing a server may use, with events larger than the read buffer and
// split across chunks and reads, and that the end of the body is seen.
func TestDirectBodyFraming(t *testing.T) {
	big := strings.Repeat("0123456789", 3*readBufSize/10) // 3 read buffers
	stream := "id: 1\ndata: small\n\nid: 2\ndata: " + big + "\n\nid: 3\ndata: tail\n\n"
	wantData := []string{"small", big, "tail"}
	cases := []struct {
		name   string
		pieces []string
		hangUp bool
		ended  string // reason the stream ended; "" when the server holds it open
	}{
		{
			name:   "chunked, held open",
			pieces: append([]string{streamHead + "Transfer-Encoding: chunked\r\n\r\n"}, chunked(stream, false, 7, 1, 20, readBufSize+5, 3)...),
		},
		{
			name:   "chunked, one chunk larger than the buffer, head and data together",
			pieces: []string{streamHead + "Transfer-Encoding: chunked\r\n\r\n" + strings.Join(chunked(stream, false), "")},
		},
		{
			name: "chunked, extensions, upper-case size, last chunk with a trailer",
			pieces: []string{
				streamHead + "Transfer-Encoding: chunked\r\n\r\n",
				fmt.Sprintf("%X;name=value\r\n%s\r\n", len(stream), stream),
				"0\r\nX-Trailer: 1\r\n\r\n",
			},
			ended: "server closed the stream",
		},
		{
			name:   "chunked, last chunk",
			pieces: append([]string{streamHead + "Transfer-Encoding: chunked\r\n\r\n"}, chunked(stream, true, 100)...),
			ended:  "server closed the stream",
		},
		{
			name:   "chunked, server hangs up inside a chunk",
			pieces: []string{streamHead + "Transfer-Encoding: chunked\r\n\r\n", fmt.Sprintf("%x\r\n%s", len(stream)+10, stream)},
			hangUp: true,
			ended:  "read stream: unexpected EOF",
		},
		{
			name:   "chunked, bare LF after a chunk size",
			pieces: []string{streamHead + "Transfer-Encoding: chunked\r\n\r\n" + strings.Join(chunked(stream, false), ""), "5\ndata:"},
			ended:  "read stream: malformed chunk size line",
		},
		{
			name:   "Content-Length, held open after the body",
			pieces: []string{streamHead + fmt.Sprintf("Content-Length: %d\r\n\r\n", len(stream)), stream[:100], stream[100:]},
			ended:  "server closed the stream",
		},
		{
			name:   "until the server closes",
			pieces: []string{"HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\r\n", stream[:3000], stream[3000:]},
			hangUp: true,
			ended:  "server closed the stream",
		},
		{
			name: "gzip, chunked",
			pieces: append([]string{streamHead + "Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"},
				chunked(gzipped(t, stream), false, 5, 10)...),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := rawServer(t, tc.pieces, tc.hangUp)
			rn := startClient(t, Config{URL: u}, func(c *Client) { c.retry = time.Hour })
			recs := rn.sink.WaitFor(t, 0, "three events", feedtest.CountKind(feed.KindEvent, 3))
			for i, e := range feedtest.OfKind(recs, feed.KindEvent)[:3] {
				if e.Data != wantData[i] || e.ID != fmt.Sprint(i+1) {
					t.Errorf("event %d: got id %q and %d bytes of data, want id %d and %q (%d bytes)",
						i, e.ID, len(e.Data), i+1, wantData[i][:min(10, len(wantData[i]))], len(wantData[i]))
				}
			}
			if tc.ended != "" {
				rn.sink.WaitFor(t, 0, "the end of the stream", feedtest.HasState(feed.StateDisconnected, tc.ended))
			} else if feedtest.HasState(feed.StateDisconnected, "")(rn.sink.All()) {
				t.Errorf("the stream ended; records:\n%s", feedtest.Dump(rn.sink.All()))
			}
		})
	}
}

// TestConnBodyMatchesNetHTTP decodes the same responses with connBody and
// with net/http's own body readers.
func TestConnBodyMatchesNetHTTP(t *testing.T) {
	body := strings.Repeat("data: abcdefghij\n\n", 500)
	responses := map[string]string{
		"chunked":        streamHead + "Transfer-Encoding: chunked\r\n\r\n" + strings.Join(chunked(body, true, 1, 2, 3, 4000, 17), ""),
		"chunked, ext":   streamHead + "Transfer-Encoding: chunked\r\n\r\n" + fmt.Sprintf("%x ; a=b\r\n%s\r\n0\r\n\r\n", len(body), body),
		"content-length": streamHead + fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body)) + body + "garbage after the body",
		"until close":    "HTTP/1.0 200 OK\r\n\r\n" + body,
		"empty":          streamHead + "Content-Length: 0\r\n\r\n",
		"truncated":      streamHead + "Transfer-Encoding: chunked\r\n\r\n" + fmt.Sprintf("%x\r\n%s", len(body)+1, body),
	}
	for name, raw := range responses {
		t.Run(name, func(t *testing.T) {
			resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(raw)), nil)
			if err != nil {
				t.Fatal(err)
			}
			want, wantErr := io.ReadAll(resp.Body)

			// Read it as RoundTrip frames it, with small reads, through next.
			br := bufio.NewReaderSize(strings.NewReader(raw), 64)
			resp, err = http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			b := &connBody{br: br, left: -1}
			switch {
			case resp.Body == http.NoBody:
				b.left = 0
			case len(resp.TransferEncoding) > 0:
				b.chunked, b.left = true, 0
			case resp.ContentLength >= 0:
				b.left = resp.ContentLength
			}
			var got []byte
			var gotErr error
			for {
				p, err := b.next()
				got = append(got, p...)
				if err != nil {
					if err != io.EOF {
						gotErr = err
					}
					break
				}
			}
			if !bytes.Equal(got, want) {
				t.Errorf("body: got %d bytes, want %d", len(got), len(want))
			}
			if (gotErr == nil) != (wantErr == nil) {
				t.Errorf("error: got %v, want %v", gotErr, wantErr)
			}
		})
	}
}

// TestChunksOfOneReadCountAsOne checks that events in several chunks that
// arrive together count as one read, as through net/http's chunked reader,
// so a proxy that buffers a chunked stream is still seen as bursty.
func TestChunksOfOneReadCountAsOne(t *testing.T) {
	var events []string
	for i := range 5 {
		events = append(events, fmt.Sprintf("data: %d\n\n", i))
	}
	u := rawServer(t, []string{streamHead + "Transfer-Encoding: chunked\r\n\r\n" +
		strings.Join(chunked(strings.Join(events, ""), false, 9, 9, 9, 9, 9), "")}, false)
	rn := startClient(t, Config{URL: u}, func(c *Client) { c.burstQuiet = 0 })
	rn.sink.WaitFor(t, 0, "5 events", feedtest.CountKind(feed.KindEvent, 5))
	d := waitDiag(t, rn.c, eventsAtLeast(5))
	if d.Bursts != 1 || d.Bytes != 45 {
		t.Errorf("got %d bursts and %d bytes, want 1 burst (5 events in one read) and 45 bytes", d.Bursts, d.Bytes)
	}
}

// TestRedirectAndURLCredentials checks what http.Client did for the first
// request before the direct path skipped it: redirects are followed, and
// credentials in the URL are sent as basic auth.
func TestRedirectAndURLCredentials(t *testing.T) {
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "user" || p != "secret" {
			http.Error(w, "who are you", http.StatusUnauthorized)
			return
		}
		if r.URL.Path == "/old" {
			http.Redirect(w, r, "/events", http.StatusFound)
			return
		}
		streamHeaders(w)
		write(w, "data: "+r.URL.Path+"\n\n")
		<-r.Context().Done()
	}))
	for _, path := range []string{"/events", "/old"} {
		t.Run(path, func(t *testing.T) {
			u := strings.Replace(srv.URL, "http://", "http://user:secret@", 1) + path
			rn := startClient(t, Config{URL: u}, nil)
			recs := rn.sink.WaitFor(t, 0, "an event", feedtest.CountKind(feed.KindEvent, 1))
			if got := feedtest.OfKind(recs, feed.KindEvent)[0].Data; got != "/events" {
				t.Errorf("event data: got %q, want %q", got, "/events")
			}
		})
	}
}

// TestProxyGoesThroughHTTPTransport checks the path that is not read in
// place: a request for a proxy goes through http.Transport, and events
// larger than the read buffer still arrive whole.
func TestProxyGoesThroughHTTPTransport(t *testing.T) {
	big := strings.Repeat("x", 3*readBufSize)
	proxy := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A forward proxy gets the absolute URL; this one answers itself.
		if !r.URL.IsAbs() {
			http.Error(w, "not a proxy request", http.StatusBadRequest)
			return
		}
		w.Header().Set("Via", "1.1 test-proxy")
		streamHeaders(w)
		write(w, "data: "+big+"\n\ndata: "+r.URL.Path+"\n\n")
		<-r.Context().Done()
	}))
	proxyURL, err := url.Parse(proxy.URL)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{Proxy: http.ProxyURL(proxyURL)}
	t.Cleanup(tr.CloseIdleConnections)
	rn := startClient(t, Config{URL: "http://origin.invalid/events", Transport: tr}, nil)
	recs := rn.sink.WaitFor(t, 0, "two events", feedtest.CountKind(feed.KindEvent, 2))
	events := feedtest.OfKind(recs, feed.KindEvent)
	if events[0].Data != big || events[1].Data != "/events" {
		t.Errorf("events: got %d bytes and %q, want %d bytes and %q", len(events[0].Data), events[1].Data, len(big), "/events")
	}
	d := rn.c.Diagnostics()
	if d.Headers["Via"] != "1.1 test-proxy" || d.TTFB <= 0 {
		t.Errorf("diagnostics: got Via %q and TTFB %s, want the proxy's Via and a TTFB", d.Headers["Via"], d.TTFB)
	}
}
