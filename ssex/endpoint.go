package ssex

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/fanscope/fanscope/internal/secrets"
)

var (
	// ErrUsage marks a bad endpoint flag or client option (exit status 2).
	ErrUsage = errors.New("invalid sse endpoint or option")
	// ErrFatal marks an endpoint that refused for good: 401, 403, 404 and
	// other 4xx (but not 408 or 429), 204, a Content-Type other than
	// text/event-stream, or a TLS certificate that cannot be verified
	// (exit status 3). Retrying would not help.
	ErrFatal = errors.New("sse endpoint refused the connection")
)

// kindError carries a readable message while matching a sentinel with
// errors.Is, so messages do not repeat the sentinel's text.
type kindError struct {
	kind error
	err  error
}

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.kind, e.err} }

func usageErrorf(format string, args ...any) error {
	return &kindError{kind: ErrUsage, err: fmt.Errorf(format, args...)}
}

func fatalErrorf(format string, args ...any) error {
	return &kindError{kind: ErrFatal, err: fmt.Errorf(format, args...)}
}

// ParseEndpoint splits an --sse flag value "[NAME=]URL" into the endpoint's
// display name and its URL. NAME defaults to the URL's host:port (with the
// scheme's default port filled in). Only http and https URLs are accepted;
// errors wrap ErrUsage.
func ParseEndpoint(flag string) (name, rawURL string, err error) {
	s := strings.TrimSpace(flag)
	if s == "" {
		return "", "", usageErrorf("parse sse endpoint: empty value, want [NAME=]URL")
	}
	rawURL = s
	// A URL's query may hold '=', so a NAME is only split off when the text
	// before the first '=' is not itself the start of a URL.
	if i := strings.IndexByte(s, '='); i >= 0 && !strings.Contains(s[:i], "://") {
		name, rawURL = strings.TrimSpace(s[:i]), strings.TrimSpace(s[i+1:])
		if name == "" {
			return "", "", usageErrorf("parse sse endpoint %q: empty NAME before '=', want [NAME=]URL", secrets.URL(flag))
		}
		if strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return "", "", usageErrorf("parse sse endpoint %q: NAME contains control characters", secrets.URL(flag))
		}
	}
	u, err := checkURL(rawURL)
	if err != nil {
		return "", "", usageErrorf("parse sse endpoint %q: %w", secrets.URL(flag), err)
	}
	if name == "" {
		name = hostPort(u)
	}
	return name, rawURL, nil
}

// checkURL parses raw and checks that it is an absolute http(s) URL with a
// host. Its errors show raw with secrets masked.
func checkURL(raw string) (*url.URL, error) {
	if !strings.Contains(raw, "://") {
		return nil, fmt.Errorf("URL %q has no scheme, want http:// or https://", secrets.URL(raw))
	}
	if secrets.Ambiguous(raw) {
		return nil, fmt.Errorf("URL %q is ambiguous: an '@' after the host reads as the end of a password (percent-encode '/', '?', '#' and '@' in a password as %%2F, %%3F, %%23, %%40, and '@' in a path or query as %%40)", secrets.URL(raw))
	}
	u, err := url.Parse(raw)
	if err != nil {
		// Parse errors quote pieces of the URL, which may be pieces of a
		// password: secrets.Reason leaves them out.
		return nil, fmt.Errorf("invalid URL %q: %s", secrets.URL(raw), secrets.Reason(err))
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "https":
	default:
		return nil, fmt.Errorf("scheme %q is not http or https", u.Scheme)
	}
	if u.Host == "" || u.Hostname() == "" {
		return nil, fmt.Errorf("URL %q has no host", secrets.URL(raw))
	}
	return u, nil
}

// hostPort is u's host:port, with the scheme's default port when none is given.
func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "80"
		if strings.EqualFold(u.Scheme, "https") {
			port = "443"
		}
	}
	return net.JoinHostPort(u.Hostname(), port)
}
