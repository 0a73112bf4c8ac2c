package ssex

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/internal/netx"
	"github.com/fanscope/fanscope/internal/secrets"
)

// errStalled is the cause given to a connection the watchdog drops.
var errStalled = errors.New("stalled")

// outcome is how one connection attempt ended.
type outcome struct {
	connected  bool          // a 200 text/event-stream response was read
	status     int           // HTTP status, 0 when none arrived
	reason     string        // why it ended, for state records
	fatal      error         // set when retrying would not help
	retryAfter time.Duration // from a 429/503 Retry-After
	events     int64         // events the connection delivered
	lasted     time.Duration // how long the connection was up
	stalled    bool          // no response head within the stall threshold
}

// attempt is one connection attempt: the request, its response, and the
// stream read until it ends. Run makes one per attempt; only the
// goroutines it starts, one after another, touch it.
type attempt struct {
	c             *Client
	ctx           context.Context         // Run's: its end stops everything
	cctx          context.Context         // the attempt's, until the stream is read
	cancel        context.CancelCauseFunc // cancels cctx
	wd            *watchdog
	sink          feed.Sink
	n             int // attempts since the last connection, this one included
	everConnected bool

	// How far it got: an event stream's body to read, a request sent on a
	// direct connection whose response is still to come, or why there is
	// neither (out).
	body    io.ReadCloser
	waiting *sentRequest
	req     *http.Request // as built, before the direct transport's additions
	start   time.Time     // when the attempt started
	lastID  string        // the Last-Event-ID sent, "" when none
	traced  *atomic.Int64 // through http.Client: time to the first response byte
	out     outcome

	// The stream: its read loop's state, and the connection it reads
	// without blocking (nil when its reads block: TLS, gzip, proxies).
	ss  *streamState
	raw syscall.RawConn
}

// attemptKey carries the attempt in a request's context, so that the
// http.Client's redirect check can report to it.
type attemptKey struct{}

// connect makes one attempt: it sends the request and reads the response
// head. When that gave a stream, a.body is set and a.stream reads it;
// a.finish ends the attempt either way.
//
// Dialing, TLS and writing the request, which go deep, run on a goroutine
// that ends with them, and so does reading the response head; the
// goroutine that calls connect waits for the response.
func (c *Client) connect(ctx context.Context, sink feed.Sink, n int, everConnected bool) *attempt {
	a := &attempt{c: c, ctx: ctx, sink: sink, n: n, everConnected: everConnected}
	a.cctx, a.cancel = context.WithCancelCause(context.WithValue(ctx, attemptKey{}, a))
	a.wd = startWatchdog(c.initialStall(), func() { a.cancel(errStalled) })
	a.establish()
	return a
}

// finish closes the stream, if any, and stops the attempt's watchdog.
func (a *attempt) finish() {
	if a.body != nil {
		a.body.Close()
		if b := directBody(a.body); b != nil && a.raw != nil {
			b.park() // gives the buffer back
		}
	}
	a.wd.stop()
	a.cancel(nil)
}

// establish sends the request and reads the response head, each on a
// goroutine of its own, waiting for the response here.
func (a *attempt) establish() {
	done := make(chan struct{}, 1)
	go func() { a.open(); done <- struct{}{} }()
	<-done
	if a.waiting != nil {
		br, firstByte, err := a.waiting.awaitResponse()
		go func() { a.receive(br, firstByte, err); done <- struct{}{} }()
		<-done
	}
	if a.body == nil {
		return
	}
	drop := func() { a.cancel(errStalled) }
	if b := directBody(a.body); b != nil {
		// For as long as the stream lasts, tie the connection to Run's
		// context and let the watchdog close it, and let go of the
		// attempt's context, which dialing left with a map of children.
		body := a.body
		b.closeWhenDone(a.ctx)
		drop = func() { body.Close() }
		a.cancel(nil)
		if b == a.body {
			// Not decompressed: read without blocking, so that an idle
			// stream holds neither a buffer nor a goroutine in read.
			a.raw, _ = b.readNow()
		}
	}
	a.wd.streamStarted(drop, a.stalled, a.resumed)
	if a.raw != nil {
		// Nothing calls the attempt's context or its cancel any more (the
		// watchdog now drops the stream): let go of them while it lasts.
		a.cctx, a.cancel = nil, noCancel
	}
}

func noCancel(error) {}

// stalled reports that the stream went silent past its threshold. The
// watchdog calls it, on its timer's goroutine, while the Run goroutine
// waits for bytes.
func (a *attempt) stalled(idle, threshold time.Duration) {
	c := a.c
	c.mu.Lock()
	c.diag.Stalls++
	c.mu.Unlock()
	c.emitState(a.sink, feed.StateStalled, 0,
		fmt.Sprintf("no bytes for %s (stall threshold %s; reconnects after %s)", idle.Round(time.Millisecond), threshold, stallDropFactor*threshold), a.n)
}

// resumed reports that bytes came again on a stalled stream; the Run
// goroutine calls it before it parses them.
func (a *attempt) resumed() {
	a.c.emitState(a.sink, feed.StateConnected, http.StatusOK, "", a.n)
}

// open builds and sends the request. On a direct connection it returns
// once the request is written (receive reads the response); otherwise it
// goes through the http.Client and checks the response.
func (a *attempt) open() {
	c := a.c
	a.start = time.Now()
	req, err := http.NewRequestWithContext(a.cctx, http.MethodGet, c.cfg.URL, nil)
	if err != nil {
		err = secrets.Error(err)
		a.out = outcome{fatal: fatalErrorf("connect to sse endpoint %s: build request: %w", c.cfg.Name, err), reason: err.Error()}
		return
	}
	req.Header = c.header.Clone()
	if c.host != "" {
		req.Host = c.host
	}
	if id := c.parser.LastEventID(); id != "" {
		if netx.ValidHeaderValue(id) {
			req.Header.Set("Last-Event-ID", id)
			a.lastID = id
		} else {
			c.mu.Lock()
			c.diag.unsendableID = true
			c.mu.Unlock()
		}
	}
	a.req = req
	if d, ok := c.hc.Transport.(*directTransport); ok && !d.proxied(req) {
		first := req
		if u := req.URL.User; u != nil && req.Header.Get("Authorization") == "" {
			// As http.Client does for the first request.
			first = req.Clone(a.cctx)
			pw, _ := u.Password()
			first.SetBasicAuth(u.Username(), pw)
		}
		if a.waiting, err = d.send(first); err != nil {
			a.out = a.requestFailed(err)
		}
		return
	}
	// Through a proxy, http.Transport reads the response; a trace tells
	// when its first byte came.
	traced, start := new(atomic.Int64), a.start
	req = req.WithContext(httptrace.WithClientTrace(a.cctx, &httptrace.ClientTrace{
		GotFirstResponseByte: func() { traced.Store(int64(time.Since(start))) },
	}))
	resp, err := c.hc.Do(req)
	a.traced = traced
	a.check(resp, err)
}

// receive reads the response to a request open sent on a direct
// connection, whose first byte awaitResponse saw (or failed to).
func (a *attempt) receive(br *bufio.Reader, firstByte time.Time, err error) {
	w := a.waiting
	a.waiting = nil
	var resp *http.Response
	if err == nil {
		resp, err = w.receive(br, firstByte)
	}
	if err == nil && isRedirect(resp) {
		// http.Client knows how to follow redirects; let it, from the start.
		resp.Body.Close()
		resp, err = a.c.hc.Do(a.req)
	}
	a.check(resp, err)
}

// check records a response in the diagnostics and decides whether it is a
// stream to read. It keeps nothing of the request and response but the
// body: the headers of interest are copied first.
func (a *attempt) check(resp *http.Response, err error) {
	if err != nil {
		a.out = a.requestFailed(err)
		return
	}
	a.req = nil
	// Time to the first response byte, which a direct connection notes.
	var ttfb time.Duration
	if b := directBody(resp.Body); b != nil {
		ttfb = b.firstByte.Sub(a.start)
		a.c.noteHead(b.headBytes, b.interim)
	} else if a.traced != nil {
		ttfb = time.Duration(a.traced.Load())
	}
	a.c.noteResponse(resp, ttfb)
	if out, ok := a.c.classify(a.cancel, resp); !ok {
		resp.Body.Close()
		a.out = out
		return
	}
	a.body = resp.Body
}

// requestFailed classifies an error from sending the request.
func (a *attempt) requestFailed(err error) outcome {
	c := a.c
	if errors.Is(context.Cause(a.cctx), errStalled) {
		return outcome{reason: c.stallReason(false, time.Duration(a.wd.threshold.Load())), stalled: true}
	}
	var redirect *RedirectError
	if errors.As(err, &redirect) {
		return outcome{status: redirect.Status, reason: redirect.Reason, fatal: c.fatal(redirect)}
	}
	var tooLarge *HeadTooLargeError
	if errors.As(err, &tooLarge) {
		c.noteHead(tooLarge.Read, 0)
		return outcome{reason: "GET: " + tooLarge.Error()}
	}
	err = secrets.Error(err)
	reason := secrets.Reason(err) // url.Error repeats the URL
	if reason, ok := netx.Unrecoverable(err, a.everConnected, "check the --sse URL"); ok {
		return outcome{reason: reason, fatal: c.fatal(because(reason, err))}
	}
	return outcome{reason: "GET: " + reason}
}

// noteHead records the size of the latest response head.
func (c *Client) noteHead(bytes int64, interim int) {
	c.mu.Lock()
	c.diag.HeadBytes = bytes
	c.diag.Interim += interim
	c.mu.Unlock()
}

// causeError is a message a user can act on, wrapping the error behind it
// (whose own text may repeat what the message says).
type causeError struct {
	msg   string
	cause error
}

func (e *causeError) Error() string { return e.msg }
func (e *causeError) Unwrap() error { return e.cause }

func because(msg string, cause error) error { return &causeError{msg: msg, cause: cause} }

// fatal is the error Run returns when the endpoint refused for good; it
// wraps cause and ErrFatal.
func (c *Client) fatal(cause error) error {
	return fatalErrorf("connect to sse endpoint %s (%s): %w", c.cfg.Name, c.shownURL, cause)
}
