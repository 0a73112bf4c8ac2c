package ssex

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/fanscope/fanscope/internal/netx"
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
	status := netx.StatusText(code)
	refused := func(reason string) outcome {
		return outcome{status: code, reason: reason, fatal: c.fatal(&StatusError{Code: code, Reason: reason})}
	}
	switch code {
	case http.StatusOK:
		ct := resp.Header.Get("Content-Type")
		mt, _, err := mime.ParseMediaType(ct)
		if err == nil && strings.EqualFold(mt, "text/event-stream") {
			return outcome{}, true
		}
		if ct == "" {
			return refused(fmt.Sprintf("%s without a Content-Type, want text/event-stream", status)), false
		}
		return refused(fmt.Sprintf("%s with Content-Type %q, want text/event-stream", status, ct)), false
	case http.StatusNoContent:
		return refused("server asked to stop (204 No Content)"), false
	}
	r := netx.Refused(resp, bodySnippet(cancel, resp), "check the --sse URL path", time.Now())
	if r.Retry {
		return outcome{status: code, reason: r.Reason, retryAfter: r.RetryAfter}, false
	}
	return refused(r.Reason), false
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

// bodySnippet is netx.BodySnippet waiting at most a second, since an
// error body may never end.
func bodySnippet(cancel context.CancelCauseFunc, resp *http.Response) string {
	t := time.AfterFunc(time.Second, func() { cancel(errors.New("error body too slow")) })
	defer t.Stop()
	return netx.BodySnippet(resp)
}
