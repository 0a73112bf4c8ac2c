package ssex

import (
	"fmt"
	"net/http"

	"github.com/fanscope/fanscope/internal/netx"
)

// NewTransport returns an HTTP/1.1 transport for SSE connections that many
// clients can share (netx.NewTransport): no limit on connections per host,
// a large idle pool so reconnects reuse connections, small buffers, and no
// response timeout (the client's stall watchdog covers that). tlsCA is a
// PEM file added to the system roots; tlsInsecure skips certificate
// checks. Errors wrap ErrUsage.
func NewTransport(tlsCA string, tlsInsecure bool) (*http.Transport, error) {
	t, err := netx.NewTransport(tlsCA, tlsInsecure)
	if err != nil {
		return nil, &netx.KindError{Kind: ErrUsage, Err: err}
	}
	return t, nil
}

// transportFor is the transport for cfg: cfg.Transport as given when no TLS
// option is set; otherwise a copy of it with the TLS options applied (a
// shared transport must not silently drop --tls-ca); without one, a shared
// NewTransport.
func transportFor(cfg Config) (http.RoundTripper, error) {
	if cfg.Transport != nil && cfg.TLSCA == "" && !cfg.TLSInsecure {
		return cfg.Transport, nil
	}
	base, ok := cfg.Transport.(*http.Transport)
	if cfg.Transport != nil && !ok {
		return nil, fmt.Errorf("TLS options need an *http.Transport, got a %T", cfg.Transport)
	}
	t, err := netx.SharedTransport(base, cfg.TLSCA, cfg.TLSInsecure)
	if err != nil {
		return nil, &netx.KindError{Kind: ErrUsage, Err: err}
	}
	return t, nil
}
