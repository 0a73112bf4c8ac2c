// Package feed defines the one record type that carries every observation
// from the sources (Redis, SSE, WebSocket, Socket.IO, polling, a browser,
// MONITOR) to the consumers (tail printer, probe engine, TUI), the queue
// that joins them, the path names, and the record's NDJSON and text forms.
package feed

import "time"

// Source says which side of the pipeline a record was observed on.
type Source uint8

const (
	SourceRedis    Source = iota + 1 // fanscope's own Redis subscription
	SourceSSE                        // an SSE endpoint (--sse)
	SourceWS                         // a WebSocket endpoint (--ws)
	SourceSocketIO                   // a Socket.IO endpoint (--socketio)
	SourcePoll                       // a polled URL (--poll)
	SourceBrowser                    // an EventSource in headless Chromium (--browser, --page)
	SourceMonitor                    // Redis MONITOR, filtered to PUBLISH/SPUBLISH (--monitor)
	SourcePage                       // a page check: a selector became visible (--page, --expect)
)

// sourceNames are the NDJSON "source" values, which are also the prefixes
// of path names ("sse:app-1").
var sourceNames = [...]string{
	SourceRedis:    "redis",
	SourceSSE:      "sse",
	SourceWS:       "ws",
	SourceSocketIO: "socketio",
	SourcePoll:     "poll",
	SourceBrowser:  "browser",
	SourceMonitor:  "monitor",
	SourcePage:     "page",
}

func (s Source) String() string {
	if int(s) < len(sourceNames) && sourceNames[s] != "" {
		return sourceNames[s]
	}
	return "unknown"
}

// Delivers reports whether records of this source are deliveries to
// clients (event records on an endpoint), as opposed to Redis's side.
func (s Source) Delivers() bool {
	switch s {
	case SourceSSE, SourceWS, SourceSocketIO, SourcePoll, SourceBrowser, SourcePage:
		return true
	}
	return false
}

// Kind is the record kind as named in the NDJSON output.
type Kind uint8

const (
	KindMessage Kind = iota + 1 // a Redis Pub/Sub message
	KindEvent                   // an SSE event a browser would dispatch
	KindComment                 // an SSE comment line (keep-alive)
	KindRetry                   // an SSE retry field
	KindState                   // a connection state change of any source
	KindPublish                 // a PUBLISH/SPUBLISH seen by MONITOR
)

func (k Kind) String() string {
	switch k {
	case KindMessage:
		return "message"
	case KindEvent:
		return "event"
	case KindComment:
		return "comment"
	case KindRetry:
		return "retry"
	case KindState:
		return "state"
	case KindPublish:
		return "publish"
	}
	return "unknown"
}

// Connection states used in state records.
const (
	StateConnecting   = "connecting"
	StateConnected    = "connected"
	StateSubscribed   = "subscribed"
	StateDisconnected = "disconnected"
	StateReconnecting = "reconnecting"
	StateFailed       = "failed"
	// StateStalled: a streaming endpoint sent nothing (no event, no
	// keep-alive) for longer than its stall threshold; it comes before any
	// reconnect, and "connected" follows when bytes arrive again.
	StateStalled = "stalled"
)

// Record is one observation. TS is the receive time taken right after the
// read that completed the record returned; it keeps Go's monotonic reading,
// so latencies are computed on one monotonic clock.
type Record struct {
	Seq    uint64 // assigned by the fan-in, increasing; 0 before that
	TS     time.Time
	Source Source
	Kind   Kind

	// Redis message.
	Channel string
	Pattern string // set when matched by PSUBSCRIBE
	Shard   bool   // true for SSUBSCRIBE

	// Event, comment, retry, state of an endpoint (SSE, WebSocket,
	// Socket.IO, poll, browser).
	Endpoint string // endpoint name
	Conn     int    // connection index when several connections go to one endpoint
	Type     string // event type, "message" when unset
	ID       string // last event ID in force
	RetryMS  int64

	// Data is the payload (message, event) or comment text. It may hold
	// any bytes; the encoders turn invalid UTF-8 into data_b64 or escapes.
	Data string

	// State.
	Target  string // redis target (password masked)
	State   string
	Error   string
	Status  int // HTTP status
	Attempt int

	// Publish (MONITOR): who published, and when by the server's clock.
	Client     string    // the publisher's address
	ClientName string    // its CLIENT SETNAME name, when set
	ServerTS   time.Time // the MONITOR timestamp (server clock)

	// Probe and hop annotations, set by the probe engine.
	Probe     string
	LatencyUS int64
	HopUS     int64
	HasHop    bool
	// PublishUS is the time from the organic message's PUBLISH (seen by
	// MONITOR, server clock corrected) to this delivery.
	PublishUS  int64
	HasPublish bool
}

// Path is the name of the delivery path this record belongs to, as used
// in probe reports and metrics: "redis", or "<source>:<endpoint>".
func (r *Record) Path() string { return PathName(r.Source, r.Endpoint) }

// PathName is the one place path names are made: "redis" for fanscope's
// own subscription, "<source>:<endpoint>" for every other source
// ("sse:app-1", "ws:app-1", "page:home").
func PathName(s Source, endpoint string) string {
	if s == SourceRedis {
		return "redis"
	}
	if s == SourceMonitor && endpoint == "" {
		return "monitor"
	}
	return s.String() + ":" + endpoint
}

// PathRedis is the path name of fanscope's own Redis subscription.
const PathRedis = "redis"

// Sink receives records. Emit must not block for long: sources call it from
// their socket readers.
type Sink interface {
	Emit(Record)
}

// BatchSink is a Sink that also takes several records at once, in order,
// for the cost of one. EmitBatch must not keep the slice.
type BatchSink interface {
	Sink
	EmitBatch([]Record)
}

// SinkFunc adapts a function to a Sink.
type SinkFunc func(Record)

// Emit calls f(r).
func (f SinkFunc) Emit(r Record) { f(r) }
