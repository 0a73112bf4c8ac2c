package netx

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/fanscope/fanscope/internal/secrets"
)

// MaxRetryAfter caps a server's Retry-After (a value that overflows a
// Duration is clamped to it too); clients may cap it lower.
const MaxRetryAfter = time.Hour

// StatusText is e.g. "401 Unauthorized".
func StatusText(code int) string {
	if t := http.StatusText(code); t != "" {
		return fmt.Sprintf("%d %s", code, t)
	}
	return strconv.Itoa(code)
}

// BodySnippet is the start of an error response's body (servers often say
// why there) as `: "text"`, its first line only, or "" when there is none.
// A body that may never end needs a deadline on the request's context.
func BodySnippet(resp *http.Response) string {
	if resp.Body == nil || resp.ContentLength == 0 {
		return ""
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	s := strings.TrimSpace(strings.ToValidUTF8(string(b), "\uFFFD"))
	if s == "" {
		return ""
	}
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i] + " …"
	}
	return ": " + strconv.Quote(s)
}

// Refusal is what an HTTP answer other than the one asked for means.
type Refusal struct {
	// Reason says it in words with a hint:
	// `401 Unauthorized: "token expired" (check -H/--bearer-env)`.
	Reason string
	// Retry is true for 408, 429 and 5xx: a later attempt may succeed,
	// after RetryAfter (from the Retry-After header) or the backoff.
	Retry      bool
	RetryAfter time.Duration
}

// Refused classifies resp; body is its BodySnippet and notFound the hint
// for a 404 ("check the --poll URL path").
func Refused(resp *http.Response, body, notFound string, now time.Time) Refusal {
	code := resp.StatusCode
	r := Refusal{Reason: StatusText(code) + body}
	switch code {
	case http.StatusRequestTimeout, http.StatusTooManyRequests:
		r.Retry = true
	case http.StatusUnauthorized:
		r.Reason += " (check -H/--bearer-env)"
	case http.StatusForbidden:
		r.Reason += " (the credentials sent lack access; check -H/--bearer-env)"
	case http.StatusNotFound:
		r.Reason += " (" + notFound + ")"
	}
	if code >= 500 {
		r.Retry = true
	}
	if r.Retry {
		r.RetryAfter = ParseRetryAfter(resp.Header.Get("Retry-After"), now)
	}
	return r
}

// ParseRetryAfter reads a Retry-After header (seconds or an HTTP date),
// at most MaxRetryAfter.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(min(n, int(MaxRetryAfter/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), MaxRetryAfter)
	}
	return 0
}

// Unrecoverable says why err, from sending a request, cannot be fixed by
// retrying: a certificate that does not verify, or (before any connection
// worked, so a DNS hiccup later does not end a long watch) a host that
// does not exist; hint names the flag to check ("check the --poll URL").
// ok is false for errors worth retrying. The reason names no URL.
func Unrecoverable(err error, everConnected bool, hint string) (reason string, ok bool) {
	var (
		verifyErr *tls.CertificateVerificationError
		unknownCA x509.UnknownAuthorityError
		badHost   x509.HostnameError
		badCert   x509.CertificateInvalidError
		dnsErr    *net.DNSError
	)
	switch {
	case errors.As(err, &verifyErr), errors.As(err, &unknownCA), errors.As(err, &badHost), errors.As(err, &badCert):
		return fmt.Sprintf("tls: %s (use --tls-ca FILE or --tls-insecure)", secrets.Reason(err)), true
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound && !everConnected:
		return fmt.Sprintf("host %q not found (%s)", dnsErr.Name, hint), true
	}
	return "", false
}
