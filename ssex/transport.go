package ssex

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// NewTransport returns an HTTP/1.1 transport for SSE connections that many
// clients can share: no limit on connections per host, a large idle pool so
// reconnects reuse connections, small buffers, and no response timeout (the
// client's stall watchdog covers that). tlsCA is a PEM file added to the
// system roots; tlsInsecure skips certificate checks. Errors wrap ErrUsage.
func NewTransport(tlsCA string, tlsInsecure bool) (*http.Transport, error) {
	tc, err := tlsConfig(nil, tlsCA, tlsInsecure)
	if err != nil {
		return nil, err
	}
	t := &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   10 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		TLSClientConfig:     tc,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConns:        0, // no limit
		MaxIdleConnsPerHost: 1 << 16,
		MaxConnsPerHost:     0, // no limit: one connection per stream
		IdleConnTimeout:     90 * time.Second,
		ReadBufferSize:      readBufSize,
		// Through a proxy http.Transport reads the head; bound it as the
		// direct path does.
		MaxResponseHeaderBytes: DefaultMaxHeadBytes,
		WriteBufferSize:        1 << 10,
	}
	// HTTP/2 would multiplex every stream onto one TCP connection, which is
	// not the fan-out load the user asked for, and hides per-connection faults.
	var p http.Protocols
	p.SetHTTP1(true)
	t.Protocols = &p
	return t, nil
}

// tlsConfig is base (or an empty config) with the --tls-ca and
// --tls-insecure options applied.
func tlsConfig(base *tls.Config, tlsCA string, tlsInsecure bool) (*tls.Config, error) {
	tc := &tls.Config{}
	if base != nil {
		tc = base.Clone()
	}
	if tlsInsecure {
		tc.InsecureSkipVerify = true
	}
	if tlsCA != "" {
		pem, err := os.ReadFile(tlsCA)
		if err != nil {
			return nil, usageErrorf("read --tls-ca file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, usageErrorf("read --tls-ca file %s: no PEM certificates in it", tlsCA)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

// transports holds the transports NewClient derived, so that clients with
// the same base transport and TLS options share one (and its connection
// pool), and a CA file is read once, not once per connection.
var transports struct {
	sync.Mutex
	m map[transportKey]*http.Transport
}

type transportKey struct {
	base     *http.Transport
	tlsCA    string
	insecure bool
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
	key := transportKey{base: base, tlsCA: cfg.TLSCA, insecure: cfg.TLSInsecure}
	transports.Lock()
	defer transports.Unlock()
	if t := transports.m[key]; t != nil {
		return t, nil
	}
	var t *http.Transport
	if base == nil {
		var err error
		if t, err = NewTransport(cfg.TLSCA, cfg.TLSInsecure); err != nil {
			return nil, err
		}
	} else {
		tc, err := tlsConfig(base.TLSClientConfig, cfg.TLSCA, cfg.TLSInsecure)
		if err != nil {
			return nil, err
		}
		t = base.Clone()
		t.TLSClientConfig = tc
		if t.MaxResponseHeaderBytes <= 0 {
			t.MaxResponseHeaderBytes = DefaultMaxHeadBytes
		}
	}
	if transports.m == nil {
		transports.m = make(map[transportKey]*http.Transport)
	}
	transports.m[key] = t
	return t, nil
}
