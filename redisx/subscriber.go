package redisx

import (
	"github.com/fanscope/fanscope/internal/netx"

	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fanscope/fanscope/feed"
)

// Subscription names what to subscribe to.
type Subscription struct {
	Channels      []string // SUBSCRIBE
	Patterns      []string // PSUBSCRIBE
	ShardChannels []string // SSUBSCRIBE (Redis 7+)
}

func (s Subscription) empty() bool {
	return len(s.Channels)+len(s.Patterns)+len(s.ShardChannels) == 0
}

func (s Subscription) normalized() Subscription {
	return Subscription{
		Channels:      uniq(s.Channels),
		Patterns:      uniq(s.Patterns),
		ShardChannels: uniq(s.ShardChannels),
	}
}

func uniq(in []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func (s Subscription) describe() string {
	var parts []string
	add := func(what string, names []string) {
		if len(names) == 1 {
			parts = append(parts, what+" "+names[0])
		} else if len(names) > 1 {
			parts = append(parts, what+"s "+strings.Join(names, ", "))
		}
	}
	add("channel", s.Channels)
	add("pattern", s.Patterns)
	add("shard channel", s.ShardChannels)
	return strings.Join(parts, "; ")
}

// SubscriberStats is a copy of a Subscriber's counters.
type SubscriberStats struct {
	State       string        // the worst state over the subscription connections
	Conns       int           // subscription connections (one, or several in a Cluster)
	Messages    uint64        // messages received
	Bytes       uint64        // payload bytes received
	Reconnects  int           // successful resubscriptions after a loss
	Gaps        int           // periods without a subscription (messages in them may be lost)
	GapTime     time.Duration // total time spent in gaps, including a gap still open
	PingRTT     time.Duration // last PING round trip on a subscription connection
	LastMessage time.Time     // receive time of the last message
	LastPing    time.Time     // when the last PING reply arrived
}

// Subscriber holds subscriptions open, healing them after failures and
// reporting every change as a state record. It is a session.Source: Run
// keeps trying while Redis is down or unreachable and subscribes as soon
// as it can; only what retrying cannot fix (a wrong password, an ACL
// without the permission, protected mode) ends it.
type Subscriber struct {
	c        *Client
	sub      Subscription
	links    []*link
	failFast bool // Subscribe: the first failure of the first connection ends Run
	started  atomic.Bool
	sink     feed.Sink // set by Run before any link starts

	done      chan struct{}
	connected chan struct{}
	up        atomic.Int64 // links that subscribed at least once

	connectedAt atomic.Int64 // unix nanoseconds of Connected
	messages    atomic.Uint64
	bytes       atomic.Uint64
	reconnects  atomic.Int64
	gaps        atomic.Int64
	gapNanos    atomic.Int64
	rtt         atomic.Int64
	lastMsg     atomic.Int64 // unix nanoseconds
	lastPong    atomic.Int64 // unix nanoseconds
}

// link is one subscription connection and what it carries: the classic
// channels and patterns, or shard channels (one slot's worth in a Cluster,
// since one SSUBSCRIBE connection serves a single slot there).
type link struct {
	s       *Subscriber
	sub     Subscription
	shard   bool
	resolve func(ctx context.Context) (endpoint, error)
	retry   backoff
	// discBase is INFO's client_output_buffer_limit_disconnections on
	// the node when the link last subscribed (-1: unknown).
	discBase atomic.Int64

	mu      sync.Mutex
	state   string
	target  string
	why     string       // the Error of the last state record
	attempt int          // the Attempt of the last state record
	err     error        // the last attempt's error, nil once subscribed
	everUp  bool         // subscribed at least once
	hint    string       // a node named by a MOVED reply, tried next
	downAt  time.Time    // start of the open gap, zero when subscribed
	pinging atomic.Int64 // when the outstanding PING was sent (monoNow), 0 if none
}

// subConn is one live subscription connection. It is our own RESP2
// connection, not the driver's, so nothing on it reconnects or
// resubscribes behind the Subscriber's back.
type subConn struct {
	*respConn
	ep endpoint
	// failover closes at the first failover announced after the primary
	// was resolved for this connection (nil: not a Sentinel deployment).
	failover <-chan struct{}
	since    time.Time // when it was subscribed
	// loss says which messages a loss of this connection cost, when it is
	// not the usual gapWarning (set by serve).
	loss string
}

const pingPayload = "fanscope-watchdog"

// NewSubscriber prepares a Subscriber for sub without connecting; Run
// starts it. Its only error is ErrUsage (nothing to subscribe to).
func (c *Client) NewSubscriber(sub Subscription) (*Subscriber, error) {
	sub = sub.normalized()
	if sub.empty() {
		return nil, usageError("nothing to subscribe to: give a channel, a pattern or a shard channel")
	}
	s := &Subscriber{c: c, sub: sub, done: make(chan struct{}), connected: make(chan struct{})}
	s.links = c.plan(sub)
	for _, l := range s.links {
		l.s = s
		l.target = c.target
		l.state = feed.StateConnecting
		l.retry = backoff{floor: retryFloor, max: c.o.MaxBackoff}
	}
	return s, nil
}

// Subscribe subscribes and returns once every subscription is confirmed,
// so an unreachable server, a NOPERM or an authentication failure is
// returned here (for commands that must fail fast; NewSubscriber and Run
// keep trying instead). A goroutine then delivers records to sink until
// ctx ends: messages stamped right after the socket read that brought
// them returned, and state records (connecting, subscribed, disconnected,
// reconnecting) for every change.
func (c *Client) Subscribe(ctx context.Context, sub Subscription, sink feed.Sink) (*Subscriber, error) {
	s, err := c.NewSubscriber(sub)
	if err != nil {
		return nil, err
	}
	s.FailFast()
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx, sink) }()
	select {
	case <-s.connected:
		return s, nil
	case err := <-errc:
		select {
		case <-s.connected:
			return s, nil
		default:
		}
		if err == nil {
			err = wrapErr(fmt.Sprintf("subscribe to %s on %s", sub.describe(), c.target), ctx.Err())
		}
		return nil, err
	}
}

// FailFast makes Run end with the first failure of the first connection,
// an unreachable server included, instead of retrying: for commands that
// must exit when Redis is not there at start (tail, probe). Losses after
// the first subscription are still retried. Call it before Run.
func (s *Subscriber) FailFast() *Subscriber {
	s.failFast = true
	return s
}

// Run subscribes, and resubscribes after every loss, delivering records to
// sink until ctx ends; then it returns nil. While Redis cannot be reached
// it keeps trying with a capped, jittered backoff, reporting each attempt
// as a state record (connecting or reconnecting, with the attempt number
// and the error). It returns an error only for what retrying cannot fix:
// ErrAuth (wrong password, protected mode), ErrNoPerm or ErrUsage. Run may
// be called once.
func (s *Subscriber) Run(ctx context.Context, sink feed.Sink) error {
	if !s.started.CompareAndSwap(false, true) {
		return usageError("redis subscriber: Run called twice")
	}
	s.sink = sink
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		fatal error
	)
	for _, l := range s.links {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.run(rctx); err != nil {
				once.Do(func() {
					fatal = err
					cancel() // the other connections end with it
				})
			}
		}()
	}
	wg.Wait()
	close(s.done)
	return fatal
}

// plan splits a subscription into connections. A single server or a
// Sentinel primary gets one connection for channels and patterns and one
// for shard channels (messages on it are marked Shard).
func (c *Client) plan(sub Subscription) []*link {
	if c.mode == modeCluster {
		return c.planCluster(sub)
	}
	resolve := func(ctx context.Context) (endpoint, error) { return c.base, nil }
	if c.mode == modeSentinel {
		resolve = c.sentinel.resolve
	}
	var links []*link
	if len(sub.Channels)+len(sub.Patterns) > 0 {
		links = append(links, &link{sub: Subscription{Channels: sub.Channels, Patterns: sub.Patterns}, resolve: resolve})
	}
	if len(sub.ShardChannels) > 0 {
		links = append(links, &link{sub: Subscription{ShardChannels: sub.ShardChannels}, shard: true, resolve: resolve})
	}
	return links
}

// Path is the delivery path's name, feed.PathRedis.
func (s *Subscriber) Path() string { return feed.PathRedis }

// Connected is closed once every subscription connection has been
// subscribed (confirmed by the server) for the first time.
func (s *Subscriber) Connected() <-chan struct{} { return s.connected }

// Done is closed when Run has returned.
func (s *Subscriber) Done() <-chan struct{} { return s.done }

// Err is the last connection attempt's error (an *Error wrapping
// ErrUnreachable, ErrAuth, ErrNoPerm or ErrUsage) while a subscription
// connection is not subscribed, nil once every one is.
func (s *Subscriber) Err() error {
	for _, l := range s.links {
		l.mu.Lock()
		err := l.err
		l.mu.Unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

// stateRank orders states from healthy to worst, so that the
// Subscriber's state is its worst connection's.
var stateRank = map[string]int{feed.StateSubscribed: 0, feed.StateConnected: 0, feed.StateConnecting: 1,
	feed.StateReconnecting: 2, feed.StateDisconnected: 3, feed.StateFailed: 4}

// linkView is a copy of one link's state.
type linkView struct {
	state, target, why string
	attempt            int
	gap                time.Duration // the open gap so far
}

func (l *link) view() linkView {
	l.mu.Lock()
	defer l.mu.Unlock()
	v := linkView{state: l.state, target: l.target, why: l.why, attempt: l.attempt}
	if !l.downAt.IsZero() {
		v.gap = time.Since(l.downAt)
	}
	return v
}

// worst is the view of the connection in the worst state, and the open
// gaps of all of them.
func (s *Subscriber) worst() (linkView, time.Duration) {
	var w linkView
	var gaps time.Duration
	for i, l := range s.links {
		v := l.view()
		gaps += v.gap
		if i == 0 || stateRank[v.state] > stateRank[w.state] {
			w = v
		}
	}
	select {
	case <-s.done:
		if w.state != feed.StateFailed {
			w.state = feed.StateDisconnected
		}
	default:
	}
	return w, gaps
}

// Stats returns a copy of the counters.
func (s *Subscriber) Stats() SubscriberStats {
	w, gaps := s.worst()
	st := SubscriberStats{
		State:      w.state,
		Conns:      len(s.links),
		Messages:   s.messages.Load(),
		Bytes:      s.bytes.Load(),
		Reconnects: int(s.reconnects.Load()),
		Gaps:       int(s.gaps.Load()),
		GapTime:    time.Duration(s.gapNanos.Load()) + gaps,
		PingRTT:    time.Duration(s.rtt.Load()),
	}
	if n := s.lastMsg.Load(); n != 0 {
		st.LastMessage = time.Unix(0, n)
	}
	if n := s.lastPong.Load(); n != 0 {
		st.LastPing = time.Unix(0, n)
	}
	return st
}

// Status copies the subscription's health for the sources pane and
// metrics: the worst connection's state, target, reason and attempt, and
// the counters.
func (s *Subscriber) Status() feed.Status {
	w, _ := s.worst()
	st := s.Stats()
	out := feed.Status{
		Source:        feed.SourceRedis,
		URL:           w.target,
		State:         w.state,
		Attempt:       w.attempt,
		Reconnects:    st.Reconnects,
		Events:        st.Messages,
		LastEvent:     st.LastMessage,
		LastKeepAlive: st.LastPing,
		LastByte:      st.LastMessage,
	}
	if st.LastPing.After(out.LastByte) {
		out.LastByte = st.LastPing
	}
	if w.state != feed.StateSubscribed {
		out.Error = w.why
	}
	if n := s.connectedAt.Load(); n != 0 {
		out.ConnectedAt = time.Unix(0, n)
	}
	if st.Conns > 1 {
		out.Details = append(out.Details, fmt.Sprintf("%d subscription connections", st.Conns))
	}
	if st.PingRTT > 0 {
		out.Details = append(out.Details, "ping "+st.PingRTT.Round(time.Microsecond).String())
	}
	if st.Gaps > 0 {
		out.Details = append(out.Details, fmt.Sprintf("%d gaps, %s without a subscription", st.Gaps, st.GapTime.Round(time.Millisecond)))
	}
	out.Warnings = s.c.Warnings()
	return out
}

// setState records and emits a state change.
func (l *link) setState(state, target, msg string, attempt int) {
	l.mu.Lock()
	l.state = state
	if target != "" {
		l.target = target
	}
	target = l.target
	l.why, l.attempt = msg, attempt
	l.mu.Unlock()
	l.s.sink.Emit(feed.Record{
		TS:      time.Now(),
		Source:  feed.SourceRedis,
		Kind:    feed.KindState,
		Target:  target,
		State:   state,
		Error:   msg,
		Attempt: attempt,
	})
}

func (l *link) setErr(err error) {
	l.mu.Lock()
	l.err = err
	l.mu.Unlock()
}

// subscribed marks the link subscribed on sc; the first time for every
// link closes Connected.
func (l *link) subscribed(sc *subConn, msg string) {
	sc.since = time.Now()
	l.mu.Lock()
	first := !l.everUp
	l.everUp = true
	l.err = nil
	l.mu.Unlock()
	l.setState(feed.StateSubscribed, sc.ep.String(), msg, 0)
	l.discBase.Store(-1)
	go func() {
		// A baseline, so that a later disconnect can tell whether Redis
		// counted it as an output buffer kill.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if n, ok := l.s.c.bufferDisconnections(ctx, sc.ep); ok {
			l.discBase.Store(n)
		}
	}()
	if first && l.s.up.Add(1) == int64(len(l.s.links)) {
		l.s.connectedAt.Store(time.Now().UnixNano())
		close(l.s.connected)
	}
}

// permanent reports whether retrying cannot fix err.
func permanent(err error) bool {
	return errors.Is(err, ErrAuth) || errors.Is(err, ErrNoPerm) || errors.Is(err, ErrUsage)
}

// connect resolves the node, subscribes and reads every confirmation.
func (l *link) connect(ctx context.Context) (*subConn, error) {
	c := l.s.c
	// Taken before resolving: a failover announced from here on is
	// checked against the node this connection lands on.
	_, failover := c.failovers().next()
	l.mu.Lock()
	hint := l.hint
	l.hint = ""
	l.mu.Unlock()
	var ep endpoint
	var err error
	if hint != "" {
		ep = c.base.withAddr(hint)
	} else if ep, err = l.resolve(ctx); err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.target = ep.String()
	l.mu.Unlock()
	what := fmt.Sprintf("subscribe to %s on %s", l.sub.describe(), ep.String())
	sc, err := l.dial(ctx, ep)
	if err != nil {
		err = ep.explain(ctx, err)
		if ctx.Err() != nil {
			// Still an *Error (wrapping ErrUnreachable), and errors.Is
			// finds context.Canceled or DeadlineExceeded in it.
			return nil, wrapErr(what, ctx.Err())
		}
		if addr, ok := movedTo(err); ok {
			// Our view of the cluster was stale: go where the server says.
			l.mu.Lock()
			l.hint = addr
			l.mu.Unlock()
		}
		return nil, wrapErr(what, err)
	}
	sc.failover = failover
	return sc, nil
}

// dial connects to ep, authenticates, names the connection and subscribes,
// all within DialTimeout+PongTimeout, and reads every confirmation.
// Messages that arrive before the last confirmation are delivered.
func (l *link) dial(ctx context.Context, ep endpoint) (*subConn, error) {
	c := l.s.c
	deadline := time.Now().Add(c.o.DialTimeout + c.o.PongTimeout)
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	conn, err := ep.dialer(c.o.DialTimeout)(dctx, ep.network, ep.addr)
	if err != nil {
		return nil, err
	}
	sc := &subConn{respConn: newRespConn(conn, c.o.DialTimeout), ep: ep}
	_ = conn.SetDeadline(deadline)
	// Canceling ctx ends a read or write that is waiting.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	err = l.handshake(sc)
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err == nil {
		// No read deadline from here on: the watchdog decides liveness.
		err = conn.SetDeadline(time.Time{})
	}
	if err != nil {
		_ = sc.close()
		return nil, err
	}
	return sc, nil
}

func (l *link) handshake(sc *subConn) error {
	c, ep := l.s.c, sc.ep
	var p push
	// What go-redis does (its HELLO carries AUTH "default" when the URL has
	// no user): a password with a passwordless server is accepted, as it is
	// on the command connections.
	if ep.pass != "" {
		user := ep.user
		if user == "" {
			user = "default"
		}
		err := sc.send([]string{"AUTH", user, ep.pass})
		if err == nil {
			err = sc.expectOK(&p)
		}
		if err != nil && ep.user == "" && strings.Contains(err.Error(), "wrong number of arguments") {
			// Before Redis 6 AUTH takes the password alone.
			if err = sc.send([]string{"AUTH", ep.pass}); err == nil {
				err = sc.expectOK(&p)
			}
		}
		if err != nil {
			return &authError{err}
		}
	}
	want := map[string]bool{}
	var cmds [][]string
	if c.o.ClientName != "" {
		cmds = append(cmds, []string{"CLIENT", "SETNAME", c.o.ClientName})
	}
	add := func(cmd, kind string, names []string) {
		if len(names) == 0 {
			return
		}
		for _, n := range names {
			want[kind+" "+n] = true
		}
		cmds = append(cmds, append([]string{cmd}, names...))
	}
	add("SUBSCRIBE", "subscribe", l.sub.Channels)
	add("PSUBSCRIBE", "psubscribe", l.sub.Patterns)
	add("SSUBSCRIBE", "ssubscribe", l.sub.ShardChannels)
	if err := sc.send(cmds...); err != nil {
		return err
	}
	if c.o.ClientName != "" {
		err := sc.expectOK(&p)
		var refused serverError
		if errors.As(err, &refused) {
			// An ACL without +client|setname: subscribe unnamed.
			c.unnamed.Store(true)
		} else if err != nil {
			return err
		}
	}
	for len(want) > 0 {
		if err := sc.next(&p); err != nil {
			return err
		}
		switch p.kind {
		case pushSubscribe:
			delete(want, p.name+" "+p.channel)
		case pushMessage:
			l.deliver(&p)
		}
	}
	return nil
}

func (l *link) deliver(p *push) {
	r := l.record(p)
	l.s.sink.Emit(r)
	l.counted(p.at, 1, len(p.data))
}

func (l *link) record(p *push) feed.Record {
	return feed.Record{
		TS:      p.at,
		Source:  feed.SourceRedis,
		Kind:    feed.KindMessage,
		Channel: p.channel,
		Pattern: p.pattern,
		Shard:   l.shard,
		Data:    p.data,
	}
}

func (l *link) counted(last time.Time, messages, bytes int) {
	s := l.s
	s.messages.Add(uint64(messages))
	s.bytes.Add(uint64(bytes))
	s.lastMsg.Store(last.UnixNano())
}

// maxBatch bounds how many messages wait in a batch while the rest of a
// read buffer is parsed (about 40 µs of parsing).
const maxBatch = 256

// flush hands the batch to the sink and empties it.
func (l *link) flush(sink feed.BatchSink, batch *[]feed.Record) {
	b := *batch
	if len(b) == 0 {
		return
	}
	sink.EmitBatch(b)
	bytes := 0
	for i := range b {
		bytes += len(b[i].Data)
	}
	l.counted(b[len(b)-1].TS, len(b), bytes)
	clear(b)
	*batch = b[:0]
}

const gapWarning = "messages published during the gap may be lost"

// run subscribes, serves the connection and rebuilds it after every
// failure until ctx ends (then it returns nil) or a failure retrying
// cannot fix.
func (l *link) run(ctx context.Context) error {
	sc, err := l.establish(ctx, "")
	if sc != nil {
		l.subscribed(sc, "")
	}
	for sc != nil {
		reason := l.serve(ctx, sc)
		_ = sc.close()
		prev := sc.ep
		if ctx.Err() != nil {
			break
		}
		if time.Since(sc.since) >= stableAfter {
			l.retry.reset()
		}
		down := time.Now()
		l.mu.Lock()
		l.downAt = down
		l.mu.Unlock()
		l.s.gaps.Add(1)
		loss := cmp.Or(sc.loss, gapWarning)
		l.setState(feed.StateDisconnected, "", reason+"; "+loss, 0)
		sc, err = l.establish(ctx, reason)
		gap := time.Since(down)
		l.mu.Lock()
		l.downAt = time.Time{}
		l.mu.Unlock()
		l.s.gapNanos.Add(int64(gap))
		if sc == nil {
			break
		}
		l.s.reconnects.Add(1)
		where := ""
		if sc.ep.addr != prev.addr {
			where = " on " + sc.ep.addr + " (was " + prev.addr + ")"
		}
		l.subscribed(sc, fmt.Sprintf("resubscribed%s after a %s gap; %s", where, gap.Round(time.Millisecond), loss))
	}
	if err == nil {
		l.setState(feed.StateDisconnected, "", "", 0)
	}
	return err
}

// establish connects until the link is subscribed. lost is "" for the
// first connection (states "connecting"), else why the last one ended
// (states "reconnecting"). Every attempt is a state record with its number
// and the previous attempt's error. It returns (nil, nil) when ctx ends,
// and the error when retrying cannot fix it (or, for a fail-fast
// Subscriber, on the first connection's first failure).
func (l *link) establish(ctx context.Context, lost string) (*subConn, error) {
	state, last := feed.StateReconnecting, lost
	if lost == "" {
		state = feed.StateConnecting
	}
	moves := 0
	for attempt := 1; ; attempt++ {
		// Always a pause before a reconnect, however quickly the last
		// connection failed, so a server that confirms and then breaks
		// the subscription cannot drive a reconnect storm.
		if attempt > 1 || lost != "" {
			wait := l.retry.next()
			l.setState(state, "", fmt.Sprintf("%s; next attempt in %s", last, wait.Round(time.Millisecond)), attempt)
			if !netx.Sleep(ctx, wait) {
				return nil, nil
			}
		} else {
			l.setState(state, "", last, attempt)
		}
		sc, err := l.connect(ctx)
		if err == nil {
			return sc, nil
		}
		if ctx.Err() != nil {
			return nil, nil
		}
		l.setErr(err)
		if _, moved := movedTo(err); moved && moves < 3 {
			// Our view of the cluster was stale; the hint says where to go.
			moves++
			l.retry.undo()
		} else if permanent(err) || (l.s.failFast && lost == "") {
			l.setState(feed.StateFailed, "", err.Error(), attempt)
			return nil, err
		}
		last = err.Error()
	}
}

// serve reads until the connection fails, the watchdog gives up on it, or
// ctx ends; it returns why it stopped.
func (l *link) serve(ctx context.Context, sc *subConn) string {
	wctx, stop := context.WithCancel(ctx)
	dead := make(chan string, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		l.watchdog(wctx, sc, dead)
	}()
	defer func() {
		stop()
		wg.Wait()
	}()
	s := l.s
	var p push
	// With a BatchSink, the messages that are already whole in the read
	// buffer are handed over together, before the next read that may
	// wait: one hand-over per socket read rather than one per message.
	bs, _ := s.sink.(feed.BatchSink)
	var batch []feed.Record
	if bs != nil {
		batch = make([]feed.Record, 0, maxBatch)
	}
	for {
		if bs != nil && sc.nextBuffered(&p) {
			batch = append(batch, l.record(&p))
			if len(batch) == maxBatch {
				l.flush(bs, &batch)
				// A backlog: let the consumer take these while they are
				// still in the cache (on one P it would not run until
				// this goroutine blocks or is preempted, 10 ms later).
				runtime.Gosched()
			}
			continue
		}
		if bs != nil {
			l.flush(bs, &batch)
		}
		// No read deadline: a deadline that fires in the middle of a large
		// message would leave the reader out of step with the stream. The
		// watchdog decides liveness from bytes arriving instead and closes
		// the connection to end this read. Each message carries the time
		// of the socket read that brought its last byte.
		err := sc.next(&p)
		if err != nil {
			if ctx.Err() != nil {
				return ""
			}
			// The watchdog leaves its reason before it closes the connection.
			select {
			case reason := <-dead:
				return reason
			default:
			}
			if closedByServer(err) {
				return l.closedByServer(ctx, sc)
			}
			return "connection lost: " + shortErr(err)
		}
		switch p.kind {
		case pushMessage:
			l.deliver(&p)
		case pushPong:
			if p.data == pingPayload {
				if sent := l.pinging.Swap(0); sent != 0 {
					s.rtt.Store(int64(p.at.Sub(epoch)) - sent)
					s.lastPong.Store(p.at.UnixNano())
				}
			}
		case pushUnsubscribe:
			if p.name == "sunsubscribe" {
				return fmt.Sprintf("the server ended the subscription to shard channel %s (its slot moved to another node); resubscribing where it lives now", p.channel)
			}
			return fmt.Sprintf("the server ended the subscription to %s", p.channel)
		}
	}
}

// watchdog sends PING when the connection has been quiet for PingIdle
// and every RTTInterval, and closes the connection when no byte at all
// arrives for PongTimeout after a PING: a frozen server (SIGSTOP) or a
// dead network never shows up as a read error.
//
// Silence is counted in watchdog ticks, each worth at most two tick
// intervals, and only while the reader is waiting on the socket: when this
// process itself stalls (GC, an overloaded machine, a slow sink) the clock
// moves but no evidence against the server accumulates.
func (l *link) watchdog(ctx context.Context, sc *subConn, dead chan<- string) {
	o := l.s.c.o
	tick := max(min(o.PingIdle, o.PongTimeout)/4, 10*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	l.pinging.Store(0)
	lastSample := time.Time{} // sample the round trip right away
	lastTick := time.Now()
	lastAct := sc.in.last.Load()
	var quiet, sincePing time.Duration
	give := func(reason string) {
		select {
		case dead <- reason:
		default:
		}
		_ = sc.close()
	}
	for {
		select {
		case <-ctx.Done():
			_ = sc.close()
			return
		case <-sc.failover:
			f, next := l.s.c.failovers().next()
			if f.to != sc.ep.addr {
				give(f.reason())
				return
			}
			sc.failover = next // announced by a resolve that chose this very node
			continue
		case <-t.C:
		}
		now := time.Now()
		step := min(now.Sub(lastTick), 2*tick)
		lastTick = now
		if a := sc.in.last.Load(); a != lastAct || !sc.in.waiting.Load() {
			lastAct, quiet = a, 0
		} else {
			quiet += step
		}
		if l.pinging.Load() != 0 {
			sincePing += step
			if sincePing > o.PongTimeout && quiet > o.PongTimeout {
				give(fmt.Sprintf("no reply to PING within %s (server frozen, overloaded or network down)", o.PongTimeout))
				return
			}
			continue
		}
		if quiet >= o.PingIdle || now.Sub(lastSample) >= o.RTTInterval {
			lastSample, sincePing = now, 0
			l.pinging.Store(monoNow())
			if err := sc.send([]string{"PING", pingPayload}); err != nil {
				if ctx.Err() != nil {
					_ = sc.close()
					return
				}
				give("send PING: " + shortErr(err))
				return
			}
		}
	}
}

func shortErr(err error) string {
	if errors.Is(err, context.Canceled) {
		return "canceled"
	}
	_, reason, _ := classify(err)
	return reason
}
