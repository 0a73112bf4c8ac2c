package redisx

import (
	"math/rand/v2"
	"time"
)

// retryFloor is the shortest wait before a subscription connection is
// tried again, and stableAfter how long a subscription must have held for
// the wait to start from the floor again: a server that confirms the
// subscription and breaks it at once (junk, an immediate kill) meets a
// growing wait instead of a reconnect per round trip.
const (
	retryFloor  = 100 * time.Millisecond
	stableAfter = 10 * time.Second
)

// backoff is a doubling wait from floor up to max, each wait jittered by
// up to ±20 % (never under floor) so that many clients cut off at once do
// not come back in step. It is used by one goroutine.
type backoff struct {
	floor, max time.Duration
	n          int // waits handed out since the last reset
}

// next is the wait before the next attempt.
func (b *backoff) next() time.Duration {
	d := b.floor
	for i := 0; i < b.n && d < b.max; i++ {
		d *= 2
	}
	d = min(d, max(b.max, b.floor))
	b.n++
	jittered := time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
	return max(jittered, b.floor)
}

// undo takes back the last wait's doubling (an attempt that only followed
// a redirection).
func (b *backoff) undo() {
	if b.n > 0 {
		b.n--
	}
}

// reset starts again from the floor.
func (b *backoff) reset() { b.n = 0 }
