// Package probes correlates probe publishes with their deliveries on each
// path of a Redis Pub/Sub → SSE fan-out (fanscope's own Redis subscription
// and every SSE endpoint), and turns them into latency histograms, loss,
// duplicate and reorder counts, budgets and reports. It also times organic
// traffic: an SSE event carrying a message that was seen on Redis gets its
// Redis→SSE hop time.
//
// The package has no network and no clock of its own: send times are passed
// in and receive times come from feed.Record.TS, so tests are exact.
package probes

import (
	"fmt"
	"hash/maphash"
	"strings"
	"sync"
	"time"

	"github.com/fanscope/fanscope/feed"
)

// Defaults for Config fields left zero.
const (
	DefaultTimeout       = 5 * time.Second
	DefaultHopEntries    = 10000
	DefaultHopMaxAge     = time.Minute
	DefaultWindowSeconds = 60
)

// PathRedis is the path of fanscope's own Redis subscription; every other
// path is "<source>:<endpoint name>" (feed.PathName).
const PathRedis = feed.PathRedis

// SSEPath returns the path name of an SSE endpoint.
func SSEPath(endpoint string) string { return feed.PathName(feed.SourceSSE, endpoint) }

// Config configures an Engine. Zero fields take the defaults.
type Config struct {
	RunID    string        // 8 lowercase hex digits; NewRunID() when empty
	Template string        // payload template; DefaultTemplate when empty
	Timeout  time.Duration // a probe not delivered on a path within it is lost; DefaultTimeout
	MatchKey string        // match organic messages by this JSON key instead of equal data

	HopEntries    int           // organic Redis messages remembered for hop matching; < 0: no hop matching (no SSE source)
	HopMaxAge     time.Duration // and for how long
	WindowSeconds int           // seconds kept for sparklines
}

// Validate checks the template and run id; errors wrap ErrUsage.
func (c Config) Validate() error {
	if c.Template != "" {
		if err := ValidateTemplate(c.Template); err != nil {
			return err
		}
	}
	if c.RunID != "" && !ValidRunID(c.RunID) {
		return fmt.Errorf("probe run id %q is not 8 lowercase hex digits: %w", c.RunID, ErrUsage)
	}
	if c.Timeout < 0 {
		return fmt.Errorf("probe timeout %v is negative: %w", c.Timeout, ErrUsage)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.RunID == "" {
		c.RunID = NewRunID()
	}
	if c.Template == "" {
		c.Template = DefaultTemplate
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.HopEntries == 0 {
		c.HopEntries = DefaultHopEntries
	}
	if c.HopMaxAge <= 0 {
		c.HopMaxAge = DefaultHopMaxAge
	}
	if c.WindowSeconds <= 0 {
		c.WindowSeconds = DefaultWindowSeconds
	}
	return c
}

// Probe is one probe to publish.
type Probe struct {
	Seq     int
	Token   string
	Payload string
	SentAt  time.Time
}

// Engine tracks probes and deliveries. It is safe for concurrent use: the
// fan-in calls Observe, the prober calls Next, the TUI calls Snapshot.
type Engine struct {
	cfg    Config
	prefix string // "fsp-<runid>-", immutable, read without the lock
	seed   maphash.Seed

	mu     sync.Mutex
	seq    int
	live   map[int]*probeState
	order  []*probeState // live probes in send order
	paths  []*pathState
	byName map[string]*pathState
	hop    *hopMatcher
	failed []int // probes whose PUBLISH failed, in send order
}

type pathState struct {
	name     string
	endpoint string // "" for redis
	idx      int
	firstSeq int // first probe this path is expected to deliver
	conns    []connState

	delivered, lost, dups, reordered, late int64
	lat, fanout, hop                       Histogram
	latWin, hopWin                         window
}

type connState struct {
	highest int // highest seq received
	got     int64
	missed  int64 // expired probes this connection never got
}

type probeState struct {
	seq    int
	token  string
	sentAt time.Time
	paths  []probePath // by path idx
}

type probePath struct {
	got  []uint64 // bitset by connection
	n    int      // connections that got it
	done bool     // every connection got it
	seen bool     // first delivery recorded
}

func (p *probePath) has(conn int) bool {
	w := conn / 64
	return w < len(p.got) && p.got[w]&(1<<(conn%64)) != 0
}

func (p *probePath) set(conn int) {
	w := conn / 64
	for len(p.got) <= w {
		p.got = append(p.got, 0)
	}
	p.got[w] |= 1 << (conn % 64)
}

// NewEngine returns an engine for cfg with defaults filled in. Call
// cfg.Validate first: NewEngine does not reject a template without
// {{token}}.
func NewEngine(cfg Config) *Engine {
	cfg = cfg.withDefaults()
	return &Engine{
		cfg:    cfg,
		prefix: TokenPrefix + cfg.RunID + "-",
		seed:   maphash.MakeSeed(),
		live:   make(map[int]*probeState),
		byName: make(map[string]*pathState),
		hop:    newHopMatcher(max(cfg.HopEntries, 0), cfg.HopMaxAge),
	}
}

// RunID returns the run id in the tokens of this engine.
func (e *Engine) RunID() string { return e.cfg.RunID }

// Config returns the configuration with defaults filled in.
func (e *Engine) Config() Config { return e.cfg }

// AddPath registers a path that is expected to deliver every probe sent from
// now on, over conns connections (at least 1). Paths not added are added on
// their first delivery and are expected to deliver from that probe on.
func (e *Engine) AddPath(path string, conns int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.path(path, e.seq+1)
	if conns < 1 {
		conns = 1
	}
	for len(p.conns) < conns {
		p.conns = append(p.conns, connState{})
	}
}

// path returns the named path, creating it with firstSeq when new.
func (e *Engine) path(name string, firstSeq int) *pathState {
	if p, ok := e.byName[name]; ok {
		return p
	}
	p := &pathState{
		name:     name,
		idx:      len(e.paths),
		firstSeq: firstSeq,
		conns:    make([]connState, 1),
		latWin:   newWindow(e.cfg.WindowSeconds),
		hopWin:   newWindow(e.cfg.WindowSeconds),
	}
	if _, ep, ok := strings.Cut(name, ":"); ok {
		p.endpoint = ep
	}
	e.paths = append(e.paths, p)
	e.byName[name] = p
	return p
}

// Next registers the next probe as sent at now and returns it for the
// caller to publish. Take now just before PUBLISH; MarkSent can move it
// closer still.
func (e *Engine) Next(now time.Time) Probe {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.seq++
	st := &probeState{seq: e.seq, token: Token(e.cfg.RunID, e.seq), sentAt: now}
	e.live[st.seq] = st
	e.order = append(e.order, st)
	return Probe{
		Seq:     st.seq,
		Token:   st.token,
		Payload: Render(e.cfg.Template, st.token, st.seq, now),
		SentAt:  now,
	}
}

// MarkSent sets the send time of probe seq to at (taken right before
// PUBLISH, after the payload was rendered).
func (e *Engine) MarkSent(seq int, at time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if st, ok := e.live[seq]; ok {
		st.sentAt = at
	}
}

// PublishFailed takes probe seq out of the accounting: its PUBLISH failed,
// so no path could have delivered it. It counts as a publish error, never
// as lost on a path.
func (e *Engine) PublishFailed(seq int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.live[seq]; !ok {
		return
	}
	delete(e.live, seq)
	for i, st := range e.order {
		if st.seq == seq {
			e.order = append(e.order[:i], e.order[i+1:]...)
			break
		}
	}
	e.failed = append(e.failed, seq)
}

// Sent returns how many probes were published (publish errors excluded).
func (e *Engine) Sent() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.seq - len(e.failed)
}

// failedFrom counts the failed publishes with seq >= from.
func (e *Engine) failedFrom(from int) int64 {
	n := int64(0)
	for _, seq := range e.failed {
		if seq >= from {
			n++
		}
	}
	return n
}

// Observe accounts for r: a Redis message or SSE event that carries a probe
// token of this run gets r.Probe and r.LatencyUS; an SSE event carrying an
// organic message seen on Redis gets r.HopUS and r.HasHop. Other records
// are ignored.
func (e *Engine) Observe(r *feed.Record) {
	switch {
	case r.Source == feed.SourceRedis && r.Kind == feed.KindMessage:
	case r.Source.Delivers() && r.Kind == feed.KindEvent:
	default:
		return
	}
	if r.Source == feed.SourcePoll {
		// A poll body is a snapshot: it may hold several probes, and a
		// probe stays in later bodies. Each token counts once, at the
		// first body that holds it; later bodies are not duplicates.
		found := false
		for rest := r.Data; ; {
			seq, n := nextToken(rest, e.prefix)
			if n == 0 {
				break
			}
			rest = rest[n:]
			found = true
			e.observeProbe(r, seq, true)
		}
		if !found {
			e.observeOrganic(r)
		}
		return
	}
	if seq, ok := findToken(r.Data, e.prefix); ok {
		e.observeProbe(r, seq, false)
		return
	}
	e.observeOrganic(r)
}

// observeProbe accounts for a delivery of probe seq on r's path. For a
// snapshot (a poll body) a probe already seen on the path, or one that
// expired, is simply still there: neither a duplicate nor late.
func (e *Engine) observeProbe(r *feed.Record, seq int, snapshot bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if seq > e.seq {
		return // not a probe this engine sent
	}
	var p *pathState
	conn := 0
	if r.Source == feed.SourceRedis {
		p = e.byName[PathRedis]
		if p == nil {
			p = e.path(PathRedis, seq)
		}
	} else {
		name := r.Path()
		p = e.byName[name]
		if p == nil {
			p = e.path(name, seq)
		}
		conn = max(r.Conn, 0)
	}
	for len(p.conns) <= conn {
		p.conns = append(p.conns, connState{})
	}
	st := e.live[seq]
	if st == nil {
		if snapshot {
			return
		}
		r.Probe = Token(e.cfg.RunID, seq)
		p.late++ // delivered after its timeout
		return
	}
	if seq < p.firstSeq {
		if r.Probe == "" {
			r.Probe = st.token
		}
		return // sent before the path was added
	}
	for len(st.paths) <= p.idx {
		st.paths = append(st.paths, probePath{})
	}
	pp := &st.paths[p.idx]
	c := &p.conns[conn]
	if pp.has(conn) {
		if !snapshot {
			r.Probe = st.token
			p.dups++
		}
		return
	}
	lat := r.TS.Sub(st.sentAt).Microseconds()
	if r.Probe == "" || !snapshot {
		r.Probe, r.LatencyUS = st.token, lat
	}
	pp.set(conn)
	pp.n++
	c.got++
	switch {
	case snapshot:
		c.highest = max(c.highest, seq) // a body's order says nothing of arrival order
	case seq < c.highest:
		p.reordered++
	default:
		c.highest = seq
	}
	if !pp.seen {
		pp.seen = true
		p.lat.Record(lat)
		p.latWin.record(r.TS, lat)
	}
	if !pp.done && pp.n >= len(p.conns) {
		pp.done = true
		p.delivered++
		if len(p.conns) > 1 {
			p.fanout.Record(lat)
		}
	}
}

func (e *Engine) observeOrganic(r *feed.Record) {
	if e.cfg.HopEntries < 0 {
		return // nothing to match Redis messages with: skip hashing them
	}
	key, ok := matchKey(e.seed, r.Data, e.cfg.MatchKey)
	if !ok {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if r.Source == feed.SourceRedis {
		e.hop.add(key, r.TS)
		return
	}
	at, ok := e.hop.lookup(key, r.TS)
	if !ok {
		return
	}
	hop := r.TS.Sub(at).Microseconds()
	r.HopUS, r.HasHop = hop, true
	name := r.Path()
	p := e.byName[name]
	if p == nil {
		p = e.path(name, e.seq+1)
	}
	p.hop.Record(hop)
	p.hopWin.record(r.TS, hop)
}

// outstanding reports whether st still waits for a delivery on p (sent
// after p was added and not yet delivered to all its connections), and
// what p has received of it so far.
func (p *pathState) outstanding(st *probeState) (probePath, bool) {
	if st.seq < p.firstSeq {
		return probePath{}, false
	}
	var pp probePath
	if p.idx < len(st.paths) {
		pp = st.paths[p.idx]
	}
	return pp, !pp.done
}

// Expire counts as lost, on every path that has not delivered them to all
// its connections, the probes sent more than Timeout before now.
func (e *Engine) Expire(now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.expire(now)
}

func (e *Engine) expire(now time.Time) {
	n := 0
	for _, st := range e.order {
		seq := st.seq
		if now.Sub(st.sentAt) <= e.cfg.Timeout {
			break
		}
		for _, p := range e.paths {
			pp, waiting := p.outstanding(st)
			if !waiting {
				continue
			}
			p.lost++
			for i := range p.conns {
				if !pp.has(i) {
					p.conns[i].missed++
				}
			}
		}
		delete(e.live, seq)
		n++
	}
	e.order = append(e.order[:0], e.order[n:]...)
	clear(e.order[len(e.order) : len(e.order)+n])
}

// Pending expires what is due at now and returns how many (probe, path)
// pairs are still waiting for a delivery: 0 means every path has every
// probe or has given it up as lost. It is cheaper than Snapshot for
// polling.
func (e *Engine) Pending(now time.Time) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.expire(now)
	n := 0
	for _, st := range e.order {
		for _, p := range e.paths {
			if _, waiting := p.outstanding(st); waiting {
				n++
			}
		}
	}
	return n
}

// Snapshot is a copy of the engine's state at one time.
type Snapshot struct {
	At            time.Time
	RunID         string
	Sent          int // probes published (publish errors excluded)
	PublishErrors int // probes whose PUBLISH failed
	Timeout       time.Duration
	Paths         []PathStats // "redis" first, then in the order added
	HopEntries    int         // organic Redis messages remembered for hop matching
}

// PathStats is one path's counts and latencies.
type PathStats struct {
	Path     string // "redis" or "sse:<endpoint>"
	Endpoint string // "" for redis
	Conns    int

	Sent       int64 // probes this path was expected to deliver
	Delivered  int64 // probes every connection received within the timeout
	Pending    int64 // probes still within their timeout and not yet delivered
	Lost       int64 // probes not delivered within the timeout
	Duplicates int64 // repeated deliveries on one connection
	Reordered  int64 // deliveries of a lower seq after a higher one, per connection
	Late       int64 // deliveries after the probe had expired

	Latency Dist // publish → first delivery, one value per probe
	Fanout  Dist // publish → delivery to the last of Conns connections (Conns > 1)
	Hop     Dist // organic Redis → SSE hop times

	LatencyWindow []WindowPoint // per-second medians, oldest first
	HopWindow     []WindowPoint

	ConnStats []ConnStats
}

// ConnStats is one connection of a path.
type ConnStats struct {
	Conn     int
	Received int64 // distinct probes received
	Missed   int64 // expired probes never received
	Pending  int64 // live probes not received yet
}

// Snapshot expires probes older than the timeout at now and returns a deep
// copy of every path's state.
func (e *Engine) Snapshot(now time.Time) Snapshot {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.expire(now)
	s := Snapshot{
		At:            now,
		RunID:         e.cfg.RunID,
		Sent:          e.seq - len(e.failed),
		PublishErrors: len(e.failed),
		Timeout:       e.cfg.Timeout,
		HopEntries:    e.hop.len(),
	}
	for _, p := range e.orderedPaths() {
		ps := PathStats{
			Path:          p.name,
			Endpoint:      p.endpoint,
			Conns:         len(p.conns),
			Delivered:     p.delivered,
			Lost:          p.lost,
			Duplicates:    p.dups,
			Reordered:     p.reordered,
			Late:          p.late,
			Latency:       p.lat.Dist(),
			Fanout:        p.fanout.Dist(),
			Hop:           p.hop.Dist(),
			LatencyWindow: p.latWin.points(now),
			HopWindow:     p.hopWin.points(now),
			ConnStats:     make([]ConnStats, len(p.conns)),
		}
		if e.seq >= p.firstSeq {
			ps.Sent = int64(e.seq-p.firstSeq+1) - e.failedFrom(p.firstSeq)
		}
		for i, c := range p.conns {
			ps.ConnStats[i] = ConnStats{Conn: i, Received: c.got, Missed: c.missed}
		}
		for _, st := range e.order {
			pp, waiting := p.outstanding(st)
			if !waiting {
				continue
			}
			ps.Pending++
			for i := range ps.ConnStats {
				if !pp.has(i) {
					ps.ConnStats[i].Pending++
				}
			}
		}
		s.Paths = append(s.Paths, ps)
	}
	return s
}

// orderedPaths lists "redis" first (the publisher's side), then the SSE
// paths in the order they were added.
func (e *Engine) orderedPaths() []*pathState {
	out := make([]*pathState, 0, len(e.paths))
	if p := e.byName[PathRedis]; p != nil {
		out = append(out, p)
	}
	for _, p := range e.paths {
		if p.name != PathRedis {
			out = append(out, p)
		}
	}
	return out
}
