// Package netx holds what fanscope's WebSocket, Socket.IO and polling
// clients (wsx, pollx) share: [NAME=]URL flags, URLs and error texts with
// secrets masked, the --tls-ca / --tls-insecure transport, backoff with a
// floor and jitter, and Retry-After.
package netx

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// SecretQueryKeys are the URL query keys whose values are shown as "***"
// (SPEC.md, "Health that tells the truth"); matched case-insensitively.
var SecretQueryKeys = []string{"token", "access_token", "auth", "key", "apikey", "password", "secret", "sig", "signature"}

// Masked replaces every secret in shown text.
const Masked = "***"

func secretKey(k string) bool {
	return slices.ContainsFunc(SecretQueryKeys, func(s string) bool { return strings.EqualFold(s, k) })
}

// RedactURL is u as text with its password and the values of secret query
// keys replaced by "***"; the query keeps its order and spelling otherwise.
func RedactURL(u *url.URL) string {
	if u == nil {
		return ""
	}
	v := *u
	if v.RawQuery != "" {
		parts := strings.Split(v.RawQuery, "&")
		for i, p := range parts {
			k, _, ok := strings.Cut(p, "=")
			if dk, err := url.QueryUnescape(k); err == nil {
				k = dk
			}
			if ok && secretKey(k) {
				parts[i] = p[:strings.IndexByte(p, '=')+1] + Masked
			}
		}
		v.RawQuery = strings.Join(parts, "&")
	}
	if _, ok := v.User.Password(); ok {
		// Redacted writes "xxxxx"; url.String would escape "***".
		return strings.Replace(v.Redacted(), ":xxxxx@", ":"+Masked+"@", 1)
	}
	return v.String()
}

// Scrubber replaces known secret values (a URL's password and secret query
// values, Authorization, Cookie and Proxy-Authorization header values) in
// text a library produced, such as an error that quotes the request URL.
type Scrubber struct {
	secrets []string // longest first, so a secret inside another is not half-replaced
}

// NewScrubber collects the secrets of u and h.
func NewScrubber(u *url.URL, h http.Header) *Scrubber {
	s := &Scrubber{}
	add := func(v string) {
		if v != "" && !slices.Contains(s.secrets, v) {
			s.secrets = append(s.secrets, v)
		}
	}
	if u != nil {
		if pw, ok := u.User.Password(); ok {
			add(pw)
			add(url.PathEscape(pw))
			add(url.QueryEscape(pw))
		}
		for k, vs := range u.Query() {
			if secretKey(k) {
				for _, v := range vs {
					add(v)
					add(url.QueryEscape(v))
				}
			}
		}
	}
	for k, vs := range h {
		switch http.CanonicalHeaderKey(k) {
		case "Authorization", "Cookie", "Proxy-Authorization":
			for _, v := range vs {
				add(v)
				// "Bearer abc": the credential alone may be quoted too.
				if _, cred, ok := strings.Cut(v, " "); ok {
					add(strings.TrimSpace(cred))
				}
			}
		}
	}
	slices.SortFunc(s.secrets, func(a, b string) int { return len(b) - len(a) })
	return s
}

// Scrub returns text with every secret replaced by "***".
func (s *Scrubber) Scrub(text string) string {
	if s == nil {
		return text
	}
	for _, v := range s.secrets {
		text = strings.ReplaceAll(text, v, Masked)
	}
	return text
}

// SplitEndpoint splits a source flag value "[NAME=]URL" (what names the
// flag in messages, e.g. "ws endpoint") and checks the URL's scheme against
// schemes. NAME defaults to the URL's host:port. Errors are plain; callers
// wrap them with their package's usage error.
func SplitEndpoint(flag, what string, schemes ...string) (name, rawURL string, err error) {
	s := strings.TrimSpace(flag)
	if s == "" {
		return "", "", fmt.Errorf("parse %s: empty value, want [NAME=]URL", what)
	}
	raw := s
	// A URL's query may hold '=', so a NAME is only split off when the text
	// before the first '=' is not itself the start of a URL.
	if i := strings.IndexByte(s, '='); i >= 0 && !strings.Contains(s[:i], "://") {
		name, raw = strings.TrimSpace(s[:i]), strings.TrimSpace(s[i+1:])
		if name == "" {
			return "", "", fmt.Errorf("parse %s: empty NAME before '=', want [NAME=]URL", what)
		}
		if strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return "", "", fmt.Errorf("parse %s %q: NAME contains control characters", what, name)
		}
	}
	u, err := CheckURL(raw, schemes...)
	if err != nil {
		return "", "", fmt.Errorf("parse %s: %w", what, err)
	}
	if name == "" {
		name = HostPort(u)
	}
	return name, raw, nil
}

// CheckURL parses raw and checks that it is an absolute URL with a host and
// one of schemes. The error never quotes the URL (it may hold secrets).
func CheckURL(raw string, schemes ...string) (*url.URL, error) {
	want := strings.Join(schemes, "://, ") + "://"
	if !strings.Contains(raw, "://") {
		return nil, fmt.Errorf("URL has no scheme, want %s", want)
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error repeats the whole URL, which may hold a password.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("invalid URL: %w", err)
	}
	if !slices.Contains(schemes, strings.ToLower(u.Scheme)) {
		return nil, fmt.Errorf("URL scheme %q is not one of %s", u.Scheme, want)
	}
	if u.Host == "" || u.Hostname() == "" {
		return nil, fmt.Errorf("URL %s has no host", RedactURL(u))
	}
	return u, nil
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

// CheckHeader checks that every header name is an HTTP token and no value
// holds control characters other than tab, so a bad -H is refused before
// the first attempt rather than failing every one.
func CheckHeader(h http.Header) error {
	for k, vs := range h {
		if !validHeaderName(k) {
			return fmt.Errorf("invalid header name %q", k)
		}
		for _, v := range vs {
			for i := 0; i < len(v); i++ {
				if b := v[i]; (b < ' ' && b != '\t') || b == 0x7f {
					return fmt.Errorf("header %s: value contains control characters", k)
				}
			}
		}
	}
	return nil
}

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

// transports holds one transport per TLS option set, so K connections to
// one endpoint share a connection pool and the CA file is read once.
var transports struct {
	sync.Mutex
	m map[[2]string]*http.Transport
}

// Transport returns a shared HTTP/1.1 transport with --tls-ca (a PEM file
// added to the system roots) and --tls-insecure applied. HTTP/1.1 because a
// WebSocket handshake needs the connection to itself, and because K polls
// or streams should be K connections, not one multiplexed one.
func Transport(tlsCA string, tlsInsecure bool) (*http.Transport, error) {
	key := [2]string{tlsCA, strconv.FormatBool(tlsInsecure)}
	transports.Lock()
	defer transports.Unlock()
	if t := transports.m[key]; t != nil {
		return t, nil
	}
	tc := &tls.Config{InsecureSkipVerify: tlsInsecure}
	if tlsCA != "" {
		pem, err := os.ReadFile(tlsCA)
		if err != nil {
			return nil, fmt.Errorf("read --tls-ca file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("read --tls-ca file %s: no PEM certificates in it", tlsCA)
		}
		tc.RootCAs = pool
	}
	t := &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   10 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		TLSClientConfig:     tc,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: 1 << 10,
		IdleConnTimeout:     90 * time.Second,
	}
	var p http.Protocols
	p.SetHTTP1(true)
	t.Protocols = &p
	if transports.m == nil {
		transports.m = make(map[[2]string]*http.Transport)
	}
	transports.m[key] = t
	return t, nil
}

// TLSProblem returns a reason with a hint when err is a certificate
// failure, which retrying cannot fix; ok is false otherwise.
func TLSProblem(err error) (reason string, ok bool) {
	var (
		verifyErr *tls.CertificateVerificationError
		unknownCA x509.UnknownAuthorityError
		badHost   x509.HostnameError
		badCert   x509.CertificateInvalidError
	)
	switch {
	case errors.As(err, &verifyErr), errors.As(err, &unknownCA), errors.As(err, &badHost), errors.As(err, &badCert):
		return fmt.Sprintf("tls: %v (use --tls-ca FILE or --tls-insecure)", Unwrap(err)), true
	}
	return "", false
}

// Unwrap drops a *url.Error's wrapping, which repeats the URL.
func Unwrap(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// Backoff is the wait before the next attempt: floor after a connection
// that ended cleanly (failures 0), then doubling per consecutive failure up
// to maxWait, with jitter in the upper half so many clients do not
// reconnect in step. jitter(n) returns a value in [0, n).
func Backoff(floor, maxWait time.Duration, failures int, jitter func(int64) int64) time.Duration {
	if failures <= 0 {
		return floor
	}
	limit := max(maxWait, floor)
	d := floor
	for i := 0; i < failures && d < limit; i++ {
		d *= 2
	}
	d = min(d, limit)
	half := d / 2
	return half + time.Duration(jitter(int64(d-half)+1))
}

// ParseRetryAfter reads a Retry-After header (seconds or an HTTP date).
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// StatusText is e.g. "401 Unauthorized".
func StatusText(code int) string {
	if t := http.StatusText(code); t != "" {
		return fmt.Sprintf("%d %s", code, t)
	}
	return strconv.Itoa(code)
}
