package ssex

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/internal/netx"
)

const (
	// DefaultMaxBackoff caps the wait between attempts while the server keeps failing.
	DefaultMaxBackoff = 30 * time.Second
	// DefaultRetry is the reconnection time until the server sends `retry:`;
	// the HTML standard leaves it to the user agent and browsers use about 3 s.
	DefaultRetry = 3 * time.Second

	// readBufSize is the per-connection read buffer, which holds the
	// response head and then the stream (netx.ReadBufferSize).
	readBufSize = netx.ReadBufferSize
	// DefaultMaxHeadBytes bounds a response head (netx.MaxHeadBytes).
	DefaultMaxHeadBytes = netx.MaxHeadBytes
	// MinRetry is the least wait between attempts, whatever the server
	// asks (`retry: 0`): with jitter on top, a server that closes every
	// stream at once gets at most two attempts a second per connection,
	// and fewer as the failures add up.
	MinRetry = 500 * time.Millisecond
	// MaxRetry caps the reconnection time a server may ask for with
	// `retry:` or Retry-After (a value that overflows a Duration is
	// clamped to it too).
	MaxRetry = netx.MaxRetryAfter
	// healthyAfter is how long a connection that delivered no event must
	// have lasted to count as working: one that ends sooner is a failure
	// and backs off, so "connect, close, connect" cannot storm.
	healthyAfter = time.Minute
)

// Config describes one connection to one SSE endpoint.
type Config struct {
	Name string // display name; defaults to the URL's host:port
	URL  string // http:// or https://
	Conn int    // connection index when several connections go to one endpoint

	// Header is sent with every request, e.g. "Authorization: Bearer …" for
	// --bearer-env. A "Host" entry sets the request's Host.
	Header http.Header

	// TLSCA (a PEM file) and TLSInsecure configure the transport NewClient
	// builds; they are ignored when Transport is set (build that with
	// NewTransport).
	TLSCA       string
	TLSInsecure bool

	// StallTimeout fixes the stall threshold (--stall); 0 learns it from
	// the stream: 3x the longest gap between reads once two keep-alives
	// came, at least MinStallTimeout, DefaultStallTimeout before; < 0
	// turns stall detection off. Silence past the threshold gives a
	// `stalled` state record and keeps the connection; bytes again give
	// `connected`; silence for twice the threshold drops the connection
	// and reconnects. Before the response head, silence past the
	// threshold gives `stalled` and ends the attempt.
	StallTimeout time.Duration
	MaxLine      int // parser line cap; <= 0 means DefaultMaxLine
	// MaxHeadBytes bounds a response head (status line and headers,
	// interim 1xx heads included); <= 0 means DefaultMaxHeadBytes.
	MaxHeadBytes int64
	MaxBackoff   time.Duration // 0 means DefaultMaxBackoff

	// Transport, when set, is shared with other clients (many connections
	// from one process); see NewTransport.
	Transport http.RoundTripper
}

// Client holds one connection to an SSE endpoint and reopens it as a
// browser's EventSource would, reporting everything it sees as records.
type Client struct {
	cfg      Config
	shownURL string // the URL with its secrets masked (internal/secrets)
	header   http.Header
	host     string // Host header override
	hc       *http.Client
	parser   *Parser

	// Tunables; tests in this package shorten them.
	retry       time.Duration // reconnection time until the server sends retry:
	burstQuiet  time.Duration // silence before a read that counts as a burst
	burstMin    int           // events completed by one read to count as a burst
	burstWarnAt int           // bursts before the buffering-proxy warning
	jitter      func(n int64) int64
	floor       time.Duration // least wait between attempts

	connected     chan struct{}
	connectedOnce sync.Once
	running       atomic.Bool

	mu   sync.Mutex
	diag diagState // guarded by mu
}

// NewClient checks cfg and returns a client ready to Run. Errors wrap ErrUsage.
func NewClient(cfg Config) (*Client, error) {
	header := make(http.Header, len(cfg.Header)+2)
	// EventSource sends these; a user's -H may replace them.
	header.Set("Accept", "text/event-stream")
	header.Set("Cache-Control", "no-cache")
	ep, err := netx.CheckEndpoint("sse endpoint", cfg.Name, cfg.URL, cfg.Header, header, ErrUsage, "http", "https")
	if err != nil {
		return nil, err
	}
	cfg.Name = ep.Name
	if err := netx.SetDurations(netx.Duration{V: &cfg.MaxBackoff, Default: DefaultMaxBackoff, Name: "max backoff"}); err != nil {
		return nil, usageErrorf("sse endpoint %s: %w", cfg.Name, err)
	}
	c := &Client{
		cfg:         cfg,
		shownURL:    ep.Shown,
		header:      shareHeader(ep.Header),
		host:        ep.Host,
		retry:       DefaultRetry,
		burstQuiet:  time.Second,
		burstMin:    3,
		burstWarnAt: 3,
		jitter:      rand.Int64N,
		floor:       MinRetry,
		connected:   make(chan struct{}),
	}
	rt, err := transportFor(cfg)
	if err != nil {
		return nil, usageErrorf("sse endpoint %s: %w", cfg.Name, err)
	}
	if cfg.MaxHeadBytes <= 0 {
		cfg.MaxHeadBytes = DefaultMaxHeadBytes
		c.cfg.MaxHeadBytes = cfg.MaxHeadBytes
	}
	if t, ok := rt.(*http.Transport); ok {
		rt = &directTransport{base: t, maxHead: cfg.MaxHeadBytes}
	}
	c.hc = &http.Client{Transport: rt, CheckRedirect: c.redirects(ep.Names).Check}
	c.parser = NewParser(cfg.MaxLine)
	// One oversized event must not end the stream: reconnecting would
	// replay it through Last-Event-ID forever.
	c.parser.SkipOversized()
	c.diag.State = feed.StateDisconnected
	c.diag.RetryMS = c.retry.Milliseconds()
	c.diag.StallAfter = c.initialStall()
	return c, nil
}

// lastHeader is the request header of the client made last. Clients of
// one endpoint (--sse-clients in the thousands) send the same header, and
// a client never changes its own (each request gets a clone), so they
// share one map.
var lastHeader struct {
	sync.Mutex
	h http.Header
}

func shareHeader(h http.Header) http.Header {
	lastHeader.Lock()
	defer lastHeader.Unlock()
	if l := lastHeader.h; l != nil && maps.EqualFunc(l, h, slices.Equal[[]string]) {
		return l
	}
	lastHeader.h = h
	return h
}

// Connected is closed when the first connection is established.
func (c *Client) Connected() <-chan struct{} { return c.connected }

// Name is the endpoint's display name.
func (c *Client) Name() string { return c.cfg.Name }

// Path is the delivery path's name, "sse:NAME" (feed.PathName).
func (c *Client) Path() string { return feed.PathName(feed.SourceSSE, c.cfg.Name) }

// Run connects and keeps the connection open until ctx ends (then it
// returns nil) or the endpoint refuses for good (then it returns an error
// wrapping ErrFatal). Records go to sink; Run never waits on anything but
// sink.Emit. Run may be called once.
func (c *Client) Run(ctx context.Context, sink feed.Sink) error {
	if !c.running.CompareAndSwap(false, true) {
		return fmt.Errorf("run sse client %s: already running", c.cfg.Name)
	}
	if sink == nil {
		sink = feed.SinkFunc(func(feed.Record) {})
	}
	c.mu.Lock()
	c.diag.RetryMS = c.retry.Milliseconds()
	c.mu.Unlock()
	// The goroutine that runs Run only waits: for steps, which do the
	// work (connect, read and parse, report, wait between attempts) on
	// goroutines of their own, and for a parked stream's connection to
	// have bytes. Its stack then never grows past the 2 KiB a goroutine
	// starts with (the GC does not shrink a grown stack that is a quarter
	// used), and an idle connection holds no other goroutine and no read
	// buffer: with --sse-clients in the thousands, that is most of its
	// memory.
	d := &driver{c: c, ctx: ctx, sink: sink}
	d.readableFn = d.readable
	for {
		d.done.Add(1)
		if d.a != nil && d.out == nil {
			resume(d)
		} else {
			go d.step()
		}
		d.done.Wait()
		if d.stopped {
			return d.err
		}
		if d.out != nil {
			continue // the stream ended: a step ends the attempt
		}
		// Errors (the connection was closed) are the next read's to see.
		d.looked = false
		d.a.raw.Read(d.readableFn)
	}
}

// driver is Run's state, handed from one step to the next.
type driver struct {
	c          *Client
	ctx        context.Context
	sink       feed.Sink
	rs         runState
	a          *attempt       // the attempt whose stream is parked or just ended
	out        *outcome       // how a's stream ended; nil while it goes on
	done       sync.WaitGroup // the step or read under way
	stopped    bool
	err        error
	looked     bool // readable looked at the connection already
	peek       [1]byte
	readableFn func(fd uintptr) bool
}

// step ends the attempt whose stream ended, if any, and runs attempts
// until a stream parks or Run must return (stopped, err). Connecting and
// waiting between attempts block, so each step has a goroutine of its own.
func (d *driver) step() {
	defer d.done.Done()
	c := d.c
	if d.out != nil {
		out := d.out
		d.out = nil
		if d.end(out) {
			return
		}
	}
	for {
		d.rs.attempt++
		c.emitState(d.sink, feed.StateConnecting, 0, "", d.rs.attempt)
		d.a = c.connect(d.ctx, d.sink, d.rs.attempt, d.rs.everConnected)
		out := &d.a.out
		if d.a.body != nil {
			var parked bool
			if out, parked = d.a.stream(); parked {
				return
			}
		}
		if d.end(out) {
			return
		}
	}
}

// end ends the attempt, which ended with out, and waits until the next
// one is due; it reports whether Run must return instead.
func (d *driver) end(out *outcome) bool {
	d.a.finish()
	d.a = nil
	d.stopped, d.err = d.c.between(d.ctx, d.sink, out, &d.rs)
	return d.stopped
}

// readStream reads a parked stream whose connection has bytes, until it
// parks again or ends (out). A stream that ended because Run's context did
// is ended here, since that takes no waiting: when a probe ends, thousands
// of streams end at once, and a step each would grow thousands of stacks.
func (d *driver) readStream() {
	if out, parked := d.a.stream(); !parked {
		if d.ctx.Err() != nil {
			d.end(out)
		} else {
			d.out = out
		}
	}
	d.done.Done()
}

// Parked streams are read by a pool of goroutines, which never block but
// in sink.Emit: bytes often come to thousands of connections in the same
// instant (one event fanned out), and a goroutine per read would grow a
// new stack each time.
var (
	streamReads   = make(chan *driver)
	streamReaders atomic.Int32
)

// maxStreamReaders bounds the pool; an idle reader costs its stack.
const maxStreamReaders = 64

// resume has d's parked stream read by the pool.
func resume(d *driver) {
	select {
	case streamReads <- d:
		return
	default:
	}
	if streamReaders.Add(1) <= maxStreamReaders {
		go streamReader(d)
		return
	}
	streamReaders.Add(-1)
	streamReads <- d
}

func streamReader(d *driver) {
	for {
		d.readStream()
		d = <-streamReads
	}
}

// readable tells the poller whether the parked stream's connection has
// bytes (or an end) to read. The first look, before any wait, peeks, so
// that bytes that came since the stream's last read are not missed; after
// a wait the poller said it has.
func (d *driver) readable(fd uintptr) bool {
	if d.looked {
		return true
	}
	d.looked = true
	for {
		_, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&d.peek[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		switch errno {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		return true
	}
}

// runState is what Run carries from one attempt to the next.
type runState struct {
	failures      int // consecutive failed attempts since the last connection
	attempt       int // attempts since the last connection
	everConnected bool
}

// between handles the end of an attempt and waits until the next one is
// due. stop is true when Run must return err.
func (c *Client) between(ctx context.Context, sink feed.Sink, out *outcome, rs *runState) (stop bool, err error) {
	if ctx.Err() != nil {
		c.setState(feed.StateDisconnected, "")
		return true, nil
	}
	if out.fatal != nil {
		c.emitState(sink, feed.StateFailed, out.status, out.reason, rs.attempt)
		return true, out.fatal
	}
	if out.stalled {
		// A server that accepted the connection and sends nothing is
		// stalled too; say so before reconnecting, as for a stream.
		c.emitState(sink, feed.StateStalled, 0, out.reason, rs.attempt)
	}
	if out.connected {
		c.emitState(sink, feed.StateDisconnected, 0, out.reason, rs.attempt)
		rs.everConnected = true
		rs.attempt = 0
	}
	if out.connected && (out.events > 0 || out.lasted >= healthyAfter) {
		rs.failures = 0
	} else {
		rs.failures++
	}
	retry := retryDuration(c.retryMS())
	wait := backoff(retry, c.cfg.MaxBackoff, c.floor, rs.failures, c.jitter)
	if ra := min(out.retryAfter, MaxRetry); ra > wait {
		wait = min(ra, max(c.cfg.MaxBackoff, retry))
	}
	c.mu.Lock()
	c.diag.Reconnects++
	c.diag.NextAttempt = time.Now().Add(wait)
	c.mu.Unlock()
	status := out.status // why an attempt failed; a stream that ended had 200
	if out.connected {
		status = 0
	}
	c.emitState(sink, feed.StateReconnecting, status,
		fmt.Sprintf("%s (retry in %s)", out.reason, wait.Round(time.Millisecond)), rs.attempt+1)
	if !netx.Sleep(ctx, wait) {
		c.setState(feed.StateDisconnected, "")
		return true, nil
	}
	return false, nil
}

// backoff is netx.Backoff from the reconnection time, with jitter after a
// connection that worked too (up to a quarter more): a server that closes
// every stream at once must not get them all back in the same instant.
func backoff(retry, maxWait, floor time.Duration, failures int, jitter func(int64) int64) time.Duration {
	d := netx.Backoff(retry, maxWait, floor, failures, jitter)
	if failures <= 0 {
		d += time.Duration(jitter(int64(d/4) + 1))
	}
	return d
}

// retryDuration is a reconnection time in ms as a Duration, clamped to
// [0, MaxRetry] so that no value overflows.
func retryDuration(ms int64) time.Duration {
	if ms <= 0 {
		return 0
	}
	if ms >= MaxRetry.Milliseconds() {
		return MaxRetry
	}
	return time.Duration(ms) * time.Millisecond
}

// emitState records a state change in the diagnostics and sends a state record.
func (c *Client) emitState(sink feed.Sink, state string, status int, errText string, attempt int) {
	now := time.Now()
	c.mu.Lock()
	c.diag.State = state
	if status != 0 {
		c.diag.Status = status
	}
	if errText != "" {
		c.diag.LastError = errText
	}
	c.diag.Attempt = attempt
	c.mu.Unlock()
	sink.Emit(netx.StateRecord(now, feed.SourceSSE, c.cfg.Name, c.cfg.Conn, state, status, errText, attempt))
}

func (c *Client) setState(state, errText string) {
	c.mu.Lock()
	c.diag.State = state
	if errText != "" {
		c.diag.LastError = errText
	}
	c.mu.Unlock()
}

func (c *Client) retryMS() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.diag.RetryMS
}
