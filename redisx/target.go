package redisx

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/fanscope/fanscope/internal/secrets"
)

// endpoint is one parsed Redis address with its credentials.
type endpoint struct {
	scheme  string // redis, rediss, unix
	network string // tcp, unix
	addr    string // host:port or socket path
	user    string
	pass    string
	hasPass bool
	db      int
	tls     *tls.Config
}

// parseEndpoint parses redis://, rediss:// and unix:// URLs. A bare
// host:port is taken as redis://host:port. Errors never quote the URL or
// a piece of it that could be part of the password: only fields read
// after the userinfo (port, path, query), and only from a URL whose
// userinfo is where both readings of the URL put it.
func parseEndpoint(raw string, o Options) (endpoint, error) {
	var ep endpoint
	if raw == "" {
		return ep, fmt.Errorf("empty URL")
	}
	if !hasScheme(raw) {
		raw = "redis://" + raw
	}
	if secrets.Ambiguous(raw) {
		// "redis://u:p/x@host" is host u, port "p", path "x@host" to
		// net/url: pieces of the password would land in the address and
		// in the messages about it.
		return ep, fmt.Errorf("ambiguous URL: an '@' follows a '/', '?' or '#' " +
			"(if the password holds '/', '?', '#' or '@', percent-encode them: %%2F, %%3F, %%23, %%40)")
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error repeats the raw URL and its reason quotes pieces of
		// it (`invalid port ":pa" after host`): keep the reason unquoted.
		return ep, fmt.Errorf("malformed URL: %s (percent-encode special characters in the user and password: %%25 for %%, %%20 for a space)", secrets.Reason(err))
	}
	ep.scheme = u.Scheme
	if u.User != nil {
		ep.user = u.User.Username()
		ep.pass, ep.hasPass = u.User.Password()
	}
	q := u.Query()
	switch u.Scheme {
	case "redis", "rediss":
		ep.network = "tcp"
		host, port := u.Hostname(), u.Port()
		if host == "" {
			return ep, fmt.Errorf("URL has no host")
		}
		if port == "" {
			port = "6379"
		}
		if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
			return ep, fmt.Errorf("bad port %q (want 1 to 65535)", port)
		}
		ep.addr = net.JoinHostPort(host, port)
		path := strings.Trim(u.Path, "/")
		if path != "" {
			db, err := strconv.Atoi(path)
			if err != nil || db < 0 {
				return ep, fmt.Errorf("bad database number %q in the URL path (want /0, /1, …)", path)
			}
			ep.db = db
		}
	case "unix":
		ep.network = "unix"
		if u.Path == "" {
			return ep, fmt.Errorf("unix URL has no socket path (want unix:///path/to/redis.sock)")
		}
		ep.addr = u.Path
	default:
		return ep, fmt.Errorf("unsupported scheme %q (want redis://, rediss:// or unix://)", u.Scheme)
	}
	if v := q.Get("db"); v != "" {
		db, err := strconv.Atoi(v)
		if err != nil || db < 0 {
			return ep, fmt.Errorf("bad database number %q", v)
		}
		ep.db = db
	}
	for k := range q {
		if k != "db" {
			return ep, fmt.Errorf("unsupported URL parameter %q (only db is understood)", k)
		}
	}
	if ep.scheme == "rediss" {
		cfg, err := tlsConfig(o)
		if err != nil {
			return ep, err
		}
		ep.tls = cfg
	} else if o.TLSCA != "" || o.TLSInsecure {
		if ep.scheme == "unix" {
			return ep, fmt.Errorf("TLS options given for a unix socket")
		}
		return ep, fmt.Errorf("TLS options given but the URL is redis://; use rediss:// for TLS")
	}
	return ep, nil
}

func tlsConfig(o Options) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: o.TLSInsecure}
	if o.TLSCA != "" {
		pem, err := os.ReadFile(o.TLSCA)
		if err != nil {
			return nil, fmt.Errorf("read TLS CA file: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("TLS CA file %s holds no PEM certificate", o.TLSCA)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// withAddr is the same endpoint (credentials, TLS, db) at another address,
// for cluster nodes and sentinel-discovered primaries.
func (e endpoint) withAddr(addr string) endpoint {
	e.addr = addr
	if e.network == "unix" {
		e.network, e.scheme = "tcp", "redis"
	}
	return e
}

// String is the URL with the password replaced by ***.
func (e endpoint) String() string {
	var b strings.Builder
	b.WriteString(e.scheme)
	b.WriteString("://")
	if e.user != "" || e.hasPass {
		b.WriteString(url.PathEscape(e.user))
		if e.hasPass {
			b.WriteString(":***")
		}
		b.WriteString("@")
	}
	if e.network == "unix" {
		b.WriteString(e.addr)
		if e.db != 0 {
			b.WriteString("?db=" + strconv.Itoa(e.db))
		}
		return b.String()
	}
	b.WriteString(e.addr)
	b.WriteString("/" + strconv.Itoa(e.db))
	return b.String()
}

// loopback reports whether the endpoint is a unix socket or a loopback IP
// (or "localhost").
func (e endpoint) loopback() bool {
	if e.network == "unix" {
		return true
	}
	host, _, err := net.SplitHostPort(e.addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

var epoch = time.Now()

// monoNow is a monotonic clock reading that fits an atomic.Int64.
func monoNow() int64 { return int64(time.Since(epoch)) }

// dialer dials the endpoint's network (the address comes from go-redis,
// which matters for cluster nodes) and does the TLS handshake within the
// dial timeout.
func (e endpoint) dialer(timeout time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := net.Dialer{Timeout: timeout, KeepAlive: 15 * time.Second}
		conn, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if e.tls != nil {
			cfg := e.tls.Clone()
			if cfg.ServerName == "" {
				if host, _, err := net.SplitHostPort(addr); err == nil {
					cfg.ServerName = host
				}
			}
			tc := tls.Client(conn, cfg)
			hctx, cancel := context.WithTimeout(ctx, timeout)
			err := tc.HandshakeContext(hctx)
			cancel()
			if err != nil {
				_ = conn.Close()
				return nil, &handshakeError{err}
			}
			conn = tc
		}
		return conn, nil
	}
}

// handshakeError marks a failed TLS handshake, so the message can say so.
type handshakeError struct{ err error }

func (e *handshakeError) Error() string { return "TLS handshake: " + e.err.Error() }
func (e *handshakeError) Unwrap() error { return e.err }

// greetingWait is how long greeting waits for a server to speak first.
const greetingWait = 500 * time.Millisecond

// greeting connects once more and reads what the server says before it is
// asked anything. Redis refuses a client it will not serve (protected
// mode's DENIED, maxclients) by writing an error reply and closing, and a
// client that has already written its first command then often sees only
// a reset or a broken pipe. It returns that error reply, or nil when the
// server says nothing (a healthy Redis never speaks first).
func (e endpoint) greeting(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, greetingWait)
	defer cancel()
	conn, err := e.dialer(greetingWait)(ctx, e.network, e.addr)
	if err != nil {
		return nil
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(greetingWait))
	line, _ := bufio.NewReaderSize(conn, 4096).ReadString('\n')
	if strings.HasPrefix(line, "-") && strings.HasSuffix(line, "\n") {
		return serverError(strings.TrimRight(line[1:], "\r\n"))
	}
	return nil
}

// explain replaces "the server closed the connection" with the reason the
// server gave, when it gave one.
func (e endpoint) explain(ctx context.Context, err error) error {
	if err == nil || !closedByServer(err) {
		return err
	}
	if why := e.greeting(ctx); why != nil {
		return why
	}
	return err
}
