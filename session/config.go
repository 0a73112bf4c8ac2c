package session

import (
	"net/http"
	"path"
	"slices"
	"time"

	"github.com/fanscope/fanscope/browserx"
	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/probes"
	"github.com/fanscope/fanscope/redisx"
)

// Endpoint is one delivery endpoint to watch: an SSE stream, a WebSocket,
// a Socket.IO namespace, a polled URL, a browser EventSource.
type Endpoint struct {
	Kind feed.Source // SourceSSE, SourceWS, ...
	Name string      // display name; unique per kind
	URL  string
}

// PageCheck is one --page with its --expect selector.
type PageCheck struct {
	Name, URL, Expect string
}

// Path is the endpoint's path name ("sse:app-1").
func (e Endpoint) Path() string { return feed.PathName(e.Kind, e.Name) }

// Config says what a Session watches.
type Config struct {
	// Redis is how to reach Redis; nil when the run has no Redis at all.
	Redis *redisx.Options
	// Subscription is what fanscope's own subscription holds (-c, -p, -s).
	Subscription redisx.Subscription
	// Endpoints are the delivery endpoints, each opened Conns times.
	Endpoints []Endpoint
	Conns     int // connections per endpoint (≥1)
	// Pages are page checks (--page NAME=URL --expect SELECTOR): a real
	// page of the app whose element becomes visible for each delivery.
	Pages []PageCheck
	// BrowserCookies (--browser-cookie) and BrowserOrigin
	// (--browser-origin) apply to every browser path and page.
	BrowserCookies []browserx.Cookie
	BrowserOrigin  string
	// Sources are delivery paths the caller built itself (a browser's
	// tabs, a test's fake door); they join the endpoints' connections.
	Sources []Source

	// Header goes with every HTTP request and handshake (-H, --bearer-env).
	Header      http.Header
	TLSCA       string
	TLSInsecure bool
	// Stall overrides every streaming endpoint's stall threshold (0: each
	// source's default).
	Stall time.Duration
	// Token is the --bearer-env value: Socket.IO sends it as its connect
	// auth payload (the Authorization header is already in Header).
	Token string
	// PollInterval is the pace of poll endpoints (0: pollx's default, 5s).
	PollInterval time.Duration
	// SocketIOPath is the Engine.IO path of Socket.IO endpoints (""
	// means /socket.io/).
	SocketIOPath string

	Probe probes.Config
	// ProbeChannel is where probes are published ("" when nowhere);
	// ProbeShard publishes them with SPUBLISH. Open subscribes it when
	// nothing else delivers it to fanscope's own subscription.
	ProbeChannel string
	ProbeShard   bool
	// ProbeInterval is the pace of continuous probing (SetProbing).
	ProbeInterval time.Duration

	// RingSize is how many recent records the ring keeps for Records (0:
	// none).
	RingSize int
	// Introspect is how often the subscriber counts and the Pub/Sub client
	// list are fetched for Snapshot (0: never).
	Introspect time.Duration
	// Monitor runs MONITOR on its own connection, filtered to PUBLISH and
	// SPUBLISH of the subscribed channels: publish records name the
	// publisher, and organic deliveries get publish_us.
	Monitor bool
	// KeepRetrying lets a Session start while its sources are down: they
	// are retried, and their state says why (watch, serve). Without it,
	// Start fails when Redis cannot be subscribed (tail, probe).
	KeepRetrying bool
}

// ProbeTarget picks the probe channel as probe, watch and serve do: the
// explicit one, else the first -c, else the first -s (with SPUBLISH).
func ProbeTarget(explicit string, sub redisx.Subscription) (channel string, shard bool) {
	switch {
	case explicit != "":
		return explicit, slices.Contains(sub.ShardChannels, explicit)
	case len(sub.Channels) > 0:
		return sub.Channels[0], false
	case len(sub.ShardChannels) > 0:
		return sub.ShardChannels[0], true
	}
	return "", false
}

// withProbeChannel adds the probe channel to sub when nothing in sub
// delivers it yet: the "redis" path needs it subscribed exactly once (a
// second subscription through a pattern would make every probe a
// duplicate).
func withProbeChannel(sub redisx.Subscription, channel string, shard bool) redisx.Subscription {
	if channel == "" || shard || slices.Contains(sub.Channels, channel) || matchedByPattern(sub.Patterns, channel) {
		return sub
	}
	sub.Channels = append(slices.Clone(sub.Channels), channel)
	return sub
}

// matchedByPattern reports whether a PSUBSCRIBE glob already delivers
// channel. Redis globs and path.Match agree on *, ? and [..] for channel
// names without '/'.
func matchedByPattern(patterns []string, channel string) bool {
	for _, p := range patterns {
		if ok, err := path.Match(p, channel); err == nil && ok {
			return true
		}
	}
	return false
}
