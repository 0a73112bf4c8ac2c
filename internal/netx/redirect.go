package netx

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/fanscope/fanscope/internal/secrets"
)

// MaxRedirects is how many redirects one request follows.
const MaxRedirects = 10

// RedirectError is a redirect a client refused to follow: to a scheme it
// does not speak, or one too many. Retrying would not help.
type RedirectError struct {
	Status int    // the redirect's status (301, 302, 303, 307, 308)
	URL    string // where it pointed, secrets masked
	Reason string
}

func (e *RedirectError) Error() string { return e.Reason }

// alwaysCredentials are headers that carry credentials whatever the user
// set: they never go to another origin.
var alwaysCredentials = []string{"Authorization", "Proxy-Authorization", "Cookie", "Cookie2"}

// Redirects is the redirect policy of every client's http.Client (its
// Check is the CheckRedirect). Credentials (Authorization, Cookie and
// every header the user set: -H, --bearer-env) go only to the origin
// (scheme, host and port) the user named; no Referer is sent at all (it
// would carry the URL's query, tokens included); schemes other than
// Schemes are refused by name; at most MaxRedirects are followed.
type Redirects struct {
	Schemes     []string    // lower case; coder/websocket turns ws into http before asking
	UserHeaders []string    // canonical names of the headers the user set
	Defaults    http.Header // put back when a cross-origin redirect dropped the user's version
	// Followed, when set, is told of each redirect followed: its status
	// and the new URL, masked.
	Followed func(req *http.Request, status int, shown string)
}

// Check is an http.Client's CheckRedirect.
func (p *Redirects) Check(req *http.Request, via []*http.Request) error {
	code := 0
	if req.Response != nil {
		code = req.Response.StatusCode
	}
	shown := secrets.URL(req.URL.String())
	if s := strings.ToLower(req.URL.Scheme); !slices.Contains(p.Schemes, s) {
		return &RedirectError{Status: code, URL: shown,
			Reason: fmt.Sprintf("redirect (%d) to %s refused: scheme %q is not %s", code, shown, req.URL.Scheme, orList(p.Schemes, ""))}
	}
	if len(via) >= MaxRedirects {
		return &RedirectError{Status: code, URL: shown,
			Reason: fmt.Sprintf("redirect (%d) to %s refused: stopped after %d redirects (a redirect loop?)", code, shown, MaxRedirects)}
	}
	req.Header.Del("Referer")
	if Origin(req.URL) != Origin(via[0].URL) {
		for _, k := range alwaysCredentials {
			req.Header.Del(k)
		}
		for _, k := range p.UserHeaders {
			req.Header.Del(k)
		}
		for k, vs := range p.Defaults {
			if req.Header.Get(k) == "" {
				req.Header[k] = append([]string(nil), vs...)
			}
		}
	}
	if p.Followed != nil {
		p.Followed(req, code, shown)
	}
	return nil
}

// Client is given (nil: one on the SharedTransport for the TLS options)
// with p as its redirect policy; a given client is copied, not changed.
func Client(given *http.Client, tlsCA string, tlsInsecure bool, p *Redirects) (*http.Client, error) {
	var c http.Client
	if given != nil {
		c = *given
	} else {
		t, err := SharedTransport(nil, tlsCA, tlsInsecure)
		if err != nil {
			return nil, err
		}
		c.Transport = t
	}
	c.CheckRedirect = p.Check
	return &c, nil
}
