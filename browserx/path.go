package browserx

import (
	"context"
	"encoding/json"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/fanscope/fanscope/feed"
)

// MaxConnsPerEndpoint is the most connections (tabs) a browser endpoint
// may have: each is a Chromium tab costing tens of MB, and Chromium holds
// at most six HTTP/1.1 connections per host anyway.
const MaxConnsPerEndpoint = 6

// CheckConns refuses K connections per endpoint above MaxConnsPerEndpoint
// for browser paths.
func CheckConns(k int) error {
	if k > MaxConnsPerEndpoint {
		return usageErrorf("%d connections per endpoint: browser paths open one Chromium tab per connection, at most %d per endpoint (each tab costs tens of MB, and Chromium holds at most 6 HTTP/1.1 connections per host, so more would only wait); use --sse for many connections", k, MaxConnsPerEndpoint)
	}
	return nil
}

// chromiumRetry is Chromium's fixed EventSource reconnect delay; fanscope
// reopens after it when Chromium gave up on a 5xx (see onResponse).
const chromiumRetry = 3 * time.Second

// closeGrace is how long a closed EventSource waits for the network event
// that says why before it fails with what is known.
const closeGrace = 500 * time.Millisecond

// bindingES is the page function the tab's script calls with EventSource
// open and error events.
const bindingES = "__fanscopeES"

// PathConfig is one browser connection: --browser [NAME=]URL with the
// browser flags.
type PathConfig struct {
	Name string // endpoint name: the path is "browser:NAME"; default host:port
	URL  string // the event stream, http or https
	Conn int    // connection index when K connections go to one endpoint
	// Header (-H) is sent with every request of the tab, through CDP
	// Network.setExtraHTTPHeaders. Cross-origin, such headers make
	// Chromium send a CORS preflight, which the endpoint must allow.
	Header http.Header
	// Cookies (--browser-cookie) are set for the URL before the tab
	// connects. Cross-origin, the EventSource is opened withCredentials
	// so they are sent, as an app with cookie sessions must do.
	Cookies []Cookie
	// Origin is --browser-origin: the page that opens the EventSource
	// belongs to this origin instead of the URL's own, to test CORS.
	Origin string
	// WaitAfter is how long a request may go unanswered while the
	// EventSource stays CONNECTING before it is reported waiting; default
	// 2s.
	WaitAfter time.Duration
}

// Path is one tab holding new EventSource(URL). It implements
// session.Source.
type Path struct {
	tab
	cfg        PathConfig
	u          *url.URL
	shown      string // URL with secrets masked
	pageOrigin string
	hostPort   string

	// Guarded by tab's mu:
	req       network.RequestID // the EventSource's current request
	reqSent   time.Time
	reqTS     float64
	responded bool
	holdsConn bool // counted in the browser's open connections to hostPort
	waiting   bool
	netErr    string    // why the last request ended
	reopenAt  time.Time // Chromium gave up after a 5xx; fanscope reopens then
	closedAt  time.Time // the EventSource closed before the network said why
	lostAt    time.Time // the EventSource lost its stream; reconnecting not yet reported
}

// NewPath checks cfg and returns the path; nothing starts before Run.
func NewPath(b *Browser, cfg PathConfig) (*Path, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usageErrorf("--browser %q: want an http:// or https:// URL of an event stream", maskRaw(cfg.URL))
	}
	if cfg.Name == "" {
		cfg.Name = u.Host
	}
	if cfg.WaitAfter <= 0 {
		cfg.WaitAfter = 2 * time.Second
	}
	for k, vs := range cfg.Header {
		for _, v := range vs {
			if strings.ContainsAny(v, "\r\n") || k == "" {
				return nil, usageErrorf("--browser %s: header %q has an invalid name or value", cfg.Name, k)
			}
		}
	}
	shown := maskURL(u)
	p := &Path{
		tab: newTab(b, fmt.Sprintf("browser endpoint %s (%s)", cfg.Name, shown),
			feed.Status{Source: feed.SourceBrowser, Name: cfg.Name, URL: shown, Conn: cfg.Conn}),
		cfg: cfg, u: u, shown: shown, pageOrigin: origin(u), hostPort: hostPort(u),
	}
	if cfg.Origin != "" {
		o, err := parseOrigin(cfg.Origin)
		if err != nil {
			return nil, &kindError{kinds: []error{ErrUsage}, err: err}
		}
		p.pageOrigin = o
	}
	return p, nil
}

// NewPaths returns k paths (connections 0..k-1) to one endpoint, refusing
// k above MaxConnsPerEndpoint.
func NewPaths(b *Browser, cfg PathConfig, k int) ([]*Path, error) {
	if err := CheckConns(k); err != nil {
		return nil, err
	}
	paths := make([]*Path, 0, k)
	for i := range max(k, 1) {
		c := cfg
		c.Conn = i
		p, err := NewPath(b, c)
		if err != nil {
			return nil, err
		}
		paths = append(paths, p)
	}
	return paths, nil
}

func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// maskRaw masks a URL that may not parse: everything after "://" up to
// the host is dropped when it holds a password, and the query goes.
func maskRaw(s string) string {
	if u, err := url.Parse(s); err == nil {
		return maskURL(u)
	}
	if i := strings.IndexAny(s, "?@"); i >= 0 {
		return s[:i] + "…"
	}
	return s
}

// Path is "browser:NAME".
func (p *Path) Path() string { return feed.PathName(feed.SourceBrowser, p.cfg.Name) }

// Run opens the tab and its EventSource and emits records into sink until
// ctx ends (nil) or the path fails for a reason retrying cannot fix: CORS,
// a non-200 other than 5xx/429, a wrong content type, a certificate error,
// a blocked request, no Chromium.
func (p *Path) Run(ctx context.Context, sink feed.Sink) error {
	p.mu.Lock()
	p.sink = sink
	p.mu.Unlock()
	p.emitState(feed.StateConnecting, 0, "", 1)
	tctx, closeTab, err := p.open(ctx, p.onEvent, tabSetup{
		serveBlank: p.pageOrigin,
		bindings:   []string{bindingES},
		header:     p.cfg.Header,
		cookies:    p.cfg.Cookies,
		cookieURL:  p.u.String(),
	})
	if tctx == nil {
		return err
	}
	defer closeTab()
	defer p.releaseConn()
	if err := chromedp.Do(tctx, chromedp.Navigate(p.pageOrigin+blankPath)); err != nil {
		return p.failUnless(ctx, nil, fmt.Sprintf("open a blank page of %s: %v", p.pageOrigin, err))
	}
	if err := chromedp.Do(tctx, chromedp.Evaluate[chromedp.Void](p.script())); err != nil {
		return p.failUnless(ctx, nil, fmt.Sprintf("run new EventSource: %v", err))
	}
	detached, err := chromedp.Detached(tctx)
	if err != nil {
		return p.fail(nil, fmt.Sprintf("watch tab: %v", err))
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-p.fatalCh:
			return err
		case <-detached:
			if ctx.Err() != nil {
				return nil
			}
			return p.fail(nil, "chromium closed the tab (the browser crashed or ran out of memory)")
		case <-tick.C:
			p.check(tctx)
		}
	}
}

// script opens the EventSource and reports its open and error events.
// withCredentials sends the cookies cross-origin (--browser-origin with
// --browser-cookie), as an app that uses cookie sessions must.
func (p *Path) script() string {
	u, _ := json.Marshal(p.u.String())
	cred := p.pageOrigin != origin(p.u) && len(p.cfg.Cookies) > 0
	return fmt.Sprintf(`(() => {
  const url = %s, send = (o) => %s(JSON.stringify(o));
  const open = () => {
    const es = new EventSource(url, {withCredentials: %t});
    window.__fanscopeSource = es;
    es.onopen = () => send({e: "open"});
    es.onerror = () => send({e: "error", rs: es.readyState});
  };
  window.__fanscopeReopen = () => { window.__fanscopeSource.close(); open(); };
  open();
})()`, u, bindingES, cred)
}

// check runs on Run's goroutine, the only one that sends the tab commands:
// it reopens after a 5xx and names a request that waits.
func (p *Path) check(tctx context.Context) {
	now := time.Now()
	p.mu.Lock()
	reopen := !p.reopenAt.IsZero() && now.After(p.reopenAt)
	if reopen {
		p.reopenAt = time.Time{}
	}
	suspect := p.req != "" && !p.responded && !p.waiting && !p.failed && now.Sub(p.reqSent) >= p.cfg.WaitAfter
	sent := p.reqSent
	closed := !p.failed && !p.closedAt.IsZero() && now.Sub(p.closedAt) >= closeGrace
	reason := p.netErr
	lost := !p.lostAt.IsZero() && now.Sub(p.lostAt) >= closeGrace
	p.mu.Unlock()
	if lost {
		p.reportLost()
	}
	if closed {
		if reason == "" {
			reason = "no reason given by the network"
		}
		p.fail(nil, "Chromium closed the EventSource: "+reason)
		return
	}
	if reopen {
		_ = chromedp.Do(tctx, chromedp.Evaluate[chromedp.Void](`window.__fanscopeReopen()`))
		return
	}
	if !suspect {
		return
	}
	rs, err := chromedp.Run(tctx, chromedp.Evaluate[int](`window.__fanscopeSource ? window.__fanscopeSource.readyState : -1`))
	if err != nil || rs != 0 {
		return
	}
	reason = fmt.Sprintf("waiting: no response from %s for %s", p.hostPort, now.Sub(sent).Round(100*time.Millisecond))
	if n := p.b.openConns(p.hostPort); n >= 6 {
		reason = fmt.Sprintf("waiting (connection limit): Chromium holds at most 6 HTTP/1.1 connections per host and %d EventSources already hold %s; this one gets a connection only when one of them closes (serve the stream over HTTP/2, or share one EventSource between tabs)", n, p.hostPort)
	}
	p.mu.Lock()
	if p.responded || p.waiting || p.failed {
		p.mu.Unlock()
		return
	}
	p.waiting = true
	p.st.Warnings = append(p.st.Warnings[:0], reason)
	attempt := p.st.Attempt
	p.mu.Unlock()
	p.emitState(feed.StateConnecting, 0, reason, attempt)
}

// onEvent runs in the tab's message loop, in the order Chromium sent the
// events: it must return fast and send no command.
func (p *Path) onEvent(ev any) {
	now := time.Now()
	switch e := ev.(type) {
	case *network.EventRequestWillBeSent:
		if e.Type != network.ResourceTypeEventSource {
			return
		}
		p.mu.Lock()
		p.req, p.reqSent, p.reqTS = e.RequestID, now, e.Timestamp.Float64()
		p.responded, p.waiting = false, false
		p.netErr = ""
		p.st.Attempt++
		if p.st.Attempt > 1 || !p.st.ConnectedAt.IsZero() {
			p.st.Reconnects++
		}
		p.mu.Unlock()
	case *network.EventResponseReceived:
		p.onResponse(e)
	case *network.EventLoadingFailed:
		p.onFailed(e)
	case *network.EventLoadingFinished:
		p.mu.Lock()
		mine := e.RequestID == p.req
		if mine {
			p.netErr = "the server ended the stream"
		}
		p.mu.Unlock()
		if mine {
			p.releaseConn()
			p.reportLost()
		}
	case *network.EventEventSourceMessageReceived:
		p.onMessage(e, now)
	case *runtime.EventBindingCalled:
		if e.Name == bindingES {
			p.onES(e.Payload, now)
		}
	}
}

func (p *Path) onResponse(e *network.EventResponseReceived) {
	p.mu.Lock()
	if e.RequestID != p.req || e.Response == nil {
		p.mu.Unlock()
		return
	}
	r := e.Response
	p.responded, p.waiting = true, false
	p.st.Warnings = p.st.Warnings[:0]
	p.st.HTTPStatus = int(r.Status)
	if p.reqTS > 0 {
		p.st.TTFB = seconds(e.Timestamp.Float64() - p.reqTS)
	}
	if r.Protocol != "" {
		p.st.Details = []string{r.Protocol}
	}
	mediaType, _, _ := mime.ParseMediaType(r.MimeType)
	ok := r.Status == http.StatusOK && strings.EqualFold(mediaType, "text/event-stream")
	count := ok && strings.EqualFold(r.Protocol, "http/1.1") && !p.holdsConn
	if count {
		p.holdsConn = true
	}
	p.mu.Unlock()
	if count {
		p.b.connOpened(p.hostPort)
	}
	switch status := int(r.Status); {
	case ok:
		// The EventSource's open event says connected.
	case status >= 500 || status == http.StatusTooManyRequests:
		// Chromium's EventSource never reconnects after a non-200; a 5xx
		// or 429 is passing, so fanscope reopens it as a real app's
		// retry logic would, and says so.
		reason := fmt.Sprintf("HTTP %s; Chromium's EventSource gives up after a non-200, fanscope reopens it in %s", statusLine(status, r.StatusText), chromiumRetry)
		p.mu.Lock()
		p.netErr = reason
		p.reopenAt = time.Now().Add(chromiumRetry)
		p.mu.Unlock()
	case status != http.StatusOK:
		hint := ""
		switch status {
		case http.StatusUnauthorized, http.StatusForbidden:
			hint = " (the endpoint wants a session: pass --browser-cookie 'name=value' or -H)"
		case http.StatusNotFound:
			hint = " (check the URL's path)"
		}
		p.fail(ErrHTTPStatus, fmt.Sprintf("HTTP %s%s; Chromium's EventSource does not reconnect after a non-200 response", statusLine(status, r.StatusText), hint))
	default:
		p.fail(ErrContentType, fmt.Sprintf("wrong content type %q (an EventSource needs text/event-stream; Chromium closes it and never reconnects)", r.MimeType))
	}
}

func statusLine(code int, text string) string {
	if text == "" {
		text = http.StatusText(code)
	}
	return strings.TrimSpace(fmt.Sprintf("%d %s", code, text))
}

func (p *Path) onFailed(e *network.EventLoadingFailed) {
	p.mu.Lock()
	mine := e.RequestID == p.req
	p.mu.Unlock()
	if !mine {
		return
	}
	p.releaseConn()
	if e.Canceled {
		return
	}
	switch {
	case e.CorsErrorStatus != nil:
		p.fail(ErrCORS, fmt.Sprintf("CORS rejected the EventSource opened from origin %s: %s%s (%s)",
			p.pageOrigin, e.CorsErrorStatus.CorsError, paren(e.CorsErrorStatus.FailedParameter), corsHint(string(e.CorsErrorStatus.CorsError), p.pageOrigin)))
	case e.BlockedReason != "":
		hint := ""
		if e.BlockedReason == network.BlockedReasonMixedContent {
			hint = " (an https page cannot open an http:// EventSource; serve the stream over https)"
		}
		p.fail(ErrBlocked, fmt.Sprintf("chromium blocked the request: %s%s", e.BlockedReason, hint))
	case isCertError(e.ErrorText):
		p.fail(ErrCertificate, fmt.Sprintf("certificate error: %s (Chromium does not trust the endpoint's certificate; fix the certificate or its chain)", e.ErrorText))
	default:
		p.mu.Lock()
		p.netErr = e.ErrorText
		p.mu.Unlock()
		p.reportLost()
	}
}

func paren(s string) string {
	if s == "" {
		return ""
	}
	return " " + s
}

func corsHint(kind, origin string) string {
	switch {
	case strings.Contains(kind, "MissingAllowOriginHeader"):
		return "the endpoint must answer Access-Control-Allow-Origin: " + origin
	case strings.Contains(kind, "AllowOriginMismatch"), strings.Contains(kind, "InvalidAllowOriginValue"):
		return "Access-Control-Allow-Origin must name " + origin
	case strings.Contains(kind, "Credentials"), strings.Contains(kind, "Wildcard"):
		return "with cookies the endpoint must answer Access-Control-Allow-Credentials: true and name the origin, not *"
	case strings.HasPrefix(kind, "Preflight"), strings.Contains(kind, "Header"):
		return "-H headers make Chromium send a preflight OPTIONS request; the endpoint must allow them"
	}
	return "check the endpoint's CORS settings for " + origin
}

func isCertError(text string) bool {
	return strings.Contains(text, "ERR_CERT_") || strings.Contains(text, "ERR_SSL_") || strings.Contains(text, "ERR_BAD_SSL")
}

func (p *Path) onMessage(e *network.EventEventSourceMessageReceived, now time.Time) {
	ts := p.b.clock.at(e.Timestamp.Float64(), now)
	typ := e.EventName
	if typ == "" {
		typ = "message"
	}
	p.mu.Lock()
	p.st.Events++
	p.st.LastEvent, p.st.LastByte = ts, ts
	sink := p.sink
	p.mu.Unlock()
	sink.Emit(feed.Record{
		TS: ts, Source: feed.SourceBrowser, Kind: feed.KindEvent,
		Endpoint: p.cfg.Name, Conn: p.cfg.Conn,
		Type: typ, ID: e.EventID, Data: e.Data,
	})
}

// onES handles the EventSource's open and error events.
func (p *Path) onES(payload string, now time.Time) {
	var m struct {
		E  string `json:"e"`
		RS int    `json:"rs"`
	}
	if json.Unmarshal([]byte(payload), &m) != nil {
		return
	}
	p.mu.Lock()
	if p.failed {
		p.mu.Unlock()
		return
	}
	switch {
	case m.E == "open":
		attempt := p.st.Attempt
		p.st.State, p.st.Error = feed.StateConnected, ""
		p.st.ConnectedAt, p.st.LastByte = now, now
		p.st.Warnings = p.st.Warnings[:0]
		p.st.Attempt = 0
		status := p.st.HTTPStatus
		p.mu.Unlock()
		p.connOnce.Do(func() { close(p.connected) })
		p.emitState(feed.StateConnected, status, "", attempt)
	case m.E == "error" && !p.reopenAt.IsZero():
		// Chromium gave up after a 5xx; fanscope reopens (onResponse).
		reason := p.netErr
		p.st.State, p.st.Error = feed.StateReconnecting, reason
		attempt, status := p.st.Attempt, p.st.HTTPStatus
		p.mu.Unlock()
		p.emitState(feed.StateReconnecting, status, reason, attempt)
	case m.E == "error" && m.RS == 0:
		// Chromium reconnects by itself. The network event that says why
		// the stream ended usually comes just after this one.
		p.lostAt = now
		p.mu.Unlock()
		if p.netErrKnown() {
			p.reportLost()
		}
	case m.E == "error":
		// The network event that says why (a CORS rejection) can come
		// just after the error event; check gives it a moment.
		if p.closedAt.IsZero() {
			p.closedAt = now
		}
		p.mu.Unlock()
	default:
		p.mu.Unlock()
	}
}

func (p *Path) netErrKnown() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.netErr != ""
}

// reportLost emits the reconnecting state once the EventSource lost its
// stream (lostAt set), with the network's reason when known.
func (p *Path) reportLost() {
	p.mu.Lock()
	if p.lostAt.IsZero() || p.failed {
		p.mu.Unlock()
		return
	}
	p.lostAt = time.Time{}
	reason := p.netErr
	if reason == "" {
		reason = "connection lost"
	}
	reason += fmt.Sprintf("; Chromium reconnects in %s", chromiumRetry)
	p.st.State, p.st.Error = feed.StateReconnecting, reason
	attempt, status := p.st.Attempt, p.st.HTTPStatus
	p.mu.Unlock()
	p.emitState(feed.StateReconnecting, status, reason, attempt)
}

// fail records the path as failed (once), emits a failed state record and
// hands Run the error to return.

func (p *Path) releaseConn() {
	p.mu.Lock()
	held := p.holdsConn
	p.holdsConn = false
	p.mu.Unlock()
	if held {
		p.b.connClosed(p.hostPort)
	}
}
