// Package tui is fanscope's terminal UI (the watch command): a Bubble Tea
// program that shows both ends of a Redis Pub/Sub → SSE fan-out pipeline.
// It does no I/O of its own: it pulls a Snapshot from a Backend on a tick
// and asks the Backend to publish, probe and save.
package tui

import (
	"time"

	"github.com/fanscope/fanscope/feed"
)

// Snapshot is what the TUI shows, copied by the Backend at one instant.
// Times in it are absolute; the TUI subtracts them from Now.
type Snapshot struct {
	Now     time.Time
	Header  Header
	Redis   *Redis     // nil when no Redis subscription was asked for
	SSE     []Endpoint // one per SSE connection
	Latency Latency
	Radar   Radar
	// NewRecords are the records after the sequence number the TUI asked
	// for, oldest first. The TUI keeps its own bounded copy.
	NewRecords []feed.Record
	// Dropped counts records lost before they reached the TUI (a full
	// fan-in queue); gaps in Seq are counted by the TUI itself.
	Dropped uint64
}

// Header is the top line: where fanscope looks and whether that is
// production.
type Header struct {
	Targets    []string // Redis targets and SSE URLs, passwords already masked
	Production bool     // the Redis target is not on loopback
}

// Redis is the state of fanscope's own Redis subscription and what the
// server says about the subscribed channels.
type Redis struct {
	Target     string // masked
	State      string // feed.State* name
	Error      string
	PingRTT    time.Duration
	Messages   uint64
	Reconnects int
	Gaps       int // reconnects during which messages may have been lost
	Subs       []Subscription
	NumPat     int64 // PUBSUB NUMPAT; -1 when unknown
	// IntrospectError says why the counts are missing or stale.
	IntrospectError string
}

// SubKind says how a subscription was made.
type SubKind uint8

const (
	SubChannel SubKind = iota // SUBSCRIBE
	SubPattern                // PSUBSCRIBE
	SubShard                  // SSUBSCRIBE
)

func (k SubKind) String() string {
	switch k {
	case SubPattern:
		return "pattern"
	case SubShard:
		return "shard"
	}
	return "channel"
}

// Subscription is one -c/-p/-s name with its server-side subscriber count.
type Subscription struct {
	Kind SubKind
	Name string
	// Subscribers is PUBSUB NUMSUB (SHARDNUMSUB for shard channels); -1
	// when unknown. Patterns have no per-pattern count.
	Subscribers int64
	// ByNode breaks Subscribers down per cluster node (empty outside a
	// cluster), in a stable order.
	ByNode []NodeCount
}

// NodeCount is one cluster node's own subscriber count.
type NodeCount struct {
	Node        string
	Subscribers int64
}

// Endpoint is one SSE connection's diagnostics.
type Endpoint struct {
	Name        string
	URL         string // masked
	Conn        int
	State       string // feed.State* name
	Status      int    // HTTP status of the last response
	Error       string
	Reconnects  int
	Events      uint64
	LastEvent   time.Time // zero: none yet
	LastComment time.Time // last keep-alive comment; zero: none yet
	TTFB        time.Duration
	Warnings    []string
}

// Latency is the probe engine's view: per path percentiles and counters.
type Latency struct {
	RunID      string
	Channel    string // where probes are published
	Sent       uint64
	Continuous bool // the Backend probes on its own interval
	Interval   time.Duration
	Error      string // why the last probe could not be sent
	Paths      []Path
}

// Path is one delivery path: "redis" or "sse:<endpoint>".
type Path struct {
	Name                                 string
	Delivered, Lost, Duplicates, Reorder uint64
	P50, P95, P99, Max                   time.Duration
	// Spark is a latency per time bucket over the last minutes, oldest
	// first; 0 means no delivery in that bucket.
	Spark []time.Duration
	// Hop is the organic Redis→SSE hop time for real traffic (SSE paths).
	Hop *Hop
}

// Hop summarises the organic hop latency of one SSE endpoint.
type Hop struct {
	Count         uint64
	P50, P95, P99 time.Duration
}

// Radar is CLIENT LIST TYPE pubsub against the pubsub output-buffer limit.
type Radar struct {
	Available   bool   // Redis allowed CLIENT LIST / CONFIG GET
	Reason      string // why not
	Soft, Hard  int64  // client-output-buffer-limit pubsub, bytes (0: none)
	SoftSeconds int
	Clients     []Client
}

// Client is one Pub/Sub client of the Redis server.
type Client struct {
	Addr, Name string
	Subs       int // channels + patterns + shard channels
	OMem       int64
	Age, Idle  time.Duration
}

// Backend is what the TUI asks of the world. The adapter in package cli
// implements it; every method may block and is only called from tea.Cmd
// functions, never from Update or View.
type Backend interface {
	// Snapshot returns the current state and the records after sinceSeq.
	Snapshot(sinceSeq uint64) Snapshot
	// Publish publishes payload to channel and returns PUBLISH's receiver
	// count.
	Publish(channel, payload string) (receivers int64, err error)
	// ProbeNow sends one probe.
	ProbeNow() error
	// SetContinuous starts or stops probing on an interval.
	SetContinuous(on bool) error
	// SaveNDJSON writes records as NDJSON and returns the file's path.
	SaveNDJSON(records []feed.Record) (path string, err error)
}
