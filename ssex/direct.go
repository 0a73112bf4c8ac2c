package ssex

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
)

// directTransport opens one connection per request and gives the response
// body the connection itself: no pool, no background goroutines. An idle
// stream then costs its reader's goroutine and two small buffers, instead of
// the three goroutines and pooled buffers of an http.Transport connection,
// which matters with --sse-clients in the thousands. Requests that must go
// through a proxy are handed to base.
type directTransport struct {
	base *http.Transport
}

func (t *directTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.base.Proxy != nil {
		if p, err := t.base.Proxy(req); err != nil || p != nil {
			return t.base.RoundTrip(req)
		}
	}
	ctx := req.Context()
	host := req.URL.Hostname()
	port := req.URL.Port()
	if port == "" {
		port = "80"
		if req.URL.Scheme == "https" {
			port = "443"
		}
	}
	dial := t.base.DialContext
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	conn, err := dial(ctx, "tcp", net.JoinHostPort(host, port))
	if err != nil {
		return nil, err
	}
	if req.URL.Scheme == "https" {
		tc := &tls.Config{}
		if t.base.TLSClientConfig != nil {
			tc = t.base.TLSClientConfig.Clone()
		}
		if tc.ServerName == "" {
			tc.ServerName = host
		}
		tc.NextProtos = []string{"http/1.1"}
		tlsConn := tls.Client(conn, tc)
		if err := tlsConn.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, err
		}
		conn = tlsConn
	}
	// Ending the request's context closes the connection, which ends a
	// blocked read: the same contract as http.Transport.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	fail := func(err error) (*http.Response, error) {
		stop()
		conn.Close()
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		return nil, err
	}

	// Ask for gzip as browsers and http.Transport do, and undo it the same
	// way, so diagnostics can warn that the server compresses the stream.
	gz := false
	if req.Header.Get("Accept-Encoding") == "" && req.Header.Get("Range") == "" {
		req = req.Clone(ctx)
		req.Header.Set("Accept-Encoding", "gzip")
		gz = true
	}
	if err := req.Write(conn); err != nil {
		return fail(err)
	}
	// Small: it holds the status line and headers; stream reads larger
	// than it go straight into the client's read buffer.
	br := bufio.NewReaderSize(conn, 1<<10)
	if trace := httptrace.ContextClientTrace(ctx); trace != nil && trace.GotFirstResponseByte != nil {
		if _, err := br.Peek(1); err != nil {
			return fail(err)
		}
		trace.GotFirstResponseByte()
	}
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return fail(err)
	}
	body := &connBody{body: resp.Body, conn: conn, stop: stop}
	resp.Body = body
	if gz && strings.EqualFold(resp.Header.Get("Content-Encoding"), "gzip") {
		resp.Header.Del("Content-Encoding")
		resp.Header.Del("Content-Length")
		resp.ContentLength = -1
		resp.Uncompressed = true
		resp.Body = &gzipBody{connBody: body}
	}
	return resp, nil
}

// connBody is a response body that owns its connection.
type connBody struct {
	body io.ReadCloser
	conn net.Conn
	stop func() bool
	once sync.Once
}

func (b *connBody) Read(p []byte) (int, error) { return b.body.Read(p) }

func (b *connBody) Close() error {
	b.once.Do(func() {
		b.stop()
		b.conn.Close()
	})
	return nil
}

// gzipBody decompresses a body lazily, as http.Transport does.
type gzipBody struct {
	*connBody
	zr  *gzip.Reader
	err error
}

func (g *gzipBody) Read(p []byte) (int, error) {
	if g.zr == nil && g.err == nil {
		g.zr, g.err = gzip.NewReader(g.connBody)
	}
	if g.err != nil {
		if errors.Is(g.err, io.EOF) {
			return 0, io.ErrUnexpectedEOF
		}
		return 0, g.err
	}
	return g.zr.Read(p)
}
