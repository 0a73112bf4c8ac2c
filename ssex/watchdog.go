package ssex

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fanscope/fanscope/internal/netx"
)

// Stall detection. A connection that sends nothing at all (no event, no
// keep-alive comment) for longer than its threshold is stalled: a frozen
// relay (SIGSTOP), a proxy holding the stream, a dead network path. The
// threshold is 3× the longest gap seen between reads on that connection
// once it has sent two keep-alives, at least MinStallTimeout; before that
// DefaultStallTimeout; Config.StallTimeout fixes it.
//
// A stalled connection is reported (a `stalled` state record) and kept
// open, since it may recover as it is: bytes arriving again give a
// `connected` record and no reconnect, as a browser's EventSource, which
// has no timeout, would go on. After a further threshold of silence (2×
// in all) it is dropped and reopened, so a dead path is left in the end.
// Before the response head arrives there is no stream to wait for: the
// attempt is reported stalled and dropped at the threshold.

const (
	// DefaultStallTimeout is the stall threshold until the connection has
	// sent two keep-alives.
	DefaultStallTimeout = netx.StallBefore
	// MinStallTimeout is the least threshold learned from a fast stream.
	MinStallTimeout = netx.StallFloor
	// stallDropFactor × the threshold of silence drops a stalled connection.
	stallDropFactor = 2
)

// stallThreshold is the threshold in force (netx.StallThreshold): fixed
// when the user set one, else learned from the connection's keep-alives
// and longest gap.
func stallThreshold(fixed time.Duration, keepAlives int64, maxGap time.Duration) time.Duration {
	return netx.StallThreshold(fixed, keepAlives, maxGap, DefaultStallTimeout, MinStallTimeout)
}

// watchdog watches one attempt for silence. Before the stream it drops
// the attempt at the threshold; on the stream it reports a stall at the
// threshold, a recovery when bytes come again, and drops the connection
// at stallDropFactor × the threshold. It re-arms one timer instead of
// resetting it on every read.
type watchdog struct {
	base      time.Time
	last      atomic.Int64 // ns after base of the last read
	threshold atomic.Int64 // ns; 0: no detection
	stalledAt atomic.Int64 // ns after base when it went stalled; 0: not stalled

	mu        sync.Mutex
	drop      func() // how to drop the connection
	streaming bool   // the response head was read: stalls are reported
	onStall   func(idle, threshold time.Duration)
	onResume  func()
	timer     *time.Timer
	stopped   bool
	fired     bool
}

func startWatchdog(threshold time.Duration, drop func()) *watchdog {
	w := &watchdog{base: time.Now(), drop: drop}
	if threshold <= 0 {
		return w
	}
	w.threshold.Store(int64(threshold))
	w.mu.Lock()
	w.timer = time.AfterFunc(threshold, w.check)
	w.mu.Unlock()
	return w
}

// touch notes bytes read at at. When the connection was stalled, it calls
// onResume before returning, so the recovery is recorded before what the
// bytes bring.
func (w *watchdog) touch(at time.Time) {
	w.last.Store(int64(at.Sub(w.base)))
	if w.stalledAt.Load() == 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stalledAt.Load() != 0 && !w.stopped {
		w.stalledAt.Store(0)
		if w.onResume != nil {
			w.onResume()
		}
	}
}

// setThreshold changes the threshold. The timer picks a longer one up when
// it fires; for a shorter one it is re-armed. Call it right after a read.
func (w *watchdog) setThreshold(d time.Duration) {
	old := time.Duration(w.threshold.Load())
	if old <= 0 || d == old {
		return
	}
	w.threshold.Store(int64(d))
	if d < old {
		w.mu.Lock()
		if !w.stopped && w.timer != nil {
			w.timer.Reset(d)
		}
		w.mu.Unlock()
	}
}

// streamStarted switches from dropping to reporting: from now on silence
// calls onStall, bytes after it onResume, and drop closes the stream.
func (w *watchdog) streamStarted(drop func(), onStall func(idle, threshold time.Duration), onResume func()) {
	w.mu.Lock()
	w.drop, w.onStall, w.onResume, w.streaming = drop, onStall, onResume, true
	w.mu.Unlock()
}

// dropWith changes how the connection is dropped.
func (w *watchdog) dropWith(drop func()) {
	w.mu.Lock()
	w.drop = drop
	w.mu.Unlock()
}

// stalled reports whether the watchdog dropped the connection.
func (w *watchdog) stalled() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.fired
}

func (w *watchdog) check() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	thr := time.Duration(w.threshold.Load())
	last := w.last.Load()
	idle := time.Since(w.base) - time.Duration(last)
	switch {
	case !w.streaming || w.onStall == nil:
		if idle >= thr {
			w.fired = true
			w.drop()
			return
		}
		w.timer.Reset(thr - idle)
	case w.stalledAt.Load() == 0:
		if idle < thr {
			w.timer.Reset(thr - idle)
			return
		}
		w.stalledAt.Store(int64(time.Since(w.base)))
		if w.last.Load() != last {
			// Bytes came while this ran; touch may have missed the flag.
			w.stalledAt.Store(0)
			w.timer.Reset(thr)
			return
		}
		w.onStall(idle, thr)
		w.timer.Reset(stallDropFactor*thr - idle)
	default:
		if limit := stallDropFactor * thr; idle < limit {
			w.timer.Reset(limit - idle)
			return
		}
		w.fired = true
		w.drop()
	}
}

func (w *watchdog) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	if w.timer != nil {
		w.timer.Stop()
	}
}

// stallReason says why the watchdog dropped an attempt or a connection.
// An attempt dropped before its response counts as a stall here; a stream
// was counted when it went stalled.
func (c *Client) stallReason(streaming bool, thr time.Duration) string {
	if streaming {
		return fmt.Sprintf("stalled: no bytes for %s, dropped after %s of silence", thr, stallDropFactor*thr)
	}
	c.mu.Lock()
	c.diag.Stalls++
	c.mu.Unlock()
	return fmt.Sprintf("stalled: no bytes for %s (no response yet)", thr)
}

// initialStall is the stall threshold of a new attempt (0: detection off).
func (c *Client) initialStall() time.Duration {
	if c.cfg.StallTimeout < 0 {
		return 0
	}
	return stallThreshold(c.cfg.StallTimeout, 0, 0)
}
