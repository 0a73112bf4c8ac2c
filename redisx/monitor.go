package redisx

import (
	"github.com/fanscope/fanscope/internal/netx"

	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fanscope/fanscope/feed"
)

// MonitorCostWarning is what a user is told before MONITOR starts.
const MonitorCostWarning = "MONITOR streams every command the server runs to fanscope; on a busy Redis it costs about half the server's throughput. Use it for debugging, not for always-on monitoring."

// ErrMonitorDisabled wraps the error of a server where MONITOR is renamed
// or disabled (rename-command MONITOR ""). It is an ErrUnreachable too.
var ErrMonitorDisabled = errors.New("MONITOR is disabled or renamed on this server")

// MonitorFilter says which publishes a Monitor keeps. Empty: every
// PUBLISH and SPUBLISH.
type MonitorFilter struct {
	Channels []string // exact channel names (PUBLISH and SPUBLISH alike)
	Patterns []string // Redis glob patterns, as PSUBSCRIBE takes them
}

func (f MonitorFilter) keeps(channel string) bool {
	if len(f.Channels)+len(f.Patterns) == 0 {
		return true
	}
	for _, c := range f.Channels {
		if c == channel {
			return true
		}
	}
	for _, p := range f.Patterns {
		if GlobMatch(p, channel) {
			return true
		}
	}
	return false
}

// Monitor reads MONITOR on its own connection to the server (one per
// primary in a Cluster) and emits a publish record for every PUBLISH and
// SPUBLISH the filter keeps, with the publisher's address and CLIENT
// SETNAME name and the server's timestamp. It implements session.Source
// (path "monitor").
type Monitor struct {
	c      *Client
	filter MonitorFilter

	connected     chan struct{}
	connectedOnce sync.Once

	events     atomic.Uint64
	lastByte   atomic.Int64 // unix nanoseconds
	lastEvent  atomic.Int64
	reconnects atomic.Int64

	mu    sync.Mutex
	nodes map[string]*monitorNode // by address
	order []string                // addresses in the order they were added
}

// NewMonitor returns a Monitor of c's deployment; Run starts it.
func (c *Client) NewMonitor(f MonitorFilter) *Monitor {
	return &Monitor{
		c:         c,
		filter:    MonitorFilter{Channels: uniq(f.Channels), Patterns: uniq(f.Patterns)},
		connected: make(chan struct{}),
		nodes:     map[string]*monitorNode{},
	}
}

// Path is the path name of MONITOR records: "monitor".
func (m *Monitor) Path() string { return feed.SourceMonitor.String() }

// Connected is closed once every node's MONITOR has been confirmed.
func (m *Monitor) Connected() <-chan struct{} { return m.connected }

// monitorNode is the MONITOR connection to one node and what is known
// about the node: its clients' names and its clock.
type monitorNode struct {
	m    *Monitor
	ep   endpoint
	cmd  *redis.Client // CLIENT LIST and TIME for this node
	stop context.CancelFunc

	mu          sync.Mutex
	state       string
	err         string
	attempt     int
	connectedAt time.Time
	up          bool // confirmed at least once
	offset      ClockOffset
	names       map[string]string // publisher address -> name ("" known unnamed)
	listedAt    time.Time         // last CLIENT LIST
	listErr     string            // CLIENT LIST refused (ACL): names unavailable
}

// Run monitors until ctx ends (returning nil) or an error that retrying
// cannot fix: MONITOR refused by an ACL (ErrNoPerm), MONITOR disabled or
// renamed (ErrMonitorDisabled), a wrong password (ErrAuth). Lost
// connections are rebuilt with backoff, each change reported as a state
// record.
func (m *Monitor) Run(ctx context.Context, sink feed.Sink) error {
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel: deferred calls run last-in first-out
	// A fatal error cancels ctx after sending on fatal: the loops below
	// wait on parent, so they never take that cancel for an end.
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fatal := make(chan error, 1)
	addrs, err := m.nodeAddrs(ctx)
	if err != nil {
		return err
	}
	want := len(addrs)
	var ups atomic.Int64
	start := func(addr string) {
		nctx, stop := context.WithCancel(ctx)
		n := &monitorNode{m: m, ep: m.c.base.withAddr(addr), stop: stop, names: map[string]string{}}
		if m.c.mode == modeSingle {
			n.ep = m.c.base
		}
		n.cmd = m.c.newNodeClient(n.ep)
		m.mu.Lock()
		m.nodes[addr] = n
		m.order = append(m.order, addr)
		m.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer n.cmd.Close()
			err := n.run(nctx, sink, func() {
				if ups.Add(1) == int64(want) {
					m.connectedOnce.Do(func() { close(m.connected) })
				}
			})
			if err != nil && ctx.Err() == nil {
				select {
				case fatal <- err:
				default:
				}
				cancel()
			}
		}()
	}
	for _, a := range addrs {
		start(a)
	}
	if m.c.mode == modeSingle {
		select {
		case <-parent.Done():
		case err := <-fatal:
			return err
		}
		return nil
	}
	// Primaries and Sentinel masters change: look again now and then, and
	// monitor the ones that are new. A Cluster node that stopped being a
	// primary keeps its connection (clients may still publish there, and
	// Cluster does not replicate PUBLISH). A former Sentinel master is
	// let go: as a replica its MONITOR would show every PUBLISH again,
	// replicated from the new master.
	t := time.NewTicker(m.c.o.MaxBackoff * 3)
	defer t.Stop()
	for {
		select {
		case <-parent.Done():
			return nil
		case err := <-fatal:
			return err
		case <-t.C:
			now, err := m.nodeAddrs(ctx)
			if err != nil {
				continue
			}
			for _, a := range now {
				m.mu.Lock()
				_, ok := m.nodes[a]
				m.mu.Unlock()
				if !ok {
					start(a)
				}
			}
			if m.c.mode == modeSentinel {
				m.forget(now)
			}
		}
	}
}

// forget stops monitoring every node not in keep.
func (m *Monitor) forget(keep []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	order := m.order[:0]
	for _, a := range m.order {
		if slices.Contains(keep, a) {
			order = append(order, a)
			continue
		}
		m.nodes[a].stop()
		delete(m.nodes, a)
	}
	m.order = order
}

// nodeAddrs are the nodes that take publishes: the server, the Sentinel
// master, or every Cluster primary.
func (m *Monitor) nodeAddrs(ctx context.Context) ([]string, error) {
	switch m.c.mode {
	case modeCluster:
		lctx, cancel := context.WithTimeout(ctx, 2*m.c.o.DialTimeout)
		defer cancel()
		addrs, err := m.c.primaries(lctx)
		if err != nil {
			return nil, wrapErr("monitor: list the primaries of "+m.c.target, err)
		}
		return addrs, nil
	case modeSentinel:
		return []string{m.c.sentinel.masterAddr()}, nil
	}
	return []string{m.c.base.addr}, nil
}

// isFatal reports whether retrying cannot fix err.
func isFatal(err error) bool {
	return errors.Is(err, ErrNoPerm) || errors.Is(err, ErrAuth) || errors.Is(err, ErrMonitorDisabled) || errors.Is(err, ErrUsage)
}

func (n *monitorNode) setState(sink feed.Sink, state, msg string, attempt int) {
	n.mu.Lock()
	n.state, n.err, n.attempt = state, msg, attempt
	if state == feed.StateConnected {
		n.connectedAt = time.Now()
	}
	n.mu.Unlock()
	sink.Emit(feed.Record{
		TS: time.Now(), Source: feed.SourceMonitor, Kind: feed.KindState,
		Target: n.ep.String(), State: state, Error: msg, Attempt: attempt,
	})
}

func (n *monitorNode) run(ctx context.Context, sink feed.Sink, up func()) error {
	m := n.m
	backoff := 100 * time.Millisecond
	n.setState(sink, feed.StateConnecting, "", 0)
	attempt := 0
	for {
		mc, err := n.dial(ctx)
		if ctx.Err() != nil {
			if mc != nil {
				_ = mc.conn.Close()
			}
			return nil
		}
		if err != nil {
			if isFatal(err) {
				n.setState(sink, feed.StateFailed, err.Error(), attempt+1)
				return err
			}
			attempt++
			n.setState(sink, feed.StateReconnecting, err.Error(), attempt)
			if !netx.Sleep(ctx, backoff) {
				return nil
			}
			backoff = min(backoff*2, m.c.o.MaxBackoff)
			continue
		}
		n.mu.Lock()
		first := !n.up
		n.up = true
		n.mu.Unlock()
		if !first {
			m.reconnects.Add(1)
		}
		n.setState(sink, feed.StateConnected, "", 0)
		n.measureClock(ctx)
		if first {
			up()
		}
		backoff = 100 * time.Millisecond
		// Clocks drift (NTP slews them): measure again now and then
		// while connected.
		cctx, stopClock := context.WithCancel(ctx)
		go func() {
			t := time.NewTicker(clockEvery)
			defer t.Stop()
			for {
				select {
				case <-cctx.Done():
					return
				case <-t.C:
					n.measureClock(cctx)
				}
			}
		}()
		reason := n.read(ctx, mc, sink)
		stopClock()
		_ = mc.conn.Close()
		if ctx.Err() != nil {
			return nil
		}
		n.setState(sink, feed.StateDisconnected, reason, 0)
		attempt = 0
	}
}

// monitorConn is one MONITOR connection: the socket and a line reader
// that keeps a partial line across read timeouts.
type monitorConn struct {
	conn net.Conn
	br   *bufio.Reader
	line []byte // the line being read; kept across timeouts
}

// dial connects, authenticates, names the connection and starts MONITOR,
// all within DialTimeout+PongTimeout.
func (n *monitorNode) dial(ctx context.Context) (*monitorConn, error) {
	c := n.m.c
	ep := n.ep
	what := "monitor " + ep.String()
	deadline := time.Now().Add(c.o.DialTimeout + c.o.PongTimeout)
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	conn, err := ep.dialer(c.o.DialTimeout)(dctx, ep.network, ep.addr)
	if err != nil {
		return nil, wrapErr(what, err)
	}
	mc := &monitorConn{conn: conn, br: bufio.NewReaderSize(conn, 64<<10)}
	_ = conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	var cmds [][]string
	if ep.pass != "" {
		user := ep.user
		if user == "" {
			user = "default"
		}
		cmds = append(cmds, []string{"AUTH", user, ep.pass})
	}
	cmds = append(cmds, []string{"CLIENT", "SETNAME", c.o.ClientName + "-monitor"}, []string{"MONITOR"})
	var b []byte
	for _, cmd := range cmds {
		b = appendCommand(b, cmd)
	}
	if _, err := conn.Write(b); err != nil {
		_ = conn.Close()
		return nil, wrapErr(what, err)
	}
	for _, cmd := range cmds {
		line, err := mc.readLine()
		if err != nil {
			_ = conn.Close()
			return nil, wrapErr(what, err)
		}
		if len(line) > 0 && line[0] == '-' {
			_ = conn.Close()
			msg := string(line[1:])
			switch {
			case cmd[0] == "MONITOR" && strings.Contains(strings.ToLower(msg), "unknown command"):
				return nil, wrapErr(what, fmt.Errorf("%w (%s); ask the operator, or use a server where MONITOR is allowed", ErrMonitorDisabled, serverText(msg)))
			case cmd[0] == "CLIENT":
				// A server that refuses CLIENT SETNAME still monitors; the
				// MONITOR reply follows.
				continue
			}
			// AUTH failures and an ACL refusing MONITOR (NOPERM) are
			// classified by wrapErr (ErrAuth, ErrNoPerm); AUTH's reply is
			// not quoted (see authError).
			if cmd[0] == "AUTH" {
				return nil, wrapErr(what, &authError{serverError(msg)})
			}
			return nil, wrapErr(what, serverError(msg))
		}
	}
	_ = conn.SetDeadline(time.Time{})
	if ctx.Err() != nil {
		_ = conn.Close()
		return nil, ctx.Err()
	}
	return mc, nil
}

// readLine returns the next line without its CRLF. The slice is valid
// until the next call. On a timeout the part read so far is kept, and the
// next call goes on from there.
func (mc *monitorConn) readLine() ([]byte, error) {
	for {
		frag, err := mc.br.ReadSlice('\n')
		if err == nil {
			var line []byte
			if len(mc.line) == 0 {
				line = frag
			} else {
				mc.line = append(mc.line, frag...)
				line = mc.line
			}
			mc.line = mc.line[:0]
			if cap(mc.line) > 1<<20 {
				mc.line = nil // a huge payload passed: do not hold its buffer
			}
			line = bytes.TrimSuffix(line[:len(line)-1], []byte{'\r'})
			return line, nil
		}
		mc.line = append(mc.line, frag...)
		if err != bufio.ErrBufferFull {
			return nil, err
		}
	}
}

// read delivers publishes until the connection fails or ctx ends, and
// says why it stopped. A PING after PingIdle of silence, unanswered for
// PongTimeout, means the server is gone (a frozen server never closes
// the socket).
func (n *monitorNode) read(ctx context.Context, mc *monitorConn, sink feed.Sink) string {
	c := n.m.c
	stop := context.AfterFunc(ctx, func() { _ = mc.conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	pinging := false
	partial := 0 // bytes of an unfinished line at the last timeout
	_ = mc.conn.SetReadDeadline(time.Now().Add(c.o.PingIdle))
	for {
		line, err := mc.readLine()
		now := time.Now()
		if err != nil {
			if ctx.Err() != nil {
				return "canceled"
			}
			if isTimeout(err) && len(mc.line) > partial {
				// A long line still arriving is not silence.
				partial = len(mc.line)
				_ = mc.conn.SetReadDeadline(now.Add(c.o.PingIdle))
				continue
			}
			if isTimeout(err) && !pinging {
				pinging = true
				_ = mc.conn.SetWriteDeadline(now.Add(c.o.DialTimeout))
				if _, err := mc.conn.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
					return "send PING: " + shortErr(err)
				}
				_ = mc.conn.SetReadDeadline(now.Add(c.o.PongTimeout))
				continue
			}
			if isTimeout(err) {
				return fmt.Sprintf("no answer to PING within %s", c.o.PongTimeout)
			}
			return shortErr(err)
		}
		n.m.lastByte.Store(now.UnixNano())
		pinging, partial = false, 0
		_ = mc.conn.SetReadDeadline(now.Add(c.o.PingIdle))
		switch {
		case len(line) > 1 && line[0] == '+' && line[1] >= '0' && line[1] <= '9':
			n.line(ctx, line[1:], now, sink)
		case len(line) > 0 && line[0] == '-':
			return "server error: " + serverText(string(line[1:]))
		}
	}
}

// line handles one MONITOR line: a publish becomes a record, a CLIENT
// SETNAME or HELLO … SETNAME updates the name of that address.
func (n *monitorNode) line(ctx context.Context, line []byte, now time.Time, sink feed.Sink) {
	e, err := ParseMonitorLine(line, true)
	if err != nil || len(e.Args) == 0 {
		return
	}
	cmd := strings.ToLower(e.Args[0])
	if cmd == "client" || cmd == "hello" {
		if e, err = ParseMonitorLine(line, false); err != nil {
			return
		}
	}
	switch {
	case (cmd == "publish" || cmd == "spublish") && len(e.Args) == 2:
		ch := e.Args[1]
		if !n.m.filter.keeps(ch) {
			return
		}
		// The filter passed: now decode the payload too.
		if e, err = ParseMonitorLine(line, false); err != nil || len(e.Args) != 3 {
			return
		}
		n.m.events.Add(1)
		n.m.lastEvent.Store(now.UnixNano())
		sink.Emit(feed.Record{
			TS: now, Source: feed.SourceMonitor, Kind: feed.KindPublish,
			Channel: ch, Shard: cmd == "spublish", Data: e.Args[2],
			Client: e.Addr, ClientName: n.name(ctx, e.Addr, now),
			// Target names the node that ran the PUBLISH (host:port),
			// whose clock offset LocalTime applies; encoders skip it.
			ServerTS: e.Time, Target: n.ep.addr,
		})
	case cmd == "client" && len(e.Args) == 3 && strings.EqualFold(e.Args[1], "setname"):
		n.setName(e.Addr, e.Args[2])
	case cmd == "hello":
		for i := 1; i+1 < len(e.Args); i++ {
			if strings.EqualFold(e.Args[i], "setname") {
				n.setName(e.Addr, e.Args[i+1])
			}
		}
	}
}

const (
	clockEvery     = 30 * time.Second       // how often a node's clock offset is measured again
	maxNames       = 10000                  // remembered publisher addresses per node
	listEvery      = 100 * time.Millisecond // least time between CLIENT LIST lookups
	clientListWait = time.Second            // how long a lookup may hold up the reader
)

func (n *monitorNode) setName(addr, name string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.names) >= maxNames {
		clear(n.names)
	}
	n.names[addr] = name
}

// name is the CLIENT SETNAME name of the client at addr, looked up with
// CLIENT LIST when addr is new (at most every listEvery).
func (n *monitorNode) name(ctx context.Context, addr string, now time.Time) string {
	if addr == "lua" {
		return "" // a script's PUBLISH: the caller of EVAL is the line before
	}
	n.mu.Lock()
	name, ok := n.names[addr]
	stale := !ok && n.listErr == "" && now.Sub(n.listedAt) >= listEvery
	if stale {
		n.listedAt = now
	}
	n.mu.Unlock()
	if ok || !stale {
		return name
	}
	lctx, cancel := context.WithTimeout(ctx, clientListWait)
	defer cancel()
	text, err := n.cmd.Do(lctx, "client", "list").Text()
	n.mu.Lock()
	defer n.mu.Unlock()
	if err != nil {
		if strings.Contains(strings.ToUpper(err.Error()), "NOPERM") || strings.Contains(strings.ToLower(err.Error()), "unknown command") {
			n.listErr = "CLIENT LIST refused, publishers are shown without names: " + shortErr(err)
		}
		return ""
	}
	if len(n.names) >= maxNames {
		clear(n.names)
	}
	for _, cl := range ParseClientList(text) {
		n.names[cl.Addr] = cl.Name
	}
	if _, ok := n.names[addr]; !ok {
		n.names[addr] = "" // gone already: do not look again
	}
	return n.names[addr]
}

// measureClock measures the node's clock offset with TIME (best of a few
// round trips); on failure the last offset stays.
func (n *monitorNode) measureClock(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, 2*n.m.c.o.DialTimeout)
	defer cancel()
	off, err := measureClock(cctx, n.cmd, clockSamples)
	if err != nil {
		return
	}
	n.mu.Lock()
	n.offset = off
	n.mu.Unlock()
}

// LocalTime is r's server timestamp (a publish record of this Monitor)
// on the local clock: ServerTS corrected by the offset of the node that
// ran the PUBLISH, measured with TIME. ok is false before any offset was
// measured.
func (m *Monitor) LocalTime(r *feed.Record) (t time.Time, ok bool) {
	m.mu.Lock()
	n := m.nodes[r.Target]
	if n == nil && len(m.order) == 1 {
		n = m.nodes[m.order[0]]
	}
	m.mu.Unlock()
	if n == nil {
		return time.Time{}, false
	}
	n.mu.Lock()
	off := n.offset
	n.mu.Unlock()
	if off.Samples == 0 {
		return time.Time{}, false
	}
	return off.Local(r.ServerTS), true
}

// ClockOffsets are the clock offsets measured so far, by node address.
func (m *Monitor) ClockOffsets() map[string]ClockOffset {
	m.mu.Lock()
	nodes := make([]*monitorNode, 0, len(m.nodes))
	for _, n := range m.nodes {
		nodes = append(nodes, n)
	}
	m.mu.Unlock()
	out := make(map[string]ClockOffset, len(nodes))
	for _, n := range nodes {
		n.mu.Lock()
		if n.offset.Samples > 0 {
			out[n.ep.addr] = n.offset
		}
		n.mu.Unlock()
	}
	return out
}

// Status is the Monitor's health: the worst state over its connections,
// with each node's state and clock offset in Details.
func (m *Monitor) Status() feed.Status {
	st := feed.Status{
		Source: feed.SourceMonitor, URL: m.c.target, State: feed.StateConnecting,
		Events: m.events.Load(), Reconnects: int(m.reconnects.Load()),
		Warnings: []string{MonitorCostWarning},
	}
	if ns := m.lastByte.Load(); ns != 0 {
		st.LastByte = time.Unix(0, ns)
	}
	if ns := m.lastEvent.Load(); ns != 0 {
		st.LastEvent = time.Unix(0, ns)
	}
	m.mu.Lock()
	nodes := make([]*monitorNode, 0, len(m.order))
	for _, a := range m.order {
		nodes = append(nodes, m.nodes[a])
	}
	m.mu.Unlock()
	worst := -1
	for _, n := range nodes {
		n.mu.Lock()
		d := n.ep.addr + " " + n.state
		if n.offset.Samples > 0 {
			d += fmt.Sprintf(", clock offset %s (±%s)", n.offset.Offset.Round(time.Microsecond), (n.offset.RTT / 2).Round(time.Microsecond))
		}
		st.Details = append(st.Details, d)
		if n.listErr != "" {
			st.Warnings = append(st.Warnings, n.ep.addr+": "+n.listErr)
		}
		if r := stateRank[n.state]; r > worst {
			worst = r
			st.State, st.Error, st.Attempt = n.state, n.err, n.attempt
			st.ConnectedAt = n.connectedAt
		}
		n.mu.Unlock()
	}
	if st.State != feed.StateConnected {
		st.ConnectedAt = time.Time{}
	}
	return st
}

// MonitorEntry is one MONITOR line: the server time, the database, the
// client's address ("127.0.0.1:51234", "unix:/path", "lua") and the
// command's arguments, decoded back to their exact bytes.
type MonitorEntry struct {
	Time time.Time
	DB   int
	Addr string
	Args []string
}

// ParseMonitorLine reads one MONITOR line (without the leading '+' and
// the CRLF), e.g. `1733090000.123456 [0 127.0.0.1:51234] "PUBLISH" "ch" "{\"a\":1}"`.
// With headOnly, only the first two arguments are decoded (the command
// and the channel: enough to filter a publish before paying for its
// payload).
func ParseMonitorLine(line []byte, headOnly bool) (MonitorEntry, error) {
	var e MonitorEntry
	sp := bytes.IndexByte(line, ' ')
	if sp < 0 {
		return e, errors.New("monitor line has no timestamp")
	}
	ts, err := parseMonitorTime(line[:sp])
	if err != nil {
		return e, err
	}
	e.Time = ts
	rest := line[sp+1:]
	if len(rest) == 0 || rest[0] != '[' {
		return e, errors.New("monitor line has no [db addr]")
	}
	end := bytes.Index(rest, []byte("] \""))
	if end < 0 {
		return e, errors.New("monitor line has no command")
	}
	db, addr, ok := bytes.Cut(rest[1:end], []byte{' '})
	if !ok {
		return e, errors.New("monitor line has no client address")
	}
	if e.DB, err = strconv.Atoi(string(db)); err != nil {
		return e, fmt.Errorf("monitor line: bad database %q", db)
	}
	e.Addr = string(addr)
	rest = rest[end+2:]
	for len(rest) > 0 {
		if headOnly && len(e.Args) == 2 {
			break
		}
		arg, n, err := unquoteMonitorArg(rest)
		if err != nil {
			return e, err
		}
		e.Args = append(e.Args, arg)
		rest = rest[n:]
		if len(rest) > 0 {
			if rest[0] != ' ' {
				return e, errors.New("monitor line: no space between arguments")
			}
			rest = rest[1:]
		}
	}
	return e, nil
}

// parseMonitorTime reads "1733090000.123456" exactly (no float rounding).
func parseMonitorTime(b []byte) (time.Time, error) {
	secs, frac, _ := bytes.Cut(b, []byte{'.'})
	s, err := strconv.ParseInt(string(secs), 10, 64)
	if err != nil || len(frac) > 9 {
		return time.Time{}, fmt.Errorf("monitor line: bad timestamp %q", b)
	}
	var ns int64
	for i := 0; i < 9; i++ {
		ns *= 10
		if i < len(frac) {
			if frac[i] < '0' || frac[i] > '9' {
				return time.Time{}, fmt.Errorf("monitor line: bad timestamp %q", b)
			}
			ns += int64(frac[i] - '0')
		}
	}
	return time.Unix(s, ns).UTC(), nil
}

// unquoteMonitorArg decodes one argument as Redis's sdscatrepr writes it:
// in double quotes, with \\ \" \n \r \t \a \b and \xNN escapes. It returns
// the bytes and how much of b it read.
func unquoteMonitorArg(b []byte) (string, int, error) {
	if len(b) == 0 || b[0] != '"' {
		return "", 0, errors.New("monitor line: argument does not start with a quote")
	}
	// Fast path: nothing escaped.
	if i := bytes.IndexAny(b[1:], "\"\\"); i >= 0 && b[1+i] == '"' {
		return string(b[1 : 1+i]), i + 2, nil
	}
	out := make([]byte, 0, len(b))
	for i := 1; i < len(b); i++ {
		ch := b[i]
		switch ch {
		case '"':
			return string(out), i + 1, nil
		case '\\':
			if i+1 >= len(b) {
				return "", 0, errors.New("monitor line: escape at the end")
			}
			i++
			switch b[i] {
			case '\\', '"':
				out = append(out, b[i])
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'a':
				out = append(out, '\a')
			case 'b':
				out = append(out, '\b')
			case 'x':
				if i+2 >= len(b) {
					return "", 0, errors.New("monitor line: short \\x escape")
				}
				hi, ok1 := unhex(b[i+1])
				lo, ok2 := unhex(b[i+2])
				if !ok1 || !ok2 {
					return "", 0, fmt.Errorf("monitor line: bad \\x escape %q", b[i-1:i+3])
				}
				out = append(out, hi<<4|lo)
				i += 2
			default:
				return "", 0, fmt.Errorf("monitor line: unknown escape \\%c", b[i])
			}
		default:
			out = append(out, ch)
		}
	}
	return "", 0, errors.New("monitor line: unterminated argument")
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// GlobMatch reports whether s matches the Redis glob pattern p, with
// Redis's rules (stringmatchlen): * ? [abc] [^a-z] and \ escapes; unlike
// path.Match, * also matches '/'.
func GlobMatch(p, s string) bool {
	return globMatch(p, s, 0)
}

func globMatch(p, s string, depth int) bool {
	if depth > 1000 {
		return false // as Redis does, refuse pathological nesting
	}
	for len(p) > 0 {
		switch p[0] {
		case '*':
			for len(p) > 1 && p[1] == '*' {
				p = p[1:]
			}
			if len(p) == 1 {
				return true
			}
			for i := 0; i <= len(s); i++ {
				if globMatch(p[1:], s[i:], depth+1) {
					return true
				}
			}
			return false
		case '?':
			if len(s) == 0 {
				return false
			}
			s = s[1:]
			p = p[1:]
		case '[':
			if len(s) == 0 {
				return false
			}
			p = p[1:]
			not := len(p) > 0 && p[0] == '^'
			if not {
				p = p[1:]
			}
			match := false
			for {
				if len(p) == 0 {
					break // unterminated: Redis treats the rest as the class
				}
				if p[0] == '\\' && len(p) >= 2 {
					p = p[1:]
					if p[0] == s[0] {
						match = true
					}
				} else if p[0] == ']' {
					break
				} else if len(p) >= 3 && p[1] == '-' {
					lo, hi := p[0], p[2]
					if lo > hi {
						lo, hi = hi, lo
					}
					if s[0] >= lo && s[0] <= hi {
						match = true
					}
					p = p[2:]
				} else if p[0] == s[0] {
					match = true
				}
				p = p[1:]
			}
			if len(p) > 0 {
				p = p[1:] // the ']'
			}
			if not {
				match = !match
			}
			if !match {
				return false
			}
			s = s[1:]
		case '\\':
			if len(p) >= 2 {
				p = p[1:]
			}
			fallthrough
		default:
			if len(s) == 0 || p[0] != s[0] {
				return false
			}
			s = s[1:]
			p = p[1:]
		}
	}
	return len(s) == 0
}
