package session

import (
	"net/http"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/pollx"
	"github.com/fanscope/fanscope/ssex"
	"github.com/fanscope/fanscope/wsx"
)

// buildSources makes every endpoint's connections. A bad URL or option is
// an error here, before anything connects.
func buildSources(cfg Config) ([]Source, error) {
	var out []Source
	var sseTransport http.RoundTripper
	names := map[string]bool{}
	for _, ep := range cfg.Endpoints {
		if names[ep.Path()] {
			return nil, usageErrorf("the endpoint name %q is used twice for %s; name them NAME=URL", ep.Name, ep.Kind)
		}
		names[ep.Path()] = true
		n := cfg.Conns
		if ep.Kind == feed.SourcePoll {
			n = 1 // a poll is a snapshot: more pollers would only see the same bodies
		}
		for k := 0; k < n; k++ {
			var src Source
			var err error
			switch ep.Kind {
			case feed.SourceSSE:
				if sseTransport == nil {
					// One transport for every SSE connection: thousands of
					// connections to one host are allowed, HTTP/1.1 only so
					// each stream is its own socket.
					t, err := ssex.NewTransport(cfg.TLSCA, cfg.TLSInsecure)
					if err != nil {
						return nil, err
					}
					sseTransport = t
				}
				src, err = newSSE(ep, k, cfg, sseTransport)
			case feed.SourceWS, feed.SourceSocketIO:
				wc := wsx.Config{Name: ep.Name, URL: ep.URL, Conn: k, Header: cfg.Header, Token: cfg.Token,
					TLSCA: cfg.TLSCA, TLSInsecure: cfg.TLSInsecure, StallTimeout: cfg.Stall, EnginePath: cfg.SocketIOPath}
				if ep.Kind == feed.SourceWS {
					src, err = wsx.NewClient(wc)
				} else {
					src, err = wsx.NewSocketIO(wc)
				}
			case feed.SourcePoll:
				src, err = pollx.NewClient(pollx.Config{Name: ep.Name, URL: ep.URL, Conn: k, Header: cfg.Header,
					TLSCA: cfg.TLSCA, TLSInsecure: cfg.TLSInsecure, Interval: cfg.PollInterval})
			default:
				return nil, usageErrorf("%s endpoints cannot be opened here", ep.Kind)
			}
			if err != nil {
				return nil, err
			}
			out = append(out, src)
		}
	}
	return out, nil
}

func newSSE(ep Endpoint, conn int, cfg Config, t http.RoundTripper) (Source, error) {
	c, err := ssex.NewClient(ssex.Config{
		Name: ep.Name, URL: ep.URL, Conn: conn, Header: cfg.Header,
		TLSCA: cfg.TLSCA, TLSInsecure: cfg.TLSInsecure,
		StallTimeout: cfg.Stall, Transport: t,
	})
	if err != nil {
		return nil, err
	}
	return sseSource{c}, nil
}

// sseSource gives an SSE client the Source shape.
type sseSource struct{ *ssex.Client }

func (s sseSource) Path() string { return feed.PathName(feed.SourceSSE, s.Name()) }

func (s sseSource) Status() feed.Status {
	d := s.Diagnostics()
	st := feed.Status{
		Source: feed.SourceSSE, Name: d.Name, URL: d.URL, Conn: d.Conn,
		State: d.State, HTTPStatus: d.Status, Attempt: d.Attempt, Reconnects: d.Reconnects,
		Stalls: d.Stalls, Events: uint64(max(d.Events, 0)), ConnectedAt: d.ConnectedAt,
		LastByte: d.LastByte, LastEvent: d.LastEvent, LastKeepAlive: d.LastComment, TTFB: d.TTFB,
		Warnings: d.Warnings,
	}
	if d.State != feed.StateConnected {
		st.Error = d.LastError
	}
	return st
}
