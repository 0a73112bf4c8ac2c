package feed

import "time"

// Status is a copy of one source connection's health, taken at one
// instant: what the sources pane, tail's summary, probe's connect checks
// and serve's metrics read. Every source kind fills the common fields;
// what only one transport has goes into Details, in words.
type Status struct {
	Source Source
	Name   string // endpoint name ("" for Redis)
	URL    string // secrets masked
	Conn   int    // connection index when several go to one endpoint

	State      string // a State* value
	Error      string // why the state is not healthy; "" when it is
	HTTPStatus int    // status of the last HTTP response (0: none)
	Attempt    int    // attempts since the last connection was established
	Reconnects int    // attempts after the first
	Stalls     int    // times it went stalled
	// StallAfter is the stall threshold in force (0: no stall detection).
	StallAfter time.Duration

	Events        uint64    // deliveries (events, messages, changed bodies)
	ConnectedAt   time.Time // zero: not connected
	LastByte      time.Time // last bytes of any kind
	LastEvent     time.Time
	LastKeepAlive time.Time // last keep-alive (SSE comment, WebSocket pong, Engine.IO ping)
	TTFB          time.Duration

	// Details is transport-specific health, one short phrase each
	// ("close 1008 policy violation", "ping 25s, timeout 20s",
	// "304 on 9 of 12 polls, interval 5s").
	Details  []string
	Warnings []string // things that make delivery misbehave, in words
	RSS      int64    // bytes of memory the source's own processes use (a browser); 0 when not measured
}

// Path is the status's path name (PathName).
func (s *Status) Path() string { return PathName(s.Source, s.Name) }

// Up reports whether the source is connected or subscribed.
func (s *Status) Up() bool { return s.State == StateConnected || s.State == StateSubscribed }
