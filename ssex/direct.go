package ssex

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// directTransport opens one connection per request and gives the response
// body the connection itself: no pool, no background goroutines. An idle
// stream then costs its reader's goroutine and one small buffer, which held
// the response head and then holds the body as it arrives, instead of the
// three goroutines and pooled buffers of an http.Transport connection; that
// matters with --sse-clients in the thousands. Requests that must go
// through a proxy are handed to base. Client.connect runs the steps of
// RoundTrip (send, awaitResponse, receive) itself, each on the goroutine
// whose stack it suits; http.Client calls RoundTrip to follow redirects.
type directTransport struct {
	base    *http.Transport
	maxHead int64 // bytes a response head may take, interim heads included
}

// requestWriters are the buffers requests are written through; without one,
// Request.Write makes a 4 KiB bufio.Writer per request.
var requestWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 1<<10) }}

func (t *directTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.proxied(req) {
		return t.base.RoundTrip(req)
	}
	p, err := t.send(req)
	if err != nil {
		return nil, err
	}
	br, firstByte, err := p.awaitResponse()
	if err != nil {
		return nil, err
	}
	return p.receive(br, firstByte)
}

// proxied reports whether req must go through base's proxy.
func (t *directTransport) proxied(req *http.Request) bool {
	if t.base.Proxy == nil {
		return false
	}
	p, err := t.base.Proxy(req)
	return err != nil || p != nil
}

// sentRequest is a request written to its own connection, whose response
// has not been read yet.
type sentRequest struct {
	req  *http.Request // as written
	conn net.Conn
	head *headReader // reads conn, counting the head's bytes
	stop func() bool // ends closing conn when req's context ends
	gz   bool        // gzip was asked for on the caller's behalf
}

// HeadTooLargeError is a response head (status line and headers, interim
// 1xx heads included) that passed the limit: an endless header line or
// endless headers. Reading stopped there.
type HeadTooLargeError struct {
	Limit int64 // Config.MaxHeadBytes
	Read  int64 // bytes read from the connection when reading stopped
}

func (e *HeadTooLargeError) Error() string {
	return fmt.Sprintf("response head larger than %d bytes (an endless header line or endless headers; Config.MaxHeadBytes)", e.Limit)
}

// maxInterim is how many 1xx responses may come before the final one.
const maxInterim = 16

// headReader reads the connection for the bufio.Reader that holds the
// response head and then the body; while limit is set, it refuses to
// read past it, so an endless head costs at most the limit.
type headReader struct {
	conn  net.Conn
	limit int64 // 0: no limit (the head was read)
	read  int64

	// Once a stream is read without blocking (connBody.readNow): the
	// connection's descriptor, and the bytes a parked stream left
	// unparsed, which come before the connection's.
	raw  syscall.RawConn
	pend []byte
	// short: the last read did not fill the space it was given, so the
	// connection most likely has nothing more yet. reads: how many more
	// reads the stream may do before it parks to let others read.
	short bool
	reads int
	// The read readNow asks of raw: the buffer and its result.
	rp    []byte
	rn    int
	rerr  error
	rawFn func(fd uintptr) bool
}

func (h *headReader) Read(p []byte) (int, error) {
	if len(h.pend) > 0 {
		n := copy(p, h.pend)
		h.pend = h.pend[n:]
		if len(h.pend) == 0 {
			h.pend = nil
		}
		return n, nil
	}
	if h.raw != nil {
		return h.readNow(p)
	}
	if h.limit > 0 {
		left := h.limit - h.read
		if left <= 0 {
			return 0, &HeadTooLargeError{Limit: h.limit, Read: h.read}
		}
		if int64(len(p)) > left {
			p = p[:left]
		}
	}
	n, err := h.conn.Read(p)
	h.read += int64(n)
	return n, err
}

// errWouldBlock is what a read without blocking returns when the
// connection has no bytes: the stream parks until it has (Client.Run).
var errWouldBlock = errors.New("no bytes to read yet")

// readNow reads what the connection has, without waiting: one read(2)
// into p, through Go's poller so that Close still ends it cleanly. No
// bytes gives errWouldBlock; errors read as net.Conn.Read's would.
func (h *headReader) readNow(p []byte) (int, error) {
	h.rp, h.rn, h.rerr = p, 0, nil
	err := h.raw.Read(h.rawFn)
	n, rerr := h.rn, h.rerr
	h.rp, h.rerr = nil, nil
	switch {
	case err != nil:
		if errors.Is(err, net.ErrClosed) {
			err = net.ErrClosed
		}
	case rerr == syscall.EAGAIN:
		return 0, errWouldBlock
	case rerr != nil:
		err = os.NewSyscallError("read", rerr)
	case n == 0:
		return 0, io.EOF
	default:
		h.short = n < len(p)
		h.reads--
		return n, nil
	}
	return 0, &net.OpError{Op: "read", Net: "tcp", Source: h.conn.LocalAddr(), Addr: h.conn.RemoteAddr(), Err: err}
}

// rawRead is readNow's read(2); it never asks the poller to wait.
func (h *headReader) rawRead(fd uintptr) bool {
	for {
		n, err := syscall.Read(int(fd), h.rp)
		if err == syscall.EINTR {
			continue
		}
		h.rn, h.rerr = max(n, 0), err
		return true
	}
}

// send dials req's host, does the TLS handshake and writes req. Dialing and
// TLS go deep into net and crypto/tls; the caller may do this on a
// goroutine of its own and wait for the response on another (awaitResponse).
func (t *directTransport) send(req *http.Request) (*sentRequest, error) {
	ctx := req.Context()
	host := req.URL.Hostname()
	port := req.URL.Port()
	if port == "" {
		port = "80"
		if req.URL.Scheme == "https" {
			port = "443"
		}
	}
	dial := t.base.DialContext
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	conn, err := dial(ctx, "tcp", net.JoinHostPort(host, port))
	if err != nil {
		return nil, err
	}
	if req.URL.Scheme == "https" {
		tc := &tls.Config{}
		if t.base.TLSClientConfig != nil {
			tc = t.base.TLSClientConfig.Clone()
		}
		if tc.ServerName == "" {
			tc.ServerName = host
		}
		tc.NextProtos = []string{"http/1.1"}
		tlsConn := tls.Client(conn, tc)
		if err := tlsConn.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, err
		}
		conn = tlsConn
	}
	// Ending the request's context closes the connection, which ends a
	// blocked read: the same contract as http.Transport.
	p := &sentRequest{req: req, conn: conn, head: &headReader{conn: conn, limit: t.maxHead}}
	p.stop = context.AfterFunc(ctx, func() { conn.Close() })

	// Ask for gzip as browsers and http.Transport do, and undo it the same
	// way, so diagnostics can warn that the server compresses the stream.
	if req.Header.Get("Accept-Encoding") == "" && req.Header.Get("Range") == "" {
		p.req = req.Clone(ctx)
		p.req.Header.Set("Accept-Encoding", "gzip")
		p.gz = true
	}
	bw := requestWriters.Get().(*bufio.Writer)
	bw.Reset(conn)
	err = p.req.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	bw.Reset(nil)
	requestWriters.Put(bw)
	if err != nil {
		return nil, p.fail(err)
	}
	return p, nil
}

// fail closes the connection and gives the error to report: the context's
// cause when it ended.
func (p *sentRequest) fail(err error) error {
	p.stop()
	p.conn.Close()
	if ctx := p.req.Context(); ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return err
}

// awaitResponse waits for the first byte of the response. It goes only a
// few calls deep, so the goroutine that waits keeps a small stack.
func (p *sentRequest) awaitResponse() (*bufio.Reader, time.Time, error) {
	// One buffer for the response head and then the stream: the body is
	// parsed where it lands (connBody.next).
	// From the pool a parked stream gives it back to (connBody.park), so
	// that the pool holds about as many buffers as are in use.
	br := readers.Get().(*bufio.Reader)
	br.Reset(p.head)
	if _, err := br.Peek(1); err != nil {
		return nil, time.Time{}, p.fail(err)
	}
	return br, time.Now(), nil
}

// receive reads the response head from br, whose first byte arrived at
// firstByte. The response's body owns the connection.
func (p *sentRequest) receive(br *bufio.Reader, firstByte time.Time) (*http.Response, error) {
	if trace := httptrace.ContextClientTrace(p.req.Context()); trace != nil && trace.GotFirstResponseByte != nil {
		trace.GotFirstResponseByte()
	}
	// Interim responses (100 Continue, 102 Processing, 103 Early Hints)
	// come before the final one and are skipped, as browsers and curl do;
	// 101 would switch protocols and is final.
	var resp *http.Response
	interim := 0
	for {
		var err error
		resp, err = http.ReadResponse(br, p.req)
		if err != nil {
			if h := p.head; h.limit > 0 && h.read >= h.limit {
				// At the limit a line is cut short, which ReadResponse may
				// report as malformed before it sees the limit's error.
				err = &HeadTooLargeError{Limit: h.limit, Read: h.read}
			}
			return nil, p.fail(err)
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
		if interim++; interim > maxInterim {
			return nil, p.fail(fmt.Errorf("more than %d interim (1xx) responses", maxInterim))
		}
	}
	headBytes := p.head.read - int64(br.Buffered())
	p.head.limit = 0
	// The body framing is read here from br, not by the body ReadResponse
	// made, so that the stream can be read in place.
	body := &connBody{conn: p.conn, br: br, head: p.head, stop: p.stop, firstByte: firstByte, left: -1, headBytes: headBytes, interim: interim}
	switch {
	case resp.Body == http.NoBody:
		body.left = 0
	case len(resp.TransferEncoding) > 0 && resp.TransferEncoding[0] == "chunked":
		body.chunked, body.left = true, 0
	case resp.ContentLength >= 0:
		body.left = resp.ContentLength
	}
	resp.Body = body
	if p.gz && strings.EqualFold(resp.Header.Get("Content-Encoding"), "gzip") {
		resp.Header.Del("Content-Encoding")
		resp.Header.Del("Content-Length")
		resp.ContentLength = -1
		resp.Uncompressed = true
		resp.Body = &gzipBody{body: body}
	}
	return resp, nil
}

// connBody is a response body that owns its connection and decodes the
// body's framing (chunked, Content-Length, or until the server closes)
// from the connection's bufio.Reader.
type connBody struct {
	conn      net.Conn
	br        *bufio.Reader // nil while the stream is parked (park)
	head      *headReader   // what br reads
	stop      func() bool
	firstByte time.Time // when the first response byte arrived
	headBytes int64     // bytes of the response head, interim heads included
	interim   int       // 1xx responses skipped before it
	once      sync.Once

	chunked bool
	// left is the number of body bytes still to come: of the whole body
	// (-1 until the server closes), or when chunked, of the current chunk
	// (0 before a chunk's size line).
	left     int64
	chunkEnd bool  // chunked: the CRLF after a chunk's data is due
	err      error // sticky; errWouldBlock never is
}

// next returns the next bytes of the body, where they lie in the
// connection's buffer; they are valid until the next call on b. It returns
// no bytes with an error, io.EOF at the end of the body.
func (b *connBody) next() ([]byte, error) {
	p, err := b.peek()
	b.consume(len(p))
	return p, err
}

// peek returns the body bytes buffered now, reading when there are none.
func (b *connBody) peek() ([]byte, error) {
	if b.err != nil {
		return nil, b.err
	}
	if b.chunked && b.left == 0 {
		if err := b.nextChunk(); err != nil {
			if err != errWouldBlock {
				b.err = err
			}
			return nil, err
		}
	}
	if b.left == 0 {
		b.err = io.EOF
		return nil, io.EOF
	}
	if b.br.Buffered() == 0 {
		if h := b.head; h != nil && h.raw != nil && len(h.pend) == 0 && (h.short || h.reads <= 0) {
			// Park rather than read: when the last read was short the
			// connection is most likely empty, and a stream that always
			// has bytes takes turns with the others (see Client.Run).
			// Run looks before it waits, so nothing is missed.
			h.short = false
			return nil, errWouldBlock
		}
		if _, err := b.br.Peek(1); err != nil {
			if err == errWouldBlock {
				return nil, err
			}
			if err == io.EOF && b.left > 0 {
				err = io.ErrUnexpectedEOF
			}
			b.err = err
			return nil, err
		}
	}
	n := b.br.Buffered()
	if b.left > 0 && int64(n) > b.left {
		n = int(b.left)
	}
	p, _ := b.br.Peek(n)
	return p, nil
}

// more reports whether next can return body bytes without reading from
// the connection: whether a read of the whole buffer through net/http's
// chunked reader would have returned them too.
func (b *connBody) more() bool {
	if b.err != nil || b.left == 0 && !b.chunked {
		return false
	}
	n := b.br.Buffered()
	if n == 0 {
		return false
	}
	if !b.chunked || b.left > 0 {
		return true
	}
	// At a chunk boundary: the next size line must be there.
	p, _ := b.br.Peek(n)
	if b.chunkEnd {
		if len(p) < 2 {
			return false
		}
		p = p[2:]
	}
	return bytes.IndexByte(p, '\n') >= 0
}

// consume drops n bytes that peek returned.
func (b *connBody) consume(n int) {
	if n == 0 {
		return
	}
	b.br.Discard(n)
	if b.left > 0 {
		b.left -= int64(n)
		if b.chunked && b.left == 0 {
			b.chunkEnd = true
		}
	}
}

// nextChunk reads up to the next chunk's data, checking the framing as
// net/http's chunked reader does. The last chunk ends the body with io.EOF;
// trailers are not read, since the connection is not reused. When a read
// would block it returns errWouldBlock having consumed nothing it has not
// accounted for, so that it can be called again once bytes come.
func (b *connBody) nextChunk() error {
	if b.chunkEnd {
		p, err := b.br.Peek(2)
		if len(p) < 2 {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		if string(p) != "\r\n" {
			return errors.New("malformed chunked encoding")
		}
		b.br.Discard(2)
		b.chunkEnd = false
	}
	line, err := b.sizeLine()
	if err != nil {
		switch err {
		case io.EOF:
			err = io.ErrUnexpectedEOF
		case bufio.ErrBufferFull:
			err = errors.New("chunk size line too long")
		}
		return err
	}
	if i := bytes.IndexByte(line, '\r'); len(line) < 2 || i != len(line)-2 {
		return errors.New("malformed chunk size line: want CRLF")
	}
	line = bytes.TrimRight(line[:len(line)-2], " \t")
	line, _, _ = bytes.Cut(line, []byte(";")) // chunk extensions are ignored
	if len(line) == 0 || len(line) > 16 {
		return errors.New("malformed chunk size")
	}
	var n uint64
	for _, c := range line {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return errors.New("malformed chunk size")
		}
		n = n<<4 | uint64(c)
	}
	if n > math.MaxInt64 {
		return errors.New("chunk size too large")
	}
	if n == 0 {
		return io.EOF
	}
	b.left = int64(n)
	return nil
}

// sizeLine returns a chunk size line, through its '\n', and consumes it.
// Unlike bufio.Reader.ReadSlice, a read that fails (errWouldBlock) leaves
// a partial line in the buffer.
func (b *connBody) sizeLine() ([]byte, error) {
	for {
		n := b.br.Buffered()
		p, _ := b.br.Peek(n)
		if i := bytes.IndexByte(p, '\n'); i >= 0 {
			b.br.Discard(i + 1)
			return p[:i+1], nil
		}
		if n == b.br.Size() {
			return nil, bufio.ErrBufferFull
		}
		if _, err := b.br.Peek(n + 1); err != nil && err != bufio.ErrBufferFull {
			return nil, err
		}
	}
}

// readers are the buffers of streams that are reading (not parked): a
// parked stream needs none, so an idle connection holds no buffer.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufSize) }}

// readNow makes the body read the connection without blocking: a read
// that finds no bytes returns errWouldBlock (see Client.Run). It reports
// whether the body can: a plain TCP connection's, not decompressed.
func (b *connBody) readNow() (syscall.RawConn, bool) {
	tc, ok := b.conn.(*net.TCPConn)
	if !ok {
		return nil, false
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return nil, false
	}
	b.head.raw = raw
	b.head.rawFn = b.head.rawRead
	return raw, true
}

// park lets go of the buffer until the next unpark, keeping the bytes it
// still holds (a partial chunk size line). Only the goroutine reading the
// body calls it, once it has no slice of the buffer left.
func (b *connBody) park() {
	if b.br == nil {
		return
	}
	if n := b.br.Buffered(); n > 0 {
		p, _ := b.br.Peek(n)
		b.head.pend = append(append(make([]byte, 0, n+len(b.head.pend)), p...), b.head.pend...)
	}
	if parkHook != nil {
		parkHook(len(b.head.pend))
	}
	b.br.Reset(nil)
	readers.Put(b.br)
	b.br = nil
}

// parkHook, set by tests before a client starts, is told of each park
// and how many bytes the stream kept.
var parkHook func(kept int)

// readsPerTurn is how many reads a parked stream, resumed, may do before
// it parks again (connBody.peek).
const readsPerTurn = 16

// unpark takes a buffer for reading again.
func (b *connBody) unpark() {
	b.head.reads = readsPerTurn
	if b.br == nil {
		b.br = readers.Get().(*bufio.Reader)
		b.br.Reset(b.head)
	}
}

func (b *connBody) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	q, err := b.peek()
	n := copy(p, q)
	b.consume(n)
	return n, err
}

// ReadByte makes connBody a flate.Reader, so gzip reads it without a
// bufio.Reader of its own.
func (b *connBody) ReadByte() (byte, error) {
	q, err := b.peek()
	if len(q) == 0 {
		return 0, err
	}
	b.consume(1)
	return q[0], nil
}

// directBody is the connBody under an event stream's body, nil when it
// is not read from a direct connection.
func directBody(body io.ReadCloser) *connBody {
	switch b := body.(type) {
	case *connBody:
		return b
	case *gzipBody:
		return b.body
	}
	return nil
}

// closeWhenDone makes ctx the context whose end closes the connection,
// instead of the request's. Call it before Close can run on another
// goroutine.
func (b *connBody) closeWhenDone(ctx context.Context) {
	b.stop()
	b.stop = closeOnDone(ctx, b.conn)
}

// closeOnDone closes conn when ctx ends, unless the returned stop is
// called first (it reports whether it stopped that). Connections that
// wait for the same context are closed one after another by one
// goroutine: context.AfterFunc would start a goroutine for each, and the
// end of a probe holding 10,000 connections would then start 10,000 at
// once, each with a stack.
func closeOnDone(ctx context.Context, conn net.Conn) (stop func() bool) {
	done := ctx.Done()
	if done == nil {
		return func() bool { return true } // never ends
	}
	closers.Lock()
	set := closers.sets[done]
	if set == nil {
		set = &closerSet{done: done, conns: make(map[net.Conn]struct{})}
		if closers.sets == nil {
			closers.sets = make(map[<-chan struct{}]*closerSet)
		}
		closers.sets[done] = set
		set.stop = context.AfterFunc(ctx, set.closeAll)
	}
	set.conns[conn] = struct{}{}
	closers.Unlock()
	return func() bool {
		closers.Lock()
		defer closers.Unlock()
		if _, ok := set.conns[conn]; !ok {
			return false // being closed, or stopped already
		}
		delete(set.conns, conn)
		if len(set.conns) == 0 && set.stop() {
			delete(closers.sets, done)
		}
		return true
	}
}

// closers are the connections closeOnDone watches, by the Done channel of
// their context.
var closers struct {
	sync.Mutex
	sets map[<-chan struct{}]*closerSet
}

// closerSet is the connections that wait for one context.
type closerSet struct {
	done  <-chan struct{}
	conns map[net.Conn]struct{} // guarded by closers
	stop  func() bool           // stops the AfterFunc
}

// closeAll closes the set's connections; the context ended.
func (s *closerSet) closeAll() {
	closers.Lock()
	conns := s.conns
	s.conns = map[net.Conn]struct{}{}
	if closers.sets[s.done] == s {
		delete(closers.sets, s.done)
	}
	closers.Unlock()
	for c := range conns {
		c.Close()
	}
}

func (b *connBody) Close() error {
	b.once.Do(func() {
		b.stop()
		b.conn.Close()
	})
	return nil
}

// gzipBody decompresses a body lazily, as http.Transport does.
type gzipBody struct {
	body *connBody
	zr   *gzip.Reader
	err  error
}

func (g *gzipBody) Read(p []byte) (int, error) {
	if g.zr == nil && g.err == nil {
		g.zr, g.err = gzip.NewReader(g.body)
	}
	if g.err != nil {
		if errors.Is(g.err, io.EOF) {
			return 0, io.ErrUnexpectedEOF
		}
		return 0, g.err
	}
	return g.zr.Read(p)
}

func (g *gzipBody) Close() error { return g.body.Close() }
