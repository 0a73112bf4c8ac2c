// Package relay is fanscope's reference Redis→SSE relay: every Redis Pub/Sub
// message becomes an SSE event (type = channel with ':' → '-', data = the
// payload, increasing ids), served to browsers with Last-Event-ID replay
// from a bounded history, keep-alive comments, an optional token, /healthz
// and /stats. It is built on github.com/r3labs/sse/v2's server and works
// around what that server cannot do (see the comments on Relay).
package relay

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/r3labs/sse/v2"

	"github.com/fanscope/fanscope/feed"
)

// Defaults for Config fields left zero.
const (
	DefaultPath         = "/api/community/events"
	DefaultWriteTimeout = 10 * time.Second
	DefaultClientQueue  = 1024
)

// ErrConfig marks an invalid Config.
var ErrConfig = errors.New("invalid relay configuration")

// Config says how the relay serves.
type Config struct {
	// Path serves the event stream (DefaultPath when empty).
	Path string
	// KeepAlive is the period of ": ping" comments; 0 sends none.
	KeepAlive time.Duration
	// Token, when set, is required as ?token=T or "Authorization: Bearer T".
	Token string
	// History is how many recent events are kept for Last-Event-ID replay.
	History int
	// WriteTimeout bounds one write to one client (DefaultWriteTimeout when 0).
	WriteTimeout time.Duration
	// ClientQueue is how many events may wait for one client (beyond a
	// replay) before it is dropped as too slow (DefaultClientQueue when 0).
	ClientQueue int
	// AllowOrigin, when set, is sent as Access-Control-Allow-Origin on the
	// event stream ("*" or one origin such as "http://localhost:3000"), so
	// a page served from elsewhere can open an EventSource; preflights
	// (OPTIONS) are answered too.
	AllowOrigin string
	// Logger gets a line per connect and disconnect (discarded when nil).
	Logger *slog.Logger
}

// Relay turns Redis messages into SSE events.
//
// What r3labs/sse/v2 v2.10.0's server cannot do, and what Relay does instead:
//   - One stream fans out to all its subscribers with a blocking send per
//     subscriber, so one browser that stops reading stalls every other
//     (and then Publish). Relay gives every connection its own r3labs
//     stream and fans out itself with TryPublish; a connection whose queue
//     is full is dropped (it reconnects with Last-Event-ID and is replayed).
//   - Its writes have no deadline and ignore errors: deadlineWriter adds a
//     per-client write timeout.
//   - AutoReplay keeps every event forever and replays the whole log to
//     every new subscriber (and the event equal to Last-Event-ID again).
//     Relay turns it off, keeps a bounded history and replays exactly the
//     events after Last-Event-ID, and none to a new client.
//   - It reads the stream name from ?stream= and rejects a Last-Event-ID
//     that is not a number with 400; Relay sets both on its own copy of
//     the request.
//   - An event with empty data ends the connection; Relay does not relay
//     empty payloads (counted in /stats as empty_payloads_skipped).
//   - Without SplitData a payload with a line break would corrupt the
//     stream; Relay sets SplitData and turns CR LF and lone CR into LF
//     (a browser reads every one of them as a line break anyway).
//   - It has no keep-alive and no auth; Relay adds both.
type Relay struct {
	cfg   Config
	log   *slog.Logger
	srv   *sse.Server
	queue *feed.Queue
	ping  *sse.Event

	createMu sync.Mutex // guards srv.BufferSize around CreateStream

	mu       sync.Mutex
	clients  map[string]*client // by r3labs stream id
	live     int
	history  []entry // ring of the last cfg.History events
	histHead int     // index of the oldest entry
	lastID   uint64
	closing  bool
	nextConn uint64
	stats    counters
	// The Redis subscription's last state and error, from Emit ("" when
	// no Redis subscriber feeds this relay).
	redisState, redisErr string
}

type entry struct {
	id uint64
	ev *sse.Event
}

type counters struct {
	relayed, empty, slowDropped, writeTimeouts, connTotal, pings uint64
	perChannel                                                   map[string]uint64
}

// client is one SSE connection.
type client struct {
	stream  string
	remote  string
	lastID  uint64
	hasLast bool
	w       *deadlineWriter
	since   time.Time

	// guarded by Relay.mu
	live   bool
	closed bool
	sent   uint64
	reason string
}

// New returns a relay for cfg. Serve runs it.
func New(cfg Config) (*Relay, error) {
	if cfg.Path == "" {
		cfg.Path = DefaultPath
	}
	if !strings.HasPrefix(cfg.Path, "/") || cfg.Path == "/healthz" || cfg.Path == "/stats" {
		return nil, fmt.Errorf("path %q: want an absolute path other than /healthz and /stats: %w", cfg.Path, ErrConfig)
	}
	if cfg.History < 0 || cfg.History > 1_000_000 {
		return nil, fmt.Errorf("history %d: want 0 to 1000000: %w", cfg.History, ErrConfig)
	}
	if cfg.KeepAlive < 0 {
		return nil, fmt.Errorf("keepalive %s: want 0 (none) or more: %w", cfg.KeepAlive, ErrConfig)
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.ClientQueue <= 0 {
		cfg.ClientQueue = DefaultClientQueue
	}
	if strings.ContainsAny(cfg.AllowOrigin, " \t\r\n,") {
		return nil, fmt.Errorf("allowed origin %q: want \"*\" or one origin: %w", cfg.AllowOrigin, ErrConfig)
	}
	if strings.ContainsAny(cfg.Token, " \t\r\n") {
		return nil, fmt.Errorf("token: contains white space: %w", ErrConfig)
	}
	r := &Relay{
		cfg:     cfg,
		log:     cfg.Logger,
		queue:   feed.NewQueue(0),
		ping:    &sse.Event{Comment: []byte("ping")},
		clients: map[string]*client{},
		history: make([]entry, 0, cfg.History),
	}
	r.stats.perChannel = map[string]uint64{}
	if r.log == nil {
		r.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	srv := sse.New()
	srv.AutoReplay = false
	srv.AutoStream = false
	srv.SplitData = true
	// BufferSize is set per connection in serveEvents.
	srv.Headers = map[string]string{"X-Accel-Buffering": "no"}
	srv.OnSubscribe = func(stream string, _ *sse.Subscriber) { r.activate(stream) }
	r.srv = srv
	return r, nil
}

// EventType is the SSE event type for a Redis channel: ':' becomes '-',
// and line breaks (which would end the field) become '-' too.
func EventType(channel string) string {
	return strings.Map(func(c rune) rune {
		switch c {
		case ':', '\r', '\n':
			return '-'
		}
		return c
	}, channel)
}

// normalizeData turns CR LF and lone CR into LF: SSE data cannot carry a CR
// (it ends the line), and r3labs splits data lines at LF only.
func normalizeData(p string) []byte {
	b := []byte(p)
	if bytes.IndexByte(b, '\r') < 0 {
		return b
	}
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	return bytes.ReplaceAll(b, []byte("\r"), []byte("\n"))
}

// Emit implements feed.Sink for the Redis subscriber: messages are queued
// for relaying, state changes are logged. It never blocks.
func (r *Relay) Emit(rec feed.Record) { r.queue.Emit(rec) }

// Publish relays one message now and returns its event id (0 when the
// payload is empty and so not relayed). Serve need not be running.
func (r *Relay) Publish(channel, payload string) uint64 {
	if payload == "" {
		r.mu.Lock()
		r.stats.empty++
		r.mu.Unlock()
		return 0
	}
	ev := &sse.Event{Event: []byte(EventType(channel)), Data: normalizeData(payload)}
	var slow []*client
	r.mu.Lock()
	r.lastID++
	id := r.lastID
	ev.ID = []byte(strconv.FormatUint(id, 10))
	r.remember(entry{id: id, ev: ev})
	r.stats.relayed++
	r.stats.perChannel[channel]++
	for _, c := range r.clients {
		if !c.live {
			continue
		}
		if r.srv.TryPublish(c.stream, ev) {
			c.sent++
		} else {
			slow = append(slow, c)
		}
	}
	r.dropLocked(slow, "too slow: its queue is full")
	r.mu.Unlock()
	return id
}

// remember adds e to the history ring.
func (r *Relay) remember(e entry) {
	if r.cfg.History == 0 {
		return
	}
	if len(r.history) < r.cfg.History {
		r.history = append(r.history, e)
		return
	}
	r.history[r.histHead] = e
	r.histHead = (r.histHead + 1) % len(r.history)
}

// missed returns the history entries after id, oldest first, and whether
// some events after id are no longer held.
func (r *Relay) missed(id uint64) (events []*sse.Event, gap bool) {
	if id >= r.lastID {
		return nil, false
	}
	n := len(r.history)
	for i := 0; i < n; i++ {
		e := r.history[(r.histHead+i)%n]
		if e.id > id {
			if len(events) == 0 && e.id > id+1 {
				gap = true
			}
			events = append(events, e.ev)
		}
	}
	if n == 0 {
		gap = true
	}
	return events, gap
}

// dropLocked drops slow clients; r.mu is held.
func (r *Relay) dropLocked(cs []*client, reason string) {
	for _, c := range cs {
		if c.closed {
			continue
		}
		if c.reason == "" {
			c.reason = reason
			r.stats.slowDropped++
		}
		c.w.drop()
	}
}

// activate runs once r3labs has registered the connection's subscriber:
// events published from now on reach it, so this is where the replay is
// queued and the client starts taking live events, under one lock so
// nothing is missed or sent twice.
func (r *Relay) activate(stream string) {
	r.mu.Lock()
	c := r.clients[stream]
	if c == nil || c.closed || c.live {
		r.mu.Unlock()
		return
	}
	var replay []*sse.Event
	var gap bool
	if c.hasLast {
		if c.lastID > r.lastID {
			// An id this relay never issued (it restarted): nothing to replay.
			gap = true
		} else {
			replay, gap = r.missed(c.lastID)
		}
	}
	for _, ev := range replay {
		// The stream queue was sized for the replay plus ClientQueue; only
		// a flood between connect and now can overflow it.
		if !r.srv.TryPublish(stream, ev) {
			r.dropLocked([]*client{c}, "too slow during replay")
			r.mu.Unlock()
			return
		}
		c.sent++
	}
	c.live = true
	r.live++
	active := r.live
	r.mu.Unlock()
	attrs := []any{"remote", c.remote, "active", active}
	if c.hasLast {
		attrs = append(attrs, "last_event_id", c.lastID, "replayed", len(replay))
		if gap {
			attrs = append(attrs, "gap", true)
		}
	}
	r.log.Info("sse client connected", attrs...)
}

// keepAlive sends one ": ping" comment to every live client.
func (r *Relay) keepAlive() {
	var slow []*client
	r.mu.Lock()
	for _, c := range r.clients {
		if c.live && !r.srv.TryPublish(c.stream, r.ping) {
			slow = append(slow, c)
		}
	}
	r.stats.pings++
	r.dropLocked(slow, "too slow: its queue is full")
	r.mu.Unlock()
}

// Handler serves the event stream at Config.Path, GET /healthz and GET /stats.
func (r *Relay) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(r.cfg.Path, r.serveEvents)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		r.mu.Lock()
		state, msg := r.redisState, r.redisErr
		r.mu.Unlock()
		if !redisHealthy(state) {
			// Streams stay open, but nothing is coming: tell the load balancer.
			w.WriteHeader(http.StatusServiceUnavailable)
			if msg != "" {
				state += ": " + msg
			}
			_, _ = io.WriteString(w, "redis subscription "+state+"\n")
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("/stats", func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(r.Stats())
	})
	return mux
}

func (r *Relay) authorized(req *http.Request) bool {
	if r.cfg.Token == "" {
		return true
	}
	want := []byte(r.cfg.Token)
	if t := req.URL.Query().Get("token"); t != "" && subtle.ConstantTimeCompare([]byte(t), want) == 1 {
		return true
	}
	scheme, t, ok := strings.Cut(req.Header.Get("Authorization"), " ")
	return ok && strings.EqualFold(scheme, "Bearer") && subtle.ConstantTimeCompare([]byte(strings.TrimSpace(t)), want) == 1
}

func (r *Relay) serveEvents(w http.ResponseWriter, req *http.Request) {
	if o := r.cfg.AllowOrigin; o != "" {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", o)
		if o != "*" {
			h.Add("Vary", "Origin")
			h.Set("Access-Control-Allow-Credentials", "true")
		}
		if req.Method == http.MethodOptions {
			h.Set("Access-Control-Allow-Methods", "GET")
			h.Set("Access-Control-Allow-Headers", "Authorization, Last-Event-ID, Cache-Control")
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
	}
	if req.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if !r.authorized(req) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="fanscope relay"`)
		http.Error(w, "unauthorized: give ?token= or Authorization: Bearer", http.StatusUnauthorized)
		return
	}
	c := &client{remote: req.RemoteAddr, since: time.Now()}
	if v := req.Header.Get("Last-Event-ID"); v != "" {
		id, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if err == nil {
			c.lastID, c.hasLast = id, true
		} else {
			r.log.Warn("sse client sent a Last-Event-ID this relay never issues; not replaying", "remote", c.remote, "last_event_id", v)
		}
	}
	ctx, cancel := context.WithCancel(req.Context())
	defer cancel()
	c.w = newDeadlineWriter(w, r.cfg.WriteTimeout, cancel)

	r.mu.Lock()
	if r.closing {
		r.mu.Unlock()
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	r.nextConn++
	c.stream = "c" + strconv.FormatUint(r.nextConn, 10)
	r.clients[c.stream] = c
	r.stats.connTotal++
	pending := 0 // events to replay, as of now
	if c.hasLast && c.lastID < r.lastID {
		pending = int(min(r.lastID-c.lastID, uint64(len(r.history))))
	}
	r.mu.Unlock()

	// A connection's stream queue holds its replay plus ClientQueue live
	// events; past that the client is too slow and is dropped. r3labs
	// reads BufferSize only in CreateStream, so under createMu it can be
	// set per connection: a new client costs ClientQueue slots, not History.
	r.createMu.Lock()
	r.srv.BufferSize = pending + r.cfg.ClientQueue
	r.srv.CreateStream(c.stream)
	r.createMu.Unlock()
	// r3labs takes the stream from ?stream= and parses Last-Event-ID
	// itself; give it a copy with ours set and that header removed.
	inner := req.Clone(ctx)
	inner.URL.RawQuery = url.Values{"stream": {c.stream}}.Encode()
	inner.Header.Del("Last-Event-ID")
	r.srv.ServeHTTP(c.w, inner)

	r.mu.Lock()
	delete(r.clients, c.stream)
	wasLive := c.live
	if c.live {
		r.live--
	}
	c.closed = true
	reason := c.reason
	if reason == "" {
		if reason = c.w.writeFailure(); reason == "write timed out" {
			r.stats.writeTimeouts++
		}
	}
	active, sent := r.live, c.sent
	r.mu.Unlock()
	r.srv.RemoveStream(c.stream)
	if reason == "" {
		reason = "client went away"
	}
	if wasLive {
		r.log.Info("sse client disconnected", "remote", c.remote, "reason", reason, "events", sent,
			"duration", time.Since(c.since).Round(time.Millisecond), "active", active)
	}
}

// Stats is the /stats document.
type Stats struct {
	// Connections is the number of SSE clients connected now.
	Connections int `json:"connections"`
	// EventsRelayed counts Redis messages turned into events (once each,
	// however many clients got them).
	EventsRelayed uint64            `json:"events_relayed"`
	PerChannel    map[string]uint64 `json:"per_channel"`
	LastEventID   uint64            `json:"last_event_id"`
	// HistoryHeld is how many events are kept for Last-Event-ID replay.
	HistoryHeld        int    `json:"history_held"`
	ConnectionsTotal   uint64 `json:"connections_total"`
	SlowClientsDropped uint64 `json:"slow_clients_dropped"`
	// WriteTimeouts counts clients dropped because one write took longer
	// than Config.WriteTimeout.
	WriteTimeouts  uint64 `json:"write_timeouts"`
	EmptySkipped   uint64 `json:"empty_payloads_skipped"`
	KeepAlivesSent uint64 `json:"keepalives_sent"`
	// IngestDropped counts Redis messages lost because the relay could
	// not take them in time.
	IngestDropped uint64 `json:"ingest_dropped"`
	// RedisState is the Redis subscription's state (subscribed,
	// reconnecting, ...); omitted when no Redis feeds the relay.
	RedisState string `json:"redis_state,omitempty"`
}

// Stats returns a copy of the counters.
func (r *Relay) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	per := make(map[string]uint64, len(r.stats.perChannel))
	for k, v := range r.stats.perChannel {
		per[k] = v
	}
	return Stats{
		Connections: r.live, EventsRelayed: r.stats.relayed, PerChannel: per, LastEventID: r.lastID,
		HistoryHeld: len(r.history), ConnectionsTotal: r.stats.connTotal, SlowClientsDropped: r.stats.slowDropped,
		WriteTimeouts: r.stats.writeTimeouts,
		EmptySkipped:  r.stats.empty, KeepAlivesSent: r.stats.pings, IngestDropped: r.queue.Dropped(),
	}
}

// Serve serves HTTP on ln, relays what Emit queued and sends keep-alives
// until ctx ends; then it ends every stream and shuts the server down
// (waiting up to 5 s for handlers). It returns nil after a shutdown.
func (r *Relay) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           r.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(r.log.Handler(), slog.LevelWarn),
	}
	var wg sync.WaitGroup
	loopCtx, stopLoops := context.WithCancel(ctx)
	defer stopLoops()
	wg.Go(func() { r.pump(loopCtx) })
	if r.cfg.KeepAlive > 0 {
		wg.Go(func() {
			t := time.NewTicker(r.cfg.KeepAlive)
			defer t.Stop()
			for {
				select {
				case <-loopCtx.Done():
					return
				case <-t.C:
					r.keepAlive()
				}
			}
		})
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()

	var serveErr error
	select {
	case <-ctx.Done():
	case err := <-errc:
		serveErr = fmt.Errorf("serve relay on %s: %w", ln.Addr(), err)
	}
	r.closeAll()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if err := hs.Shutdown(sctx); err != nil {
		_ = hs.Close()
	}
	cancel()
	r.srv.Close()
	stopLoops()
	wg.Wait()
	return serveErr
}

// pump relays queued Redis records.
func (r *Relay) pump(ctx context.Context) {
	var spare []feed.Record
	for {
		batch := r.queue.Take(ctx, spare)
		if batch == nil {
			return
		}
		for i := range batch {
			rec := &batch[i]
			switch rec.Kind {
			case feed.KindMessage:
				r.Publish(rec.Channel, rec.Data)
			case feed.KindState:
				r.mu.Lock()
				r.redisState, r.redisErr = rec.State, rec.Error
				r.mu.Unlock()
				attrs := []any{"target", rec.Target, "state", rec.State}
				if rec.Error != "" {
					attrs = append(attrs, "error", rec.Error)
				}
				r.log.Info("redis", attrs...)
			}
		}
		clear(batch)
		spare = batch
	}
}

// redisHealthy reports whether a Redis subscription in state (as emitted by
// redisx; "" when none feeds the relay) delivers messages.
func redisHealthy(state string) bool {
	switch state {
	case "", feed.StateSubscribed, feed.StateConnected:
		return true
	}
	return false
}

// closeAll refuses new connections and ends every stream.
func (r *Relay) closeAll() {
	r.mu.Lock()
	r.closing = true
	for _, c := range r.clients {
		if c.reason == "" {
			c.reason = "relay shutting down"
		}
		c.w.drop()
	}
	r.mu.Unlock()
}
