package ssex

import (
	"fmt"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/internal/secrets"
)

// Diagnostics is a snapshot of one connection's health, for the TUI's
// sources pane, tail's summary and probe reports. Times are receive
// times (zero when nothing happened yet); the caller computes "time since"
// with its own clock.
type Diagnostics struct {
	Name string
	URL  string // password masked
	Conn int

	State       string    // feed.StateConnecting, StateConnected, ...
	Status      int       // HTTP status of the last response
	Proto       string    // e.g. "HTTP/1.1"
	Attempt     int       // attempts since the last connection was established
	LastError   string    // why the last connection or attempt ended
	NextAttempt time.Time // when the next attempt is due while reconnecting

	ConnectedAt      time.Time
	TTFB             time.Duration // request sent → first response byte, last attempt
	TimeToFirstEvent time.Duration // request sent → first event, current connection; 0 until then
	Connects         int           // connections established
	Reconnects       int           // attempts after the first
	Stalls           int           // times the stream went stalled, or an attempt got no response within the threshold
	StallAfter       time.Duration // stall threshold in force (0: no stall detection)

	LastEventID     string // last event ID in force
	LastEventIDSent string // Last-Event-ID sent on the latest reconnect, "" when none
	// LastEventIDHonoured is "yes", "no" or "unknown" after a reconnect
	// that sent Last-Event-ID, "" before; ResumeDetail says why.
	LastEventIDHonoured string
	ResumeDetail        string

	RetryMS         int64 // reconnection time in force
	RetryFromServer bool  // RetryMS came from a retry: field

	Bytes, Events, Comments int64
	LastByte                time.Time
	LastEvent               time.Time
	LastComment             time.Time
	Bursts                  int // reads that completed several events at once after a silence
	// Skipped counts events not delivered because a line or their data
	// passed the line cap (Config.MaxLine); the stream went on.
	Skipped       int64
	LastSkippedID string // last event ID in force after the latest skipped event
	// Interim counts 1xx responses (100, 102, 103 Early Hints) skipped
	// before a final response, as browsers skip them.
	Interim int
	// HeadBytes is how many bytes the latest response head took (interim
	// heads included); heads are cut off at Config.MaxHeadBytes.
	HeadBytes int64
	// Redirects counts redirects followed, over all attempts.
	Redirects int

	Headers  map[string]string // response headers of interest (Content-Type, Cache-Control, ...)
	Warnings []string          // things that make SSE misbehave, in words
}

// diagState is what the client keeps under its mutex; Diagnostics copies it.
type diagState struct {
	Diagnostics
	headerWarnings []string // from the latest stream response
	unsendableID   bool
	lastBurst      int // events in the latest burst
}

// headersOfInterest are the response headers that explain SSE behaviour.
var headersOfInterest = []string{
	"Content-Type", "Cache-Control", "Content-Encoding", "X-Accel-Buffering",
	"Connection", "Transfer-Encoding", "Server", "Via", "Retry-After",
}

// Diagnostics returns a copy of the connection's diagnostics. It is safe
// to call from any goroutine while Run is going.
func (c *Client) Diagnostics() Diagnostics {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.diag.Diagnostics
	d.Name, d.URL, d.Conn = c.cfg.Name, c.shownURL, c.cfg.Conn
	d.Headers = maps.Clone(c.diag.Headers)
	d.Warnings = append([]string(nil), c.diag.headerWarnings...)
	if d.Bursts >= c.burstWarnAt {
		d.Warnings = append(d.Warnings, fmt.Sprintf(
			"events arrive in bursts (%d times several events came in one read after %s or more of silence, the latest %d at once): a proxy may be buffering the stream (nginx: proxy_buffering off or X-Accel-Buffering: no)",
			d.Bursts, c.burstQuiet, c.diag.lastBurst))
	}
	if d.LastEventIDHonoured == "no" {
		d.Warnings = append(d.Warnings, "server did not honour Last-Event-ID: "+d.ResumeDetail)
	}
	if d.Skipped > 0 {
		d.Warnings = append(d.Warnings, fmt.Sprintf(
			"%d events skipped: a line or the data of each was longer than the %d-byte cap (the latest had event id %q in force); raise the cap or send smaller events",
			d.Skipped, c.parser.maxLine, d.LastSkippedID))
	}
	if c.diag.unsendableID {
		d.Warnings = append(d.Warnings, "the last event id holds control characters, so it cannot be sent as Last-Event-ID; reconnects go without it")
	}
	return d
}

// Status is the connection's health in the shape every delivery path
// reports (feed.Status), filled from Diagnostics; what only SSE has (the
// protocol, the reconnection time, Last-Event-ID resume) is in Details.
func (c *Client) Status() feed.Status {
	d := c.Diagnostics()
	s := feed.Status{
		Source:        feed.SourceSSE,
		Name:          d.Name,
		URL:           d.URL,
		Conn:          d.Conn,
		State:         d.State,
		HTTPStatus:    d.Status,
		Attempt:       d.Attempt,
		Reconnects:    d.Reconnects,
		Stalls:        d.Stalls,
		StallAfter:    d.StallAfter,
		Events:        uint64(max(d.Events, 0)),
		LastByte:      d.LastByte,
		LastEvent:     d.LastEvent,
		LastKeepAlive: d.LastComment,
		TTFB:          d.TTFB,
		Warnings:      d.Warnings,
	}
	if s.Up() || d.State == feed.StateStalled {
		s.ConnectedAt = d.ConnectedAt
	}
	if !s.Up() {
		s.Error = d.LastError
	}
	if d.Proto != "" {
		s.Details = append(s.Details, d.Proto)
	}
	from := "default"
	if d.RetryFromServer {
		from = "from the server"
	}
	s.Details = append(s.Details, fmt.Sprintf("retry %d ms (%s)", d.RetryMS, from))
	if d.LastEventID != "" {
		s.Details = append(s.Details, fmt.Sprintf("last event id %q", d.LastEventID))
	}
	if d.LastEventIDSent != "" {
		s.Details = append(s.Details, fmt.Sprintf("resumed with Last-Event-ID %q: honoured %s", d.LastEventIDSent, d.LastEventIDHonoured))
	}
	if d.Skipped > 0 {
		s.Details = append(s.Details, fmt.Sprintf("%d oversized events skipped", d.Skipped))
	}
	if d.Interim > 0 {
		s.Details = append(s.Details, fmt.Sprintf("%d interim (1xx) responses skipped", d.Interim))
	}
	if d.Redirects > 0 {
		s.Details = append(s.Details, fmt.Sprintf("%d redirects followed", d.Redirects))
	}
	return s
}

// noteResponse records a response's status, protocol, timing and headers,
// and for a stream, the header warnings.
func (c *Client) noteResponse(resp *http.Response, ttfb time.Duration) {
	h := make(map[string]string, 4)
	for _, k := range headersOfInterest {
		if v := resp.Header.Values(k); len(v) > 0 {
			h[k] = secrets.Header(k, strings.Join(v, ", "))
		}
	}
	if len(resp.TransferEncoding) > 0 {
		h["Transfer-Encoding"] = strings.Join(resp.TransferEncoding, ", ")
	}
	// net/http asks for gzip itself and then hides the header while it
	// decompresses; a browser would have received a compressed stream too.
	if resp.Uncompressed && h["Content-Encoding"] == "" {
		h["Content-Encoding"] = "gzip"
	}
	var warn []string
	if resp.StatusCode == http.StatusOK {
		h, warn = shareHeaders(h)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	d := &c.diag
	d.Status, d.Proto, d.TTFB, d.Headers = resp.StatusCode, resp.Proto, ttfb, h
	if resp.StatusCode == http.StatusOK {
		d.headerWarnings = warn
	}
}

// lastHeaders are the headers of interest of the stream response seen
// last, and their warnings. Connections to one endpoint get the same
// headers, and neither is changed once noted (Diag clones Headers), so
// they share them.
var lastHeaders struct {
	sync.Mutex
	h    map[string]string
	warn []string
}

// shareHeaders returns h and its warnings (headerWarnings), as maps and
// slices shared with other connections when they are the same.
func shareHeaders(h map[string]string) (map[string]string, []string) {
	lastHeaders.Lock()
	defer lastHeaders.Unlock()
	if lastHeaders.h == nil || !maps.Equal(lastHeaders.h, h) {
		lastHeaders.h, lastHeaders.warn = h, headerWarnings(h)
	}
	return lastHeaders.h, lastHeaders.warn
}

// headerWarnings lists what in a stream response's headers hurts SSE.
func headerWarnings(h map[string]string) []string {
	var w []string
	if ce := h["Content-Encoding"]; ce != "" && !strings.EqualFold(ce, "identity") {
		w = append(w, fmt.Sprintf("Content-Encoding: %s: compression makes servers and proxies buffer the stream, so events arrive late and in bursts; serve text/event-stream uncompressed", ce))
	}
	if cc := h["Cache-Control"]; !hasDirective(cc, "no-cache") && !hasDirective(cc, "no-store") {
		got := "none"
		if cc != "" {
			got = strconv.Quote(cc)
		}
		w = append(w, fmt.Sprintf("response lacks Cache-Control: no-cache (got %s): a caching proxy may buffer or replay the stream", got))
	}
	if xb := h["X-Accel-Buffering"]; strings.EqualFold(strings.TrimSpace(xb), "yes") {
		w = append(w, "X-Accel-Buffering: yes asks nginx to buffer the stream; send X-Accel-Buffering: no")
	}
	return w
}

// hasDirective reports whether a Cache-Control value holds directive.
func hasDirective(cc, directive string) bool {
	for part := range strings.SplitSeq(cc, ",") {
		name, _, _ := strings.Cut(strings.TrimSpace(part), "=")
		if strings.EqualFold(name, directive) {
			return true
		}
	}
	return false
}

// resumeCheck judges, from the event ids that follow a reconnect that sent
// Last-Event-ID, whether the server resumed after it. It is a heuristic:
// ids are opaque strings to the protocol, but most servers count.
type resumeCheck struct {
	sent     string
	sentNum  int64
	numeric  bool
	sawOther bool // an id other than sent arrived
	verdict  string
	detail   string
}

func (r *resumeCheck) start(sent string) {
	*r = resumeCheck{sent: sent, verdict: "unknown"}
	if n, err := strconv.ParseInt(sent, 10, 64); err == nil {
		r.sentNum, r.numeric = n, true
	}
}

func (r *resumeCheck) active() bool { return r.sent != "" && r.verdict != "no" }

// see takes the last event ID in force after an event and reports whether
// the verdict or its detail changed.
func (r *resumeCheck) see(id string) bool {
	if !r.active() || id == "" {
		return false
	}
	if id == r.sent {
		if !r.sawOther {
			return false // no new id yet (or the events carry none)
		}
		r.verdict = "no"
		r.detail = fmt.Sprintf("after reconnecting with Last-Event-ID %q the server sent id %q again", r.sent, id)
		return true
	}
	first := !r.sawOther
	r.sawOther = true
	if n, err := strconv.ParseInt(id, 10, 64); err == nil && r.numeric {
		switch {
		case n <= r.sentNum:
			r.verdict = "no"
			r.detail = fmt.Sprintf("after reconnecting with Last-Event-ID %d the server sent id %d: it replayed events the client had", r.sentNum, n)
			return true
		case !first:
			return false
		case n == r.sentNum+1:
			r.verdict = "yes"
			r.detail = fmt.Sprintf("the first id after reconnecting with Last-Event-ID %d was %d", r.sentNum, n)
		default:
			r.verdict = "yes"
			r.detail = fmt.Sprintf("the first id after reconnecting with Last-Event-ID %d was %d: ids %d to %d were not replayed (missed, or never sent)", r.sentNum, n, r.sentNum+1, n-1)
		}
		return true
	}
	if !first {
		return false
	}
	r.verdict = "yes"
	r.detail = fmt.Sprintf("the first id after reconnecting with Last-Event-ID %q was %q", r.sent, id)
	return true
}
