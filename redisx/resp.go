package redisx

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The subscription connection speaks RESP2 itself instead of going through
// go-redis's PubSub: the driver spent 1.3–1.5 µs and 9 allocations on each
// message, a plain reader about 0.4 µs and one allocation (the payload).

// serverError is an error reply from Redis ("-ERR …", "-NOPERM …",
// "-MOVED …"). It implements go-redis's redis.Error, so classify and
// movedTo treat it as they treat the driver's own error replies.
type serverError string

func (e serverError) Error() string { return string(e) }

// RedisError marks the error as a reply from the server.
func (serverError) RedisError() {}

// protocolError is a reply that is not RESP2 as a subscribed connection
// receives it; the stream cannot be trusted after it.
type protocolError struct{ msg string }

func (e *protocolError) Error() string { return "redis protocol error: " + e.msg }

func badReply(what string, got []byte) error {
	if len(got) > 40 {
		return &protocolError{fmt.Sprintf("%s: %q…", what, got[:40])}
	}
	return &protocolError{fmt.Sprintf("%s: %q", what, got)}
}

// maxBulk is Redis's own ceiling on a bulk string (proto-max-bulk-len); a
// longer length header is a broken stream, not a reason to allocate.
const maxBulk = 512 << 20

type pushKind uint8

const (
	pushMessage     pushKind = iota + 1 // message, pmessage, smessage
	pushSubscribe                       // subscribe, psubscribe, ssubscribe
	pushUnsubscribe                     // unsubscribe, punsubscribe, sunsubscribe
	pushPong                            // reply to PING in subscribed mode
	pushStatus                          // +OK and other simple strings
	pushOther                           // a well-formed array of another kind
)

// push is one reply or pushed array from the server. The reader fills the
// same push again for every reply; the strings in it are never reused.
type push struct {
	kind    pushKind
	name    string    // the kind as Redis names it ("subscribe", "smessage", …) or the status text
	channel string    // message and confirmation channel ("" for a null one)
	pattern string    // pmessage only
	data    string    // message payload or PONG payload
	count   int64     // subscriptions held, from a confirmation
	at      time.Time // when the socket read that completed it returned
}

// pushKinds are the arrays a subscribed connection receives, by their first
// element, with how many elements each has.
var pushKinds = map[string]struct {
	kind     pushKind
	name     string
	elements int64
}{
	"message":      {pushMessage, "message", 3},
	"smessage":     {pushMessage, "smessage", 3},
	"pmessage":     {pushMessage, "pmessage", 4},
	"subscribe":    {pushSubscribe, "subscribe", 3},
	"psubscribe":   {pushSubscribe, "psubscribe", 3},
	"ssubscribe":   {pushSubscribe, "ssubscribe", 3},
	"unsubscribe":  {pushUnsubscribe, "unsubscribe", 3},
	"punsubscribe": {pushUnsubscribe, "punsubscribe", 3},
	"sunsubscribe": {pushUnsubscribe, "sunsubscribe", 3},
	"pong":         {pushPong, "pong", 2},
}

// stampedReader stamps every socket read that returns bytes: the stamp is
// when they arrived, and the watchdog reads it to see that bytes still
// arrive. waiting tells the watchdog that the reader is blocked on the
// socket rather than busy delivering.
type stampedReader struct {
	rd      io.Reader
	at      time.Time    // last read with bytes; reader goroutine only
	last    atomic.Int64 // the same instant in monoNow units, for the watchdog
	waiting atomic.Bool
	// backlog counts the bytes read since a read last had to wait for
	// data: bytes that were queued in the kernel because the reader was
	// behind. Reader goroutine only.
	backlog int64
}

// waitedRead is how long a read must take to count as having waited for
// data (a read of queued bytes takes microseconds).
const waitedRead = time.Millisecond

func (s *stampedReader) Read(p []byte) (int, error) {
	start := time.Now()
	s.waiting.Store(true)
	n, err := s.rd.Read(p)
	s.waiting.Store(false)
	s.at = time.Now()
	if s.at.Sub(start) >= waitedRead {
		s.backlog = 0
	}
	s.backlog += int64(n)
	if n > 0 {
		s.last.Store(int64(s.at.Sub(epoch)))
	}
	return n, err
}

// pushReader parses RESP2 replies as a connection in subscribed mode gets
// them. A message costs one allocation, its payload: the channel and
// pattern strings are kept while they repeat.
type pushReader struct {
	in      *stampedReader
	br      *bufio.Reader
	channel string // the last channel, reused while it repeats
	pattern string // the last pattern, likewise
	maxBulk int64  // longest bulk string accepted
}

const readBufferSize = 64 << 10

func newPushReader(rd io.Reader) *pushReader {
	in := &stampedReader{rd: rd}
	in.last.Store(monoNow())
	return &pushReader{in: in, br: bufio.NewReaderSize(in, readBufferSize), maxBulk: maxBulk}
}

// next reads the next reply into p. An error reply comes back as a
// serverError with the stream still in step; any other error leaves the
// stream unusable.
func (r *pushReader) next(p *push) error {
	if r.nextBuffered(p) {
		return nil
	}
	*p = push{}
	l, err := r.line()
	if err != nil {
		return err
	}
	switch l[0] {
	case '-':
		return serverError(l[1:])
	case '+':
		p.kind, p.name, p.at = pushStatus, string(l[1:]), r.in.at
		return nil
	case '*':
	default:
		return badReply("unexpected reply", l)
	}
	n, ok := parseInt(l[1:])
	if !ok || n < 1 {
		return badReply("bad array header", l)
	}
	if err := r.readPush(p, n); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	p.at = r.in.at
	return nil
}

// nextBuffered is next's fast path for a flood: a message that is already
// whole in the buffer is parsed in one pass over it. It takes only what
// next would parse to the same push and leaves everything else (an
// incomplete message, another kind, anything odd) to next.
func (r *pushReader) nextBuffered(p *push) bool {
	b, _ := r.br.Peek(r.br.Buffered())
	if len(b) < 4 || b[0] != '*' {
		return false
	}
	var name string
	var i int
	switch {
	case hasPrefix(b, "*3\r\n$7\r\nmessage\r\n"):
		name, i = "message", 17
	case hasPrefix(b, "*3\r\n$8\r\nsmessage\r\n"):
		name, i = "smessage", 18
	case hasPrefix(b, "*4\r\n$8\r\npmessage\r\n"):
		name, i = "pmessage", 18
	default:
		return false
	}
	var pattern []byte
	ok := true
	if name == "pmessage" {
		if pattern, i, ok = bufferedBulk(b, i); !ok {
			return false
		}
	}
	channel, i, ok := bufferedBulk(b, i)
	if !ok {
		return false
	}
	data, i, ok := bufferedBulk(b, i)
	if !ok {
		return false
	}
	if pattern != nil && string(pattern) != r.pattern {
		r.pattern = string(pattern)
	}
	if string(channel) != r.channel {
		r.channel = string(channel)
	}
	*p = push{kind: pushMessage, name: name, channel: r.channel, data: string(data), at: r.in.at}
	if pattern != nil {
		p.pattern = r.pattern
	}
	_, _ = r.br.Discard(i)
	return true
}

func hasPrefix(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && string(b[:len(prefix)]) == prefix
}

// bufferedBulk parses the bulk string at b[i:] if it is whole in b,
// returning it (never nil) and the offset after it.
func bufferedBulk(b []byte, i int) ([]byte, int, bool) {
	if i >= len(b) || b[i] != '$' {
		return nil, 0, false
	}
	n, j := 0, i+1
	for ; j < len(b) && b[j] >= '0' && b[j] <= '9'; j++ {
		if n = n*10 + int(b[j]-'0'); n > len(b) {
			return nil, 0, false
		}
	}
	if j == i+1 || j+1 >= len(b) || b[j] != '\r' || b[j+1] != '\n' {
		return nil, 0, false
	}
	j += 2
	if j+n+2 > len(b) || b[j+n] != '\r' || b[j+n+1] != '\n' {
		return nil, 0, false
	}
	return b[j : j+n : j+n], j + n + 2, true
}

func (r *pushReader) readPush(p *push, n int64) error {
	size, err := r.bulkHead()
	if err != nil {
		return err
	}
	if size < 0 || size+2 > int64(r.br.Size()) {
		// Not a kind this reader knows (and too long to be one).
		if size >= 0 {
			if err := r.skipBulk(size); err != nil {
				return err
			}
		}
		p.kind = pushOther
		return r.skipElements(n - 1)
	}
	b, err := r.peekBulk(size)
	if err != nil {
		return err
	}
	k, known := pushKinds[string(b)]
	if !known {
		// The server may add kinds: read past them so the stream stays in step.
		p.kind, p.name = pushOther, string(b)
		r.discard(size)
		return r.skipElements(n - 1)
	}
	p.kind, p.name = k.kind, k.name
	want := k.elements
	r.discard(size)
	if n != want {
		return &protocolError{fmt.Sprintf("%s with %d elements, want %d", p.name, n, want)}
	}
	switch p.kind {
	case pushMessage:
		if want == 4 {
			if err := r.cached(&r.pattern); err != nil {
				return err
			}
			p.pattern = r.pattern
		}
		if err := r.cached(&r.channel); err != nil {
			return err
		}
		p.channel = r.channel
		p.data, err = r.bulkString()
		return err
	case pushPong:
		p.data, err = r.bulkString()
		return err
	}
	// A confirmation: the channel (null when there was nothing to
	// unsubscribe from) and the number of subscriptions held.
	if p.channel, err = r.bulkString(); err != nil {
		return err
	}
	l, err := r.line()
	if err != nil {
		return err
	}
	c, ok := parseInt(l[1:])
	if l[0] != ':' || !ok {
		return badReply("bad subscription count", l)
	}
	p.count = c
	return nil
}

func (r *pushReader) skipElements(n int64) error {
	for ; n > 0; n-- {
		if err := r.skip(0); err != nil {
			return err
		}
	}
	return nil
}

// skip reads past one element of any RESP2 type.
func (r *pushReader) skip(depth int) error {
	l, err := r.line()
	if err != nil {
		return err
	}
	switch l[0] {
	case '+', '-', ':':
		return nil
	case '$':
		n, ok := parseInt(l[1:])
		if !ok || n < -1 || n > r.maxBulk {
			return badReply("bad bulk string header", l)
		}
		if n < 0 {
			return nil
		}
		return r.skipBulk(n)
	case '*':
		n, ok := parseInt(l[1:])
		if !ok || n < -1 || depth > 8 {
			return badReply("bad nested array", l)
		}
		for ; n > 0; n-- {
			if err := r.skip(depth + 1); err != nil {
				return err
			}
		}
		return nil
	}
	return badReply("unexpected element", l)
}

// line reads one line without its CRLF; it is never empty and is valid
// until the next read.
func (r *pushReader) line() ([]byte, error) {
	l, err := r.br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, badReply("line longer than the read buffer", l)
		}
		if errors.Is(err, io.EOF) && len(l) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if len(l) < 3 || l[len(l)-2] != '\r' {
		return nil, badReply("malformed line", l)
	}
	return l[:len(l)-2], nil
}

// bulkHead reads a bulk string header: the length, or -1 for null.
func (r *pushReader) bulkHead() (int64, error) {
	l, err := r.line()
	if err != nil {
		return 0, err
	}
	n, ok := parseInt(l[1:])
	if l[0] != '$' || !ok || n < -1 || n > r.maxBulk {
		return 0, badReply("bad bulk string header", l)
	}
	return n, nil
}

// peekBulk returns a bulk string of n bytes that fits the buffer, still in
// the buffer: call discard(n) once done with it.
func (r *pushReader) peekBulk(n int64) ([]byte, error) {
	b, err := r.br.Peek(int(n) + 2)
	if err != nil {
		return nil, err
	}
	if b[n] != '\r' || b[n+1] != '\n' {
		return nil, badReply("bulk string not ended by CRLF", b[max(0, n-20):])
	}
	return b[:n], nil
}

func (r *pushReader) discard(n int64) { _, _ = r.br.Discard(int(n) + 2) }

// bulkString reads a bulk string into a new string ("" for null), with one
// allocation whatever its size.
func (r *pushReader) bulkString() (string, error) {
	n, err := r.bulkHead()
	if err != nil {
		return "", err
	}
	return r.bulkBody(n)
}

// bulkBody is bulkString after the header.
func (r *pushReader) bulkBody(n int64) (string, error) {
	if n < 0 {
		return "", nil
	}
	if n+2 <= int64(r.br.Size()) {
		b, err := r.peekBulk(n)
		if err != nil {
			return "", err
		}
		s := string(b)
		r.discard(n)
		return s, nil
	}
	// Larger than the buffer: copy it through the buffer into a string of
	// the final size.
	var sb strings.Builder
	sb.Grow(int(n))
	for rest := int(n); rest > 0; {
		b, err := r.br.Peek(min(rest, r.br.Size()))
		if len(b) == 0 && err != nil {
			return "", err
		}
		sb.Write(b)
		_, _ = r.br.Discard(len(b))
		rest -= len(b)
	}
	return sb.String(), r.crlf()
}

// cached reads a bulk string into *s, allocating only when it differs
// from what *s holds.
func (r *pushReader) cached(s *string) error {
	n, err := r.bulkHead()
	if err != nil {
		return err
	}
	if n < 0 || n+2 > int64(r.br.Size()) {
		v, err := r.bulkBody(n)
		if err == nil && v != *s {
			*s = v
		}
		return err
	}
	b, err := r.peekBulk(n)
	if err != nil {
		return err
	}
	if string(b) != *s {
		*s = string(b)
	}
	r.discard(n)
	return nil
}

func (r *pushReader) skipBulk(n int64) error {
	if _, err := r.br.Discard(int(n)); err != nil {
		return err
	}
	return r.crlf()
}

func (r *pushReader) crlf() error {
	b, err := r.br.Peek(2)
	if err != nil {
		return err
	}
	if b[0] != '\r' || b[1] != '\n' {
		return badReply("bulk string not ended by CRLF", b)
	}
	_, _ = r.br.Discard(2)
	return nil
}

// parseInt parses a RESP integer: an optional minus and 1–18 digits.
func parseInt(b []byte) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

// respConn is one subscription connection: a pushReader on the socket and
// commands written under a lock, since the watchdog's PING and the reader's
// owner may write at the same time.
type respConn struct {
	conn net.Conn
	*pushReader

	wmu          sync.Mutex
	wbuf         []byte
	writeTimeout time.Duration
}

func newRespConn(conn net.Conn, writeTimeout time.Duration) *respConn {
	return &respConn{conn: conn, pushReader: newPushReader(conn), writeTimeout: writeTimeout}
}

// send writes the commands in one write, each a list of arguments.
func (c *respConn) send(cmds ...[]string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	b := c.wbuf[:0]
	for _, args := range cmds {
		b = appendCommand(b, args)
	}
	if cap(b) <= 4<<10 {
		c.wbuf = b
	}
	_ = c.conn.SetWriteDeadline(time.Now().Add(c.writeTimeout))
	_, err := c.conn.Write(b)
	return err
}

// expectOK reads a reply that should be +OK.
func (c *respConn) expectOK(p *push) error {
	if err := c.next(p); err != nil {
		return err
	}
	if p.kind != pushStatus {
		return &protocolError{fmt.Sprintf("got a %s reply, want +OK", p.name)}
	}
	return nil
}

func appendCommand(b []byte, args []string) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(len(args)), 10)
	b = append(b, '\r', '\n')
	for _, a := range args {
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(len(a)), 10)
		b = append(b, '\r', '\n')
		b = append(b, a...)
		b = append(b, '\r', '\n')
	}
	return b
}

func (c *respConn) close() error { return c.conn.Close() }
