package ssex

import (
	"fmt"
	"net/http"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/internal/netx"
)

// RedirectError is a redirect the client refused to follow: to a scheme
// other than http or https, or one too many. Retrying would not help.
type RedirectError = netx.RedirectError

// Shared by every client's policy, which only reads them.
var (
	redirectSchemes  = []string{"http", "https"}
	redirectDefaults = http.Header{"Accept": {"text/event-stream"}, "Cache-Control": {"no-cache"}}
)

// redirects is the client's redirect policy (netx.Redirects): credentials
// stay with the origin the user named, no Referer, http and https only;
// the headers EventSource sends are put back where a cross-origin
// redirect dropped the user's version of them, and each redirect is
// shown as a state record with the new URL masked.
func (c *Client) redirects(userHeaders []string) *netx.Redirects {
	return &netx.Redirects{
		Schemes:     redirectSchemes,
		UserHeaders: userHeaders,
		Defaults:    redirectDefaults,
		Followed: func(req *http.Request, code int, shown string) {
			c.mu.Lock()
			c.diag.Redirects++
			c.mu.Unlock()
			if a, ok := req.Context().Value(attemptKey{}).(*attempt); ok {
				c.emitState(a.sink, feed.StateConnecting, code, fmt.Sprintf("redirected (%d) to %s", code, shown), a.n)
			}
		},
	}
}
