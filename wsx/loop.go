package wsx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/internal/netx"
	"github.com/fanscope/fanscope/internal/secrets"
)

// maxRetryAfter bounds a server's Retry-After, so a typo on the server
// cannot park a watcher for a day.
const maxRetryAfter = 10 * time.Minute

// errStalled is the cause given to a connection the watchdog drops.
var errStalled = errors.New("stalled")

// ending is how one attempt ended.
type ending struct {
	connected  bool          // the handshake (and for Socket.IO the namespace connect) succeeded
	status     int           // HTTP status of a refused handshake
	reason     string        // for state records; names no secret
	fatal      error         // set when retrying would not help
	clean      bool          // the server closed normally (1000/1001): next attempt after the floor
	stalled    bool          // the watchdog dropped it
	retryAfter time.Duration // from a 429/503 Retry-After
}

// loop is what both clients share: the attempt loop with backoff and
// jitter, state records, the stall watchdog and the Status.
type loop struct {
	cfg    *checked
	source feed.Source
	what   string // "ws endpoint", "socketio endpoint"
	// attempt makes one connection and reads it until it ends.
	attempt func(ctx context.Context, sink feed.Sink, lv *liveness, attempt int) *ending

	// Tunables; tests shorten them.
	jitter      func(int64) int64
	stallBefore time.Duration
	stallFloor  time.Duration

	h *netx.Health // the Status, the Connected signal and state records

	// cur is the attempt under way, for the redirect policy's records;
	// only the Run goroutine (which makes the handshake) uses it.
	cur struct {
		sink    feed.Sink
		attempt int
	}

	mu     sync.Mutex
	tr     transport   // guarded by mu
	lv     *liveness   // the current connection's, guarded by mu
	buf    []byte      // message buffer, only the Run goroutine uses it
	record feed.Record // template for event records
}

// transport is the transport-specific health that goes into Status.Details.
type transport struct {
	lastClose    string        // "close 1011 internal error: boom"
	rtt          time.Duration // last WebSocket ping round trip
	skipped      int64         // messages over MaxMessage
	pingInterval time.Duration // Socket.IO, from the open packet
	pingTimeout  time.Duration
	sid          bool // an Engine.IO session is open
	nsError      string
	disconnects  int // Socket.IO server-initiated disconnects (41)
	binary       int64
	malformed    int64
	lastBad      string
}

func newLoop(cfg *checked, source feed.Source, what string) *loop {
	l := &loop{
		cfg:         cfg,
		source:      source,
		what:        what,
		jitter:      rand.Int64N,
		stallBefore: stallBeforeKeepAlives,
		stallFloor:  stallFloor,
		h:           netx.NewHealth(feed.Status{Source: source, Name: cfg.Name, URL: cfg.shownURL, Conn: cfg.Conn}),
	}
	l.record = feed.Record{Source: source, Kind: feed.KindEvent, Endpoint: cfg.Name, Conn: cfg.Conn}
	cfg.redirects.Followed = func(_ *http.Request, code int, shown string) {
		l.h.Emit(l.cur.sink, feed.StateConnecting, code, fmt.Sprintf("redirected (%d) to %s", code, shown), l.cur.attempt)
	}
	return l
}

// Path is the delivery path's name, e.g. "ws:app-1".
func (l *loop) Path() string { return feed.PathName(l.source, l.cfg.Name) }

// Connected is closed once the first connection was established.
func (l *loop) Connected() <-chan struct{} { return l.h.Connected() }

// Status copies the connection's health.
func (l *loop) Status() feed.Status {
	st := l.h.Status()
	l.mu.Lock()
	tr := l.tr
	lv := l.lv
	l.mu.Unlock()
	st.Details = tr.details(l.source)
	if lv != nil {
		st.LastByte, st.LastKeepAlive, st.StallAfter = lv.times()
	}
	if tr.skipped > 0 {
		st.Warnings = append(st.Warnings, fmt.Sprintf("%d messages over %s skipped", tr.skipped, sizeText(l.cfg.MaxMessage)))
	}
	return st
}

func (tr *transport) details(source feed.Source) []string {
	var d []string
	if source == feed.SourceSocketIO && tr.pingInterval > 0 {
		d = append(d, fmt.Sprintf("ping %s, timeout %s", tr.pingInterval, tr.pingTimeout))
	}
	if tr.rtt > 0 {
		d = append(d, fmt.Sprintf("ping rtt %s", roundDur(tr.rtt)))
	}
	if tr.lastClose != "" {
		d = append(d, tr.lastClose)
	}
	if tr.nsError != "" {
		d = append(d, "namespace error: "+tr.nsError)
	}
	if tr.disconnects > 0 {
		d = append(d, fmt.Sprintf("server disconnected the socket %d times", tr.disconnects))
	}
	if tr.binary > 0 {
		d = append(d, fmt.Sprintf("%d binary events", tr.binary))
	}
	if tr.malformed > 0 {
		d = append(d, fmt.Sprintf("%d malformed packets, last %s", tr.malformed, tr.lastBad))
	}
	return d
}

func roundDur(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

func sizeText(n int64) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

// run connects and keeps reconnecting until ctx ends (nil) or the endpoint
// refuses for good (an error wrapping ErrFatal).
func (l *loop) run(ctx context.Context, sink feed.Sink) error {
	sink, err := l.h.Start(sink)
	if err != nil {
		return err
	}
	failures, attempt := 0, 0
	for {
		attempt++
		l.h.Emit(sink, feed.StateConnecting, 0, "", attempt)
		lv := newLiveness(l.cfg.StallTimeout, l.stallBefore, l.stallFloor)
		l.mu.Lock()
		l.lv = lv
		l.mu.Unlock()
		l.cur.sink, l.cur.attempt = sink, attempt
		e := l.attempt(ctx, sink, lv, attempt)
		lv.stop()
		if ctx.Err() != nil {
			l.h.Stopped()
			return nil
		}
		if e.stalled {
			l.h.Update(func(st *feed.Status) { st.Stalls++ })
			l.h.Emit(sink, feed.StateStalled, 0, e.reason, attempt)
		}
		if e.fatal != nil {
			l.h.Emit(sink, feed.StateFailed, e.status, e.reason, attempt)
			return e.fatal
		}
		switch {
		case e.clean:
			failures = 0
		case e.connected && lv.lived() >= l.cfg.MaxBackoff:
			failures = 1 // it worked for a while: start the backoff again
		default:
			failures++
		}
		if e.connected {
			attempt = 0
			if !e.stalled {
				l.h.Emit(sink, feed.StateDisconnected, 0, e.reason, attempt)
			}
		}
		wait := netx.Backoff(l.cfg.MinBackoff, l.cfg.MaxBackoff, l.cfg.MinBackoff, failures, l.jitter)
		if e.retryAfter > wait {
			wait = min(e.retryAfter, maxRetryAfter)
		}
		l.h.Update(func(st *feed.Status) { st.Reconnects++ })
		l.h.Emit(sink, feed.StateReconnecting, e.status,
			fmt.Sprintf("%s (retry in %s)", e.reason, wait.Round(time.Millisecond)), attempt+1)
		if !netx.Sleep(ctx, wait) {
			l.h.Stopped()
			return nil
		}
	}
}

// noteConnected marks the connection established.
func (l *loop) noteConnected(sink feed.Sink, status, attempt int, start time.Time) {
	ttfb := time.Since(start)
	l.h.Update(func(st *feed.Status) { st.TTFB = ttfb })
	l.h.Emit(sink, feed.StateConnected, status, "", attempt)
}

// everConnected reports whether a connection was ever established.
func (l *loop) everConnected() bool { return l.h.EverConnected() }

// event sends one delivery. at is when its read returned.
func (l *loop) event(sink feed.Sink, at time.Time, typ, data string) {
	r := l.record
	r.TS, r.Type, r.Data = at, typ, data
	sink.Emit(r)
	l.h.Update(func(st *feed.Status) {
		st.Events++
		st.LastEvent = at
	})
}

// open makes the handshake and sets the connection up for reading: no
// library read limit (its own closes the connection with 1009; readMessage
// skips an oversized message instead and keeps going), and the stall
// watchdog armed to cancel cctx with errStalled. The caller closes conn
// and calls cancel.
func (l *loop) open(ctx context.Context, rawURL string, lv *liveness) (conn *websocket.Conn, cctx context.Context, cancel context.CancelCauseFunc, e *ending) {
	conn, e = l.dial(ctx, rawURL, lv, l.everConnected())
	if e != nil {
		return nil, nil, nil, e
	}
	conn.SetReadLimit(-1)
	cctx, cancel = context.WithCancelCause(ctx)
	lv.arm(time.Now(), func() { cancel(errStalled) })
	return conn, cctx, cancel, nil
}

// dial makes the WebSocket handshake. On failure it says why and whether
// retrying can help.
func (l *loop) dial(ctx context.Context, rawURL string, lv *liveness, everConnected bool) (*websocket.Conn, *ending) {
	dctx, cancel := context.WithTimeout(ctx, l.cfg.DialTimeout)
	defer cancel()
	opts := &websocket.DialOptions{
		HTTPClient:   l.cfg.HTTPClient,
		HTTPHeader:   l.cfg.header,
		Host:         l.cfg.host,
		Subprotocols: l.cfg.Subprotocols,
		OnPingReceived: func(context.Context, []byte) bool {
			lv.touch(time.Now(), true)
			return true
		},
		OnPongReceived: func(context.Context, []byte) { lv.touch(time.Now(), true) },
	}
	conn, resp, err := websocket.Dial(dctx, rawURL, opts)
	if err == nil {
		return conn, nil
	}
	if ctx.Err() != nil {
		return nil, &ending{reason: "stopped"}
	}
	var redirect *netx.RedirectError
	if errors.As(err, &redirect) {
		return nil, &ending{status: redirect.Status, reason: redirect.Reason, fatal: l.fatal(redirect.Reason)}
	}
	if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols && resp.StatusCode != 0 {
		return nil, l.refused(resp)
	}
	if reason, ok := netx.Unrecoverable(err, everConnected, "check the URL"); ok {
		return nil, &ending{reason: reason, fatal: l.fatal(reason)}
	}
	switch {
	case resp != nil:
		reason := "handshake: " + secrets.Reason(err)
		return nil, &ending{status: resp.StatusCode, reason: reason, fatal: l.fatal(reason)}
	case errors.Is(dctx.Err(), context.DeadlineExceeded):
		return nil, &ending{reason: fmt.Sprintf("handshake timed out after %s", l.cfg.DialTimeout)}
	}
	return nil, &ending{reason: "dial: " + trimWrap(secrets.Reason(err))}
}

// trimWrap drops coder/websocket's "failed to …:" prefixes, which say
// nothing a user can act on.
func trimWrap(s string) string {
	for strings.HasPrefix(s, "failed to ") {
		i := strings.Index(s, ": ")
		if i < 0 {
			break
		}
		s = s[i+2:]
	}
	return s
}

// refused classifies a handshake answered with something other than 101.
func (l *loop) refused(resp *http.Response) *ending {
	hint := "check the URL path"
	if l.source == feed.SourceSocketIO {
		hint = "check the URL and --socketio-path"
	}
	r := netx.Refused(resp, netx.BodySnippet(resp), hint, time.Now())
	if r.Retry {
		return &ending{status: resp.StatusCode, reason: r.Reason, retryAfter: r.RetryAfter}
	}
	if resp.StatusCode < 400 {
		r.Reason = "not a WebSocket endpoint: the upgrade was answered " + r.Reason
	}
	return &ending{status: resp.StatusCode, reason: r.Reason, fatal: l.fatal(r.Reason)}
}

func (l *loop) fatal(reason string) error {
	return fatalErrorf("connect to %s %s (%s): %s", l.what, l.cfg.Name, l.cfg.shownURL, reason)
}

// closeText names a close code: "close 1011 internal error: boom".
func closeText(ce websocket.CloseError) string {
	s := fmt.Sprintf("close %d", int(ce.Code))
	if n := closeNames[ce.Code]; n != "" {
		s += " " + n
	}
	if ce.Reason != "" {
		s += ": " + ce.Reason
	}
	return s
}

var closeNames = map[websocket.StatusCode]string{
	websocket.StatusNormalClosure:           "normal closure",
	websocket.StatusGoingAway:               "going away",
	websocket.StatusProtocolError:           "protocol error",
	websocket.StatusUnsupportedData:         "unsupported data",
	websocket.StatusNoStatusRcvd:            "no status",
	websocket.StatusAbnormalClosure:         "abnormal closure",
	websocket.StatusInvalidFramePayloadData: "invalid payload",
	websocket.StatusPolicyViolation:         "policy violation",
	websocket.StatusMessageTooBig:           "message too big",
	websocket.StatusMandatoryExtension:      "mandatory extension",
	websocket.StatusInternalError:           "internal error",
	websocket.StatusServiceRestart:          "service restart",
	websocket.StatusTryAgainLater:           "try again later",
	websocket.StatusBadGateway:              "bad gateway",
}

// readEnded says why reading a connection failed: the caller stopped, the
// watchdog dropped it, the server closed it (with a code), or it broke.
func (l *loop) readEnded(ctx, cctx context.Context, lv *liveness, err error) *ending {
	e := &ending{connected: true}
	var ce websocket.CloseError
	switch {
	case ctx.Err() != nil:
		e.reason = "stopped"
	case errors.Is(context.Cause(cctx), errStalled):
		e.stalled = true
		e.reason = fmt.Sprintf("stalled: nothing received for %s", lv.threshold())
	case errors.As(err, &ce):
		text := closeText(ce)
		l.mu.Lock()
		l.tr.lastClose = text
		l.mu.Unlock()
		switch ce.Code {
		case websocket.StatusNormalClosure, websocket.StatusGoingAway:
			e.clean = true
			e.reason = "server closed the connection: " + text
		case websocket.StatusPolicyViolation:
			e.reason = "server refused: " + text
			e.fatal = l.fatal(e.reason)
		default:
			e.reason = "server closed the connection: " + text
		}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		e.reason = "connection lost without a close frame (1006)"
		l.mu.Lock()
		l.tr.lastClose = "close 1006 abnormal closure (no close frame)"
		l.mu.Unlock()
	default:
		e.reason = "read: " + trimWrap(secrets.Reason(err))
	}
	return e
}

// readMessage reads one message into l.buf, up to the size limit; over is
// true when it was larger (then it was read to its end and dropped).
func (l *loop) readMessage(r io.Reader, lv *liveness) (data []byte, over bool, err error) {
	tr := touchReader{r: r, lv: lv}
	limit := l.cfg.MaxMessage
	b := l.buf[:0]
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := tr.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if int64(len(b)) > limit {
			_, err := io.Copy(io.Discard, tr)
			l.keep(b)
			return nil, true, err
		}
		if err == io.EOF {
			l.keep(b)
			return b, false, nil
		}
		if err != nil {
			l.keep(b)
			return nil, false, err
		}
	}
}

// keep holds on to the message buffer for the next message unless it grew
// large: thousands of connections should not each keep 16 MiB.
func (l *loop) keep(b []byte) {
	if cap(b) <= 1<<20 {
		l.buf = b[:0]
	} else {
		l.buf = nil
	}
}

// touchReader tells the watchdog about every read, so a large message
// arriving slowly is not taken for a stall.
type touchReader struct {
	r  io.Reader
	lv *liveness
}

func (t touchReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n > 0 {
		t.lv.touch(time.Now(), false)
	}
	return n, err
}

// liveness is one connection's stall watchdog: it keeps the time of the
// last bytes, the longest gap between them and the keep-alives seen, and
// drops the connection when nothing came for the threshold.
type liveness struct {
	mu         sync.Mutex
	fixed      time.Duration // > 0: a fixed threshold; < 0: off; 0: adaptive
	before     time.Duration // adaptive threshold until two keep-alives came
	floor      time.Duration // least adaptive threshold after that
	start      time.Time
	last       time.Time // last bytes
	lastKA     time.Time // last keep-alive
	keepAlives int
	maxGap     time.Duration
	timer      *time.Timer
	drop       func()
	stopped    bool
}

func newLiveness(fixed, before, floor time.Duration) *liveness {
	return &liveness{fixed: fixed, before: before, floor: floor}
}

// arm starts watching at start; drop is called once when the threshold
// passes with nothing received.
func (lv *liveness) arm(start time.Time, drop func()) {
	lv.mu.Lock()
	defer lv.mu.Unlock()
	lv.start, lv.last, lv.drop = start, start, drop
	if th := lv.thresholdLocked(); th > 0 && !lv.stopped {
		lv.timer = time.AfterFunc(th, lv.check)
	}
}

// setFixed fixes the threshold (Socket.IO's pingInterval + pingTimeout)
// unless the user fixed one.
func (lv *liveness) setFixed(d time.Duration) {
	lv.mu.Lock()
	defer lv.mu.Unlock()
	if lv.fixed == 0 {
		lv.fixed = d
		lv.rearmLocked()
	}
}

func (lv *liveness) touch(at time.Time, keepAlive bool) {
	lv.mu.Lock()
	defer lv.mu.Unlock()
	if lv.last.IsZero() {
		return // not connected yet
	}
	if gap := at.Sub(lv.last); gap > lv.maxGap {
		lv.maxGap = gap
	}
	if at.After(lv.last) {
		lv.last = at
	}
	if keepAlive {
		lv.lastKA = at
		lv.keepAlives++
		// The threshold may have shrunk (45 s until now); re-arm from here.
		lv.rearmLocked()
	}
}

func (lv *liveness) rearmLocked() {
	if lv.timer == nil || lv.stopped {
		if lv.timer == nil && !lv.stopped && lv.drop != nil {
			if th := lv.thresholdLocked(); th > 0 {
				lv.timer = time.AfterFunc(th-time.Since(lv.last), lv.check)
			}
		}
		return
	}
	if th := lv.thresholdLocked(); th > 0 {
		lv.timer.Reset(th - time.Since(lv.last))
	}
}

func (lv *liveness) threshold() time.Duration {
	lv.mu.Lock()
	defer lv.mu.Unlock()
	return lv.thresholdLocked()
}

func (lv *liveness) thresholdLocked() time.Duration {
	return netx.StallThreshold(lv.fixed, int64(lv.keepAlives), lv.maxGap, lv.before, lv.floor)
}

func (lv *liveness) check() {
	lv.mu.Lock()
	defer lv.mu.Unlock()
	if lv.stopped {
		return
	}
	th := lv.thresholdLocked()
	if th <= 0 {
		return
	}
	idle := time.Since(lv.last)
	if idle >= th {
		lv.stopped = true
		lv.drop()
		return
	}
	lv.timer.Reset(th - idle)
}

func (lv *liveness) stop() {
	lv.mu.Lock()
	defer lv.mu.Unlock()
	lv.stopped = true
	if lv.timer != nil {
		lv.timer.Stop()
	}
}

// lived is how long the connection was up.
func (lv *liveness) lived() time.Duration {
	lv.mu.Lock()
	defer lv.mu.Unlock()
	if lv.start.IsZero() {
		return 0
	}
	return lv.last.Sub(lv.start)
}

func (lv *liveness) times() (last, lastKA time.Time, threshold time.Duration) {
	lv.mu.Lock()
	defer lv.mu.Unlock()
	return lv.last, lv.lastKA, lv.thresholdLocked()
}
