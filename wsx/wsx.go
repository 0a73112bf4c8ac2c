// Package wsx is fanscope's WebSocket side of the wire: a WebSocket client
// (--ws) that reports every text or binary message as an event record, and
// a Socket.IO v4 client (--socketio) that speaks Engine.IO v4 over a
// WebSocket and reports every event packet. Both reconnect with backoff, a
// floor and jitter, detect stalls as SPEC.md asks (stalled comes before the
// reconnect), and tell close codes, ping timing and refusals in their
// Status. Both implement session.Source. github.com/coder/websocket does
// the framing; the Engine.IO and Socket.IO packets are small enough to
// parse here.
package wsx

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/fanscope/fanscope/internal/netx"
)

var (
	// ErrUsage marks a bad --ws / --socketio value or option (exit status 2).
	ErrUsage = errors.New("invalid websocket endpoint or option")
	// ErrFatal marks an endpoint that refused for good: a handshake answered
	// 401, 403, 404 or another 4xx (but not 408 or 429), a response that is
	// not a WebSocket upgrade, close code 1008 (policy violation), a
	// Socket.IO connect error (44), or a TLS certificate that cannot be
	// verified (exit status 3). Retrying would not help.
	ErrFatal = errors.New("websocket endpoint refused the connection")
)

// Defaults for Config fields left zero.
const (
	// DefaultMaxMessage is the largest message delivered; larger ones are
	// read to their end, counted and skipped, and the connection stays.
	DefaultMaxMessage = 16 << 20
	// DefaultPingInterval is how often the WebSocket client pings, so a
	// quiet but healthy server still shows bytes (its pongs) and a dead
	// one is noticed.
	DefaultPingInterval = 15 * time.Second
	// DefaultMinBackoff is the floor of the wait between attempts.
	DefaultMinBackoff = time.Second
	// DefaultMaxBackoff caps the wait while the server keeps failing.
	DefaultMaxBackoff = 30 * time.Second
	// DefaultDialTimeout bounds one handshake.
	DefaultDialTimeout = 30 * time.Second
	// DefaultEnginePath is Socket.IO's default engine path.
	DefaultEnginePath = "/socket.io/"
)

// Stall thresholds (SPEC.md, "Health that tells the truth").
const (
	stallBeforeKeepAlives = netx.StallBefore // until the connection sent two keep-alives
	stallFloor            = netx.StallFloor  // the least threshold once measured
)

func usageErrorf(format string, args ...any) error {
	return netx.Errorf(ErrUsage, format, args...)
}

func fatalErrorf(format string, args ...any) error {
	return netx.Errorf(ErrFatal, format, args...)
}

// ParseEndpoint splits a --ws flag value "[NAME=]URL" into the endpoint's
// name and URL. NAME defaults to the URL's host:port. ws, wss, http and
// https URLs are accepted (http means ws); errors wrap ErrUsage and never
// quote a secret.
func ParseEndpoint(flag string) (name, rawURL string, err error) {
	return parseEndpoint(flag, "ws endpoint")
}

// ParseSocketIOEndpoint splits a --socketio flag value "[NAME=]URL"; the
// URL's path is the namespace ("/" when empty).
func ParseSocketIOEndpoint(flag string) (name, rawURL string, err error) {
	return parseEndpoint(flag, "socketio endpoint")
}

func parseEndpoint(flag, what string) (string, string, error) {
	return netx.SplitEndpoint(flag, what, ErrUsage, "ws", "wss", "http", "https")
}

// Config describes one connection to one WebSocket or Socket.IO endpoint.
type Config struct {
	Name string // display name; defaults to the URL's host:port
	URL  string // ws://, wss://, http:// or https://
	Conn int    // connection index when several connections go to one endpoint

	// Header is sent with the handshake, e.g. "Authorization: Bearer …"
	// for --bearer-env. A "Host" entry sets the request's Host.
	Header http.Header
	// Subprotocols are offered in Sec-WebSocket-Protocol (WebSocket only).
	Subprotocols []string
	// Token is the bearer token (--bearer-env); the Socket.IO client sends
	// it as the connect auth payload {"token": …}. The WebSocket client
	// ignores it (put it in Header).
	Token string

	// TLSCA (a PEM file) and TLSInsecure configure the transport; they are
	// ignored when HTTPClient is set. The client is copied with fanscope's
	// redirect policy (credentials stay with the origin named).
	TLSCA       string
	TLSInsecure bool
	HTTPClient  *http.Client // optional, shared by many connections

	// StallTimeout fixes the stall threshold; 0 means SPEC.md's adaptive
	// default (45 s, then 3× the longest gap between bytes once two
	// keep-alives came, at least 5 s; for Socket.IO the server's
	// pingInterval + pingTimeout); < 0 disables stall detection.
	StallTimeout time.Duration
	PingInterval time.Duration // WebSocket pings; 0: DefaultPingInterval; < 0: none
	MinBackoff   time.Duration // 0: DefaultMinBackoff
	MaxBackoff   time.Duration // 0: DefaultMaxBackoff
	DialTimeout  time.Duration // 0: DefaultDialTimeout
	MaxMessage   int64         // 0: DefaultMaxMessage

	// EnginePath is the Socket.IO engine path (--socketio-path); "" means
	// DefaultEnginePath.
	EnginePath string
}

// checked is a Config with defaults filled in and the URL parsed.
type checked struct {
	Config
	u        *url.URL
	shownURL string
	host     string // Host header override
	header   http.Header
	// redirects is the handshake's redirect policy; the loop sets its
	// Followed to show each redirect.
	redirects *netx.Redirects
}

func check(cfg Config, what string) (*checked, error) {
	ep, err := netx.CheckEndpoint(what, cfg.Name, cfg.URL, cfg.Header, nil, ErrUsage, "ws", "wss", "http", "https")
	if err != nil {
		return nil, err
	}
	cfg.Name = ep.Name
	if err := netx.SetDurations(
		netx.Duration{V: &cfg.PingInterval, Default: DefaultPingInterval}, // < 0: no pings
		netx.Duration{V: &cfg.MinBackoff, Default: DefaultMinBackoff, Name: "min backoff"},
		netx.Duration{V: &cfg.MaxBackoff, Default: DefaultMaxBackoff, Name: "max backoff"},
		netx.Duration{V: &cfg.DialTimeout, Default: DefaultDialTimeout, Name: "dial timeout"},
	); err != nil {
		return nil, usageErrorf("%s %s: %w", what, cfg.Name, err)
	}
	if cfg.MaxMessage == 0 {
		cfg.MaxMessage = DefaultMaxMessage
	}
	if cfg.MaxMessage < 0 {
		return nil, usageErrorf("%s %s: max message size %d is negative", what, cfg.Name, cfg.MaxMessage)
	}
	if cfg.EnginePath == "" {
		cfg.EnginePath = DefaultEnginePath
	}
	if !strings.HasPrefix(cfg.EnginePath, "/") {
		return nil, usageErrorf("%s %s: engine path %q does not start with /", what, cfg.Name, cfg.EnginePath)
	}
	c := &checked{Config: cfg, u: ep.URL, shownURL: ep.Shown, header: ep.Header, host: ep.Host,
		redirects: &netx.Redirects{Schemes: []string{"http", "https"}, UserHeaders: ep.Names}}
	// Credentials stay with the origin the user named (netx.Redirects).
	c.HTTPClient, err = netx.Client(cfg.HTTPClient, cfg.TLSCA, cfg.TLSInsecure, c.redirects)
	if err != nil {
		return nil, usageErrorf("%s %s: %w", what, cfg.Name, err)
	}
	return c, nil
}
