package relay

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// sseClient is one SSE connection, taken out of net/http and out of Go's
// network poller once its request is read: the relay owns the socket as a
// plain non-blocking descriptor. There is no goroutine per connection.
// The fan-out writes the shared frame straight to the socket (write(2),
// never waiting); what the kernel does not take is queued, and the
// relay's one epoll loop (poller) writes the queue as the socket drains,
// sees clients leave, and drops a client whose queue made no progress for
// the write timeout. So a connection costs this struct, two map entries
// and the kernel's socket, and a write costs one system call.
type sseClient struct {
	r       *Relay
	id      uint64 // key in the poller
	remote  string
	since   time.Time
	timeout time.Duration
	// Bounds on what may wait for this client: the replay it was sent
	// plus Config.ClientQueue events and Config.ClientQueueBytes bytes.
	maxFrames, maxBytes int

	mu       sync.Mutex
	fd       int      // -1 once closed
	q        [][]byte // frames waiting; q[0][off:] is what is left of the first
	off      int
	qBytes   int
	armed    bool      // waiting for the socket to drain (EPOLLOUT)
	progress time.Time // last time a queued byte went out (or the queue began)
	dead     bool
	reason   string
	sent     uint64
}

// writeNB writes what the socket takes now, without waiting.
func writeNB(fd int, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		switch e {
		case 0:
			return int(n), nil
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return 0, nil
		}
		return 0, e
	}
}

// send writes frame or queues it. counted frames are events (c.sent);
// bounded frames drop the client when its queue is full. It reports false
// when this call dropped the client as too slow.
func (c *sseClient) send(frame []byte, counted, bounded bool) bool {
	c.mu.Lock()
	if c.dead {
		c.mu.Unlock()
		return true
	}
	off := 0
	if len(c.q) == 0 {
		n, err := writeNB(c.fd, frame)
		if err != nil {
			c.mu.Unlock()
			c.drop("write failed: " + err.Error())
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
	// An empty queue takes one frame of any size: the bound is on what
	// piles up behind it, so one event larger than the bound reaches a
	// client that keeps up.
	if bounded && len(c.q) > 0 && (len(c.q)+1 > c.maxFrames || c.qBytes+len(frame) > c.maxBytes) {
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
	if !c.armed {
		c.armed = true
		c.progress = time.Now()
		c.r.pl.watch(c, true)
	}
	c.mu.Unlock()
	return true
}

// writable writes the queue as far as the socket takes it (from the
// epoll loop).
func (c *sseClient) writable() {
	c.mu.Lock()
	if c.dead {
		c.mu.Unlock()
		return
	}
	for len(c.q) > 0 {
		n, err := writeNB(c.fd, c.q[0][c.off:])
		if err != nil {
			c.mu.Unlock()
			c.drop("write failed: " + err.Error())
			return
		}
		if n == 0 {
			break
		}
		c.progress = time.Now()
		if c.off += n; c.off < len(c.q[0]) {
			break // the socket took part: it is full again
		}
		c.qBytes -= len(c.q[0])
		c.q[0] = nil
		c.q = c.q[1:]
		c.off = 0
	}
	if len(c.q) == 0 && c.armed {
		c.q = nil
		c.armed = false
		c.r.pl.watch(c, false)
	}
	c.mu.Unlock()
}

// readable reads and ignores what the client sent, and drops it when it
// has gone (from the epoll loop; buf is the loop's).
func (c *sseClient) readable(buf []byte, events uint32) {
	c.mu.Lock()
	if c.dead {
		c.mu.Unlock()
		return
	}
	gone := events&(syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0
	if !gone {
		n, err := syscall.Read(c.fd, buf)
		gone = n == 0 || (err != nil && err != syscall.EAGAIN && err != syscall.EINTR)
	}
	c.mu.Unlock()
	if gone {
		c.drop(reasonGone)
	}
}

// stalled reports whether queued bytes made no progress for the timeout.
func (c *sseClient) stalled(now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.dead && c.armed && now.Sub(c.progress) > c.timeout
}

// ping sends a keep-alive comment when nothing is waiting (a client with
// a queue has bytes on their way, and the write timeout watches it).
func (c *sseClient) ping() {
	c.mu.Lock()
	idle := len(c.q) == 0
	c.mu.Unlock()
	if idle {
		c.send(pingFrame, false, false)
	}
}

// drop closes the connection and removes the client. The first reason
// stays. Safe from any goroutine, more than once.
func (c *sseClient) drop(reason string) {
	c.mu.Lock()
	if c.dead {
		c.mu.Unlock()
		return
	}
	c.dead = true
	c.reason = reason
	c.q, c.qBytes = nil, 0
	fd := c.fd
	c.fd = -1
	sent := c.sent
	c.mu.Unlock()
	// Nothing uses fd any more: every use checks dead under c.mu.
	c.r.pl.remove(c, fd)
	_ = syscall.Close(fd)
	c.r.noteDrop(reason)
	c.r.detach(c, "sse", c.remote, reason, sent, c.since)
}

func (c *sseClient) deliver(ev *event) bool { return c.send(ev.sse, true, true) }

func (c *sseClient) shut(reason string) { c.drop(reason) }

func (c *sseClient) queued() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.qBytes
}

func (c *sseClient) isDead() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dead
}

// takeFD takes the socket of a hijacked connection out of Go's network
// poller: a duplicate descriptor (same socket, still non-blocking) is
// kept and the original closed.
func takeFD(nc net.Conn) (int, error) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return -1, fmt.Errorf("connection %T has no descriptor", nc)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var derr error
	if err := raw.Control(func(f uintptr) { fd, derr = syscall.Dup(int(f)) }); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, fmt.Errorf("dup: %w", derr)
	}
	_ = nc.Close()
	syscall.CloseOnExec(fd)
	if err := syscall.SetNonblock(fd, true); err != nil {
		_ = syscall.Close(fd)
		return -1, err
	}
	return fd, nil
}

// poller is the relay's one epoll loop over its SSE sockets.
type poller struct {
	ep      int
	closing *atomic.Bool

	mu     sync.Mutex
	conns  map[uint64]*sseClient
	behind map[*sseClient]struct{} // clients with a queue
	nextID uint64
}

func newPoller(closing *atomic.Bool) (*poller, error) {
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll: %w", err)
	}
	return &poller{ep: ep, closing: closing, conns: map[uint64]*sseClient{}, behind: map[*sseClient]struct{}{}}, nil
}

// epollEvent carries a client's id (not its descriptor, which the kernel
// may give to a new connection while an old event is still being read).
func epollEvent(events uint32, id uint64) *syscall.EpollEvent {
	return &syscall.EpollEvent{Events: events, Fd: int32(uint32(id)), Pad: int32(uint32(id >> 32))}
}

const watchIn = syscall.EPOLLIN | syscall.EPOLLRDHUP

// add registers c (its fd set) with the loop.
func (p *poller) add(c *sseClient) error {
	p.mu.Lock()
	p.nextID++
	c.id = p.nextID
	p.conns[c.id] = c
	p.mu.Unlock()
	if err := syscall.EpollCtl(p.ep, syscall.EPOLL_CTL_ADD, c.fd, epollEvent(watchIn, c.id)); err != nil {
		p.mu.Lock()
		delete(p.conns, c.id)
		p.mu.Unlock()
		return fmt.Errorf("epoll add: %w", err)
	}
	return nil
}

// watch starts or stops waiting for c's socket to drain; c.mu is held.
func (p *poller) watch(c *sseClient, out bool) {
	ev := uint32(watchIn)
	if out {
		ev |= syscall.EPOLLOUT
	}
	_ = syscall.EpollCtl(p.ep, syscall.EPOLL_CTL_MOD, c.fd, epollEvent(ev, c.id))
	p.mu.Lock()
	if out {
		p.behind[c] = struct{}{}
	} else {
		delete(p.behind, c)
	}
	p.mu.Unlock()
}

// remove forgets c; fd is closed next.
func (p *poller) remove(c *sseClient, fd int) {
	_ = syscall.EpollCtl(p.ep, syscall.EPOLL_CTL_DEL, fd, nil)
	p.mu.Lock()
	delete(p.conns, c.id)
	delete(p.behind, c)
	p.mu.Unlock()
}

// run is the loop. It ends once the relay is closing and every client
// has gone.
func (p *poller) run() {
	events := make([]syscall.EpollEvent, 256)
	buf := make([]byte, 4096)
	var behind []*sseClient
	lastSweep := time.Now()
	for {
		n, err := syscall.EpollWait(p.ep, events, 100)
		if err != nil && !errors.Is(err, syscall.EINTR) {
			break
		}
		for _, ev := range events[:max(n, 0)] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			p.mu.Lock()
			c := p.conns[id]
			p.mu.Unlock()
			if c == nil {
				continue
			}
			if ev.Events&syscall.EPOLLOUT != 0 {
				c.writable()
			}
			if ev.Events&(syscall.EPOLLIN|syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
				c.readable(buf, ev.Events)
			}
		}
		if now := time.Now(); now.Sub(lastSweep) >= 50*time.Millisecond {
			lastSweep = now
			p.mu.Lock()
			behind = behind[:0]
			for c := range p.behind {
				behind = append(behind, c)
			}
			left := len(p.conns)
			p.mu.Unlock()
			for _, c := range behind {
				if c.stalled(now) {
					c.drop(reasonWriteTimeout)
				}
			}
			clear(behind)
			if left == 0 && p.closing.Load() {
				break
			}
		}
	}
	_ = syscall.Close(p.ep)
}
