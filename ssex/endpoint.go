package ssex

import (
	"errors"

	"github.com/fanscope/fanscope/internal/netx"
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

func usageErrorf(format string, args ...any) error {
	return netx.Errorf(ErrUsage, format, args...)
}

func fatalErrorf(format string, args ...any) error {
	return netx.Errorf(ErrFatal, format, args...)
}

// ParseEndpoint splits an --sse flag value "[NAME=]URL" into the endpoint's
// display name and its URL. NAME defaults to the URL's host:port (with the
// scheme's default port filled in). Only http and https URLs are accepted;
// errors wrap ErrUsage and show the URL with its secrets masked.
func ParseEndpoint(flag string) (name, rawURL string, err error) {
	return netx.SplitEndpoint(flag, "sse endpoint", ErrUsage, "http", "https")
}
