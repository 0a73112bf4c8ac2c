package redisx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/internal/redistest"
)

// bulk is a RESP2 bulk string.
func bulk(s string) string { return fmt.Sprintf("$%d\r\n%s\r\n", len(s), s) }

func arr(elems ...string) string {
	return fmt.Sprintf("*%d\r\n", len(elems)) + strings.Join(elems, "")
}

// got is what a test compares of a push, or the error text.
type got struct {
	kind                         pushKind
	name, channel, pattern, data string
	count                        int64
	err                          string
}

func readAll(r *pushReader, max int) []got {
	var out []got
	var p push
	for range max {
		err := r.next(&p)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			out = append(out, got{err: err.Error()})
			var se serverError
			if !errors.As(err, &se) {
				return out
			}
			continue
		}
		if p.at.IsZero() {
			out = append(out, got{err: "no receive time"})
		}
		out = append(out, got{p.kind, p.name, p.channel, p.pattern, p.data, p.count, ""})
	}
	return out
}

// splitReader returns its bytes in two reads, split at n.
type splitReader struct {
	b []byte
	n int
}

func (s *splitReader) Read(p []byte) (int, error) {
	if len(s.b) == 0 {
		return 0, io.EOF
	}
	k := len(s.b)
	if s.n > 0 {
		k = min(k, s.n)
	}
	k = copy(p, s.b[:k])
	s.b, s.n = s.b[k:], s.n-k
	return k, nil
}

func TestPushReader(t *testing.T) {
	binary := make([]byte, 256)
	for i := range binary {
		binary[i] = byte(i)
	}
	stream := strings.Join([]string{
		"+OK\r\n",
		arr(bulk("subscribe"), bulk("news"), ":1\r\n"),
		arr(bulk("psubscribe"), bulk("n*"), ":2\r\n"),
		arr(bulk("message"), bulk("news"), bulk("hello")),
		arr(bulk("message"), bulk("news"), bulk(string(binary)+"\r\n\x1b[2J")),
		arr(bulk("pmessage"), bulk("n*"), bulk("news"), bulk("")),
		arr(bulk("smessage"), bulk("shard:{1}"), bulk("s")),
		arr(bulk("pong"), bulk(pingPayload)),
		"-NOPERM this user has no permissions to access one of the channels used as arguments\r\n",
		arr(bulk("something-new"), ":1\r\n", arr(bulk("x"), "$-1\r\n"), "+x\r\n"),
		arr(bulk("unsubscribe"), "$-1\r\n", ":0\r\n"),
		arr(bulk("sunsubscribe"), bulk("shard:{1}"), ":0\r\n"),
		arr(bulk("message"), bulk("other"), bulk("last")),
	}, "")
	want := []got{
		{kind: pushStatus, name: "OK"},
		{kind: pushSubscribe, name: "subscribe", channel: "news", count: 1},
		{kind: pushSubscribe, name: "psubscribe", channel: "n*", count: 2},
		{kind: pushMessage, name: "message", channel: "news", data: "hello"},
		{kind: pushMessage, name: "message", channel: "news", data: string(binary) + "\r\n\x1b[2J"},
		{kind: pushMessage, name: "pmessage", channel: "news", pattern: "n*"},
		{kind: pushMessage, name: "smessage", channel: "shard:{1}", data: "s"},
		{kind: pushPong, name: "pong", data: pingPayload},
		{err: "NOPERM this user has no permissions to access one of the channels used as arguments"},
		{kind: pushOther, name: "something-new"},
		{kind: pushUnsubscribe, name: "unsubscribe", count: 0},
		{kind: pushUnsubscribe, name: "sunsubscribe", channel: "shard:{1}"},
		{kind: pushMessage, name: "message", channel: "other", data: "last"},
	}
	check := func(t *testing.T, how string, rd io.Reader) {
		t.Helper()
		if g := readAll(newPushReader(rd), 100); fmt.Sprint(g) != fmt.Sprint(want) {
			t.Fatalf("%s: got\n%v\nwant\n%v", how, g, want)
		}
	}
	for n := 1; n < len(stream); n++ {
		check(t, fmt.Sprintf("split at %d", n), &splitReader{b: []byte(stream), n: n})
	}
	check(t, "one read", &splitReader{b: []byte(stream)})
	check(t, "one byte per read", iotest.OneByteReader(strings.NewReader(stream)))

	// Error replies reach classify and movedTo as go-redis's own would.
	err := newPushReader(strings.NewReader("-MOVED 3999 127.0.0.1:6381\r\n")).next(&push{})
	var rerr redis.Error
	if !errors.As(err, &rerr) || rerr.Error() != "MOVED 3999 127.0.0.1:6381" {
		t.Errorf("got %#v, want a redis.Error saying MOVED 3999 127.0.0.1:6381", err)
	}
	if addr, ok := movedTo(err); !ok || addr != "127.0.0.1:6381" {
		t.Errorf("movedTo: got %q, %v; want 127.0.0.1:6381", addr, ok)
	}
	if kind, _, _ := classify(serverError("WRONGPASS invalid username-password pair or user is disabled.")); kind != ErrAuth {
		t.Errorf("classify WRONGPASS: got %v, want ErrAuth", kind)
	}
}

// TestPushReaderLarge reads payloads and a channel larger than the read
// buffer, byte-exact.
func TestPushReaderLarge(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef\x00\xff\r\n"), 3*readBufferSize/20)
	longCh := strings.Repeat("c", readBufferSize+10)
	stream := arr(bulk("message"), bulk("ch"), bulk(string(big))) +
		arr(bulk("pmessage"), bulk(longCh), bulk(longCh), bulk(string(big[:readBufferSize-2]))) +
		arr(bulk("message"), bulk(longCh), bulk("after"))
	want := []got{
		{kind: pushMessage, name: "message", channel: "ch", data: string(big)},
		{kind: pushMessage, name: "pmessage", channel: longCh, pattern: longCh, data: string(big[:readBufferSize-2])},
		{kind: pushMessage, name: "message", channel: longCh, data: "after"},
	}
	for name, rd := range map[string]io.Reader{
		"whole":    strings.NewReader(stream),
		"one byte": iotest.OneByteReader(strings.NewReader(stream)),
		"halves":   iotest.HalfReader(strings.NewReader(stream)),
	} {
		if g := readAll(newPushReader(rd), 10); fmt.Sprint(g) != fmt.Sprint(want) {
			t.Errorf("%s: got %d replies, want %d equal ones", name, len(g), len(want))
		}
	}
}

func TestPushReaderMalformed(t *testing.T) {
	tests := []struct{ name, in string }{
		{"not RESP", "HTTP/1.1 400 Bad Request\r\n"},
		{"bare LF", "*3\n$7\nmessage\n"},
		{"empty line", "\r\n"},
		{"bad array length", "*x\r\n"},
		{"empty array", "*0\r\n"},
		{"null array", "*-1\r\n"},
		{"kind not a bulk string", "*3\r\n:7\r\n"},
		{"bad bulk length", arr(bulk("message")) + "$1x\r\n"},
		{"negative bulk length", "*3\r\n" + bulk("message") + "$-5\r\nab\r\n"},
		{"bulk length past the limit", "*3\r\n" + bulk("message") + bulk("ch") + "$99999999999\r\n"},
		{"bulk without CRLF", "*3\r\n" + bulk("message") + bulk("ch") + "$3\r\nabcde\r\n"},
		{"large bulk without CRLF", "*3\r\n" + bulk("message") + bulk("ch") +
			fmt.Sprintf("$%d\r\n%s", readBufferSize, strings.Repeat("x", readBufferSize+2))},
		{"message with 4 elements", arr(bulk("message"), bulk("ch"), bulk("a"), bulk("b"))},
		{"pmessage with 3 elements", arr(bulk("pmessage"), bulk("ch"), bulk("a"))},
		{"count not an integer", arr(bulk("subscribe"), bulk("ch"), bulk("1"))},
		{"truncated", arr(bulk("message"), bulk("ch"), bulk("payload"))[:30]},
		{"truncated large", "*3\r\n" + bulk("message") + bulk("ch") + fmt.Sprintf("$%d\r\nabc", 1<<20)},
		{"line longer than the buffer", "+" + strings.Repeat("x", readBufferSize+1) + "\r\n"},
		{"unknown kind with a bad element", arr(bulk("new"), "?\r\n")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			done := make(chan []got, 1)
			go func() { done <- readAll(newPushReader(strings.NewReader(tt.in)), 10) }()
			var g []got
			select {
			case g = <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("reader hangs")
			}
			if len(g) != 1 || g[0].err == "" {
				t.Fatalf("got %v, want one error", g)
			}
			if !strings.Contains(g[0].err, "protocol error") && !strings.Contains(g[0].err, "unexpected EOF") {
				t.Errorf("got error %q, want a protocol error or unexpected EOF", g[0].err)
			}
		})
	}
}

// FuzzPushReader checks that no input panics or hangs the reader, and
// that the fast path for messages already in the buffer (taken when the
// input arrives in one read) parses exactly what the byte-by-byte path
// does (one byte per read never leaves a whole message buffered).
func FuzzPushReader(f *testing.F) {
	f.Add([]byte(arr(bulk("message"), bulk("ch"), bulk("hello"))))
	f.Add([]byte(arr(bulk("pmessage"), bulk("c*"), bulk("ch"), bulk("")) + arr(bulk("smessage"), bulk("c"), bulk("x"))))
	f.Add([]byte(arr(bulk("unsubscribe"), "$-1\r\n", ":0\r\n")))
	f.Add([]byte(arr(bulk("x"), arr(bulk("y"), ":1\r\n")) + "-ERR no\r\n+OK\r\n"))
	f.Add([]byte("*3\r\n$7\r\nmessage\r\n$02\r\nch\r\n$3\r\nabc\n\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		read := func(rd io.Reader) []got {
			r := newPushReader(rd)
			r.maxBulk = 1 << 20
			return readAll(r, len(in)+1)
		}
		whole := read(bytes.NewReader(in))
		if len(whole) > len(in) {
			t.Fatalf("more replies than bytes in %q", in)
		}
		if bytewise := read(iotest.OneByteReader(bytes.NewReader(in))); fmt.Sprint(whole) != fmt.Sprint(bytewise) {
			t.Fatalf("in one read got\n%v\none byte per read got\n%v", whole, bytewise)
		}
	})
}

// TestPushReaderStamp checks that a message carries the time of the
// socket read that completed it, and that one already buffered carries the
// time of the read that brought it.
func TestPushReaderStamp(t *testing.T) {
	pr, pw := io.Pipe()
	r := newPushReader(pr)
	msg := arr(bulk("message"), bulk("ch"), bulk("payload"))
	go func() {
		_, _ = pw.Write([]byte(msg + msg[:20]))
		time.Sleep(30 * time.Millisecond)
		_, _ = pw.Write([]byte(msg[20:]))
	}()
	before := time.Now()
	var first, second push
	if err := r.next(&first); err != nil {
		t.Fatal(err)
	}
	if err := r.next(&second); err != nil {
		t.Fatal(err)
	}
	if first.at.Before(before) || first.at.Sub(before) > 20*time.Millisecond {
		t.Errorf("first message stamped %s after the start, want at once", first.at.Sub(before))
	}
	if d := second.at.Sub(first.at); d < 25*time.Millisecond {
		t.Errorf("second message stamped %s after the first, want the time of the later read (~30ms)", d)
	}
}

// TestRespConnAgainstRedis talks to a real server: authentication, a
// pipelined handshake, confirmations, messages on one channel and a
// pattern, a PING reply, an error reply in subscribed mode with the stream
// still in step, and the null channel of an UNSUBSCRIBE with nothing left.
func TestRespConnAgainstRedis(t *testing.T) {
	s := redistest.Start(t, "requirepass pw")
	conn, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	rc := newRespConn(conn, 5*time.Second)
	defer rc.close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if err := rc.send([]string{"AUTH", "default", "pw"}, []string{"CLIENT", "SETNAME", "resp-test"},
		[]string{"SUBSCRIBE", "a", "b"}, []string{"PSUBSCRIBE", "p:*"}); err != nil {
		t.Fatal(err)
	}
	var p push
	for i := range 2 {
		if err := rc.expectOK(&p); err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
	}
	expect := func(want got) {
		t.Helper()
		if err := rc.next(&p); err != nil {
			t.Fatalf("got %v, want %+v", err, want)
		}
		if g := (got{p.kind, p.name, p.channel, p.pattern, p.data, p.count, ""}); g != want {
			t.Fatalf("got %+v, want %+v", g, want)
		}
	}
	expect(got{kind: pushSubscribe, name: "subscribe", channel: "a", count: 1})
	expect(got{kind: pushSubscribe, name: "subscribe", channel: "b", count: 2})
	expect(got{kind: pushSubscribe, name: "psubscribe", channel: "p:*", count: 3})
	if !strings.Contains(s.CLI("-a", "pw", "--no-auth-warning", "CLIENT", "LIST"), "name=resp-test") {
		t.Errorf("CLIENT LIST does not show the connection's name")
	}

	payload := "\x00\xff\r\n\x1b[31m" + strings.Repeat("é", 100)
	pub := redis.NewClient(&redis.Options{Addr: s.Addr(), Password: "pw"})
	defer pub.Close()
	ctx := context.Background()
	for _, ch := range []string{"a", "p:1", "a"} {
		if err := pub.Publish(ctx, ch, payload).Err(); err != nil {
			t.Fatal(err)
		}
	}
	expect(got{kind: pushMessage, name: "message", channel: "a", data: payload})
	expect(got{kind: pushMessage, name: "pmessage", channel: "p:1", pattern: "p:*", data: payload})
	expect(got{kind: pushMessage, name: "message", channel: "a", data: payload})

	if err := rc.send([]string{"PING", pingPayload}, []string{"GET", "x"}, []string{"UNSUBSCRIBE"},
		[]string{"UNSUBSCRIBE"}); err != nil {
		t.Fatal(err)
	}
	expect(got{kind: pushPong, name: "pong", data: pingPayload})
	var se serverError
	if err := rc.next(&p); !errors.As(err, &se) || !strings.Contains(strings.ToLower(err.Error()), "get") {
		t.Fatalf("got %v, want the server's refusal of GET in subscribed mode", err)
	}
	// UNSUBSCRIBE confirms the channels in no fixed order.
	var left []string
	for range 2 {
		if err := rc.next(&p); err != nil || p.name != "unsubscribe" {
			t.Fatalf("got %+v, %v; want an unsubscribe confirmation", p, err)
		}
		left = append(left, p.channel)
	}
	expect(got{kind: pushUnsubscribe, name: "unsubscribe", channel: "", count: 1})
	if len(left) != 2 || left[0] == left[1] {
		t.Errorf("got unsubscribe confirmations for %v, want a and b", left)
	}
}

// TestSubscribeWithPasswordToOpenServer: a URL password with a server that
// has none is accepted for subscriptions as go-redis accepts it for
// commands (AUTH default <password> passes a nopass default user).
func TestSubscribeWithPasswordToOpenServer(t *testing.T) {
	s := redistest.Start(t)
	c := open(t, fastOptions(fmt.Sprintf("redis://:anything@%s", s.Addr())))
	col := newCollector()
	subscribe(t, c, Subscription{Channels: []string{"ch"}}, col)
	publish(t, c, "ch", "x")
	col.waitFor(t, 5*time.Second, "the message", func(r []feed.Record) bool { return countMessages(r, "ch") == 1 })
	if list := s.CLI("CLIENT", "LIST"); !strings.Contains(list, "name=fanscope") || !strings.Contains(list, "sub=1") {
		t.Errorf("got CLIENT LIST\n%s\nwant a subscriber named fanscope", list)
	}
}

// cycleReader repeats its bytes forever.
type cycleReader struct {
	b   []byte
	off int
}

func (c *cycleReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k := copy(p[n:], c.b[c.off:])
		n += k
		c.off = (c.off + k) % len(c.b)
	}
	return n, nil
}

func messageStream(ch string, size int) *cycleReader {
	frame := arr(bulk("message"), bulk(ch), bulk(strings.Repeat("x", size)))
	return &cycleReader{b: bytes.Repeat([]byte(frame), 1000)}
}

func TestPushReaderAllocations(t *testing.T) {
	r := newPushReader(messageStream("bench:ingest", 100))
	var p push
	allocs := testing.AllocsPerRun(10000, func() {
		if err := r.next(&p); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 1 {
		t.Errorf("got %.2f allocations per message, want 1 (the payload)", allocs)
	}
}

// BenchmarkRESPRead is the subscription reader alone on 100-byte messages
// from memory, building the record a message becomes (compare bench/'s
// BenchmarkPubSubReceive).
func BenchmarkRESPRead(b *testing.B) {
	r := newPushReader(messageStream("bench:ingest", 100))
	var p push
	var sink feed.Record
	b.ReportAllocs()
	b.SetBytes(100)
	for b.Loop() {
		if err := r.next(&p); err != nil {
			b.Fatal(err)
		}
		sink = feed.Record{TS: p.at, Source: feed.SourceRedis, Kind: feed.KindMessage, Channel: p.channel, Pattern: p.pattern, Data: p.data}
	}
	_ = sink
}

// TestShardSubscribeFollowsMoved: SSUBSCRIBE sent to a node that does not
// own the slot gets MOVED; our error reply is a redis.Error, so connect
// remembers the node it names and the next attempt subscribes there.
func TestShardSubscribeFollowsMoved(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	c := open(t, fastOptions(cl.URLs()...))
	const ch = "news:{moved}"
	owner := cl.Owner(cl.Slot(ch))
	wrong := cl.Nodes[0]
	if wrong == owner {
		wrong = cl.Nodes[1]
	}
	s := &Subscriber{c: c, sink: newCollector(), done: make(chan struct{})}
	l := &link{s: s, sub: Subscription{ShardChannels: []string{ch}}, shard: true,
		resolve: func(context.Context) (endpoint, error) { return c.base.withAddr(wrong.Addr()), nil }}
	s.links = []*link{l}
	ctx := context.Background()
	_, err := l.connect(ctx)
	if addr, ok := movedTo(err); !ok || addr != owner.Addr() || !errors.Is(err, ErrUnreachable) {
		t.Fatalf("got %v, want a MOVED to %s", err, owner.Addr())
	}
	if !strings.Contains(err.Error(), "MOVED") || !strings.Contains(err.Error(), wrong.Addr()) {
		t.Errorf("got %q, want it to name the node and say MOVED", err)
	}
	sc, err := l.connect(ctx)
	if err != nil {
		t.Fatalf("second attempt: %v", err)
	}
	defer sc.close()
	if sc.ep.addr != owner.Addr() {
		t.Errorf("got subscribed on %s, want the owner %s", sc.ep.addr, owner.Addr())
	}
}
