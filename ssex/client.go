package ssex

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/internal/secrets"
)

const (
	// DefaultStallTimeout is how long a connection may deliver no bytes at
	// all (keep-alive comments included) before it is dropped and reopened.
	DefaultStallTimeout = 45 * time.Second
	// DefaultMaxBackoff caps the wait between attempts while the server keeps failing.
	DefaultMaxBackoff = 30 * time.Second
	// DefaultRetry is the reconnection time until the server sends `retry:`;
	// the HTML standard leaves it to the user agent and browsers use about 3 s.
	DefaultRetry = 3 * time.Second

	// readBufSize is the per-connection read buffer, which holds the
	// response head and then the stream. It is small because a process may
	// hold 10,000 connections; the parser keeps its own line buffer, so
	// events larger than this still arrive whole.
	readBufSize = 2 << 10
	// minBackoff keeps a failing server that sent `retry: 0` from being hammered.
	minBackoff = 100 * time.Millisecond
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

	StallTimeout time.Duration // 0 means DefaultStallTimeout; < 0 disables the watchdog
	MaxLine      int           // parser line cap; <= 0 means DefaultMaxLine
	MaxBackoff   time.Duration // 0 means DefaultMaxBackoff

	// Transport, when set, is shared with other clients (many connections
	// from one process); see NewTransport.
	Transport http.RoundTripper
}

// Client holds one connection to an SSE endpoint and reopens it as a
// browser's EventSource would, reporting everything it sees as records.
type Client struct {
	cfg      Config
	shownURL string // the URL with any password masked
	header   http.Header
	host     string // Host header override
	hc       *http.Client
	parser   *Parser
	buf      []byte // the read buffer for bodies not read in place (proxies, gzip), reused across connections

	// Tunables; tests in this package shorten them.
	retry       time.Duration // reconnection time until the server sends retry:
	burstQuiet  time.Duration // silence before a read that counts as a burst
	burstMin    int           // events completed by one read to count as a burst
	burstWarnAt int           // bursts before the buffering-proxy warning
	jitter      func(n int64) int64

	connected     chan struct{}
	connectedOnce sync.Once
	running       atomic.Bool

	mu   sync.Mutex
	diag diagState // guarded by mu
}

// NewClient checks cfg and returns a client ready to Run. Errors wrap ErrUsage.
func NewClient(cfg Config) (*Client, error) {
	u, err := checkURL(cfg.URL)
	if err != nil {
		return nil, usageErrorf("sse endpoint %q: %w", cfg.Name, err)
	}
	if cfg.Name == "" {
		cfg.Name = hostPort(u)
	}
	switch {
	case cfg.StallTimeout == 0:
		cfg.StallTimeout = DefaultStallTimeout
	case cfg.StallTimeout < 0:
		cfg.StallTimeout = 0
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.MaxBackoff < 0 {
		return nil, usageErrorf("sse endpoint %s: max backoff %s is negative", cfg.Name, cfg.MaxBackoff)
	}
	c := &Client{
		cfg:         cfg,
		shownURL:    secrets.URL(cfg.URL),
		header:      make(http.Header, len(cfg.Header)+2),
		retry:       DefaultRetry,
		burstQuiet:  time.Second,
		burstMin:    3,
		burstWarnAt: 3,
		jitter:      rand.Int64N,
		connected:   make(chan struct{}),
	}
	// EventSource sends these; a user's -H may replace them.
	c.header.Set("Accept", "text/event-stream")
	c.header.Set("Cache-Control", "no-cache")
	for k, vs := range cfg.Header {
		if !validHeaderName(k) {
			return nil, usageErrorf("sse endpoint %s: invalid header name %q", cfg.Name, k)
		}
		for _, v := range vs {
			if !validHeaderValue(v) {
				return nil, usageErrorf("sse endpoint %s: header %s: value contains control characters", cfg.Name, k)
			}
		}
		if http.CanonicalHeaderKey(k) == "Host" {
			if len(vs) > 0 {
				c.host = vs[len(vs)-1]
			}
			continue
		}
		c.header[http.CanonicalHeaderKey(k)] = append([]string(nil), vs...)
	}
	rt, err := transportFor(cfg)
	if err != nil {
		return nil, usageErrorf("sse endpoint %s: %w", cfg.Name, err)
	}
	if t, ok := rt.(*http.Transport); ok {
		rt = &directTransport{base: t}
	}
	c.hc = &http.Client{Transport: rt}
	c.parser = NewParser(cfg.MaxLine)
	c.diag.State = feed.StateDisconnected
	c.diag.RetryMS = c.retry.Milliseconds()
	return c, nil
}

// NewTransport returns an HTTP/1.1 transport for SSE connections that many
// clients can share: no limit on connections per host, a large idle pool so
// reconnects reuse connections, small buffers, and no response timeout (the
// client's stall watchdog covers that). tlsCA is a PEM file added to the
// system roots; tlsInsecure skips certificate checks. Errors wrap ErrUsage.
func NewTransport(tlsCA string, tlsInsecure bool) (*http.Transport, error) {
	tc, err := tlsConfig(nil, tlsCA, tlsInsecure)
	if err != nil {
		return nil, err
	}
	t := &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   10 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		TLSClientConfig:     tc,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConns:        0, // no limit
		MaxIdleConnsPerHost: 1 << 16,
		MaxConnsPerHost:     0, // no limit: one connection per stream
		IdleConnTimeout:     90 * time.Second,
		ReadBufferSize:      readBufSize,
		WriteBufferSize:     1 << 10,
	}
	// HTTP/2 would multiplex every stream onto one TCP connection, which is
	// not the fan-out load the user asked for, and hides per-connection faults.
	var p http.Protocols
	p.SetHTTP1(true)
	t.Protocols = &p
	return t, nil
}

// tlsConfig is base (or an empty config) with the --tls-ca and
// --tls-insecure options applied.
func tlsConfig(base *tls.Config, tlsCA string, tlsInsecure bool) (*tls.Config, error) {
	tc := &tls.Config{}
	if base != nil {
		tc = base.Clone()
	}
	if tlsInsecure {
		tc.InsecureSkipVerify = true
	}
	if tlsCA != "" {
		pem, err := os.ReadFile(tlsCA)
		if err != nil {
			return nil, usageErrorf("read --tls-ca file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, usageErrorf("read --tls-ca file %s: no PEM certificates in it", tlsCA)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

// transports holds the transports NewClient derived, so that clients with
// the same base transport and TLS options share one (and its connection
// pool), and a CA file is read once, not once per connection.
var transports struct {
	sync.Mutex
	m map[transportKey]*http.Transport
}

type transportKey struct {
	base     *http.Transport
	tlsCA    string
	insecure bool
}

// transportFor is the transport for cfg: cfg.Transport as given when no TLS
// option is set; otherwise a copy of it with the TLS options applied (a
// shared transport must not silently drop --tls-ca); without one, a shared
// NewTransport.
func transportFor(cfg Config) (http.RoundTripper, error) {
	if cfg.Transport != nil && cfg.TLSCA == "" && !cfg.TLSInsecure {
		return cfg.Transport, nil
	}
	base, ok := cfg.Transport.(*http.Transport)
	if cfg.Transport != nil && !ok {
		return nil, fmt.Errorf("TLS options need an *http.Transport, got a %T", cfg.Transport)
	}
	key := transportKey{base: base, tlsCA: cfg.TLSCA, insecure: cfg.TLSInsecure}
	transports.Lock()
	defer transports.Unlock()
	if t := transports.m[key]; t != nil {
		return t, nil
	}
	var t *http.Transport
	if base == nil {
		var err error
		if t, err = NewTransport(cfg.TLSCA, cfg.TLSInsecure); err != nil {
			return nil, err
		}
	} else {
		tc, err := tlsConfig(base.TLSClientConfig, cfg.TLSCA, cfg.TLSInsecure)
		if err != nil {
			return nil, err
		}
		t = base.Clone()
		t.TLSClientConfig = tc
	}
	if transports.m == nil {
		transports.m = make(map[transportKey]*http.Transport)
	}
	transports.m[key] = t
	return t, nil
}

// Connected is closed when the first connection is established.
func (c *Client) Connected() <-chan struct{} { return c.connected }

// Name is the endpoint's display name.
func (c *Client) Name() string { return c.cfg.Name }

// errStalled is the cause given to a connection the watchdog drops.
var errStalled = errors.New("stalled")

// outcome is how one connection attempt ended.
type outcome struct {
	connected  bool          // a 200 text/event-stream response was read
	status     int           // HTTP status, 0 when none arrived
	reason     string        // why it ended, for state records
	fatal      error         // set when retrying would not help
	retryAfter time.Duration // from a 429/503 Retry-After
}

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
	// Run's frame is under every read and every record the stream
	// brings, so the work between attempts is in its own function: the
	// goroutine's stack then stays at 4 KiB (see connect).
	var rs runState
	for {
		rs.attempt++
		c.emitState(sink, feed.StateConnecting, 0, "", rs.attempt)
		out := c.connect(ctx, sink, rs.attempt, rs.everConnected)
		if stop, err := c.between(ctx, sink, out, &rs); stop {
			return err
		}
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
	if out.connected {
		c.emitState(sink, feed.StateDisconnected, 0, out.reason, rs.attempt)
		rs.everConnected = true
		rs.failures, rs.attempt = 0, 0
	} else {
		rs.failures++
	}
	retry := time.Duration(c.retryMS()) * time.Millisecond
	wait := backoff(retry, c.cfg.MaxBackoff, rs.failures, c.jitter)
	if out.retryAfter > wait {
		wait = min(out.retryAfter, max(c.cfg.MaxBackoff, retry))
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
	t := time.NewTimer(wait)
	select {
	case <-ctx.Done():
		t.Stop()
		c.setState(feed.StateDisconnected, "")
		return true, nil
	case <-t.C:
	}
	return false, nil
}

// backoff is the wait before the next attempt: the reconnection time after
// a connection that worked, then doubling per failure, capped at maxWait
// (or at retry when the server asked for more), with jitter in the upper
// half so many clients do not reconnect in step.
func backoff(retry, maxWait time.Duration, failures int, jitter func(int64) int64) time.Duration {
	if failures <= 0 {
		return retry
	}
	limit := max(maxWait, retry)
	d := max(retry, minBackoff)
	for i := 0; i < failures && d < limit; i++ {
		d *= 2
	}
	d = min(d, limit)
	half := d / 2
	return half + time.Duration(jitter(int64(d-half)+1))
}

// connect makes one attempt and reads the stream until it ends.
//
// The goroutine that runs Run waits here, for the response (thousands at
// once while a busy server catches up) and then for the stream's bytes for
// as long as it lasts, and it handles every event. Its stack should stay
// at 4 KiB: the GC shrinks only stacks less than a quarter used, and only
// when it runs. So dialing, TLS and writing the request, which go deep,
// run on a goroutine that ends with them, and so does reading the
// response head; the frames under the read loop (Run, connect, stream)
// are kept small.
func (c *Client) connect(ctx context.Context, sink feed.Sink, attempt int, everConnected bool) *outcome {
	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	wd := startWatchdog(c.cfg.StallTimeout, func() { cancel(errStalled) })
	defer wd.stop()
	o := c.establish(ctx, cctx, cancel, wd, everConnected)
	if o.body == nil {
		return &o.out
	}
	defer o.body.Close()
	return c.stream(ctx, sink, wd, o, attempt)
}

// establish sends the request and reads the response head, each on a
// goroutine of its own, waiting for the response here.
func (c *Client) establish(ctx, cctx context.Context, cancel context.CancelCauseFunc, wd *watchdog, everConnected bool) *opened {
	done := make(chan *opened, 1)
	go func() { done <- c.open(cctx, cancel, everConnected) }()
	o := <-done
	if o.waiting != nil {
		br, firstByte, err := o.waiting.awaitResponse()
		go func() { done <- c.receive(cctx, cancel, o, br, firstByte, err, everConnected) }()
		o = <-done
	}
	if b := directBody(o.body); b != nil {
		// For as long as the stream lasts, tie the connection to ctx and
		// let the watchdog close it, and let go of the attempt's context,
		// which dialing left with a map of children.
		body := o.body
		b.closeWhenDone(ctx)
		wd.dropWith(func() { body.Close() })
		cancel(nil)
	}
	return o
}

// stream reads an event stream until it ends.
func (c *Client) stream(ctx context.Context, sink feed.Sink, wd *watchdog, o *opened, attempt int) *outcome {
	rs := c.noteConnected(sink, o, attempt)
	r := &bodyReader{body: o.body}
	if b, ok := o.body.(*connBody); ok {
		r.direct = b
	}
	emit := rs.observe
	n := 0           // bytes of the current read fed so far
	var at time.Time // when the current read returned
	for {
		chunk, err := r.next(c)
		var perr error
		if len(chunk) > 0 {
			if n == 0 {
				at = time.Now()
				wd.touch(at)
				rs.events, rs.comments = 0, 0
			}
			n += len(chunk)
			perr = c.parser.Feed(chunk, at, emit)
		}
		// Counters and burst detection go by read: the chunks one read
		// brought in count as one, as net/http's chunked reader returns them.
		if n > 0 && (err != nil || perr != nil || !r.more()) {
			rs.afterRead(n, at)
			n = 0
		}
		if perr != nil {
			return parseFailed(perr)
		}
		if err != nil {
			return c.streamEnded(ctx, wd, err)
		}
	}
}

// noteConnected records a new connection and returns the read loop's state.
func (c *Client) noteConnected(sink feed.Sink, o *opened, attempt int) *readState {
	now := time.Now()
	c.parser.Reset()
	c.mu.Lock()
	d := &c.diag
	d.Connects++
	d.ConnectedAt = now
	d.TimeToFirstEvent = 0
	if o.lastID != "" {
		d.LastEventIDSent = o.lastID
		d.LastEventIDHonoured = "unknown"
		d.ResumeDetail = "no event with a new id since the reconnect"
	}
	c.mu.Unlock()
	c.connectedOnce.Do(func() { close(c.connected) })
	c.emitState(sink, feed.StateConnected, http.StatusOK, "", attempt)

	rs := &readState{c: c, sink: sink, start: o.start, prevRead: now}
	if o.lastID != "" {
		rs.resume.start(o.lastID)
	}
	return rs
}

func parseFailed(err error) *outcome {
	return &outcome{connected: true, status: http.StatusOK, reason: "parse stream: " + err.Error()}
}

// streamEnded says why a stream's read failed.
func (c *Client) streamEnded(ctx context.Context, wd *watchdog, err error) *outcome {
	out := &outcome{connected: true, status: http.StatusOK}
	switch {
	case errors.Is(err, io.EOF):
		out.reason = "server closed the stream"
	case ctx.Err() != nil:
		out.reason = "stopped"
	case wd.stalled():
		out.reason = c.stalled()
	default:
		out.reason = "read stream: " + err.Error()
	}
	return out
}

// opened is how far an attempt got: an event stream's body to read, a
// request sent on a direct connection whose response is still to come, or
// why there is neither.
type opened struct {
	body    io.ReadCloser // the stream
	waiting *sentRequest  // sent directly, response not read yet
	req     *http.Request // as built, before the direct transport's additions
	start   time.Time     // when the attempt started
	lastID  string        // the Last-Event-ID sent, "" when none
	traced  *atomic.Int64 // through http.Client: time to the first response byte
	out     outcome       // when there is no body and nothing is waiting
}

// open builds and sends the request. On a direct connection it returns
// once the request is written (receive reads the response); otherwise it
// goes through the http.Client and checks the response.
func (c *Client) open(cctx context.Context, cancel context.CancelCauseFunc, everConnected bool) *opened {
	o := &opened{start: time.Now()}
	req, err := http.NewRequestWithContext(cctx, http.MethodGet, c.cfg.URL, nil)
	if err != nil {
		o.out = outcome{fatal: fatalErrorf("connect to sse endpoint %s: build request: %w", c.cfg.Name, err), reason: err.Error()}
		return o
	}
	req.Header = c.header.Clone()
	if c.host != "" {
		req.Host = c.host
	}
	if id := c.parser.LastEventID(); id != "" {
		if validHeaderValue(id) {
			req.Header.Set("Last-Event-ID", id)
			o.lastID = id
		} else {
			c.mu.Lock()
			c.diag.unsendableID = true
			c.mu.Unlock()
		}
	}
	o.req = req
	if d, ok := c.hc.Transport.(*directTransport); ok && !d.proxied(req) {
		first := req
		if u := req.URL.User; u != nil && req.Header.Get("Authorization") == "" {
			// As http.Client does for the first request.
			first = req.Clone(cctx)
			pw, _ := u.Password()
			first.SetBasicAuth(u.Username(), pw)
		}
		if o.waiting, err = d.send(first); err != nil {
			o.out = c.requestFailed(cctx, err, everConnected)
		}
		return o
	}
	// Through a proxy, http.Transport reads the response; a trace tells
	// when its first byte came.
	traced, start := new(atomic.Int64), o.start
	req = req.WithContext(httptrace.WithClientTrace(cctx, &httptrace.ClientTrace{
		GotFirstResponseByte: func() { traced.Store(int64(time.Since(start))) },
	}))
	resp, err := c.hc.Do(req)
	o.traced = traced
	return c.check(cctx, cancel, o, resp, err, everConnected)
}

// receive reads the response to a request open sent on a direct
// connection, whose first byte awaitResponse saw (or failed to).
func (c *Client) receive(cctx context.Context, cancel context.CancelCauseFunc, o *opened, br *bufio.Reader, firstByte time.Time, err error, everConnected bool) *opened {
	w := o.waiting
	o.waiting = nil
	var resp *http.Response
	if err == nil {
		resp, err = w.receive(br, firstByte)
	}
	if err == nil && isRedirect(resp) {
		// http.Client knows how to follow redirects; let it, from the start.
		resp.Body.Close()
		resp, err = c.hc.Do(o.req)
	}
	return c.check(cctx, cancel, o, resp, err, everConnected)
}

// isRedirect reports whether http.Client would follow resp.
func isRedirect(resp *http.Response) bool {
	switch resp.StatusCode {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		return resp.Header.Get("Location") != ""
	}
	return false
}

// check records a response in the diagnostics and decides whether it is a
// stream to read. It keeps nothing of the request and response but the
// body: the headers of interest are copied first.
func (c *Client) check(cctx context.Context, cancel context.CancelCauseFunc, o *opened, resp *http.Response, err error, everConnected bool) *opened {
	if err != nil {
		o.out = c.requestFailed(cctx, err, everConnected)
		return o
	}
	o.req = nil
	// Time to the first response byte, which a direct connection notes.
	var ttfb time.Duration
	if b := directBody(resp.Body); b != nil {
		ttfb = b.firstByte.Sub(o.start)
	} else if o.traced != nil {
		ttfb = time.Duration(o.traced.Load())
	}
	c.noteResponse(resp, ttfb)
	if out, ok := c.checkResponse(cancel, resp); !ok {
		resp.Body.Close()
		o.out = out
		return o
	}
	o.body = resp.Body
	return o
}

// bodyReader reads an event stream's body: in place from a direct
// connection's buffer, or through the client's read buffer.
type bodyReader struct {
	direct *connBody
	body   io.Reader
}

// more reports whether next has bytes without reading from the connection.
func (r *bodyReader) more() bool { return r.direct != nil && r.direct.more() }

func (r *bodyReader) next(c *Client) ([]byte, error) {
	if r.direct != nil {
		return r.direct.next()
	}
	if c.buf == nil {
		c.buf = make([]byte, readBufSize)
	}
	n, err := r.body.Read(c.buf)
	return c.buf[:n], err
}

// requestFailed classifies an error from sending the request.
func (c *Client) requestFailed(cctx context.Context, err error, everConnected bool) outcome {
	if errors.Is(context.Cause(cctx), errStalled) {
		return outcome{reason: c.stalled()}
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // url.Error repeats the URL, which may hold secrets
	}
	var (
		verifyErr *tls.CertificateVerificationError
		unknownCA x509.UnknownAuthorityError
		badHost   x509.HostnameError
		badCert   x509.CertificateInvalidError
		dnsErr    *net.DNSError
	)
	switch {
	case errors.As(err, &verifyErr), errors.As(err, &unknownCA), errors.As(err, &badHost), errors.As(err, &badCert):
		reason := fmt.Sprintf("tls: %v (use --tls-ca FILE or --tls-insecure)", err)
		return outcome{reason: reason, fatal: c.fatal(reason)}
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound && !everConnected:
		reason := fmt.Sprintf("host %q not found (check the --sse URL)", dnsErr.Name)
		return outcome{reason: reason, fatal: c.fatal(reason)}
	}
	return outcome{reason: "GET: " + err.Error()}
}

// checkResponse decides what a response means; ok is true for a stream to read.
func (c *Client) checkResponse(cancel context.CancelCauseFunc, resp *http.Response) (outcome, bool) {
	code := resp.StatusCode
	status := statusText(resp)
	switch {
	case code == http.StatusOK:
		ct := resp.Header.Get("Content-Type")
		mt, _, err := mime.ParseMediaType(ct)
		if err == nil && strings.EqualFold(mt, "text/event-stream") {
			return outcome{}, true
		}
		var reason string
		if ct == "" {
			reason = fmt.Sprintf("%s without a Content-Type, want text/event-stream", status)
		} else {
			reason = fmt.Sprintf("%s with Content-Type %q, want text/event-stream", status, ct)
		}
		return outcome{status: code, reason: reason, fatal: c.fatal(reason)}, false
	case code == http.StatusNoContent:
		reason := "server asked to stop (204 No Content)"
		return outcome{status: code, reason: reason, fatal: c.fatal(reason)}, false
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests, code >= 500:
		return outcome{status: code, reason: status + bodySnippet(cancel, resp),
			retryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}, false
	}
	reason := status + bodySnippet(cancel, resp)
	switch code {
	case http.StatusUnauthorized:
		reason += " (check -H/--bearer-env)"
	case http.StatusForbidden:
		reason += " (the credentials sent lack access; check -H/--bearer-env)"
	case http.StatusNotFound:
		reason += " (check the --sse URL path)"
	}
	return outcome{status: code, reason: reason, fatal: c.fatal(reason)}, false
}

func (c *Client) fatal(reason string) error {
	return fatalErrorf("connect to sse endpoint %s (%s): %s", c.cfg.Name, c.shownURL, reason)
}

func (c *Client) stalled() string {
	c.mu.Lock()
	c.diag.Stalls++
	c.mu.Unlock()
	return fmt.Sprintf("stalled: no bytes for %s", c.cfg.StallTimeout)
}

// statusText is e.g. "401 Unauthorized".
func statusText(resp *http.Response) string {
	if t := http.StatusText(resp.StatusCode); t != "" {
		return fmt.Sprintf("%d %s", resp.StatusCode, t)
	}
	return strconv.Itoa(resp.StatusCode)
}

// bodySnippet is the start of an error response's body (servers often say
// why there), as ": "text"", or "" when there is none. It waits at most a
// second, since an error body may never end.
func bodySnippet(cancel context.CancelCauseFunc, resp *http.Response) string {
	if resp.ContentLength == 0 {
		return ""
	}
	t := time.AfterFunc(time.Second, func() { cancel(errors.New("error body too slow")) })
	defer t.Stop()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	s := strings.TrimSpace(strings.ToValidUTF8(string(b), "\uFFFD"))
	if s == "" {
		return ""
	}
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i] + " …"
	}
	return ": " + strconv.Quote(s)
}

// parseRetryAfter reads a Retry-After header (seconds or an HTTP date).
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
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
	sink.Emit(feed.Record{
		TS:       now,
		Source:   feed.SourceSSE,
		Kind:     feed.KindState,
		Endpoint: c.cfg.Name,
		Conn:     c.cfg.Conn,
		State:    state,
		Status:   status,
		Error:    errText,
		Attempt:  attempt,
	})
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

// readState is the per-connection bookkeeping of the read loop; only the
// Run goroutine touches it.
type readState struct {
	c        *Client
	sink     feed.Sink
	start    time.Time // request sent
	prevRead time.Time
	events   int // completed by the current read
	comments int
	lastID   string
	gotEvent bool
	resume   resumeCheck
}

// observe turns one parser observation into a record.
func (rs *readState) observe(o Observation) {
	c := rs.c
	r := feed.Record{
		TS:       o.At,
		Source:   feed.SourceSSE,
		Endpoint: c.cfg.Name,
		Conn:     c.cfg.Conn,
	}
	switch o.Kind {
	case ObsEvent:
		r.Kind, r.Type, r.ID, r.Data = feed.KindEvent, o.Type, o.LastEventID, o.Data
		rs.events++
		rs.lastID = o.LastEventID
		if !rs.gotEvent {
			rs.gotEvent = true
			c.mu.Lock()
			c.diag.TimeToFirstEvent = o.At.Sub(rs.start)
			c.mu.Unlock()
		}
		if rs.resume.active() && rs.resume.see(o.LastEventID) {
			c.mu.Lock()
			c.diag.LastEventIDHonoured, c.diag.ResumeDetail = rs.resume.verdict, rs.resume.detail
			c.mu.Unlock()
		}
	case ObsComment:
		r.Kind, r.Data = feed.KindComment, o.Data
		rs.comments++
	case ObsRetry:
		r.Kind, r.RetryMS = feed.KindRetry, o.RetryMS
		c.mu.Lock()
		c.diag.RetryMS = o.RetryMS
		c.diag.RetryFromServer = true
		c.mu.Unlock()
	default:
		return
	}
	rs.sink.Emit(r)
}

// afterRead updates the counters once per read rather than once per event.
func (rs *readState) afterRead(n int, at time.Time) {
	c := rs.c
	quiet := at.Sub(rs.prevRead)
	rs.prevRead = at
	c.mu.Lock()
	d := &c.diag
	d.Bytes += int64(n)
	d.LastByte = at
	if rs.events > 0 {
		d.Events += int64(rs.events)
		d.LastEvent = at
		d.LastEventID = rs.lastID
		if rs.events >= c.burstMin && quiet >= c.burstQuiet {
			d.Bursts++
			d.lastBurst = rs.events
		}
	}
	if rs.comments > 0 {
		d.Comments += int64(rs.comments)
		d.LastComment = at
	}
	c.mu.Unlock()
}

// watchdog drops a connection when no bytes arrive for timeout. It
// re-arms one timer instead of resetting it on every read.
type watchdog struct {
	timeout time.Duration
	base    time.Time
	last    atomic.Int64 // ns after base of the last read

	mu      sync.Mutex
	drop    func() // how to drop the connection
	timer   *time.Timer
	stopped bool
	fired   bool
}

func startWatchdog(timeout time.Duration, drop func()) *watchdog {
	w := &watchdog{timeout: timeout, base: time.Now(), drop: drop}
	if timeout <= 0 {
		return w
	}
	w.mu.Lock()
	w.timer = time.AfterFunc(timeout, w.check)
	w.mu.Unlock()
	return w
}

func (w *watchdog) touch(at time.Time) { w.last.Store(int64(at.Sub(w.base))) }

// dropWith changes how the connection is dropped.
func (w *watchdog) dropWith(drop func()) {
	w.mu.Lock()
	w.drop = drop
	w.mu.Unlock()
}

// stalled reports whether the watchdog dropped the connection.
func (w *watchdog) stalled() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.fired
}

func (w *watchdog) check() {
	idle := time.Since(w.base) - time.Duration(w.last.Load())
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	if idle >= w.timeout {
		w.fired = true
		w.drop()
		return
	}
	w.timer.Reset(w.timeout - idle)
}

func (w *watchdog) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	if w.timer != nil {
		w.timer.Stop()
	}
}

// validHeaderName reports whether k is an HTTP token.
func validHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		b := k[i]
		if b <= ' ' || b >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, b) >= 0 {
			return false
		}
	}
	return true
}

// validHeaderValue reports whether net/http will send v: no control
// characters except tab. An event id may hold others (only NUL is
// excluded by the parser), and sending it would fail every reconnect.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if b := v[i]; (b < ' ' && b != '\t') || b == 0x7f {
			return false
		}
	}
	return true
}
