package ssex

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// StatusError is an HTTP response that ended the attempts for good (a 401,
// a 404, a 200 that is not an event stream): its status and why, in words.
// The error Run returns wraps it.
type StatusError struct {
	Code   int
	Reason string // e.g. `401 Unauthorized: "token expired" (check -H/--bearer-env)`
}

func (e *StatusError) Error() string { return e.Reason }

// classify decides what a response means; ok is true for a stream to read.
func (c *Client) classify(cancel context.CancelCauseFunc, resp *http.Response) (outcome, bool) {
	code := resp.StatusCode
	status := statusText(resp)
	refused := func(reason string) outcome {
		return outcome{status: code, reason: reason, fatal: c.fatal(&StatusError{Code: code, Reason: reason})}
	}
	switch {
	case code == http.StatusOK:
		ct := resp.Header.Get("Content-Type")
		mt, _, err := mime.ParseMediaType(ct)
		if err == nil && strings.EqualFold(mt, "text/event-stream") {
			return outcome{}, true
		}
		if ct == "" {
			return refused(fmt.Sprintf("%s without a Content-Type, want text/event-stream", status)), false
		}
		return refused(fmt.Sprintf("%s with Content-Type %q, want text/event-stream", status, ct)), false
	case code == http.StatusNoContent:
		return refused("server asked to stop (204 No Content)"), false
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests, code >= 500:
		return outcome{status: code, reason: status + bodySnippet(cancel, resp),
			retryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}, false
	}
	reason := status + bodySnippet(cancel, resp)
	switch code {
	case http.StatusUnauthorized:
		reason += " (check -H/--bearer-env)"
	case http.StatusForbidden:
		reason += " (the credentials sent lack access; check -H/--bearer-env)"
	case http.StatusNotFound:
		reason += " (check the --sse URL path)"
	}
	return refused(reason), false
}

// isRedirect reports whether http.Client would follow resp.
func isRedirect(resp *http.Response) bool {
	switch resp.StatusCode {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		return resp.Header.Get("Location") != ""
	}
	return false
}

// statusText is e.g. "401 Unauthorized".
func statusText(resp *http.Response) string {
	if t := http.StatusText(resp.StatusCode); t != "" {
		return fmt.Sprintf("%d %s", resp.StatusCode, t)
	}
	return strconv.Itoa(resp.StatusCode)
}

// bodySnippet is the start of an error response's body (servers often say
// why there), as ": "text"", or "" when there is none. It waits at most a
// second, since an error body may never end.
func bodySnippet(cancel context.CancelCauseFunc, resp *http.Response) string {
	if resp.ContentLength == 0 {
		return ""
	}
	t := time.AfterFunc(time.Second, func() { cancel(errors.New("error body too slow")) })
	defer t.Stop()
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

// parseRetryAfter reads a Retry-After header (seconds or an HTTP date).
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(min(n, int(MaxRetry/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
