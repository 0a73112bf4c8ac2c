// Package netx holds what fanscope's delivery clients (ssex for SSE, wsx
// for WebSocket and Socket.IO, pollx for polling) share on the HTTP side:
// [NAME=]URL flags and URL and header checks, the --tls-ca / --tls-insecure
// transport, the redirect policy that keeps credentials with their origin,
// how an HTTP refusal or a failed request is put in words, backoff with a
// floor and jitter, Retry-After, the stall threshold, and one connection's
// health with the state records that change it. Every URL and error it
// shows is masked by field through internal/secrets, never by searching
// text for a secret's value.
package netx

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/fanscope/fanscope/internal/secrets"
)

// KindError carries a readable message while matching a package's
// sentinel (ErrUsage, ErrFatal) with errors.Is, so messages do not repeat
// the sentinel's text.
type KindError struct {
	Kind error
	Err  error
}

func (e *KindError) Error() string   { return e.Err.Error() }
func (e *KindError) Unwrap() []error { return []error{e.Kind, e.Err} }

// Errorf formats an error that also matches kind.
func Errorf(kind error, format string, args ...any) error {
	return &KindError{Kind: kind, Err: fmt.Errorf(format, args...)}
}

// SplitEndpoint splits a source flag value "[NAME=]URL" (what names the
// flag in messages, e.g. "ws endpoint") and checks the URL against
// schemes (see CheckURL). NAME defaults to the URL's host:port. Errors
// match usage (the package's ErrUsage) and show the flag with its secrets
// masked.
func SplitEndpoint(flag, what string, usage error, schemes ...string) (name, rawURL string, err error) {
	s := strings.TrimSpace(flag)
	if s == "" {
		return "", "", Errorf(usage, "parse %s: empty value, want [NAME=]URL", what)
	}
	rawURL = s
	// A URL's query may hold '=', so a NAME is only split off when the text
	// before the first '=' is not itself the start of a URL.
	if i := strings.IndexByte(s, '='); i >= 0 && !strings.Contains(s[:i], "://") {
		name, rawURL = strings.TrimSpace(s[:i]), strings.TrimSpace(s[i+1:])
		if name == "" {
			return "", "", Errorf(usage, "parse %s %q: empty NAME before '=', want [NAME=]URL", what, secrets.URL(flag))
		}
		if strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return "", "", Errorf(usage, "parse %s %q: NAME contains control characters", what, secrets.URL(flag))
		}
	}
	u, err := CheckURL(rawURL, schemes...)
	if err != nil {
		return "", "", Errorf(usage, "parse %s %q: %w", what, secrets.URL(flag), err)
	}
	if name == "" {
		name = HostPort(u)
	}
	return name, rawURL, nil
}

// CheckURL parses raw and checks that it is an absolute URL with a host
// and one of schemes (lower case). Its errors show raw with secrets
// masked; a URL whose password holds an unescaped '/', '?', '#' or '@' is
// refused, since it would connect somewhere its author did not mean.
func CheckURL(raw string, schemes ...string) (*url.URL, error) {
	if !strings.Contains(raw, "://") {
		return nil, fmt.Errorf("URL %q has no scheme, want %s", secrets.URL(raw), orList(schemes, "://"))
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
	if !slices.Contains(schemes, strings.ToLower(u.Scheme)) {
		want := orList(schemes, "")
		if len(schemes) > 2 {
			want = "one of " + want
		}
		return nil, fmt.Errorf("scheme %q is not %s", u.Scheme, want)
	}
	if u.Host == "" || u.Hostname() == "" {
		return nil, fmt.Errorf("URL %q has no host", secrets.URL(raw))
	}
	return u, nil
}

// orList is "a, b or c", each item followed by suffix.
func orList(items []string, suffix string) string {
	s := make([]string, len(items))
	for i, it := range items {
		s[i] = it + suffix
	}
	if len(s) < 2 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

// HostPort is u's host:port, with the scheme's default port when none is given.
func HostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "80"
		switch strings.ToLower(u.Scheme) {
		case "https", "wss":
			port = "443"
		}
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// Origin is u's scheme://host:port in lower case, what decides whether a
// redirect stays with the server the credentials were meant for.
func Origin(u *url.URL) string {
	return strings.ToLower(u.Scheme) + "://" + strings.ToLower(HostPort(u))
}

// Headers is a client's request headers, checked: Header without its
// "Host" entry, whose last value is Host.
type Headers struct {
	Header http.Header
	Host   string
	// Names are the canonical names given, "Host" left out.
	Names []string
}

// CheckHeader checks that every header name is an HTTP token and no value
// holds control characters other than tab, so a bad -H is refused before
// the first attempt rather than failing every one; it returns h split
// into headers to send and the Host override. into, when not nil, is
// added to (and may be replaced by h's values).
func CheckHeader(h, into http.Header) (Headers, error) {
	out := Headers{Header: into}
	if out.Header == nil {
		out.Header = make(http.Header, len(h))
	}
	for k, vs := range h {
		if !validHeaderName(k) {
			return Headers{}, fmt.Errorf("invalid header name %q", k)
		}
		for _, v := range vs {
			if !ValidHeaderValue(v) {
				return Headers{}, fmt.Errorf("header %s: value contains control characters", k)
			}
		}
		ck := http.CanonicalHeaderKey(k)
		if ck == "Host" {
			if len(vs) > 0 {
				out.Host = vs[len(vs)-1]
			}
			continue
		}
		out.Header[ck] = append([]string(nil), vs...)
		out.Names = append(out.Names, ck)
	}
	return out, nil
}

// validHeaderName reports whether k is an HTTP token.
func validHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		b := k[i]
		if b <= ' ' || b >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, b) >= 0 {
			return false
		}
	}
	return true
}

// ValidHeaderValue reports whether net/http will send v: no control
// characters except tab.
func ValidHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if b := v[i]; (b < ' ' && b != '\t') || b == 0x7f {
			return false
		}
	}
	return true
}

// Endpoint is a client's checked configuration: its URL, display name and
// request headers.
type Endpoint struct {
	URL   *url.URL
	Name  string // as given, or the URL's host:port
	Shown string // the URL with its secrets masked, for Status and errors
	Headers
}

// CheckEndpoint checks a client's URL (see CheckURL) and headers (see
// CheckHeader, which adds them to into); what names the client in errors
// ("poll endpoint"), which match usage (the package's ErrUsage).
func CheckEndpoint(what, name, rawURL string, header, into http.Header, usage error, schemes ...string) (Endpoint, error) {
	u, err := CheckURL(rawURL, schemes...)
	if err != nil {
		return Endpoint{}, Errorf(usage, "%s %q: %w", what, name, err)
	}
	if name == "" {
		name = HostPort(u)
	}
	h, err := CheckHeader(header, into)
	if err != nil {
		return Endpoint{}, Errorf(usage, "%s %s: %w", what, name, err)
	}
	return Endpoint{URL: u, Name: name, Shown: secrets.URL(rawURL), Headers: h}, nil
}

// Duration is a duration option: where it is, its default, and its name
// in messages ("" for one that may be negative, meaning off).
type Duration struct {
	V       *time.Duration
	Default time.Duration
	Name    string
}

// SetDurations fills zero options with their defaults and refuses
// negative named ones.
func SetDurations(ds ...Duration) error {
	for _, d := range ds {
		if *d.V == 0 {
			*d.V = d.Default
		}
		if *d.V < 0 && d.Name != "" {
			return fmt.Errorf("%s %s is negative", d.Name, *d.V)
		}
	}
	return nil
}
