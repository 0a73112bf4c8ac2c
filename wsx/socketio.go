package wsx

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/fanscope/fanscope/feed"
)

// SocketIO holds one Socket.IO v4 connection (Engine.IO v4 over a
// WebSocket, no long-polling) to one namespace and reopens it with
// backoff. Every event packet is an event record: type = the event name,
// data = its first argument (a JSON string unquoted, anything else as JSON
// text, "" when there is none). A binary event (45) whose first argument
// is a binary attachment has the attachment's bytes as data; placeholders
// nested deeper stay as they are ({"_placeholder":true,"num":0}) and are
// counted in Status.Details.
//
// The URL's path is the namespace ("/" when empty) and its query goes into
// the handshake (?token=… for servers that read socket.handshake.query).
// With Config.Token the connect packet carries {"token": …} as its auth
// payload. A connect error (44) is fatal; a server-initiated disconnect
// (41) and an Engine.IO close reconnect with backoff; no ping from the
// server for pingInterval + pingTimeout is a stall.
type SocketIO struct {
	*loop
	ns      string // namespace
	dialURL string
	connect []byte // the 40 packet
}

// NewSocketIO checks cfg and returns a client ready to Run. Errors wrap ErrUsage.
func NewSocketIO(cfg Config) (*SocketIO, error) {
	c, err := check(cfg, "socketio endpoint")
	if err != nil {
		return nil, err
	}
	s := &SocketIO{loop: newLoop(c, feed.SourceSocketIO, "socketio endpoint")}
	s.attempt = s.session
	s.ns = strings.TrimSuffix(c.u.Path, "/")
	if s.ns == "" {
		s.ns = "/"
	}
	u := *c.u
	switch strings.ToLower(u.Scheme) {
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	}
	u.Path, u.RawPath = c.EnginePath, ""
	q := "EIO=4&transport=websocket"
	if u.RawQuery != "" {
		q = u.RawQuery + "&" + q
	}
	u.RawQuery = q
	s.dialURL = u.String()
	p := []byte("40")
	if s.ns != "/" {
		p = append(append(p, s.ns...), ',')
	}
	if c.Token != "" {
		auth, _ := json.Marshal(map[string]string{"token": c.Token})
		p = append(p, auth...)
	}
	s.connect = p
	return s, nil
}

// Namespace is the Socket.IO namespace the client connects to.
func (s *SocketIO) Namespace() string { return s.ns }

// Run connects and keeps the connection open until ctx ends (then it
// returns nil) or the endpoint refuses for good (then it returns an error
// wrapping ErrFatal). Run may be called once.
func (s *SocketIO) Run(ctx context.Context, sink feed.Sink) error { return s.run(ctx, sink) }

// openPacket is Engine.IO v4's handshake.
type openPacket struct {
	SID          string `json:"sid"`
	PingInterval int64  `json:"pingInterval"` // ms
	PingTimeout  int64  `json:"pingTimeout"`  // ms
}

// pendingBinary is a binary event waiting for its attachments.
type pendingBinary struct {
	name        string
	first       json.RawMessage // nil: no arguments
	attachments [][]byte
	want        int
}

// sioConn is one session's state; only the Run goroutine touches it.
type sioConn struct {
	s         *SocketIO
	sink      feed.Sink
	conn      *websocket.Conn
	lv        *liveness
	attempt   int
	start     time.Time
	connected bool
	pending   *pendingBinary

	connectTimer *time.Timer
}

// errConnectTimeout is the cause given to a session whose namespace
// connect went unanswered.
var errConnectTimeout = errors.New("namespace connect timed out")

// session makes one attempt: handshake, Engine.IO open, namespace connect,
// then events until the connection ends.
func (s *SocketIO) session(ctx context.Context, sink feed.Sink, lv *liveness, attempt int) *ending {
	start := time.Now()
	conn, cctx, cancel, e := s.open(ctx, s.dialURL, lv)
	if e != nil {
		return e
	}
	defer conn.CloseNow()
	defer cancel(nil)
	sc := &sioConn{s: s, sink: sink, conn: conn, lv: lv, attempt: attempt, start: start}
	// A server that pings but never answers the namespace connect would
	// keep the client "connecting" for good; Socket.IO's own client gives
	// up after a timeout too.
	connectTimer := time.AfterFunc(s.cfg.DialTimeout, func() { cancel(errConnectTimeout) })
	defer connectTimer.Stop()
	sc.connectTimer = connectTimer
	// When the connect timer ended the attempt, whatever was under way
	// (a read, the pong, the connect packet) fails with what closing the
	// connection gave it; the timeout is the reason, checked before
	// anything notes how the connection ended.
	timedOut := func() *ending {
		if errors.Is(context.Cause(cctx), errConnectTimeout) && ctx.Err() == nil {
			return &ending{reason: fmt.Sprintf("namespace %s did not answer the connect packet within %s", s.ns, s.cfg.DialTimeout)}
		}
		return nil
	}
	for {
		typ, r, err := conn.Reader(cctx)
		if err != nil {
			if e := timedOut(); e != nil {
				return e
			}
			return sc.ended(s.readEnded(ctx, cctx, lv, err))
		}
		data, over, err := s.readMessage(r, lv)
		at := time.Now()
		if err != nil {
			if e := timedOut(); e != nil {
				return e
			}
			return sc.ended(s.readEnded(ctx, cctx, lv, err))
		}
		if over {
			s.mu.Lock()
			s.tr.skipped++
			s.mu.Unlock()
			sc.pending = nil // its attachments cannot be matched any more
			continue
		}
		var end *ending
		if typ == websocket.MessageBinary {
			sc.attachment(data, at)
		} else {
			end = sc.packet(cctx, data, at)
		}
		if end != nil {
			if e := timedOut(); e != nil {
				return e
			}
			return end
		}
	}
}

// ended marks an ending as after a namespace connect or not (a connection
// that only reached the Engine.IO handshake did not work).
func (sc *sioConn) ended(e *ending) *ending {
	e.connected = sc.connected
	return e
}

// packet handles one Engine.IO text packet; a non-nil ending ends the session.
func (sc *sioConn) packet(ctx context.Context, p []byte, at time.Time) *ending {
	if len(p) == 0 {
		sc.malformed(p, "empty packet")
		return nil
	}
	switch p[0] {
	case '0': // open
		var op openPacket
		if err := json.Unmarshal(p[1:], &op); err != nil || op.PingInterval <= 0 || op.PingTimeout <= 0 {
			reason := fmt.Sprintf("engine.io open packet %.100q is not valid (is this a Socket.IO v4 server? check --socketio-path)", p)
			return &ending{reason: reason, fatal: sc.s.fatal(reason)}
		}
		interval := time.Duration(op.PingInterval) * time.Millisecond
		timeout := time.Duration(op.PingTimeout) * time.Millisecond
		sc.s.mu.Lock()
		sc.s.tr.pingInterval, sc.s.tr.pingTimeout, sc.s.tr.sid = interval, timeout, true
		sc.s.mu.Unlock()
		// Socket.IO's own clients give up on a server silent for this long.
		sc.lv.setFixed(interval + timeout)
		if err := sc.conn.Write(ctx, websocket.MessageText, sc.s.connect); err != nil {
			return sc.ended(&ending{reason: "send connect packet: " + trimWrap(err.Error())})
		}
	case '2': // ping
		sc.lv.touch(at, true)
		if err := sc.conn.Write(ctx, websocket.MessageText, []byte{'3'}); err != nil {
			return sc.ended(&ending{reason: "send pong: " + trimWrap(err.Error())})
		}
	case '1': // close
		return sc.ended(&ending{reason: "server closed the engine.io session"})
	case '3', '5', '6': // pong, upgrade, noop
	case '4':
		return sc.message(p[1:], at)
	default:
		sc.malformed(p, "unknown engine.io packet type")
	}
	return nil
}

// message handles one Socket.IO packet (an Engine.IO message).
func (sc *sioConn) message(p []byte, at time.Time) *ending {
	if len(p) == 0 {
		sc.malformed(p, "empty socket.io packet")
		return nil
	}
	kind, rest := p[0], p[1:]
	attachments := 0
	if kind == '5' || kind == '6' {
		i := bytes.IndexByte(rest, '-')
		n, err := strconv.Atoi(string(rest[:max(i, 0)]))
		if i < 0 || err != nil || n < 0 {
			sc.malformed(p, "binary packet without an attachment count")
			return nil
		}
		attachments, rest = n, rest[i+1:]
	}
	ns := "/"
	if len(rest) > 0 && rest[0] == '/' {
		i := bytes.IndexByte(rest, ',')
		if i < 0 {
			ns, rest = string(rest), nil
		} else {
			ns, rest = string(rest[:i]), rest[i+1:]
		}
	}
	if ns != sc.s.ns {
		return nil // another namespace on a shared connection
	}
	// An ack id may come before an event's arguments.
	for len(rest) > 0 && rest[0] >= '0' && rest[0] <= '9' {
		rest = rest[1:]
	}
	switch kind {
	case '0': // connect
		if !sc.connected {
			sc.connected = true
			sc.connectTimer.Stop()
			sc.s.noteConnected(sc.sink, http.StatusSwitchingProtocols, sc.attempt, sc.start)
		}
	case '4': // connect error
		msg := connectError(rest)
		sc.s.mu.Lock()
		sc.s.tr.nsError = msg
		sc.s.mu.Unlock()
		reason := fmt.Sprintf("namespace %s refused the connection (44): %s", sc.s.ns, msg)
		return &ending{reason: reason, fatal: sc.s.fatal(reason)}
	case '1': // disconnect
		sc.s.mu.Lock()
		sc.s.tr.disconnects++
		sc.s.mu.Unlock()
		return sc.ended(&ending{reason: fmt.Sprintf("server disconnected the socket (41 on namespace %s)", sc.s.ns)})
	case '2', '5': // event, binary event
		var args []json.RawMessage
		if err := json.Unmarshal(rest, &args); err != nil || len(args) == 0 {
			sc.malformed(p, "event is not a JSON array")
			return nil
		}
		var name string
		if err := json.Unmarshal(args[0], &name); err != nil {
			sc.malformed(p, "event name is not a string")
			return nil
		}
		var first json.RawMessage
		if len(args) > 1 {
			first = args[1]
		}
		if kind == '5' {
			sc.s.mu.Lock()
			sc.s.tr.binary++
			sc.s.mu.Unlock()
			if attachments > 0 {
				sc.pending = &pendingBinary{name: name, first: first, want: attachments}
				return nil
			}
		}
		sc.s.event(sc.sink, at, name, argText(first))
	case '3', '6': // acks: answers to emits, which fanscope does not make
	default:
		sc.malformed(p, "unknown socket.io packet type")
	}
	return nil
}

// attachment takes one binary frame of a pending binary event.
func (sc *sioConn) attachment(b []byte, at time.Time) {
	pb := sc.pending
	if pb == nil {
		sc.malformed(b, "binary frame without a binary event")
		return
	}
	pb.attachments = append(pb.attachments, bytes.Clone(b))
	if len(pb.attachments) < pb.want {
		return
	}
	sc.pending = nil
	data := argText(pb.first)
	if n, ok := placeholder(pb.first); ok && n < len(pb.attachments) {
		data = string(pb.attachments[n])
	}
	sc.s.event(sc.sink, at, pb.name, data)
}

// argText is an event argument as data: a JSON string unquoted, anything
// else as its JSON text.
func argText(a json.RawMessage) string {
	if len(a) == 0 {
		return ""
	}
	if a[0] == '"' {
		var s string
		if json.Unmarshal(a, &s) == nil {
			return s
		}
	}
	return string(a)
}

// placeholder reports whether a is a binary attachment placeholder and its number.
func placeholder(a json.RawMessage) (int, bool) {
	if len(a) == 0 || a[0] != '{' || !bytes.Contains(a, []byte(`"_placeholder"`)) {
		return 0, false
	}
	var p struct {
		Placeholder bool `json:"_placeholder"`
		Num         *int `json:"num"`
	}
	if json.Unmarshal(a, &p) != nil || !p.Placeholder || p.Num == nil || *p.Num < 0 {
		return 0, false
	}
	return *p.Num, true
}

// connectError is a 44 packet's message, with its data when there is some.
func connectError(p []byte) string {
	var e struct {
		Message string          `json:"message"`
		Data    json.RawMessage `json:"data"`
	}
	if json.Unmarshal(p, &e) != nil || e.Message == "" {
		if len(p) == 0 {
			return "no reason given"
		}
		return strings.ToValidUTF8(string(p), "\uFFFD")
	}
	if len(e.Data) > 0 && string(e.Data) != "null" {
		return fmt.Sprintf("%s (data: %s)", e.Message, e.Data)
	}
	return e.Message
}

func (sc *sioConn) malformed(p []byte, why string) {
	s := sc.s
	s.mu.Lock()
	s.tr.malformed++
	s.tr.lastBad = fmt.Sprintf("%s: %.60q", why, p)
	s.mu.Unlock()
}
