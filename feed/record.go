// Package feed defines the one record type that carries every observation
// from the sources (Redis, SSE) to the consumers (tail printer, probe engine,
// TUI), the queue that joins them, and the record's NDJSON and text forms.
package feed

import "time"

// Source says which side of the pipeline a record was observed on.
type Source uint8

const (
	SourceRedis Source = iota + 1
	SourceSSE
)

func (s Source) String() string {
	switch s {
	case SourceRedis:
		return "redis"
	case SourceSSE:
		return "sse"
	}
	return "unknown"
}

// Kind is the record kind as named in the NDJSON output.
type Kind uint8

const (
	KindMessage Kind = iota + 1 // a Redis Pub/Sub message
	KindEvent                   // an SSE event a browser would dispatch
	KindComment                 // an SSE comment line (keep-alive)
	KindRetry                   // an SSE retry field
	KindState                   // a connection state change of either source
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

	// SSE event, comment, retry, state.
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

	// Probe and hop annotations, set by the probe engine.
	Probe     string
	LatencyUS int64
	HopUS     int64
	HasHop    bool
}

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
