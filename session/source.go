package session

import (
	"context"

	"github.com/fanscope/fanscope/feed"
)

// Source is one connection of one delivery path: fanscope's Redis
// subscription, an SSE, WebSocket, Socket.IO or polled endpoint, a
// browser tab, MONITOR. Every path plugs into a Session through this
// shape alone; the probe engine, the TUI and the encoders see only the
// records it emits and the Status it reports.
type Source interface {
	// Path is the delivery path's name (feed.PathName): "redis",
	// "sse:app-1", "ws:app-1". Several connections to one endpoint share
	// a path and differ in Status().Conn.
	Path() string
	// Run connects, and reconnects with backoff, emitting records into
	// sink until ctx ends (then it returns nil) or an error that retrying
	// cannot fix ends it (a 401, a refused handshake); that error says
	// what failed and decides the exit status.
	Run(ctx context.Context, sink feed.Sink) error
	// Connected is closed once the source first connected (or subscribed).
	Connected() <-chan struct{}
	// Status copies the source's health. It is safe to call from any
	// goroutine while Run goes.
	Status() feed.Status
}
