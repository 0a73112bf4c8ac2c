// Package relay is fanscope's reference Redis→SSE relay: every Redis Pub/Sub
// message becomes an SSE event (type = channel with ':' → '-', data = the
// payload, increasing ids), served to browsers with Last-Event-ID replay
// from a history bounded in events and bytes, keep-alive comments, an
// optional token, /healthz and /stats. The same events are also served over
// WebSocket (WSPath) and as a poll endpoint (the event path + PollSuffix).
//
// The SSE hot path is written here, not taken from r3labs/sse/v2 (which
// earlier versions used): with one goroutine, one channel and a
// ResponseWriter per connection it held 40.7 KB of RSS per idle connection
// and needed 511 ms (p99) to reach the last of 10,000. Here a connection is
// taken from net/http (and from Go's network poller) once its request is
// read; each event is encoded once and the same bytes are written to every
// connection with a non-blocking write; one epoll loop watches all of them
// for leaving and for draining what a slow client has queued. A connection
// costs no goroutine and no buffer while it keeps up (docs/BENCHMARKS.md
// has the figures).
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
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fanscope/fanscope/feed"
)

// Defaults for Config fields left zero, and the bounds New enforces.
const (
	DefaultPath             = "/api/community/events"
	DefaultWriteTimeout     = 10 * time.Second
	DefaultClientQueue      = 1024
	DefaultClientQueueBytes = 4 << 20
	DefaultHistoryBytes     = 16 << 20
	DefaultIngestBytes      = 64 << 20
	// DefaultPollEvents is how many events the poll endpoint lists when
	// the request gives no ?limit=.
	DefaultPollEvents = 100
	// MaxStatsChannels bounds /stats per_channel: a pattern can match any
	// number of channels; past this many, events count in per_channel_other.
	MaxStatsChannels = 1000
	// MinKeepAlive and MinWriteTimeout keep a typo (1ns) from spinning a core.
	MinKeepAlive    = 100 * time.Millisecond
	MinWriteTimeout = 10 * time.Millisecond
	MaxHistory      = 1_000_000
)

// PollSuffix is appended to Config.Path for the poll endpoint.
const PollSuffix = "/poll"

// ErrConfig marks an invalid Config.
var ErrConfig = errors.New("invalid relay configuration")

// Config says how the relay serves.
type Config struct {
	// Path serves the event stream (DefaultPath when empty); Path +
	// PollSuffix serves the poll endpoint.
	Path string
	// KeepAlive is the period of ": ping" comments (WebSocket pings);
	// 0 sends none, else at least MinKeepAlive.
	KeepAlive time.Duration
	// Token, when set, is required as ?token=T or "Authorization: Bearer T"
	// on the stream, WebSocket, poll and /stats.
	Token string
	// History is how many recent events are kept for Last-Event-ID replay
	// and polling; HistoryBytes bounds their size too (DefaultHistoryBytes
	// when 0). An event larger than HistoryBytes is relayed but not kept.
	History      int
	HistoryBytes int
	// WriteTimeout bounds one write to one client (DefaultWriteTimeout when 0).
	WriteTimeout time.Duration
	// ClientQueue and ClientQueueBytes bound what may wait for one client
	// beyond its replay (DefaultClientQueue events, DefaultClientQueueBytes
	// when 0); past either it is dropped as too slow (it reconnects with
	// Last-Event-ID and is replayed).
	ClientQueue      int
	ClientQueueBytes int
	// IngestBytes bounds the Redis payload bytes waiting to be relayed
	// (DefaultIngestBytes when 0); past it messages are dropped and
	// counted as ingest_dropped.
	IngestBytes int
	// AllowOrigin, when set, is sent as Access-Control-Allow-Origin ("*"
	// or one http(s) origin such as "http://localhost:3000"), so a page
	// served from elsewhere can connect; preflights (OPTIONS) are answered.
	AllowOrigin string
	// Logger gets a line per connect and disconnect (discarded when nil).
	Logger *slog.Logger
}

// Drop reasons.
const (
	reasonTooSlow      = "too slow: its queue is full"
	reasonWriteTimeout = "write timed out"
	reasonGone         = "client went away"
	reasonShutdown     = "relay shutting down"
)

var pingFrame = []byte(": ping\n\n")

// subscriber is one streaming client, SSE or WebSocket.
type subscriber interface {
	deliver(ev *event) bool // false: dropped now as too slow
	ping()
	shut(reason string)
	queued() int // bytes waiting
}

// event is one relayed message, encoded once for every client.
type event struct {
	id   uint64
	sse  []byte // "id: N\nevent: T\ndata: ...\n\n"
	obj  []byte // {"id":"N","type":T,"channel":C,"data":D}: WebSocket message, poll entry
	size int
}

// Relay turns Redis messages into SSE, WebSocket and poll events.
type Relay struct {
	cfg   Config
	log   *slog.Logger
	queue *feed.Queue
	epoch string // tells this process's ids from another's in ETags

	ingestBytes atomic.Int64 // payload bytes queued for pump
	ingestDrop  atomic.Uint64

	// pubMu orders fan-outs and attaches: every client gets events in id
	// order, and a new one its replay before any live event.
	pubMu sync.Mutex

	wg     sync.WaitGroup // the epoll loop and WebSocket handlers
	closed atomic.Bool    // closeAll ran: the epoll loop ends once every client is gone
	pl     *poller        // created with the first SSE client; guarded by mu until then
	plErr  error

	mu        sync.Mutex
	subs      map[subscriber]struct{}
	list      []subscriber // snapshot of subs for the fan-out; nil when stale
	sseLive   int
	wsLive    int
	history   []*event // oldest first
	histBytes int
	lastID    uint64
	closing   bool
	stats     counters
	// The Redis subscription as Emit saw it ("" when no Redis feeds this relay).
	redisState, redisErr string
	redisUp              bool // subscribed at least once and not down since
}

type counters struct {
	relayed, empty, slowDropped, writeTimeouts, connTotal, pings uint64
	histSkipped, channelOther, polls, pollNotModified            uint64
	redisGaps, redisReconnects                                   uint64
	redisEverUp                                                  bool
	perChannel                                                   map[string]uint64
}

// validPath reports why p cannot be the event path, or nil.
func validPath(p string) error {
	if !strings.HasPrefix(p, "/") || p == "/" {
		return errors.New("want an absolute path such as /events")
	}
	if strings.HasSuffix(p, "/") {
		return errors.New("want no trailing slash")
	}
	for _, r := range p {
		if r <= ' ' || r == 0x7f || strings.ContainsRune("?#{}%\\\"<>^`|", r) {
			return fmt.Errorf("character %q is not allowed (use plain path segments)", r)
		}
	}
	if strings.Contains(p, "//") || strings.Contains(p, "/./") || strings.Contains(p, "/../") || strings.HasSuffix(p, "/..") || strings.HasSuffix(p, "/.") {
		return errors.New("want a clean path (no //, . or .. segments)")
	}
	switch p {
	case "/healthz", "/stats", WSPath:
		return fmt.Errorf("%s is served by the relay itself", p)
	}
	if strings.HasSuffix(p, PollSuffix) && p != PollSuffix {
		return fmt.Errorf("%s would clash with the poll endpoint of %s", p, strings.TrimSuffix(p, PollSuffix))
	}
	// Last check: the mux accepts both patterns (it panics otherwise).
	var err error
	func() {
		defer func() {
			if v := recover(); v != nil {
				err = fmt.Errorf("not a servable path: %v", v)
			}
		}()
		m := http.NewServeMux()
		m.HandleFunc(p, func(http.ResponseWriter, *http.Request) {})
		m.HandleFunc(p+PollSuffix, func(http.ResponseWriter, *http.Request) {})
	}()
	return err
}

// validOrigin reports why o cannot be sent as Access-Control-Allow-Origin.
func validOrigin(o string) error {
	if o == "*" {
		return nil
	}
	if o == "null" {
		return errors.New(`"null" would let any sandboxed page or file:// page in; give the page's real origin or "*"`)
	}
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || strings.ContainsAny(o, " \t\r\n,") {
		return errors.New(`want "*" or one origin: http(s)://host[:port], no path`)
	}
	return nil
}

// New returns a relay for cfg. Serve runs it.
func New(cfg Config) (*Relay, error) {
	if cfg.Path == "" {
		cfg.Path = DefaultPath
	}
	if err := validPath(cfg.Path); err != nil {
		return nil, fmt.Errorf("path %q: %v: %w", cfg.Path, err, ErrConfig)
	}
	if cfg.History < 0 || cfg.History > MaxHistory {
		return nil, fmt.Errorf("history %d: want 0 to %d events: %w", cfg.History, MaxHistory, ErrConfig)
	}
	if cfg.HistoryBytes < 0 {
		return nil, fmt.Errorf("history bytes %d: want 0 (default %d) or more: %w", cfg.HistoryBytes, DefaultHistoryBytes, ErrConfig)
	}
	if cfg.KeepAlive < 0 || (cfg.KeepAlive > 0 && cfg.KeepAlive < MinKeepAlive) {
		return nil, fmt.Errorf("keepalive %s: want 0 (none) or at least %s: %w", cfg.KeepAlive, MinKeepAlive, ErrConfig)
	}
	if cfg.WriteTimeout < 0 || (cfg.WriteTimeout > 0 && cfg.WriteTimeout < MinWriteTimeout) {
		return nil, fmt.Errorf("write timeout %s: want at least %s: %w", cfg.WriteTimeout, MinWriteTimeout, ErrConfig)
	}
	if cfg.ClientQueue < 0 || cfg.ClientQueueBytes < 0 || cfg.IngestBytes < 0 {
		return nil, fmt.Errorf("client queue %d events, %d bytes, ingest %d bytes: want 0 (default) or more: %w",
			cfg.ClientQueue, cfg.ClientQueueBytes, cfg.IngestBytes, ErrConfig)
	}
	if cfg.AllowOrigin != "" {
		if err := validOrigin(cfg.AllowOrigin); err != nil {
			return nil, fmt.Errorf("allowed origin %q: %v: %w", cfg.AllowOrigin, err, ErrConfig)
		}
		cfg.AllowOrigin = strings.TrimSuffix(cfg.AllowOrigin, "/")
	}
	if strings.ContainsAny(cfg.Token, " \t\r\n") {
		return nil, fmt.Errorf("token: contains white space: %w", ErrConfig)
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.ClientQueue == 0 {
		cfg.ClientQueue = DefaultClientQueue
	}
	if cfg.ClientQueueBytes == 0 {
		cfg.ClientQueueBytes = DefaultClientQueueBytes
	}
	if cfg.HistoryBytes == 0 {
		cfg.HistoryBytes = DefaultHistoryBytes
	}
	if cfg.IngestBytes == 0 {
		cfg.IngestBytes = DefaultIngestBytes
	}
	r := &Relay{
		cfg:   cfg,
		log:   cfg.Logger,
		queue: feed.NewQueue(0),
		epoch: strconv.FormatInt(time.Now().UnixNano(), 36),
		subs:  map[subscriber]struct{}{},
	}
	r.stats.perChannel = map[string]uint64{}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
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
// (it ends the line), and a browser reads every one of them as a line break.
func normalizeData(p string) []byte {
	b := []byte(p)
	if bytes.IndexByte(b, '\r') < 0 {
		return b
	}
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	return bytes.ReplaceAll(b, []byte("\r"), []byte("\n"))
}

// newEvent encodes one message for every door.
func newEvent(id uint64, channel, payload string) *event {
	typ := EventType(channel)
	data := normalizeData(payload)
	sse := make([]byte, 0, len(data)+len(typ)+40+6*bytes.Count(data, []byte{'\n'}))
	sse = append(sse, "id: "...)
	sse = strconv.AppendUint(sse, id, 10)
	sse = append(sse, "\nevent: "...)
	sse = append(sse, typ...)
	sse = append(sse, '\n')
	for rest := data; ; {
		line, after, more := bytes.Cut(rest, []byte{'\n'})
		sse = append(sse, "data: "...)
		sse = append(sse, line...)
		sse = append(sse, '\n')
		if !more {
			break
		}
		rest = after
	}
	sse = append(sse, '\n')
	obj, _ := json.Marshal(struct {
		ID      string `json:"id"`
		Type    string `json:"type"`
		Channel string `json:"channel"`
		Data    string `json:"data"`
	}{strconv.FormatUint(id, 10), typ, channel, payload})
	return &event{id: id, sse: sse, obj: obj, size: len(sse) + len(obj) + 64}
}

// Emit implements feed.Sink for the Redis subscriber: messages are queued
// for relaying, state changes are recorded. It never blocks; past
// Config.IngestBytes of waiting payloads a message is dropped and counted.
func (r *Relay) Emit(rec feed.Record) {
	if rec.Kind == feed.KindMessage {
		// Nothing waiting: any one message is taken, however large.
		n := int64(len(rec.Data))
		if total := r.ingestBytes.Add(n); total > n && total > int64(r.cfg.IngestBytes) {
			r.ingestBytes.Add(-n)
			r.ingestDrop.Add(1)
			return
		}
	}
	r.queue.Emit(rec)
}

// Publish relays one message now and returns its event id (0 when the
// payload is empty and so not relayed). Serve need not be running.
func (r *Relay) Publish(channel, payload string) uint64 {
	if payload == "" {
		r.mu.Lock()
		r.stats.empty++
		r.mu.Unlock()
		return 0
	}
	r.pubMu.Lock()
	defer r.pubMu.Unlock()
	// Only Publish changes lastID, and it holds pubMu: no lock to read it.
	ev := newEvent(r.lastID+1, channel, payload)
	r.mu.Lock()
	r.lastID = ev.id
	r.remember(ev)
	r.stats.relayed++
	if _, ok := r.stats.perChannel[channel]; ok || len(r.stats.perChannel) < MaxStatsChannels {
		r.stats.perChannel[channel]++
	} else {
		r.stats.channelOther++
	}
	list := r.snapshot()
	r.mu.Unlock()
	r.fanout(list, func(s subscriber) { s.deliver(ev) })
	return ev.id
}

// snapshot is the subscriber list for a fan-out; r.mu is held. It is
// rebuilt only after connects or disconnects, and never changed in place.
func (r *Relay) snapshot() []subscriber {
	if r.list == nil {
		r.list = make([]subscriber, 0, len(r.subs))
		for s := range r.subs {
			r.list = append(r.list, s)
		}
	}
	return r.list
}

// fanoutChunk is the fewest clients worth a goroutine of their own.
const fanoutChunk = 2048

// fanout calls f for every subscriber, on up to GOMAXPROCS goroutines
// when there are many (f never blocks: writes that would wait are queued).
func (r *Relay) fanout(list []subscriber, f func(subscriber)) {
	parts := min(runtime.GOMAXPROCS(0), len(list)/fanoutChunk)
	if parts <= 1 {
		for _, s := range list {
			f(s)
		}
		return
	}
	var wg sync.WaitGroup
	size := (len(list) + parts - 1) / parts
	for lo := 0; lo < len(list); lo += size {
		part := list[lo:min(lo+size, len(list))]
		wg.Go(func() {
			for _, s := range part {
				f(s)
			}
		})
	}
	wg.Wait()
}

// remember adds ev to the history and trims it to its bounds; r.mu is held.
func (r *Relay) remember(ev *event) {
	if r.cfg.History == 0 {
		return
	}
	if ev.size > r.cfg.HistoryBytes {
		// Kept, it would push out everything else and still not fit.
		r.stats.histSkipped++
		return
	}
	r.history = append(r.history, ev)
	r.histBytes += ev.size
	drop := 0
	for len(r.history)-drop > r.cfg.History || r.histBytes > r.cfg.HistoryBytes {
		r.histBytes -= r.history[drop].size
		r.history[drop] = nil
		drop++
	}
	if drop > 0 {
		r.history = r.history[drop:]
		// The backing array moves on as the front is cut; copy it down
		// once it is mostly dead so it does not grow without end.
		if cap(r.history) > 2*len(r.history)+64 {
			r.history = append(make([]*event, 0, len(r.history)+len(r.history)/2+8), r.history...)
		}
	}
}

// missed returns the history entries after id, oldest first, and whether
// some events after id are no longer held; r.mu is held.
func (r *Relay) missed(id uint64) (events []*event, gap bool) {
	if id > r.lastID {
		return nil, true // an id this relay never issued (it restarted)
	}
	if id == r.lastID {
		return nil, false
	}
	i := len(r.history)
	for i > 0 && r.history[i-1].id > id {
		i--
	}
	events = append(events, r.history[i:]...)
	gap = len(events) == 0 || events[0].id > id+1
	return events, gap
}

// noteDrop counts a client dropped for reason (at the moment of the drop).
func (r *Relay) noteDrop(reason string) {
	if reason != reasonTooSlow {
		return
	}
	r.mu.Lock()
	r.stats.slowDropped++
	r.mu.Unlock()
}

// attach adds a client and hands it its replay (prepare runs with the
// events to replay, before any live event can reach the client). It
// reports false when the relay is shutting down.
func (r *Relay) attach(s subscriber, lastID uint64, hasLast bool, prepare func([]*event)) (a attached, ok bool) {
	r.pubMu.Lock()
	defer r.pubMu.Unlock()
	r.mu.Lock()
	if r.closing {
		r.mu.Unlock()
		return a, false
	}
	var replay []*event
	if hasLast {
		replay, a.gap = r.missed(lastID)
	}
	r.subs[s] = struct{}{}
	r.list = nil
	r.stats.connTotal++
	if _, isWS := s.(*wsClient); isWS {
		// Counted before closing can be set: Serve waits for it after
		// closeAll (net/http's Shutdown does not wait for hijacked ones).
		r.wg.Add(1)
		r.wsLive++
	} else {
		r.sseLive++
	}
	a.active = r.sseLive + r.wsLive
	r.mu.Unlock()
	prepare(replay)
	a.replayed = len(replay)
	return a, true
}

// attached is what attach tells the connect log line.
type attached struct {
	replayed, active int
	gap              bool
}

func (r *Relay) logConnect(msg, remote string, lastID uint64, hasLast bool, a attached) {
	attrs := []any{"remote", remote, "active", a.active}
	if hasLast {
		attrs = append(attrs, "last_event_id", lastID, "replayed", a.replayed)
		if a.gap {
			attrs = append(attrs, "gap", true)
		}
	}
	r.log.Info(msg, attrs...)
}

// detach removes a client that has gone and logs why.
func (r *Relay) detach(s subscriber, kind, remote, reason string, sent uint64, since time.Time) {
	r.mu.Lock()
	if _, ok := r.subs[s]; !ok {
		r.mu.Unlock()
		return
	}
	delete(r.subs, s)
	r.list = nil
	if kind == "ws" {
		r.wsLive--
	} else {
		r.sseLive--
	}
	if reason == reasonWriteTimeout {
		r.stats.writeTimeouts++
	}
	active := r.sseLive + r.wsLive
	r.mu.Unlock()
	r.log.Info(kind+" client disconnected", "remote", remote, "reason", reason, "events", sent,
		"duration", time.Since(since).Round(time.Millisecond), "active", active)
}

// queuedBytes is how many bytes wait for clients in their queues.
func (r *Relay) queuedBytes() int {
	r.mu.Lock()
	list := r.snapshot()
	r.mu.Unlock()
	n := 0
	for _, s := range list {
		n += s.queued()
	}
	return n
}

// keepAlive sends one ": ping" comment (a WebSocket ping) to every client.
func (r *Relay) keepAlive() {
	r.pubMu.Lock()
	defer r.pubMu.Unlock()
	r.mu.Lock()
	list := r.snapshot()
	r.stats.pings++
	r.mu.Unlock()
	r.fanout(list, func(s subscriber) { s.ping() })
}

// Handler serves the event stream at Config.Path, the poll endpoint at
// Config.Path + PollSuffix, WebSocket at WSPath, GET /healthz and GET /stats.
func (r *Relay) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(r.cfg.Path, r.cors(r.serveEvents))
	mux.HandleFunc(r.cfg.Path+PollSuffix, r.cors(r.servePoll))
	mux.HandleFunc(WSPath, r.serveWS)
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
		if !r.authorized(req) {
			r.unauthorized(w)
			return
		}
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

func (r *Relay) unauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="fanscope relay"`)
	http.Error(w, "unauthorized: give ?token= or Authorization: Bearer", http.StatusUnauthorized)
}

// cors adds the CORS headers, answers preflights, and refuses methods
// other than GET.
func (r *Relay) cors(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		if o := r.cfg.AllowOrigin; o != "" {
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", o)
			if o != "*" {
				h.Add("Vary", "Origin")
				h.Set("Access-Control-Allow-Credentials", "true")
			}
			if req.Method == http.MethodOptions {
				h.Set("Access-Control-Allow-Methods", "GET")
				h.Set("Access-Control-Allow-Headers", "Authorization, Last-Event-ID, Cache-Control, If-None-Match")
				h.Set("Access-Control-Max-Age", "600")
				w.WriteHeader(http.StatusNoContent)
				return
			}
			h.Set("Access-Control-Expose-Headers", "ETag")
		}
		if req.Method != http.MethodGet {
			w.Header().Set("Allow", "GET")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if !r.authorized(req) {
			r.unauthorized(w)
			return
		}
		next(w, req)
	}
}

// serveEvents sends the response head, takes the connection from net/http
// (whose goroutine and buffers then go) and attaches it to the fan-out.
func (r *Relay) serveEvents(w http.ResponseWriter, req *http.Request) {
	lastID, hasLast := r.parseLastID(req, "")
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "this server cannot stream (no HTTP/1.1 connection to take over)", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	// The body ends when the connection does (no chunked framing), so
	// every client gets the very same bytes.
	h.Set("Connection", "close")
	var head bytes.Buffer
	head.WriteString("HTTP/1.1 200 OK\r\n")
	_ = h.Write(&head)
	head.WriteString("\r\n")
	nc, _, err := hj.Hijack()
	if err != nil {
		r.log.Warn("sse client: cannot take over the connection", "remote", req.RemoteAddr, "error", err)
		return
	}
	pl, err := r.poller()
	if err != nil {
		_ = nc.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = io.WriteString(nc, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"+err.Error()+"\n")
		_ = nc.Close()
		return
	}
	fd, err := takeFD(nc)
	if err != nil {
		r.log.Warn("sse client: cannot take over the connection", "remote", req.RemoteAddr, "error", err)
		_ = nc.Close()
		return
	}
	c := &sseClient{r: r, fd: fd, remote: req.RemoteAddr, since: time.Now(), timeout: r.cfg.WriteTimeout}
	if err := pl.add(c); err != nil {
		r.log.Warn("sse client: cannot watch the connection", "remote", req.RemoteAddr, "error", err)
		_ = syscall.Close(fd)
		return
	}
	a, ok := r.attach(c, lastID, hasLast, func(evs []*event) {
		size := 0
		for _, ev := range evs {
			size += len(ev.sse)
		}
		c.maxFrames = 1 + len(evs) + r.cfg.ClientQueue
		c.maxBytes = head.Len() + size + r.cfg.ClientQueueBytes
		c.send(head.Bytes(), false, false)
		for _, ev := range evs {
			c.send(ev.sse, true, false)
		}
	})
	if !ok {
		c.send([]byte("HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nshutting down\n"), false, false)
		c.drop(reasonShutdown)
		return
	}
	r.logConnect("sse client connected", c.remote, lastID, hasLast, a)
	if c.isDead() {
		// It went before attach had added it; drop could not remove it.
		c.mu.Lock()
		reason, sent := c.reason, c.sent
		c.mu.Unlock()
		r.detach(c, "sse", c.remote, reason, sent, c.since)
	}
}

// poller returns the epoll loop of the SSE clients, starting it with the
// first client.
func (r *Relay) poller() (*poller, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closing {
		return nil, errors.New("relay shutting down")
	}
	if r.pl != nil || r.plErr != nil {
		return r.pl, r.plErr
	}
	r.pl, r.plErr = newPoller(&r.closed)
	if r.plErr != nil {
		return nil, r.plErr
	}
	pl := r.pl
	r.wg.Go(pl.run)
	return pl, nil
}

// servePoll answers with the last events as JSON:
// {"last_event_id":N,"events":[{"id","type","channel","data"},...]}, oldest
// first; ?limit=N (default DefaultPollEvents, at most what the history
// holds) and ?after=ID (only newer events) narrow it. The ETag changes
// whenever the body would, so If-None-Match gets a 304 while nothing is new.
func (r *Relay) servePoll(w http.ResponseWriter, req *http.Request) {
	q := req.URL.Query()
	limit := DefaultPollEvents
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			http.Error(w, "limit: want a positive number of events", http.StatusBadRequest)
			return
		}
		limit = n
	}
	var after uint64
	hasAfter := false
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			http.Error(w, "after: want an event id (a number)", http.StatusBadRequest)
			return
		}
		after, hasAfter = n, true
	}
	r.mu.Lock()
	last := r.lastID
	evs := r.history
	if hasAfter {
		i := len(evs)
		for i > 0 && evs[i-1].id > after {
			i--
		}
		evs = evs[i:]
	}
	if len(evs) > limit {
		evs = evs[len(evs)-limit:]
	}
	evs = append([]*event(nil), evs...)
	oldest := uint64(0)
	if len(evs) > 0 {
		oldest = evs[0].id
	}
	r.stats.polls++
	r.mu.Unlock()

	etag := fmt.Sprintf(`"%s-%d-%d-%d"`, r.epoch, last, oldest, len(evs))
	h := w.Header()
	h.Set("ETag", etag)
	h.Set("Cache-Control", "no-cache")
	if inm := req.Header.Get("If-None-Match"); inm != "" && etagMatch(inm, etag) {
		r.mu.Lock()
		r.stats.pollNotModified++
		r.mu.Unlock()
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Type", "application/json")
	var b bytes.Buffer
	b.WriteString(`{"last_event_id":`)
	b.WriteString(strconv.FormatUint(last, 10))
	b.WriteString(`,"events":[`)
	for i, ev := range evs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(ev.obj)
	}
	b.WriteString("]}\n")
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Now().Add(r.cfg.WriteTimeout))
	_, _ = w.Write(b.Bytes())
}

// etagMatch reports whether an If-None-Match list names etag.
func etagMatch(list, etag string) bool {
	for _, t := range strings.Split(list, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == etag || t == "*" {
			return true
		}
	}
	return false
}

// Stats is the /stats document.
type Stats struct {
	// Connections is the number of streaming clients connected now (SSE
	// and WebSocket); SSEConnections and WSConnections split it.
	Connections    int `json:"connections"`
	SSEConnections int `json:"sse_connections"`
	WSConnections  int `json:"ws_connections"`
	// EventsRelayed counts Redis messages turned into events (once each,
	// however many clients got them).
	EventsRelayed uint64 `json:"events_relayed"`
	// PerChannel counts events per Redis channel, for at most
	// MaxStatsChannels channels; events of further channels are counted
	// in PerChannelOther.
	PerChannel      map[string]uint64 `json:"per_channel"`
	PerChannelOther uint64            `json:"per_channel_other"`
	LastEventID     uint64            `json:"last_event_id"`
	// HistoryHeld and HistoryBytes are what is kept for Last-Event-ID
	// replay and polling; HistorySkipped counts events too large to keep.
	HistoryHeld      int    `json:"history_held"`
	HistoryBytes     int    `json:"history_bytes"`
	HistorySkipped   uint64 `json:"history_skipped_too_large"`
	ConnectionsTotal uint64 `json:"connections_total"`
	// SlowClientsDropped counts clients dropped because their queue
	// (events or bytes) was full.
	SlowClientsDropped uint64 `json:"slow_clients_dropped"`
	// WriteTimeouts counts clients dropped because one write took longer
	// than Config.WriteTimeout.
	WriteTimeouts   uint64 `json:"write_timeouts"`
	EmptySkipped    uint64 `json:"empty_payloads_skipped"`
	KeepAlivesSent  uint64 `json:"keepalives_sent"`
	Polls           uint64 `json:"polls"`
	PollNotModified uint64 `json:"polls_not_modified"`
	// IngestDropped counts Redis messages that reached the relay and
	// were dropped because it could not take them in time. Messages that
	// Redis itself dropped (for example when it closed the subscription at
	// its client-output-buffer-limit) never reach the relay and are not in
	// it: they show as a Redis gap.
	IngestDropped uint64 `json:"ingest_dropped"`
	// RedisState is the Redis subscription's state (subscribed,
	// reconnecting, ...; "none" when no Redis feeds the relay) and
	// RedisError the reason of the last failure.
	RedisState string `json:"redis_state"`
	RedisError string `json:"redis_error,omitempty"`
	// RedisGaps counts times the subscription went down after it had
	// been subscribed: messages published until it is back are lost to
	// every client (Pub/Sub keeps nothing). RedisReconnects counts the
	// times it came back.
	RedisGaps       uint64 `json:"redis_gaps"`
	RedisReconnects uint64 `json:"redis_reconnects"`
}

// Stats returns a copy of the counters.
func (r *Relay) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	per := make(map[string]uint64, len(r.stats.perChannel))
	for k, v := range r.stats.perChannel {
		per[k] = v
	}
	state := r.redisState
	if state == "" {
		state = "none"
	}
	return Stats{
		Connections: r.sseLive + r.wsLive, SSEConnections: r.sseLive, WSConnections: r.wsLive,
		EventsRelayed: r.stats.relayed, PerChannel: per, PerChannelOther: r.stats.channelOther, LastEventID: r.lastID,
		HistoryHeld: len(r.history), HistoryBytes: r.histBytes, HistorySkipped: r.stats.histSkipped,
		ConnectionsTotal: r.stats.connTotal, SlowClientsDropped: r.stats.slowDropped,
		WriteTimeouts: r.stats.writeTimeouts, EmptySkipped: r.stats.empty, KeepAlivesSent: r.stats.pings,
		Polls: r.stats.polls, PollNotModified: r.stats.pollNotModified,
		IngestDropped: r.queue.Dropped() + r.ingestDrop.Load(),
		RedisState:    state, RedisError: r.redisErr,
		RedisGaps: r.stats.redisGaps, RedisReconnects: r.stats.redisReconnects,
	}
}

// Serve serves HTTP on ln, relays what Emit queued and sends keep-alives
// until ctx ends; then it ends every stream and shuts the server down
// (waiting up to 5 s for handlers). It returns nil after a shutdown.
func (r *Relay) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           r.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    64 << 10,
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
	stopLoops()
	wg.Wait()
	r.wg.Wait() // taken-over connections: Shutdown does not know them
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
				r.ingestBytes.Add(-int64(len(rec.Data)))
			case feed.KindState:
				r.redisStateChanged(rec.State, rec.Error)
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

// redisStateChanged records the subscription's state and counts gaps
// (down after being subscribed) and reconnects (subscribed again).
func (r *Relay) redisStateChanged(state, errMsg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.redisState = state
	if errMsg != "" || state == feed.StateSubscribed {
		r.redisErr = errMsg
	}
	switch {
	case state == feed.StateSubscribed:
		if !r.redisUp && r.stats.redisEverUp {
			r.stats.redisReconnects++
		}
		r.redisUp, r.stats.redisEverUp = true, true
	case redisHealthy(state):
	default:
		if r.redisUp {
			r.stats.redisGaps++
		}
		r.redisUp = false
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
	r.pubMu.Lock()
	r.mu.Lock()
	r.closing = true
	r.closed.Store(true)
	list := r.snapshot()
	r.mu.Unlock()
	r.pubMu.Unlock()
	for _, s := range list {
		s.shut(reasonShutdown)
	}
}
