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
	"net/http"
	"sync"
	"time"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/internal/netx"
	"github.com/fanscope/fanscope/internal/secrets"
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

func usageErrorf(format string, args ...any) error {
	return netx.Errorf(ErrUsage, format, args...)
}

// ParseEndpoint splits a --poll flag value "[NAME=]URL" into the
// endpoint's name and URL. NAME defaults to the URL's host:port; http and
// https URLs are accepted. Errors wrap ErrUsage and never quote a secret.
func ParseEndpoint(flag string) (name, rawURL string, err error) {
	return netx.SplitEndpoint(flag, "poll endpoint", ErrUsage, "http", "https")
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
	// ignored when HTTPClient is set. The client is copied with fanscope's
	// redirect policy (credentials stay with the origin named).
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
	seed     maphash.Seed
	jitter   func(int64) int64
	h        *netx.Health // the Status, the Connected signal and state records

	// Conditional request state; only the Run goroutine touches it.
	etag, lastModified string
	lastHash           uint64
	haveBody           bool

	mu sync.Mutex
	ct counts // guarded by mu
}

type counts struct {
	polls, notModified, unchanged, changed, tooLarge int64
}

// NewClient checks cfg and returns a client ready to Run. Errors wrap ErrUsage.
func NewClient(cfg Config) (*Client, error) {
	ep, err := netx.CheckEndpoint("poll endpoint", cfg.Name, cfg.URL, cfg.Header, nil, ErrUsage, "http", "https")
	if err != nil {
		return nil, err
	}
	cfg.Name = ep.Name
	if err := netx.SetDurations(
		netx.Duration{V: &cfg.Interval, Default: DefaultInterval, Name: "interval"},
		netx.Duration{V: &cfg.MaxBackoff, Default: DefaultMaxBackoff, Name: "max backoff"},
		netx.Duration{V: &cfg.Timeout, Default: DefaultTimeout, Name: "timeout"},
	); err != nil {
		return nil, usageErrorf("poll endpoint %s: %w", cfg.Name, err)
	}
	if cfg.MaxBody == 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.MaxBody < 0 {
		return nil, usageErrorf("poll endpoint %s: max body size %d is negative", cfg.Name, cfg.MaxBody)
	}
	c := &Client{
		cfg:      cfg,
		shownURL: ep.Shown,
		header:   ep.Header,
		host:     ep.Host,
		seed:     maphash.MakeSeed(),
		jitter:   rand.Int64N,
		h:        netx.NewHealth(feed.Status{Source: feed.SourcePoll, Name: cfg.Name, URL: ep.Shown, Conn: cfg.Conn}),
	}
	// Credentials stay with the origin the user named (netx.Redirects).
	c.hc, err = netx.Client(cfg.HTTPClient, cfg.TLSCA, cfg.TLSInsecure,
		&netx.Redirects{Schemes: []string{"http", "https"}, UserHeaders: ep.Names})
	if err != nil {
		return nil, usageErrorf("poll endpoint %s: %w", cfg.Name, err)
	}
	return c, nil
}

// Path is the delivery path's name, "poll:NAME".
func (c *Client) Path() string { return feed.PathName(feed.SourcePoll, c.cfg.Name) }

// Connected is closed once a poll first succeeded.
func (c *Client) Connected() <-chan struct{} { return c.h.Connected() }

// Interval is the time between polls: a probe's latency on this path is
// bounded by it, so it belongs next to the latency.
func (c *Client) Interval() time.Duration { return c.cfg.Interval }

// Status copies the poller's health. Details: the interval, the 304 share,
// unchanged and oversized bodies, the last change.
func (c *Client) Status() feed.Status {
	st := c.h.Status()
	c.mu.Lock()
	ct := c.ct
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
	sink, err := c.h.Start(sink)
	if err != nil {
		return err
	}
	failures, attempt := 0, 1
	up := false
	c.h.Emit(sink, feed.StateConnecting, 0, "", attempt)
	for {
		started := time.Now()
		res := c.poll(ctx, sink)
		if ctx.Err() != nil {
			c.h.Stopped()
			return nil
		}
		if res.fatal != nil {
			c.h.Emit(sink, feed.StateFailed, res.status, res.reason, attempt)
			return res.fatal
		}
		var wait time.Duration
		if res.ok {
			failures, attempt = 0, 1
			if !up {
				up = true
				c.h.Emit(sink, feed.StateConnected, res.status, "", 1)
			}
			wait = time.Until(started.Add(c.cfg.Interval))
		} else {
			failures++
			attempt++
			up = false
			wait = netx.Backoff(c.cfg.Interval, c.cfg.MaxBackoff, c.cfg.Interval, failures, c.jitter)
			if res.retryAfter > wait {
				wait = min(res.retryAfter, maxRetryAfter)
			}
			c.h.Update(func(st *feed.Status) { st.Reconnects++ })
			c.h.Emit(sink, feed.StateReconnecting, res.status,
				fmt.Sprintf("%s (retry in %s)", res.reason, wait.Round(time.Millisecond)), attempt)
		}
		if !netx.Sleep(ctx, wait) {
			c.h.Stopped()
			return nil
		}
	}
}

// poll makes one request and reports a changed body.
func (c *Client) poll(ctx context.Context, sink feed.Sink) result {
	rctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, c.cfg.URL, nil)
	if err != nil {
		reason := "build request: " + secrets.Reason(err)
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
	ttfb := time.Since(start)
	c.mu.Lock()
	c.ct.polls++
	c.mu.Unlock()
	c.h.Update(func(st *feed.Status) {
		st.HTTPStatus = resp.StatusCode
		st.TTFB = ttfb
	})
	switch code := resp.StatusCode; {
	case code == http.StatusNotModified:
		now := time.Now()
		c.mu.Lock()
		c.ct.notModified++
		c.mu.Unlock()
		c.h.Update(func(st *feed.Status) { st.LastByte = now })
		return result{status: code, ok: true}
	case code == http.StatusOK:
		return c.body(sink, resp)
	case code >= 200 && code < 300:
		// 204 and friends: nothing to compare; count the poll as fine.
		return result{status: code, ok: true}
	default:
		r := netx.Refused(resp, netx.BodySnippet(resp), "check the --poll URL path", time.Now())
		if r.Retry {
			return result{status: code, reason: r.Reason, retryAfter: r.RetryAfter}
		}
		return result{status: code, reason: r.Reason, fatal: c.fatal(r.Reason)}
	}
}

// body reads a 200's body and emits it when it changed.
func (c *Client) body(sink feed.Sink, resp *http.Response) result {
	b, err := io.ReadAll(io.LimitReader(resp.Body, c.cfg.MaxBody+1))
	at := time.Now()
	if err != nil {
		return result{status: resp.StatusCode, reason: "read body: " + secrets.Reason(err)}
	}
	c.h.Update(func(st *feed.Status) { st.LastByte = at })
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
	c.mu.Unlock()
	c.h.Update(func(st *feed.Status) {
		st.Events++
		st.LastEvent = at
	})
	return result{status: resp.StatusCode, ok: true}
}

// requestFailed classifies an error from sending the request.
func (c *Client) requestFailed(ctx, rctx context.Context, err error) result {
	if ctx.Err() != nil {
		return result{reason: "stopped"}
	}
	var redirect *netx.RedirectError
	if errors.As(err, &redirect) {
		return result{status: redirect.Status, reason: redirect.Reason, fatal: c.fatal(redirect.Reason)}
	}
	if reason, ok := netx.Unrecoverable(err, c.h.EverConnected(), "check the --poll URL"); ok {
		return result{reason: reason, fatal: c.fatal(reason)}
	}
	if errors.Is(rctx.Err(), context.DeadlineExceeded) {
		return result{reason: fmt.Sprintf("no response within %s", c.cfg.Timeout)}
	}
	return result{reason: "GET: " + secrets.Reason(err)}
}

func (c *Client) fatal(reason string) error {
	return netx.Errorf(ErrFatal, "poll endpoint %s (%s): %s", c.cfg.Name, c.shownURL, reason)
}
