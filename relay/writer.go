package relay

import (
	"errors"
	"net/http"
	"os"
	"sync"
	"time"
)

// errDropped is what writes to a dropped client return.
var errDropped = errors.New("client dropped")

// deadlineWriter is the http.ResponseWriter handed to the r3labs server for
// one client. r3labs writes with no deadline and ignores write errors, so a
// browser that stops reading would hold its handler forever; this sets a
// write deadline before every write and, once a write fails or the hub
// drops the client, fails every later write at once and cancels the
// request so r3labs unsubscribes it.
type deadlineWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	cancel  func()

	mu      sync.Mutex // orders "dead" against deadline changes
	dead    bool
	failure string // why a write failed, "" when none did
}

func newDeadlineWriter(w http.ResponseWriter, timeout time.Duration, cancel func()) *deadlineWriter {
	return &deadlineWriter{w: w, rc: http.NewResponseController(w), timeout: timeout, cancel: cancel}
}

func (d *deadlineWriter) Header() http.Header { return d.w.Header() }

func (d *deadlineWriter) WriteHeader(code int) { d.w.WriteHeader(code) }

// arm sets the write deadline for the next write, or reports that the
// client is already dropped.
func (d *deadlineWriter) arm() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.dead {
		return false
	}
	_ = d.rc.SetWriteDeadline(time.Now().Add(d.timeout))
	return true
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	if !d.arm() {
		return 0, errDropped
	}
	n, err := d.w.Write(p)
	if err != nil {
		d.failed(err)
	}
	return n, err
}

// Flush implements http.Flusher, which r3labs requires.
func (d *deadlineWriter) Flush() {
	if !d.arm() {
		return
	}
	if err := d.rc.Flush(); err != nil {
		d.failed(err)
	}
}

// failed records why a write failed and drops the client.
func (d *deadlineWriter) failed(err error) {
	d.mu.Lock()
	if d.failure == "" && !d.dead {
		d.failure = "write failed: " + err.Error()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			d.failure = "write timed out"
		}
	}
	d.mu.Unlock()
	d.drop()
}

// writeFailure is why a write failed ("" when none did before the drop).
func (d *deadlineWriter) writeFailure() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.failure
}

// drop marks the client dead, makes a write blocked right now return (its
// deadline moves to the past) and cancels the request. Safe to call from
// any goroutine, more than once.
func (d *deadlineWriter) drop() {
	d.mu.Lock()
	first := !d.dead
	d.dead = true
	if first {
		_ = d.rc.SetWriteDeadline(time.Now())
	}
	d.mu.Unlock()
	d.cancel()
}
