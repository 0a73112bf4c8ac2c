package redisx

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"regexp"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"
)

// Sentinel errors. Every error this package returns wraps exactly one of
// them, so callers switch on these instead of on driver strings.
var (
	// ErrUsage is a malformed URL or a contradictory set of options.
	ErrUsage = errors.New("redis usage error")
	// ErrUnreachable is a refused connection, an unknown host, a timeout or a TLS failure.
	ErrUnreachable = errors.New("redis unreachable")
	// ErrAuth is a wrong or missing password or an unknown user.
	ErrAuth = errors.New("redis authentication failed")
	// ErrNoPerm is an ACL forbidding a command or a channel.
	ErrNoPerm = errors.New("redis permission denied")
)

// Error is what this package returns: a message that names the target with
// its password masked, the sentinel it wraps and the driver error behind it.
type Error struct {
	Kind  error // ErrUsage, ErrUnreachable, ErrAuth or ErrNoPerm
	msg   string
	cause error
}

// Error is the message; it holds no password.
func (e *Error) Error() string { return e.msg }

// Unwrap gives the sentinel and the driver error.
func (e *Error) Unwrap() []error {
	if e.cause == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.cause}
}

// usageError is an ErrUsage saying msg.
//
// Every message is built from fields that hold no secret: the target as
// endpoint.String shows it, fixed reasons, and the server's own words only
// where they cannot hold the password (see classify). Nothing is masked by
// searching a message for the password: a short password that also occurs
// elsewhere would garble the message and so reveal itself.
func usageError(msg string) *Error {
	return &Error{Kind: ErrUsage, msg: msg}
}

// wrapErr turns a driver error met while doing `what` (e.g. "connect
// redis://…") into an *Error with a plain reason and a hint.
func wrapErr(what string, err error) error {
	if err == nil {
		return nil
	}
	var own *Error
	if errors.As(err, &own) {
		return err
	}
	kind, reason, hint := classify(err)
	msg := what + ": " + reason
	if hint != "" {
		msg += " (" + hint + ")"
	}
	cause := err
	if withheld(err) {
		// The driver error holds what the message leaves out; a caller
		// that prints the unwrapped error would show it.
		cause = nil
	}
	return &Error{Kind: kind, msg: msg, cause: cause}
}

// withheld reports whether classify leaves out of its reason what the
// server sent: the answer to AUTH, the arguments an error reply quotes,
// the bytes of a reply that is not RESP.
func withheld(err error) bool {
	if duringAuth(err) && !netErr(err) {
		return true
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		return strings.Contains(strings.ToLower(rerr.Error()), argsQuoted)
	}
	return quotedBytes.MatchString(err.Error())
}

// authError is a failure of the step that sends the password (AUTH). What
// the server answered there is never quoted: a proxy, or a Redis with AUTH
// renamed, repeats the arguments ("unknown command 'AUTH', with args
// beginning with: '<the password>'").
type authError struct{ err error }

func (e *authError) Error() string { return "AUTH: " + e.err.Error() }
func (e *authError) Unwrap() error { return e.err }

// duringAuth reports whether err is the answer to the password.
func duringAuth(err error) bool {
	var ae *authError
	return errors.As(err, &ae)
}

// authHook marks go-redis's AUTH failures as authError. go-redis sends
// HELLO … AUTH first and, when the server refuses HELLO with an error
// reply, AUTH; only AUTH's failure is returned.
type authHook struct{}

func (authHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (authHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if err != nil && strings.EqualFold(cmd.Name(), "auth") {
			err = &authError{err}
			cmd.SetErr(err)
		}
		return err
	}
}

func (authHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// netErr reports whether err is about the connection, not a reply: such
// an error quotes nothing the server sent.
func netErr(err error) bool {
	var op *net.OpError
	return isTimeout(err) || closedByServer(err) || errors.As(err, &op) || errors.Is(err, context.Canceled)
}

// argsQuoted is where Redis starts quoting a refused command's arguments.
const argsQuoted = ", with args beginning with:"

// serverText is a Redis error reply as it may be shown: without the
// "ERR " prefix and without the arguments Redis quotes after an unknown
// command, which may be anything fanscope sent.
func serverText(text string) string {
	text = trimRedisPrefix(text)
	if i := strings.Index(strings.ToLower(text), argsQuoted); i >= 0 {
		text = text[:i]
	}
	return text
}

// quotedBytes matches a Go-quoted string: what go-redis's and this
// package's protocol errors quote of a reply that is not RESP.
var quotedBytes = regexp.MustCompile(`"(?:[^"\\]|\\.)*"…?`)

// unquoted drops the bytes a protocol error quotes: a server that is not
// Redis (or a hostile one) may send back what it was sent, password
// included.
func unquoted(text string) string {
	return strings.Join(strings.Fields(quotedBytes.ReplaceAllString(text, "")), " ")
}

// classify maps a driver error to a sentinel, a short reason and a hint
// saying what to do.
func classify(err error) (kind error, reason, hint string) {
	text := err.Error()
	var rerr redis.Error
	isRedis := errors.As(err, &rerr)
	if isRedis {
		text = rerr.Error()
	}
	upper := strings.ToUpper(text)
	// Replies with a fixed reason come first: they quote nothing.
	switch {
	case strings.Contains(upper, "WRONGPASS"), strings.Contains(upper, "INVALID PASSWORD"),
		strings.Contains(upper, "INVALID USERNAME-PASSWORD"):
		return ErrAuth, "authentication failed: wrong user name or password", "check the user and password in the URL"
	case strings.Contains(upper, "NOAUTH"):
		return ErrAuth, "the server requires a password", "give it in the URL: redis://user:password@host:port"
	case strings.Contains(upper, "WITHOUT ANY PASSWORD CONFIGURED"):
		return ErrAuth, "the URL gives a password but the server has none set", "remove the password from the URL"
	}
	var proto *protocolError
	if duringAuth(err) && !netErr(err) {
		return ErrAuth, "the server refused AUTH (its reply is not shown: it may repeat the password)",
			"check the user and password in the URL, and that the port is a Redis server's"
	}
	switch {
	case strings.HasPrefix(upper, "DENIED"):
		return ErrAuth, "refused by the server: " + firstSentences(serverText(text), 2),
			"protected mode: the server has no password and accepts only loopback clients; set a password " +
				"(requirepass, or an ACL user) and put it in the URL, or bind it to this interface and set protected-mode no"
	case strings.Contains(upper, "NOPERM"):
		return ErrNoPerm, "permission denied by ACL: " + serverText(text), noPermHint(text)
	case strings.Contains(upper, "MAX NUMBER OF CLIENTS REACHED"):
		return ErrUnreachable, "refused by the server: " + serverText(text),
			"the server is at its maxclients limit: raise maxclients, or find who holds the connections (CLIENT LIST, INFO clients)"
	}
	if isRedis {
		return ErrUnreachable, serverText(text), ""
	}

	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var certErr *tls.CertificateVerificationError
	var recErr tls.RecordHeaderError
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &unknownCA):
		return ErrUnreachable, "TLS certificate signed by an unknown authority",
			"pass --tls-ca FILE with the CA that signed the server certificate, or --tls-insecure"
	case errors.As(err, &hostErr):
		return ErrUnreachable, "TLS certificate does not match the host: " + hostErr.Error(),
			"connect by a name the certificate lists, or pass --tls-insecure"
	case errors.As(err, &certErr):
		return ErrUnreachable, "TLS certificate rejected: " + certErr.Error(),
			"check --tls-ca, or pass --tls-insecure"
	case errors.As(err, &recErr), errors.As(err, new(*handshakeError)) && isTimeout(err):
		return ErrUnreachable, "the server did not answer with TLS", "is this a TLS port? use redis:// for a plain one"
	case errors.Is(err, syscall.ECONNREFUSED):
		return ErrUnreachable, "connection refused", "is redis-server running there?"
	case errors.Is(err, syscall.ENOENT):
		return ErrUnreachable, "no such socket file", "is redis-server running with this unixsocket path?"
	case errors.Is(err, syscall.EACCES), errors.Is(err, os.ErrPermission):
		return ErrUnreachable, "permission denied opening the socket", "check the socket file's permissions"
	case errors.As(err, &dnsErr):
		return ErrUnreachable, "cannot resolve host " + dnsErr.Name, "check the host name in the URL"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return ErrUnreachable, "host unreachable", "check the address and the network"
	case isTimeout(err):
		return ErrUnreachable, "no answer in time", "is the host reachable and the port right? a frozen server looks like this too"
	case closedByServer(err):
		return ErrUnreachable, "the server closed the connection",
			"if the server expects TLS, use rediss://; it may also have hit maxclients"
	}
	// This package's protocol errors and go-redis's ("redis: can't parse
	// …") quote the reply; nothing else the driver says quotes the server.
	if errors.As(err, &proto) || quotedBytes.MatchString(text) {
		return ErrUnreachable, unquoted(text), "is this a Redis server's port? the reply is not shown: it may repeat what fanscope sent"
	}
	return ErrUnreachable, text, ""
}

// closedByServer reports whether err means the server closed the
// connection (it may have said why first: see greeting).
func closedByServer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// noPermHint names the ACL permission a NOPERM reply says is missing.
// Redis 7.0 says "this user has no permissions to run the 'client|setname'
// command" or "… to access one of the channels used as arguments"; 7.2
// and later say "User app has no permissions to …".
func noPermHint(text string) string {
	lower := strings.ToLower(text)
	if i := strings.Index(lower, "to run the '"); i >= 0 {
		rest := text[i+len("to run the '"):]
		if j := strings.IndexByte(rest, '\''); j > 0 {
			cmd := strings.ToLower(rest[:j])
			return "the ACL user lacks +" + cmd + ": ACL SETUSER <user> +" + cmd
		}
	}
	switch {
	case strings.Contains(lower, "channel"):
		return "the ACL user may not use these channels: ACL SETUSER <user> &<channel> for each (or allchannels)"
	case strings.Contains(lower, "key"):
		return "the ACL user may not use these keys: ACL SETUSER <user> ~<pattern>"
	}
	return "check the ACL user's permissions (ACL GETUSER <user>; ACL LOG shows what was refused)"
}

// firstSentences keeps the first n sentences of a long server message
// (protected mode's DENIED runs to 900 characters).
func firstSentences(s string, n int) string {
	end := 0
	for ; n > 0; n-- {
		i := strings.Index(s[end:], ". ")
		if i < 0 {
			return s
		}
		end += i + 1
	}
	return s[:end]
}

func trimRedisPrefix(s string) string {
	return strings.TrimPrefix(strings.TrimPrefix(s, "redis: "), "ERR ")
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
