package session

import (
	"net/http"

	"github.com/fanscope/fanscope/browserx"
	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/pollx"
	"github.com/fanscope/fanscope/ssex"
	"github.com/fanscope/fanscope/wsx"
)

// buildSources makes every endpoint's connections. A bad URL or option is
// an error here, before anything connects. Browser paths and page checks
// share one headless Chromium, returned to be closed with the session.
func buildSources(cfg Config) (out []Source, pages []*browserx.Page, browser *browserx.Browser, err error) {
	defer func() {
		if err != nil && browser != nil {
			_ = browser.Close()
		}
	}()
	chromium := func() *browserx.Browser {
		if browser == nil {
			browser = browserx.New()
		}
		return browser
	}
	var sseTransport http.RoundTripper
	names := map[string]bool{}
	for _, ep := range cfg.Endpoints {
		if names[ep.Path()] {
			return nil, nil, nil, usageErrorf("the endpoint name %q is used twice for %s; name them NAME=URL", ep.Name, ep.Kind)
		}
		names[ep.Path()] = true
		n := cfg.Conns
		switch ep.Kind {
		case feed.SourcePoll:
			n = 1 // a poll is a snapshot: more pollers would only see the same bodies
		case feed.SourceBrowser:
			if err := browserx.CheckConns(n); err != nil {
				return nil, nil, nil, err
			}
			paths, err := browserx.NewPaths(chromium(), browserx.PathConfig{Name: ep.Name, URL: ep.URL, Header: cfg.Header,
				Cookies: cfg.BrowserCookies, Origin: cfg.BrowserOrigin}, n)
			if err != nil {
				return nil, nil, nil, err
			}
			for _, p := range paths {
				out = append(out, p)
			}
			continue
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
						return nil, nil, nil, err
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
				return nil, nil, nil, usageErrorf("%s endpoints cannot be opened here", ep.Kind)
			}
			if err != nil {
				return nil, nil, nil, err
			}
			out = append(out, src)
		}
	}
	for _, pc := range cfg.Pages {
		if names[feed.PathName(feed.SourcePage, pc.Name)] {
			return nil, nil, nil, usageErrorf("the page name %q is used twice; name them NAME=URL", pc.Name)
		}
		names[feed.PathName(feed.SourcePage, pc.Name)] = true
		p, err := browserx.NewPage(chromium(), browserx.PageConfig{Name: pc.Name, URL: pc.URL, Expect: pc.Expect,
			Header: cfg.Header, Cookies: cfg.BrowserCookies})
		if err != nil {
			return nil, nil, nil, err
		}
		out = append(out, p)
		pages = append(pages, p)
	}
	return out, pages, browser, nil
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
	return c, nil
}
