// Package secrets is the one place fanscope masks credentials before it
// prints, serves or returns text: URL passwords, secret query values and
// secret header values. It masks by field (the userinfo's password, the
// value of a query parameter named like a secret, a header named like one),
// never by searching text for a secret's value: a short secret that also
// occurs elsewhere in a message would garble the message and so reveal
// itself.
package secrets

import (
	"errors"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// Mask is what a secret is shown as.
const Mask = "***"

// queryKeys are the query parameter names whose values are secrets; they
// are compared case-insensitively after percent-decoding.
var queryKeys = map[string]bool{
	"token": true, "access_token": true, "auth": true, "key": true, "apikey": true,
	"password": true, "secret": true, "sig": true, "signature": true,
}

// secretWords make a query parameter or header secret when its name holds
// one of them ("refresh_token", "client_secret", "X-Api-Key", "X-Session-Id").
var secretWords = []string{"token", "secret", "password", "passwd", "signature", "apikey", "api_key", "api-key", "credential", "session"}

// QueryKey reports whether a query parameter named key (percent-decoded or
// not) holds a secret.
func QueryKey(key string) bool {
	if k, err := url.QueryUnescape(key); err == nil {
		key = k
	}
	k := strings.ToLower(strings.TrimSpace(key))
	if queryKeys[k] {
		return true
	}
	for _, w := range secretWords {
		if strings.Contains(k, w) {
			return true
		}
	}
	return false
}

// URL returns raw with the userinfo password and the values of secret query
// (and fragment) parameters replaced by Mask. raw need not parse: fields are
// found by the URL syntax, so a usage error can show the URL too. The rest
// of raw is kept byte for byte.
//
// A password may hold '/', '?', '#' or '@' unescaped, which makes a URL
// ambiguous: "http://u:12/x@host" is host "u", port 12 by RFC 3986, or the
// password "12/x" for host "host" by intent. URL masks what either reading
// calls secret, so "http://host:8080/a?mail=x@y" shows as
// "http://host:***@y". Ambiguous reports such URLs, so that a caller can
// refuse them with a hint to percent-encode.
func URL(raw string) string {
	spans := secretSpans(raw)
	if len(spans) == 0 {
		return raw
	}
	var b strings.Builder
	b.Grow(len(raw) + 3*len(spans))
	at := 0
	for _, s := range spans {
		b.WriteString(raw[at:s.from])
		b.WriteString(Mask)
		at = s.to
	}
	b.WriteString(raw[at:])
	return b.String()
}

// span is raw[from:to], a secret.
type span struct{ from, to int }

// secretSpans lists the secret parts of raw, sorted and merged.
func secretSpans(raw string) []span {
	var spans []span
	rest, base := raw, 0
	if i := strings.Index(raw, "://"); i >= 0 && !strings.ContainsAny(raw[:i], "/?#@") {
		base = i + 3
		rest = raw[base:]
		authEnd := len(rest)
		if j := strings.IndexAny(rest, "/?#"); j >= 0 {
			authEnd = j
		}
		// RFC 3986: the userinfo ends at the authority's last '@'.
		if at := strings.LastIndexByte(rest[:authEnd], '@'); at >= 0 {
			if c := strings.IndexByte(rest[:at], ':'); c >= 0 {
				spans = append(spans, span{base + c + 1, base + at})
			}
		}
		// By intent: a password with '/', '?', '#' or '@' in it runs to the
		// last '@', when what is before its ':' can be a user name.
		if at := strings.LastIndexByte(rest, '@'); at >= 0 {
			if c := strings.IndexByte(rest[:at], ':'); c >= 0 && !strings.ContainsAny(rest[:c], "/?#") {
				spans = append(spans, span{base + c + 1, base + at})
				// Its query and fragment, read after that '@'.
				after := rest[at+1:]
				if q := strings.IndexAny(after, "?#"); q >= 0 {
					spans = appendPairSpans(spans, after, base+at+1, q)
				}
			}
		}
		rest = rest[authEnd:]
		base += authEnd
	}
	// Query and fragment parameters, by the RFC reading.
	if q := strings.IndexAny(rest, "?#"); q >= 0 {
		spans = appendPairSpans(spans, rest, base, q)
	}
	if len(spans) < 2 {
		return spans
	}
	slices.SortFunc(spans, func(a, b span) int { return a.from - b.from })
	merged := spans[:1]
	for _, s := range spans[1:] {
		last := &merged[len(merged)-1]
		if s.from <= last.to {
			last.to = max(last.to, s.to)
			continue
		}
		merged = append(merged, s)
	}
	return merged
}

// appendPairSpans adds the values of secret "k=v" parameters in the query
// and fragment of rest, which starts at raw offset base; rest[q] is the
// '?' or '#' that starts them.
func appendPairSpans(spans []span, rest string, base, q int) []span {
	inFrag := rest[q] == '#'
	from := q + 1
	for from <= len(rest) {
		// In the query, '&' ends a parameter and '#' the query; in the
		// fragment only '&' separates.
		stop := "&#"
		if inFrag {
			stop = "&"
		}
		end := len(rest)
		if j := strings.IndexAny(rest[from:], stop); j >= 0 {
			end = from + j
		}
		pair := rest[from:end]
		if k, _, ok := strings.Cut(pair, "="); ok && QueryKey(k) {
			if v := from + len(k) + 1; v < end {
				spans = append(spans, span{base + v, base + end})
			}
		}
		if end < len(rest) && rest[end] == '#' {
			inFrag = true
		}
		from = end + 1
	}
	return spans
}

// Ambiguous reports whether raw holds an unescaped '/', '?', '#' or '@'
// that net/url reads as the end of the host while URL reads it as part of
// a password: "http://u:12/x@host" connects to host "u" on port 12. Such a
// URL connects somewhere its author did not mean; refuse it and ask for
// the password to be percent-encoded (%2F, %3F, %23, %40).
func Ambiguous(raw string) bool {
	i := strings.Index(raw, "://")
	if i < 0 || strings.ContainsAny(raw[:i], "/?#@") {
		return false
	}
	rest := raw[i+3:]
	authEnd := len(rest)
	if j := strings.IndexAny(rest, "/?#"); j >= 0 {
		authEnd = j
	}
	at := strings.LastIndexByte(rest, '@')
	if at < authEnd {
		return false // no '@' past the authority: both readings agree
	}
	c := strings.IndexByte(rest[:at], ':')
	return c >= 0 && !strings.ContainsAny(rest[:c], "/?#")
}

// secretHeaders are masked whatever their value looks like.
var secretHeaders = map[string]bool{
	"authorization": true, "proxy-authorization": true, "cookie": true, "set-cookie": true,
}

// urlHeaders carry a URL, whose secrets are masked as URL does.
var urlHeaders = map[string]bool{
	"location": true, "content-location": true, "referer": true, "origin": true,
}

// HeaderName reports whether a header named name carries a secret.
func HeaderName(name string) bool {
	n := strings.ToLower(strings.TrimSpace(name))
	if secretHeaders[n] {
		return true
	}
	for _, w := range []string{"token", "secret", "key", "auth", "password", "passwd", "session", "credential", "signature"} {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// Header returns a header's value as it may be shown: Mask for
// Authorization, Proxy-Authorization, Cookie, Set-Cookie and headers named
// like a secret (token, secret, key, auth, password, session); an
// Authorization value keeps its scheme ("Bearer ***"). Headers that carry
// a URL (Location, Referer) have the URL's secrets masked.
func Header(name, value string) string {
	n := strings.ToLower(strings.TrimSpace(name))
	switch {
	case n == "authorization" || n == "proxy-authorization":
		if scheme, _, ok := strings.Cut(strings.TrimSpace(value), " "); ok && isToken(scheme) {
			return scheme + " " + Mask
		}
		return Mask
	case HeaderName(n):
		return Mask
	case urlHeaders[n]:
		return URL(value)
	}
	return value
}

// isToken reports whether s looks like an auth scheme name ("Bearer", "Basic").
func isToken(s string) bool {
	if s == "" || len(s) > 20 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

// quoted matches a Go-quoted string in an error message.
var quoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)

// Error returns err with every URL it names masked. A *url.Error (what
// url.Parse and http.Client return) repeats the whole URL. A parse error's
// URL is cut at the first '#', which may be inside a password, and its
// reason quotes pieces of the URL (`invalid port ":pa" after host`), so a
// parse error names no URL at all ("parse URL: invalid port after host");
// show URL(raw) beside it. The result unwraps to the cause behind a
// request's url.Error (context.Canceled, a *net.OpError), never to the
// url.Error with its raw URL. nil stays nil.
func Error(err error) error {
	var ue *url.Error
	if err == nil || !errors.As(err, &ue) {
		return err
	}
	parse := ue.Op == "parse"
	masked := "parse URL: " + Reason(ue)
	if !parse {
		masked = ue.Op + " " + quoteURL(URL(ue.URL)) + ": " + Reason(ue)
	}
	msg := masked
	if err != error(ue) {
		// ue is wrapped: replace its text, a field of the message, not a secret.
		msg = strings.Replace(err.Error(), ue.Error(), masked, 1)
	}
	return &maskedError{msg: msg, cause: ue.Err, parse: parse}
}

// Reason is the cause of a *url.Error in err without the URL, masked as
// Error masks it ("invalid port after host", "dial tcp …: connection
// refused"), or err's text when there is none.
func Reason(err error) string {
	if err == nil {
		return ""
	}
	var ue *url.Error
	if !errors.As(err, &ue) || ue.Err == nil {
		return err.Error()
	}
	s := ue.Err.Error()
	if ue.Op == "parse" {
		s = strings.Join(strings.Fields(quoted.ReplaceAllString(s, "")), " ")
	}
	return s
}

func quoteURL(s string) string { return `"` + s + `"` }

type maskedError struct {
	msg   string
	cause error
	parse bool
}

func (e *maskedError) Error() string { return e.msg }

// Unwrap gives the cause of a network error (so errors.Is finds
// context.Canceled or a *net.OpError); a parse error's cause quotes the
// raw URL, so it is not given.
func (e *maskedError) Unwrap() error {
	if e.parse {
		return nil
	}
	return e.cause
}
