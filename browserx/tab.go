package browserx

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// blankPath is the path, on the origin a Path's page belongs to, that the
// tab navigates to. The Fetch domain answers it with an empty document, so
// no request reaches the app and none of its pages loads.
const blankPath = "/__fanscope_blank"

// blankDocument is what the tab's page holds.
var blankDocument = []byte("<!doctype html><meta charset=utf-8><title>fanscope</title>")

// tabSetup is what a tab needs before it loads its first page.
type tabSetup struct {
	// serveBlank: the origin whose blankPath (and favicon) are answered
	// by fanscope; "" for none.
	serveBlank string
	bindings   []string
	header     http.Header
	cookies    []Cookie
	cookieURL  string // the URL the cookies belong to
	onNewDoc   string // a script run in every new document, before the page's own
}

// openTab opens a tab in b with listen receiving its events in order, and
// applies s. The returned cancel closes the tab.
func openTab(ctx context.Context, b *Browser, listen func(ev any), s tabSetup) (context.Context, context.CancelFunc, error) {
	tctx, cancel, err := b.tabContext(chromedp.WithListener(listen))
	if err != nil {
		return nil, nil, err
	}
	stop := context.AfterFunc(ctx, cancel)
	fail := func(what string, err error) (context.Context, context.CancelFunc, error) {
		stop()
		cancel()
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		return nil, nil, fmt.Errorf("%s: %w", what, err)
	}
	// The first call opens the tab.
	if err := chromedp.Do(tctx); err != nil {
		return fail("open chromium tab", err)
	}
	if s.serveBlank != "" {
		paused := chromedp.Events(tctx, fetch.RequestPaused)
		go func() {
			for ev, err := range paused {
				if err != nil {
					return
				}
				fulfill(tctx, ev)
			}
		}()
		patterns := []*fetch.RequestPattern{
			{URLPattern: s.serveBlank + blankPath},
			{URLPattern: s.serveBlank + "/favicon.ico"},
		}
		if _, err := chromedp.Call(tctx, fetch.Enable, fetch.EnableParams{Patterns: patterns}); err != nil {
			return fail("enable request interception", err)
		}
	}
	for _, name := range s.bindings {
		if _, err := chromedp.Call(tctx, runtime.AddBinding, runtime.AddBindingParams{Name: name}); err != nil {
			return fail("add binding", err)
		}
	}
	// Network events time the deliveries. Chromium keeps response bodies
	// for DevTools up to these sizes; a stream's body is never read, so
	// keep the buffers small.
	total, per := int64(1<<16), int64(1<<12)
	if _, err := chromedp.Call(tctx, network.Enable, network.EnableParams{MaxTotalBufferSize: &total, MaxResourceBufferSize: &per}); err != nil {
		return fail("enable network events", err)
	}
	if len(s.header) > 0 {
		h := network.Headers{}
		for k, vs := range s.header {
			h[k] = strings.Join(vs, ", ")
		}
		if _, err := chromedp.Call(tctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: h}); err != nil {
			return fail("set headers", err)
		}
	}
	for _, c := range s.cookies {
		if _, err := chromedp.Call(tctx, network.SetCookie, network.SetCookieParams{Name: c.Name, Value: c.Value, URL: s.cookieURL}); err != nil {
			return fail("set cookie "+c.String(), err)
		}
	}
	if s.onNewDoc != "" {
		if err := addScript(tctx, s.onNewDoc); err != nil {
			return fail("add page script", err)
		}
	}
	return tctx, func() { stop(); cancel() }, nil
}

// fulfill answers an intercepted request: the blank document, or 404 for
// the favicon Chromium asks for.
func fulfill(ctx context.Context, ev fetch.EventRequestPaused) {
	p := fetch.FulfillRequestParams{RequestID: ev.RequestID, ResponseCode: http.StatusNotFound}
	if u, err := url.Parse(ev.Request.URL); err == nil && u.Path == blankPath {
		p.ResponseCode = http.StatusOK
		p.ResponseHeaders = []*fetch.HeaderEntry{{Name: "Content-Type", Value: "text/html; charset=utf-8"}}
		p.Body = blankDocument
	}
	// An error means the tab is closing; the page load then fails and
	// says so.
	_, _ = chromedp.Call(ctx, fetch.FulfillRequest, p)
}

// origin is scheme://host[:port] of u.
func origin(u *url.URL) string { return u.Scheme + "://" + u.Host }

// parseOrigin checks --browser-origin: an http(s) origin with no path.
func parseOrigin(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("--browser-origin %q: want an origin such as https://app.example.com", s)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("--browser-origin %q: an origin has no path, query or user (want %s)", s, origin(u))
	}
	return origin(u), nil
}

func addScript(ctx context.Context, src string) error {
	_, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: src})
	return err
}
