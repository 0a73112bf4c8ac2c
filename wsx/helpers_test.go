package wsx

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// maxJitter makes the backoff deterministic: the top of its range.
func maxJitter(n int64) int64 { return n - 1 }

// freezer is a TCP proxy whose current connections can be frozen, as a
// black-holing middlebox or a hung server would: they stay open and
// nothing gets through. Connections made later forward again.
type freezer struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	links  []*link
}

type link struct {
	frozen atomic.Bool
	a, b   net.Conn
}

func newFreezer(t *testing.T, target string) *freezer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln, target: target}
	go f.serve()
	t.Cleanup(f.close)
	return f
}

func (f *freezer) addr() string { return f.ln.Addr().String() }

func (f *freezer) serve() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", f.target)
		if err != nil {
			c.Close()
			continue
		}
		l := &link{a: c, b: u}
		f.mu.Lock()
		f.links = append(f.links, l)
		f.mu.Unlock()
		go l.pipe(u, c)
		go l.pipe(c, u)
	}
}

// freeze stops every current connection from passing bytes.
func (f *freezer) freeze() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, l := range f.links {
		l.frozen.Store(true)
	}
}

func (l *link) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !l.frozen.Load() {
			if _, err := dst.Write(buf[:n]); err != nil {
				src.Close()
				return
			}
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

func (f *freezer) close() {
	f.ln.Close()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, l := range f.links {
		l.a.Close()
		l.b.Close()
	}
}
