// Package pollx is fanscope's polling side of the wire (--poll): a client
// that GETs a URL every interval with conditional requests (If-None-Match,
// If-Modified-Since) and reports every changed body as an event record.
// 304s and unchanged bodies are counted, not recorded; 429 and 5xx back
// off, honouring Retry-After. A poll body is a snapshot: the probe engine,
// not this package, decides that a token counts once, at the first body
// that holds it.
package pollx

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/internal/netx"
)

var (
	// ErrUsage marks a bad --poll value or option (exit status 2).
	ErrUsage = errors.New("invalid poll endpoint or option")
	// ErrFatal marks an endpoint that refused for good: 401, 403, 404 and
	// other 4xx (but not 408 or 429), or a TLS certificate that cannot be
	// verified (exit status 3). Retrying would not help.
	ErrFatal = errors.New("poll endpoint refused the request")
)

// Defaults for Config fields left zero.
const (
	DefaultInterval   = 5 * time.Second
	DefaultMaxBody    = 16 << 20
	DefaultMaxBackoff = 5 * time.Minute
	DefaultTimeout    = 30 * time.Second
)

// maxRetryAfter bounds a server's Retry-After.
const maxRetryAfter = 10 * time.Minute

type kindError struct {
	kind error
	err  error
}

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.kind, e.err} }

func usageErrorf(format string, args ...any) error {
	return &kindError{kind: ErrUsage, err: fmt.Errorf(format, args...)}
}

// ParseEndpoint splits a --poll flag value "[NAME=]URL" into the
// endpoint's name and URL. NAME defaults to the URL's host:port; http and
// https URLs are accepted. Errors wrap ErrUsage and never quote a secret.
func ParseEndpoint(flag string) (name, rawURL string, err error) {
	name, rawURL, err = netx.SplitEndpoint(flag, "poll endpoint", "http", "https")
	if err != nil {
		return "", "", &kindError{kind: ErrUsage, err: err}
	}
	return name, rawURL, nil
}

// Config describes one polled URL.
type Config struct {
	Name string // display name; defaults to the URL's host:port
	URL  string // http:// or https://
	Conn int    // index when several clients poll one endpoint

	// Header is sent with every request ("Authorization: Bearer …" for
	// --bearer-env). A "Host" entry sets the request's Host.
	Header http.Header

	// TLSCA (a PEM file) and TLSInsecure configure the transport; they are
	// ignored when HTTPClient is set.
	TLSCA       string
	TLSInsecure bool
	HTTPClient  *http.Client

	Interval   time.Duration // between polls (--poll-interval); 0: DefaultInterval
	MaxBody    int64         // larger bodies are counted and skipped; 0: DefaultMaxBody
	MaxBackoff time.Duration // cap of the backoff on failures; 0: DefaultMaxBackoff
	Timeout    time.Duration // one request; 0: DefaultTimeout
}

// Client polls one URL.
type Client struct {
	cfg      Config
	shownURL string
	host     string
	header   http.Header
	hc       *http.Client
	scrub    *netx.Scrubber
	seed     maphash.Seed
	jitter   func(int64) int64

	connected     chan struct{}
	connectedOnce sync.Once
	running       atomic.Bool

	// Conditional request state; only the Run goroutine touches it.
	etag, lastModified string
	lastHash           uint64
	haveBody           bool

	mu sync.Mutex
	st feed.Status // guarded by mu
	ct counts      // guarded by mu
}

type counts struct {
	polls, notModified, unchanged, changed, tooLarge int64
}

// NewClient checks cfg and returns a client ready to Run. Errors wrap ErrUsage.
func NewClient(cfg Config) (*Client, error) {
	u, err := netx.CheckURL(cfg.URL, "http", "https")
	if err != nil {
		return nil, usageErrorf("poll endpoint %q: %w", cfg.Name, err)
	}
	if cfg.Name == "" {
		cfg.Name = netx.HostPort(u)
	}
	if err := netx.CheckHeader(cfg.Header); err != nil {
		return nil, usageErrorf("poll endpoint %s: %w", cfg.Name, err)
	}
	for _, d := range []struct {
		v    *time.Duration
		def  time.Duration
		name string
	}{
		{&cfg.Interval, DefaultInterval, "interval"},
		{&cfg.MaxBackoff, DefaultMaxBackoff, "max backoff"},
		{&cfg.Timeout, DefaultTimeout, "timeout"},
	} {
		if *d.v == 0 {
			*d.v = d.def
		}
		if *d.v < 0 {
			return nil, usageErrorf("poll endpoint %s: %s %s is negative", cfg.Name, d.name, *d.v)
		}
	}
	if cfg.MaxBody == 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.MaxBody < 0 {
		return nil, usageErrorf("poll endpoint %s: max body size %d is negative", cfg.Name, cfg.MaxBody)
	}
	c := &Client{
		cfg:       cfg,
		shownURL:  netx.RedactURL(u),
		header:    http.Header{},
		scrub:     netx.NewScrubber(u, cfg.Header),
		seed:      maphash.MakeSeed(),
		jitter:    rand.Int64N,
		connected: make(chan struct{}),
		hc:        cfg.HTTPClient,
	}
	for k, vs := range cfg.Header {
		if http.CanonicalHeaderKey(k) == "Host" {
			if len(vs) > 0 {
				c.host = vs[len(vs)-1]
			}
			continue
		}
		c.header[http.CanonicalHeaderKey(k)] = append([]string(nil), vs...)
	}
	if c.hc == nil {
		t, err := netx.Transport(cfg.TLSCA, cfg.TLSInsecure)
		if err != nil {
			return nil, usageErrorf("poll endpoint %s: %w", cfg.Name, err)
		}
		c.hc = &http.Client{Transport: t}
	}
	c.st = feed.Status{Source: feed.SourcePoll, Name: cfg.Name, URL: c.shownURL, Conn: cfg.Conn, State: feed.StateDisconnected}
	return c, nil
}

// Path is the delivery path's name, "poll:NAME".
func (c *Client) Path() string { return feed.PathName(feed.SourcePoll, c.cfg.Name) }

// Connected is closed once a poll first succeeded.
func (c *Client) Connected() <-chan struct{} { return c.connected }

// Interval is the time between polls: a probe's latency on this path is
// bounded by it, so it belongs next to the latency.
func (c *Client) Interval() time.Duration { return c.cfg.Interval }

// Status copies the poller's health. Details: the interval, the 304 share,
// unchanged and oversized bodies, the last change.
func (c *Client) Status() feed.Status {
	c.mu.Lock()
	st, ct := c.st, c.ct
	c.mu.Unlock()
	st.Details = []string{fmt.Sprintf("interval %s", c.cfg.Interval)}
	if ct.polls > 0 {
		st.Details = append(st.Details, fmt.Sprintf("304 on %d of %d polls", ct.notModified, ct.polls))
	}
	if ct.unchanged > 0 {
		st.Details = append(st.Details, fmt.Sprintf("%d unchanged bodies", ct.unchanged))
	}
	if !st.LastEvent.IsZero() {
		st.Details = append(st.Details, "last change "+st.LastEvent.Format("15:04:05"))
	}
	if ct.tooLarge > 0 {
		st.Warnings = append(st.Warnings, fmt.Sprintf("%d bodies over %d bytes skipped", ct.tooLarge, c.cfg.MaxBody))
	}
	return st
}

// result is how one poll went.
type result struct {
	status     int
	ok         bool // 200 or 304
	reason     string
	fatal      error
	retryAfter time.Duration
}

// Run polls until ctx ends (then it returns nil) or the endpoint refuses
// for good (then it returns an error wrapping ErrFatal). Polls start on a
// fixed cadence; after a failure the next waits for the backoff (the
// interval doubling per failure, with jitter, up to MaxBackoff) or the
// server's Retry-After, whichever is longer. Run may be called once.
func (c *Client) Run(ctx context.Context, sink feed.Sink) error {
	if !c.running.CompareAndSwap(false, true) {
		return fmt.Errorf("run poll endpoint %s: already running", c.cfg.Name)
	}
	if sink == nil {
		sink = feed.SinkFunc(func(feed.Record) {})
	}
	failures, attempt := 0, 1
	up := false
	c.emitState(sink, feed.StateConnecting, 0, "", attempt)
	for {
		started := time.Now()
		res := c.poll(ctx, sink)
		if ctx.Err() != nil {
			c.setState(feed.StateDisconnected)
			return nil
		}
		if res.fatal != nil {
			c.emitState(sink, feed.StateFailed, res.status, res.reason, attempt)
			return res.fatal
		}
		var wait time.Duration
		if res.ok {
			failures, attempt = 0, 1
			if !up {
				up = true
				c.connectedOnce.Do(func() { close(c.connected) })
				c.emitState(sink, feed.StateConnected, res.status, "", 1)
			}
			wait = time.Until(started.Add(c.cfg.Interval))
		} else {
			failures++
			attempt++
			up = false
			wait = netx.Backoff(c.cfg.Interval, max(c.cfg.MaxBackoff, c.cfg.Interval), failures, c.jitter)
			if res.retryAfter > wait {
				wait = min(res.retryAfter, maxRetryAfter)
			}
			c.mu.Lock()
			c.st.Reconnects++
			c.mu.Unlock()
			c.emitState(sink, feed.StateReconnecting, res.status,
				fmt.Sprintf("%s (retry in %s)", res.reason, wait.Round(time.Millisecond)), attempt)
		}
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				c.setState(feed.StateDisconnected)
				return nil
			case <-t.C:
			}
		}
	}
}

// poll makes one request and reports a changed body.
func (c *Client) poll(ctx context.Context, sink feed.Sink) result {
	rctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, c.cfg.URL, nil)
	if err != nil {
		reason := "build request: " + c.scrub.Scrub(netx.Unwrap(err).Error())
		return result{reason: reason, fatal: c.fatal(reason)}
	}
	req.Header = c.header.Clone()
	if c.host != "" {
		req.Host = c.host
	}
	if c.etag != "" {
		req.Header.Set("If-None-Match", c.etag)
	}
	if c.lastModified != "" {
		req.Header.Set("If-Modified-Since", c.lastModified)
	}
	start := time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		return c.requestFailed(ctx, rctx, err)
	}
	defer resp.Body.Close()
	c.mu.Lock()
	c.ct.polls++
	c.st.HTTPStatus = resp.StatusCode
	c.st.TTFB = time.Since(start)
	c.mu.Unlock()
	switch code := resp.StatusCode; {
	case code == http.StatusNotModified:
		now := time.Now()
		c.mu.Lock()
		c.ct.notModified++
		c.st.LastByte = now
		c.mu.Unlock()
		return result{status: code, ok: true}
	case code == http.StatusOK:
		return c.body(sink, resp)
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests, code >= 500:
		return result{status: code, reason: netx.StatusText(code) + bodySnippet(resp),
			retryAfter: netx.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
	case code >= 200 && code < 300:
		// 204 and friends: nothing to compare; count the poll as fine.
		return result{status: code, ok: true}
	default:
		reason := netx.StatusText(code) + bodySnippet(resp)
		switch code {
		case http.StatusUnauthorized:
			reason += " (check -H/--bearer-env)"
		case http.StatusForbidden:
			reason += " (the credentials sent lack access; check -H/--bearer-env)"
		case http.StatusNotFound:
			reason += " (check the --poll URL path)"
		}
		return result{status: code, reason: reason, fatal: c.fatal(reason)}
	}
}

// body reads a 200's body and emits it when it changed.
func (c *Client) body(sink feed.Sink, resp *http.Response) result {
	b, err := io.ReadAll(io.LimitReader(resp.Body, c.cfg.MaxBody+1))
	at := time.Now()
	if err != nil {
		return result{status: resp.StatusCode, reason: "read body: " + c.scrub.Scrub(netx.Unwrap(err).Error())}
	}
	c.mu.Lock()
	c.st.LastByte = at
	c.mu.Unlock()
	if int64(len(b)) > c.cfg.MaxBody {
		// Not remembered: its validators would turn the next polls into
		// 304s for a body never seen.
		c.mu.Lock()
		c.ct.tooLarge++
		c.mu.Unlock()
		return result{status: resp.StatusCode, ok: true}
	}
	c.etag = resp.Header.Get("ETag")
	c.lastModified = resp.Header.Get("Last-Modified")
	h := maphash.Bytes(c.seed, b)
	if c.haveBody && h == c.lastHash {
		c.mu.Lock()
		c.ct.unchanged++
		c.mu.Unlock()
		return result{status: resp.StatusCode, ok: true}
	}
	c.haveBody, c.lastHash = true, h
	sink.Emit(feed.Record{
		TS:       at,
		Source:   feed.SourcePoll,
		Kind:     feed.KindEvent,
		Endpoint: c.cfg.Name,
		Conn:     c.cfg.Conn,
		Type:     "message",
		ID:       c.etag,
		Data:     string(b),
		Status:   resp.StatusCode,
	})
	c.mu.Lock()
	c.ct.changed++
	c.st.Events++
	c.st.LastEvent = at
	c.mu.Unlock()
	return result{status: resp.StatusCode, ok: true}
}

// requestFailed classifies an error from sending the request.
func (c *Client) requestFailed(ctx, rctx context.Context, err error) result {
	if ctx.Err() != nil {
		return result{reason: "stopped"}
	}
	err = netx.Unwrap(err)
	if reason, ok := netx.TLSProblem(err); ok {
		return result{reason: reason, fatal: c.fatal(reason)}
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) && dnsErr.IsNotFound && !c.everConnected() {
		reason := fmt.Sprintf("host %q not found (check the --poll URL)", dnsErr.Name)
		return result{reason: reason, fatal: c.fatal(reason)}
	}
	if errors.Is(rctx.Err(), context.DeadlineExceeded) {
		return result{reason: fmt.Sprintf("no response within %s", c.cfg.Timeout)}
	}
	return result{reason: "GET: " + c.scrub.Scrub(err.Error())}
}

func (c *Client) everConnected() bool {
	select {
	case <-c.connected:
		return true
	default:
		return false
	}
}

func (c *Client) fatal(reason string) error {
	return &kindError{kind: ErrFatal, err: fmt.Errorf("poll endpoint %s (%s): %s", c.cfg.Name, c.shownURL, c.scrub.Scrub(reason))}
}

// bodySnippet is the start of an error response's body as `: "text"`, or "".
func bodySnippet(resp *http.Response) string {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	s := strings.TrimSpace(strings.ToValidUTF8(string(b), "\uFFFD"))
	if s == "" {
		return ""
	}
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i] + " …"
	}
	return fmt.Sprintf(": %q", s)
}

func (c *Client) emitState(sink feed.Sink, state string, status int, errText string, attempt int) {
	now := time.Now()
	errText = c.scrub.Scrub(errText)
	c.mu.Lock()
	c.st.State = state
	c.st.Attempt = attempt
	switch state {
	case feed.StateConnected:
		c.st.Error = ""
		c.st.ConnectedAt = now
	case feed.StateConnecting:
	default:
		c.st.ConnectedAt = time.Time{}
		if errText != "" {
			c.st.Error = errText
		}
	}
	c.mu.Unlock()
	sink.Emit(feed.Record{
		TS:       now,
		Source:   feed.SourcePoll,
		Kind:     feed.KindState,
		Endpoint: c.cfg.Name,
		Conn:     c.cfg.Conn,
		State:    state,
		Status:   status,
		Error:    errText,
		Attempt:  attempt,
	})
}

func (c *Client) setState(state string) {
	c.mu.Lock()
	c.st.State = state
	c.st.ConnectedAt = time.Time{}
	c.mu.Unlock()
}
