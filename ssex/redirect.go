package ssex

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/internal/netx"
	"github.com/fanscope/fanscope/internal/secrets"
)

// maxRedirects is how many redirects one attempt follows.
const maxRedirects = 10

// RedirectError is a redirect the client refused to follow: to a scheme
// other than http or https, or one too many. Retrying would not help.
type RedirectError struct {
	Status int    // the redirect's status (301, 302, 303, 307, 308)
	URL    string // where it pointed, secrets masked
	Reason string
}

func (e *RedirectError) Error() string { return e.Reason }

// alwaysCredentials are headers that carry credentials whatever the user
// set: they never go to another origin.
var alwaysCredentials = []string{"Authorization", "Proxy-Authorization", "Cookie", "Cookie2"}

// checkRedirect is the http.Client's redirect policy. Credentials (the
// Authorization and Cookie headers, every -H header, --bearer-env) go only
// to the origin (scheme, host and port) the user named; no Referer is sent
// at all (it would carry the URL's query, tokens included); schemes other
// than http and https are refused by name; each redirect is shown as a
// state record with the new URL masked.
func (c *Client) checkRedirect(req *http.Request, via []*http.Request) error {
	code := 0
	if req.Response != nil {
		code = req.Response.StatusCode
	}
	shown := secrets.URL(req.URL.String())
	if s := strings.ToLower(req.URL.Scheme); s != "http" && s != "https" {
		return &RedirectError{Status: code, URL: shown,
			Reason: fmt.Sprintf("redirect (%d) to %s refused: scheme %q is not http or https", code, shown, req.URL.Scheme)}
	}
	if len(via) >= maxRedirects {
		return &RedirectError{Status: code, URL: shown,
			Reason: fmt.Sprintf("redirect (%d) to %s refused: stopped after %d redirects (a redirect loop?)", code, shown, maxRedirects)}
	}
	req.Header.Del("Referer")
	if netx.Origin(req.URL) != netx.Origin(via[0].URL) {
		for _, k := range alwaysCredentials {
			req.Header.Del(k)
		}
		for _, k := range c.userHeaders {
			req.Header.Del(k)
		}
		// What EventSource sends, without the user's version of it.
		if req.Header.Get("Accept") == "" {
			req.Header.Set("Accept", "text/event-stream")
		}
		if req.Header.Get("Cache-Control") == "" {
			req.Header.Set("Cache-Control", "no-cache")
		}
	}
	c.mu.Lock()
	c.diag.Redirects++
	c.mu.Unlock()
	if a, ok := req.Context().Value(attemptKey{}).(*attempt); ok {
		c.emitState(a.sink, feed.StateConnecting, code, fmt.Sprintf("redirected (%d) to %s", code, shown), a.n)
	}
	return nil
}
