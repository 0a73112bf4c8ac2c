package relay

import (
	"errors"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// maxBatch bounds one flush (one writev): a deadline applies to a whole
// flush, so a flush must stay small enough for a slow but live client to
// finish it in time.
const (
	maxBatchFrames = 64
	maxBatchBytes  = 256 << 10
)

// sseClient is one hijacked SSE connection. There is no goroutine writing
// to it while it keeps up: the fan-out writes the shared frame straight to
// the socket without blocking (a non-blocking write(2) through
// syscall.RawConn), and only what the kernel did not take is queued, for
// a flusher goroutine that lives while the queue is non-empty and writes
// with the write timeout. One goroutine per connection waits in Read to
// see the client leave (its stack stays at the 2 KiB minimum).
type sseClient struct {
	r       *Relay
	nc      net.Conn
	raw     syscall.RawConn // nil: every write goes through the flusher
	remote  string
	since   time.Time
	timeout time.Duration
	// Bounds on what may wait for this client: the replay it was sent
	// plus Config.ClientQueue events and Config.ClientQueueBytes bytes.
	maxFrames, maxBytes int
	// The replay, for the connect log line.
	lastID   uint64
	hasLast  bool
	replayed int
	gap      bool

	mu       sync.Mutex
	q        [][]byte // frames waiting; q[0][off:] is what is left of the first
	off      int
	qBytes   int
	flushing bool
	dead     bool
	reason   string
	sent     uint64
}

func newSSEClient(r *Relay, nc net.Conn, remote string) *sseClient {
	c := &sseClient{r: r, nc: nc, remote: remote, since: time.Now(), timeout: r.cfg.WriteTimeout}
	if sc, ok := nc.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			c.raw = raw
		}
	}
	return c
}

// tryWrite writes what the socket takes now without waiting; c.mu is held.
func (c *sseClient) tryWrite(b []byte) (int, error) {
	var n int
	var werr error
	err := c.raw.Write(func(fd uintptr) bool {
		for {
			n, werr = syscall.Write(int(fd), b)
			if werr != syscall.EINTR {
				break
			}
		}
		return true // never wait: what is left goes to the queue
	})
	if err == nil {
		err = werr
	}
	if n < 0 {
		n = 0
	}
	if errors.Is(err, syscall.EAGAIN) {
		err = nil
	}
	return n, err
}

// send writes frame or queues it. counted frames are events (c.sent);
// bounded frames are dropped with the client when its queue is full. It
// reports false when this call dropped the client as too slow.
func (c *sseClient) send(frame []byte, counted, bounded bool) bool {
	c.mu.Lock()
	if c.dead {
		c.mu.Unlock()
		return true
	}
	off := 0
	if len(c.q) == 0 && !c.flushing && c.raw != nil {
		n, err := c.tryWrite(frame)
		if err != nil {
			c.mu.Unlock()
			c.fail(err)
			return true
		}
		if n == len(frame) {
			if counted {
				c.sent++
			}
			c.mu.Unlock()
			return true
		}
		off = n
	}
	if bounded && (len(c.q)+1 > c.maxFrames || c.qBytes+len(frame) > c.maxBytes) {
		c.mu.Unlock()
		c.drop(reasonTooSlow)
		return false
	}
	if len(c.q) == 0 {
		c.off = off
	}
	c.q = append(c.q, frame)
	c.qBytes += len(frame)
	if counted {
		c.sent++ // counted when handed on; a drop later says how many were lost
	}
	if !c.flushing {
		c.flushing = true
		c.r.wg.Add(1)
		go c.flush()
	}
	c.mu.Unlock()
	return true
}

// ping sends a keep-alive comment when nothing is waiting (a client with
// a queue has bytes on their way and the flusher's timeout watches it).
func (c *sseClient) ping() {
	c.mu.Lock()
	idle := len(c.q) == 0 && !c.flushing
	c.mu.Unlock()
	if idle {
		c.send(pingFrame, false, false)
	}
}

// flush writes the queue with the write timeout until it is empty.
func (c *sseClient) flush() {
	defer c.r.wg.Done()
	var bufs net.Buffers
	for {
		c.mu.Lock()
		if c.dead || len(c.q) == 0 {
			if !c.dead {
				// Clear the deadline before the fan-out may write again:
				// a deadline in the past would fail its next write.
				_ = c.nc.SetWriteDeadline(time.Time{})
			}
			c.flushing = false
			c.q, c.qBytes = nil, 0
			c.mu.Unlock()
			return
		}
		bufs = bufs[:0]
		size := 0
		for i, f := range c.q {
			if i == maxBatchFrames || (i > 0 && size+len(f) > maxBatchBytes) {
				break
			}
			if i == 0 {
				f = f[c.off:]
			}
			bufs = append(bufs, f)
			size += len(f)
		}
		_ = c.nc.SetWriteDeadline(time.Now().Add(c.timeout))
		c.mu.Unlock()

		nw, err := bufs.WriteTo(c.nc)
		n := int(nw)

		c.mu.Lock()
		for n > 0 && len(c.q) > 0 {
			rest := len(c.q[0]) - c.off
			if n < rest {
				c.off += n
				break
			}
			n -= rest
			c.qBytes -= len(c.q[0])
			c.q[0] = nil
			c.q = c.q[1:]
			c.off = 0
		}
		c.mu.Unlock()
		if err != nil {
			c.fail(err)
		}
	}
}

// fail drops the client after a failed write, saying why.
func (c *sseClient) fail(err error) {
	reason := "write failed: " + err.Error()
	if errors.Is(err, os.ErrDeadlineExceeded) {
		reason = reasonWriteTimeout
	}
	c.drop(reason)
}

// drop ends the connection (the reader sees it and cleans up). The first
// reason stays. Safe from any goroutine, more than once.
func (c *sseClient) drop(reason string) {
	c.mu.Lock()
	if c.dead {
		c.mu.Unlock()
		return
	}
	c.dead = true
	c.reason = reason
	c.q, c.qBytes = nil, 0
	c.mu.Unlock()
	c.r.noteDrop(reason)
	_ = c.nc.Close()
}

// read waits for the client to leave (or for a drop to close the
// connection), then removes the client. What a client sends after its
// request is read and ignored.
func (c *sseClient) read() {
	defer c.r.wg.Done()
	buf := make([]byte, 64)
	for {
		if _, err := c.nc.Read(buf); err != nil {
			break
		}
	}
	c.drop(reasonGone)
	c.mu.Lock()
	reason, sent := c.reason, c.sent
	c.mu.Unlock()
	c.r.detach(c, "sse", c.remote, reason, sent, c.since)
}

func (c *sseClient) deliver(ev *event) bool { return c.send(ev.sse, true, true) }

func (c *sseClient) shut(reason string) { c.drop(reason) }

func (c *sseClient) queued() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.qBytes
}
