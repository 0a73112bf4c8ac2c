package cli

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/fanscope/fanscope/browserx"
	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/pollx"
	"github.com/fanscope/fanscope/probes"
	"github.com/fanscope/fanscope/redisx"
	"github.com/fanscope/fanscope/session"
	"github.com/fanscope/fanscope/ssex"
	"github.com/fanscope/fanscope/wsx"
)

// SourceFlags are the flags shared by watch, tail and probe: where to look.
type SourceFlags struct {
	Redis          []string
	Cluster        bool
	SentinelMaster string
	Channels       []string
	Patterns       []string
	ShardChannels  []string
	SSE            []string
	WS             []string
	SocketIO       []string
	SocketIOPath   string
	Poll           []string
	PollInterval   time.Duration
	Browser        []string
	BrowserCookies []string
	BrowserOrigin  string
	Pages          []string
	Expect         []string
	Stall          time.Duration
	Headers        []string
	BearerEnv      string
	TLSCA          string
	TLSInsecure    bool
	MatchKey       string
	Monitor        bool
}

// Register adds the source flags to fs.
func (f *SourceFlags) Register(fs *pflag.FlagSet) {
	fs.StringArrayVar(&f.Redis, "redis", nil, "Redis URL: redis://[user:pass@]host:port[/db], rediss://… (TLS) or unix:///path.sock;\nrepeat it (or add --cluster) for a Cluster seed list.\nDefault: $FANSCOPE_REDIS_URL, then $REDIS_URL, then redis://127.0.0.1:6379")
	fs.BoolVar(&f.Cluster, "cluster", false, "treat --redis as a Redis Cluster")
	fs.StringVar(&f.SentinelMaster, "sentinel-master", "", "treat --redis addresses as Sentinels for master `NAME`")
	fs.StringArrayVarP(&f.Channels, "channel", "c", nil, "SUBSCRIBE to channel `NAME` (repeatable)")
	fs.StringArrayVarP(&f.Patterns, "pattern", "p", nil, "PSUBSCRIBE to `GLOB` (repeatable)")
	fs.StringArrayVarP(&f.ShardChannels, "shard-channel", "s", nil, "SSUBSCRIBE to shard channel `NAME` (Redis 7+; repeatable)")
	fs.StringArrayVar(&f.SSE, "sse", nil, "SSE endpoint `[NAME=]URL` (repeatable); NAME defaults to host:port")
	fs.StringArrayVar(&f.WS, "ws", nil, "WebSocket endpoint `[NAME=]URL` (ws:// or wss://; repeatable): every message is an event (path ws:NAME)")
	fs.StringArrayVar(&f.SocketIO, "socketio", nil, "Socket.IO v4 endpoint `[NAME=]URL` (http(s)://host/namespace?query; repeatable): every event packet is an event (path socketio:NAME)")
	fs.StringVar(&f.SocketIOPath, "socketio-path", "/socket.io/", "Engine.IO `PATH` of the Socket.IO endpoints")
	fs.StringArrayVar(&f.Poll, "poll", nil, "polled endpoint `[NAME=]URL` (repeatable): a changed body is an event (path poll:NAME)")
	fs.DurationVar(&f.PollInterval, "poll-interval", 5*time.Second, "time between polls of each --poll endpoint")
	fs.StringArrayVar(&f.Browser, "browser", nil, "SSE endpoint `[NAME=]URL` opened by a real headless Chromium (new EventSource(URL) from a page of its origin; repeatable; path browser:NAME). Chromium: $FANSCOPE_CHROMIUM, else chromium on PATH")
	fs.StringArrayVar(&f.BrowserCookies, "browser-cookie", nil, "cookie `name=value` the browser sends (session auth; repeatable; shown masked)")
	fs.StringVar(&f.BrowserOrigin, "browser-origin", "", "open --browser EventSources from a page of this `ORIGIN` instead of the URL's own (tests the app's CORS)")
	fs.StringArrayVar(&f.Pages, "page", nil, "page check: load the app's page `[NAME=]URL` in Chromium and time each probe until the --expect element is visible (path page:NAME)")
	fs.StringArrayVar(&f.Expect, "expect", nil, "CSS `SELECTOR` that becomes visible when a notification arrives, for --page (one for all pages, or one per --page)")
	fs.DurationVar(&f.Stall, "stall", 0, "call a streaming endpoint stalled after `D` without any bytes (default: 3x the longest gap seen between its bytes once it sent two keep-alives, at least 5s; 45s before that)")
	fs.StringArrayVarP(&f.Headers, "header", "H", nil, "header `'Key: Value'` sent to every endpoint (SSE, WebSocket and Socket.IO handshakes, polls; repeatable)")
	fs.StringVar(&f.BearerEnv, "bearer-env", "", "send 'Authorization: Bearer $VAR' to every endpoint, and {\"token\": $VAR} as Socket.IO's auth (keeps the token out of argv)")
	fs.StringVar(&f.TLSCA, "tls-ca", "", "PEM `FILE` of CA certificates trusted for rediss:// and https://")
	fs.BoolVar(&f.TLSInsecure, "tls-insecure", false, "do not verify TLS certificates (testing only)")
	fs.BoolVar(&f.Monitor, "monitor", false, "also run MONITOR (filtered to PUBLISH/SPUBLISH of the watched channels): who publishes, and publish→delivery time of real traffic on every path (costs a busy Redis about half its throughput)")
	fs.StringVar(&f.MatchKey, "match-key", "", "match organic Redis messages to SSE events by this JSON `KEY` instead of by equal data")
}

// redisURLs returns the --redis values, or the default from the environment.
func (f *SourceFlags) redisURLs(getenv func(string) string) []string {
	if len(f.Redis) > 0 {
		return f.Redis
	}
	for _, v := range []string{"FANSCOPE_REDIS_URL", "REDIS_URL"} {
		if u := getenv(v); u != "" {
			return []string{u}
		}
	}
	return []string{"redis://127.0.0.1:6379"}
}

// endpoints counts the delivery endpoints given.
func (f *SourceFlags) endpoints() int {
	return len(f.SSE) + len(f.WS) + len(f.SocketIO) + len(f.Poll) + len(f.Browser) + len(f.Pages)
}

// wantsRedis reports whether any Redis subscription was asked for.
func (f *SourceFlags) wantsRedis() bool {
	return len(f.Channels)+len(f.Patterns)+len(f.ShardChannels) > 0
}

// sseHeader builds the header sent to every SSE endpoint from -H and
// --bearer-env.
func (f *SourceFlags) sseHeader(getenv func(string) string) (http.Header, error) {
	h := http.Header{}
	for _, kv := range f.Headers {
		k, v, ok := strings.Cut(kv, ":")
		k = strings.TrimSpace(k)
		if !ok || k == "" || strings.ContainsAny(k, " \t\r\n") {
			return nil, usageError(fmt.Errorf("-H %q: want 'Key: Value'", kv))
		}
		v = strings.TrimSpace(v)
		if strings.ContainsAny(v, "\r\n") {
			return nil, usageError(fmt.Errorf("-H %s: the value contains a line break", k))
		}
		h.Add(k, v)
	}
	if f.BearerEnv != "" {
		tok := getenv(f.BearerEnv)
		if tok == "" {
			return nil, usageError(fmt.Errorf("--bearer-env %s: that environment variable is empty or unset", f.BearerEnv))
		}
		h.Set("Authorization", "Bearer "+tok)
	}
	return h, nil
}

// sessionConfig turns the source flags into what a session watches.
// withRedis opens Redis even when nothing is subscribed (probe publishes).
func (f *SourceFlags) sessionConfig(getenv func(string) string, withRedis bool) (session.Config, error) {
	header, err := f.sseHeader(getenv)
	if err != nil {
		return session.Config{}, err
	}
	cfg := session.Config{
		Subscription: redisx.Subscription{Channels: f.Channels, Patterns: f.Patterns, ShardChannels: f.ShardChannels},
		Header:       header,
		TLSCA:        f.TLSCA,
		TLSInsecure:  f.TLSInsecure,
		Probe:        probes.Config{MatchKey: f.MatchKey},
	}
	if f.TLSCA != "" {
		// Read the CA now: a missing file is a usage error, found before
		// anything connects.
		if _, err := ssex.NewTransport(f.TLSCA, f.TLSInsecure); err != nil {
			return session.Config{}, usageError(err)
		}
	}
	if f.Stall < 0 || f.PollInterval < 0 {
		return session.Config{}, usageError(fmt.Errorf("--stall and --poll-interval must not be negative (got %v, %v)", f.Stall, f.PollInterval))
	}
	cfg.Stall, cfg.PollInterval, cfg.SocketIOPath, cfg.Monitor = f.Stall, f.PollInterval, f.SocketIOPath, f.Monitor
	if f.BearerEnv != "" {
		cfg.Token = getenv(f.BearerEnv)
	}
	for _, door := range []struct {
		kind  feed.Source
		flags []string
		parse func(string) (string, string, error)
	}{
		{feed.SourceSSE, f.SSE, ssex.ParseEndpoint},
		{feed.SourceWS, f.WS, wsx.ParseEndpoint},
		{feed.SourceSocketIO, f.SocketIO, wsx.ParseSocketIOEndpoint},
		{feed.SourcePoll, f.Poll, pollx.ParseEndpoint},
		{feed.SourceBrowser, f.Browser, ssex.ParseEndpoint},
	} {
		for _, flag := range door.flags {
			name, url, err := door.parse(flag)
			if err != nil {
				return session.Config{}, err
			}
			cfg.Endpoints = append(cfg.Endpoints, session.Endpoint{Kind: door.kind, Name: name, URL: url})
		}
	}
	for _, c := range f.BrowserCookies {
		ck, err := browserx.ParseCookie(c)
		if err != nil {
			return session.Config{}, err
		}
		cfg.BrowserCookies = append(cfg.BrowserCookies, ck)
	}
	cfg.BrowserOrigin = f.BrowserOrigin
	if len(f.Pages) > 0 && len(f.Expect) != 1 && len(f.Expect) != len(f.Pages) {
		return session.Config{}, usageError(fmt.Errorf("--page needs --expect SELECTOR: give one for all pages or one per --page (%d pages, %d selectors)", len(f.Pages), len(f.Expect)))
	}
	for i, flag := range f.Pages {
		name, url, err := ssex.ParseEndpoint(flag)
		if err != nil {
			return session.Config{}, err
		}
		cfg.Pages = append(cfg.Pages, session.PageCheck{Name: name, URL: url, Expect: f.Expect[min(i, len(f.Expect)-1)]})
	}
	if withRedis || f.wantsRedis() {
		cfg.Redis = &redisx.Options{
			URLs: f.redisURLs(getenv), Cluster: f.Cluster, SentinelMaster: f.SentinelMaster,
			TLSCA: f.TLSCA, TLSInsecure: f.TLSInsecure,
		}
	}
	return cfg, nil
}
