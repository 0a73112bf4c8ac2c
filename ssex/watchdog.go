package ssex

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// watchdog drops a connection when no bytes arrive for timeout. It
// re-arms one timer instead of resetting it on every read.
type watchdog struct {
	timeout time.Duration
	base    time.Time
	last    atomic.Int64 // ns after base of the last read

	mu      sync.Mutex
	drop    func() // how to drop the connection
	timer   *time.Timer
	stopped bool
	fired   bool
}

func startWatchdog(timeout time.Duration, drop func()) *watchdog {
	w := &watchdog{timeout: timeout, base: time.Now(), drop: drop}
	if timeout <= 0 {
		return w
	}
	w.mu.Lock()
	w.timer = time.AfterFunc(timeout, w.check)
	w.mu.Unlock()
	return w
}

func (w *watchdog) touch(at time.Time) { w.last.Store(int64(at.Sub(w.base))) }

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
	idle := time.Since(w.base) - time.Duration(w.last.Load())
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	if idle >= w.timeout {
		w.fired = true
		w.drop()
		return
	}
	w.timer.Reset(w.timeout - idle)
}

func (w *watchdog) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	if w.timer != nil {
		w.timer.Stop()
	}
}

// stalled counts a connection the watchdog dropped and says why it ended.
func (c *Client) stalled() string {
	c.mu.Lock()
	c.diag.Stalls++
	c.mu.Unlock()
	return fmt.Sprintf("stalled: no bytes for %s", c.cfg.StallTimeout)
}
