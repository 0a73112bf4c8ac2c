package session

import (
	"net/http"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/ssex"
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
		for k := 0; k < cfg.Conns; k++ {
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
			default:
				return nil, usageErrorf("%s endpoints are not supported yet", ep.Kind)
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
