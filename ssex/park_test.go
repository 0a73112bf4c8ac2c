package ssex

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/internal/feedtest"
)

// TestParkedStreamKeepsPartialFraming writes a chunked stream a few bytes
// at a time, pausing between writes, so that the client parks its stream
// between reads: with a chunk size line cut in two, inside a chunk, inside
// a line and inside a multibyte character. Every event must arrive whole,
// and the stream must have parked with the cut size line kept.
func TestParkedStreamKeepsPartialFraming(t *testing.T) {
	var parks, keptParks atomic.Int64
	parkHook = func(kept int) {
		parks.Add(1)
		if kept > 0 {
			keptParks.Add(1)
		}
	}
	t.Cleanup(func() { parkHook = nil }) // after the client stops (cleanups run last first)

	stream := "id: 1\ndata: h\u00e9llo\n\n: keep-alive\n\nid: 2\nevent: tick\ndata: a\ndata: b\n\nid: 3\ndata: " + strings.Repeat("x", 40) + "\n\n"
	var pieces []string
	for _, c := range chunked(stream, false, 9, 17, 30) {
		// "1e\r\n…" goes as "1", "e\r", "\n…" and then in 7-byte pieces.
		size, rest, _ := strings.Cut(c, "\r\n")
		pieces = append(pieces, size[:1], size[1:]+"\r", "\n")
		for len(rest) > 0 {
			n := min(7, len(rest))
			pieces = append(pieces, rest[:n])
			rest = rest[n:]
		}
	}
	u := tcpServer(t, func(c net.Conn) {
		if _, err := c.Write([]byte(streamHead + "Transfer-Encoding: chunked\r\n\r\n")); err != nil {
			return
		}
		for _, p := range pieces {
			time.Sleep(5 * time.Millisecond) // so that each piece is a read of its own
			if _, err := c.Write([]byte(p)); err != nil {
				return
			}
		}
		buf := make([]byte, 1)
		_, _ = c.Read(buf) // until the client closes
	})
	rn := startClient(t, Config{URL: u}, func(c *Client) { c.retry = time.Hour })
	recs := rn.sink.WaitFor(t, 0, "three events", feedtest.CountKind(feed.KindEvent, 3))
	want := []struct{ id, typ, data string }{{"1", "message", "h\u00e9llo"}, {"2", "tick", "a\nb"}, {"3", "message", strings.Repeat("x", 40)}}
	events := feedtest.OfKind(recs, feed.KindEvent)
	for i, w := range want {
		e := events[i]
		if e.ID != w.id || e.Type != w.typ || e.Data != w.data {
			t.Errorf("event %d: got id %q type %q data %q, want %q %q %q", i, e.ID, e.Type, e.Data, w.id, w.typ, w.data)
		}
	}
	if n := len(feedtest.OfKind(recs, feed.KindComment)); n != 1 {
		t.Errorf("got %d comments, want 1", n)
	}
	if parks.Load() < int64(len(pieces))/2 || keptParks.Load() == 0 {
		t.Errorf("the stream parked %d times, %d of them keeping a cut size line; want about once per piece (%d) and some keeping bytes",
			parks.Load(), keptParks.Load(), len(pieces))
	}
	if feedtest.HasState(feed.StateDisconnected, "")(rn.sink.All()) {
		t.Errorf("the stream ended; records:\n%s", feedtest.Dump(rn.sink.All()))
	}
}

// TestEmptyChunkSizeLine: a bare LF where a chunk size line belongs is
// malformed framing that ends the stream, not a crash.
func TestEmptyChunkSizeLine(t *testing.T) {
	pieces := append([]string{streamHead + "Transfer-Encoding: chunked\r\n\r\n"}, chunked("id: 1\ndata: a\n\n", false)...)
	u := rawServer(t, append(pieces, "\n"), false)
	rn := startClient(t, Config{URL: u}, func(c *Client) { c.retry = time.Hour })
	rn.sink.WaitFor(t, 0, "the end of the stream", feedtest.HasState(feed.StateDisconnected, "read stream: malformed chunk size line: want CRLF"))
}

// TestCloseOnDone: connections that wait for one context are closed when
// it ends, except those whose stop came first; one registered after the
// end is closed at once.
func TestCloseOnDone(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	pipes := make([]net.Conn, 4)
	stops := make([]func() bool, 4)
	for i := range pipes {
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		pipes[i] = a
		stops[i] = closeOnDone(ctx, a)
	}
	if !stops[1]() {
		t.Fatal("stop before the end: got false, want true")
	}
	cancel()
	closed := func(c net.Conn) bool { // a pipe refuses a deadline once closed
		return errors.Is(c.SetDeadline(time.Time{}), io.ErrClosedPipe)
	}
	deadline := time.Now().Add(feedtest.Eventually)
	for !(closed(pipes[0]) && closed(pipes[2]) && closed(pipes[3])) {
		if time.Now().After(deadline) {
			t.Fatal("connections still open after their context ended")
		}
		time.Sleep(time.Millisecond)
	}
	if closed(pipes[1]) {
		t.Error("a connection whose stop came first was closed")
	}
	if stops[0]() {
		t.Error("stop after the close: got true, want false")
	}
	late, other := net.Pipe()
	t.Cleanup(func() { late.Close(); other.Close() })
	closeOnDone(ctx, late)
	for !closed(late) {
		if time.Now().After(deadline) {
			t.Fatal("a connection registered after the end was not closed")
		}
		time.Sleep(time.Millisecond)
	}
	closers.Lock()
	left := closers.sets[ctx.Done()]
	closers.Unlock()
	if left != nil {
		t.Errorf("the ended context still has a closer set, of %d connections", len(left.conns))
	}
}
