package netx

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

const (
	// MaxHeadBytes bounds a response head. net/http allows 10 MB; a
	// stream's or a poll's response has a handful of headers, and a
	// process may hold thousands of connections.
	MaxHeadBytes = 1 << 20
	// ReadBufferSize is the per-connection read buffer. It is small
	// because a process may hold 10,000 connections; parsers keep their
	// own buffers, so larger messages still arrive whole.
	ReadBufferSize = 2 << 10
)

// NewTransport returns an HTTP/1.1 transport that many clients can share:
// no limit on connections per host, a large idle pool so reconnects reuse
// connections, small buffers, a bounded response head and no response
// timeout (each client watches for stalls itself). tlsCA is a PEM file
// added to the system roots; tlsInsecure skips certificate checks.
//
// HTTP/1.1 because a WebSocket handshake needs the connection to itself,
// and because K streams or polls should be K connections (the fan-out load
// the user asked for, with per-connection faults), not one multiplexed one.
func NewTransport(tlsCA string, tlsInsecure bool) (*http.Transport, error) {
	tc, err := TLSConfig(nil, tlsCA, tlsInsecure)
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
		ReadBufferSize:      ReadBufferSize,
		// Through a proxy http.Transport reads the head; bound it.
		MaxResponseHeaderBytes: MaxHeadBytes,
		WriteBufferSize:        1 << 10,
	}
	var p http.Protocols
	p.SetHTTP1(true)
	t.Protocols = &p
	return t, nil
}

// TLSConfig is base (or an empty config) with the --tls-ca and
// --tls-insecure options applied.
func TLSConfig(base *tls.Config, tlsCA string, tlsInsecure bool) (*tls.Config, error) {
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
	return tc, nil
}

// transports holds the transports SharedTransport made, so that clients
// with the same base transport and TLS options share one (and its
// connection pool), and a CA file is read once, not once per connection.
var transports struct {
	sync.Mutex
	m map[transportKey]*http.Transport
}

type transportKey struct {
	base     *http.Transport
	tlsCA    string
	insecure bool
}

// SharedTransport is the transport for base (nil: a NewTransport) with the
// TLS options applied: a copy of base when an option is set (a shared
// transport must not silently drop --tls-ca), base itself otherwise. The
// same arguments give the same transport.
func SharedTransport(base *http.Transport, tlsCA string, tlsInsecure bool) (*http.Transport, error) {
	if base != nil && tlsCA == "" && !tlsInsecure {
		return base, nil
	}
	key := transportKey{base: base, tlsCA: tlsCA, insecure: tlsInsecure}
	transports.Lock()
	defer transports.Unlock()
	if t := transports.m[key]; t != nil {
		return t, nil
	}
	var t *http.Transport
	if base == nil {
		var err error
		if t, err = NewTransport(tlsCA, tlsInsecure); err != nil {
			return nil, err
		}
	} else {
		tc, err := TLSConfig(base.TLSClientConfig, tlsCA, tlsInsecure)
		if err != nil {
			return nil, err
		}
		t = base.Clone()
		t.TLSClientConfig = tc
		if t.MaxResponseHeaderBytes <= 0 {
			t.MaxResponseHeaderBytes = MaxHeadBytes
		}
	}
	if transports.m == nil {
		transports.m = make(map[transportKey]*http.Transport)
	}
	transports.m[key] = t
	return t, nil
}
