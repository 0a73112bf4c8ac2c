// Package tui is fanscope's terminal UI (the watch command): a Bubble Tea
// program that shows both ends of a Redis Pub/Sub fan-out pipeline: the
// Redis side (subscription, subscriber counts, slow-subscriber radar, who
// publishes) and every door clients use (SSE, WebSocket, Socket.IO,
// polling, a browser), with probe latency per path side by side.
// It does no I/O of its own: it pulls a Snapshot from a Backend on a tick
// and asks the Backend to publish, probe and save.
package tui

import (
	"time"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/probes"
)

// Snapshot is what the TUI shows, copied by the Backend at one instant.
// Times in it are absolute; the TUI subtracts them from Now. The Backend
// gives the TUI its own copies: the TUI keeps and sorts them.
type Snapshot struct {
	Now    time.Time
	Header Header
	Redis  *Redis // nil when no Redis subscription was asked for
	// Sources is one status per connection of every path other than
	// fanscope's own Redis subscription (sse, ws, socketio, poll, browser,
	// page, monitor), in the order to show them.
	Sources []feed.Status
	Latency Latency
	Radar   Radar
	// Publishers is who PUBLISHes, as MONITOR sees it; nil when --monitor
	// is off (the publishers pane is then hidden).
	Publishers []Publisher
	// NewRecords are the records after the sequence number the TUI asked
	// for, oldest first. The TUI keeps its own bounded copy.
	NewRecords []feed.Record
	// Dropped counts records lost before they reached the TUI (a full
	// fan-in queue); gaps in Seq are counted by the TUI itself.
	Dropped uint64
}

// Header is the top line: where fanscope looks, whether that is
// production, and what is wrong.
type Header struct {
	Targets    []string // Redis targets and endpoint URLs, secrets already masked
	Production bool     // the Redis target is not on loopback
	// Problems is the reason of every non-healthy state now (or within
	// the recent window), one phrase each, e.g. "redis: reconnecting:
	// connection refused", "sse:app-2: stalled 12s". Empty: healthy. The
	// TUI adds its own for probe losses in the last minute and for radar
	// clients past half their soft limit.
	Problems []string
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

// Latency is the probe engine's view, with what the TUI shows beside it.
type Latency struct {
	// Probes is the engine's snapshot: one PathStats per path, "redis"
	// first.
	Probes     probes.Snapshot
	Channel    string // where probes are published
	Continuous bool   // the Backend probes on its own interval
	Interval   time.Duration
	Error      string // why the last probe could not be sent
	// PollIntervals is the poll interval of each poll path, by path name
	// ("poll:demo"): a probe's latency on such a path is bounded by it.
	PollIntervals map[string]time.Duration
	// Publish is PUBLISH → delivery of organic traffic per path, by path
	// name (publish_us, --monitor); nil when --monitor is off.
	Publish map[string]probes.Dist
}

// Radar is CLIENT LIST TYPE pubsub against the pubsub output-buffer limit.
type Radar struct {
	Available   bool   // Redis allowed CLIENT LIST / CONFIG GET
	Reason      string // why not
	Soft, Hard  int64  // client-output-buffer-limit pubsub, bytes (0: none)
	SoftSeconds int
	Clients     []Client
	// Disconnects are recent disconnect events, oldest first, in words:
	// "client 1.2.3.4:5 (name) disconnected by Redis (output buffer
	// limit)".
	Disconnects []string
	// OutputBufferDisconnections is INFO stats'
	// client_output_buffer_limit_disconnections (Redis 7+); -1 unknown.
	OutputBufferDisconnections int64
}

// Client is one Pub/Sub client of the Redis server.
type Client struct {
	Addr, Name string
	Subs       int // channels + patterns + shard channels
	OMem       int64
	Age, Idle  time.Duration
}

// Publisher is one client that PUBLISHes, as MONITOR sees it.
type Publisher struct {
	Addr, Name string   // address and CLIENT SETNAME name ("" when unset)
	Channels   []string // channels it published to
	Count      uint64   // publishes seen
	Rate       float64  // publishes per second, recently
	Last       time.Time
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
