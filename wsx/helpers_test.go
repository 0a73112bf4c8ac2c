package wsx

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fanscope/fanscope/feed"
)

// collector is a sink that keeps every record and wakes waiters.
type collector struct {
	mu   sync.Mutex
	recs []feed.Record
}

func (c *collector) Emit(r feed.Record) {
	c.mu.Lock()
	c.recs = append(c.recs, r)
	c.mu.Unlock()
}

func (c *collector) all() []feed.Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]feed.Record(nil), c.recs...)
}

// waitFor polls until ok holds for the records so far, or fails the test
// after a generous deadline.
func (c *collector) waitFor(t *testing.T, what string, ok func([]feed.Record) bool) []feed.Record {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		recs := c.all()
		if ok(recs) {
			return recs
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; records:\n%s", what, dump(recs))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func dump(recs []feed.Record) string {
	var b strings.Builder
	for _, r := range recs {
		if r.Kind == feed.KindState {
			fmt.Fprintf(&b, "  state %s status=%d attempt=%d error=%q\n", r.State, r.Status, r.Attempt, r.Error)
		} else {
			d := r.Data
			if len(d) > 80 {
				d = d[:80] + "…"
			}
			fmt.Fprintf(&b, "  %s type=%q data=%q\n", r.Kind, r.Type, d)
		}
	}
	return b.String()
}

// states is the sequence of state values.
func states(recs []feed.Record) []string {
	var s []string
	for _, r := range recs {
		if r.Kind == feed.KindState {
			s = append(s, r.State)
		}
	}
	return s
}

func events(recs []feed.Record) []feed.Record {
	var e []feed.Record
	for _, r := range recs {
		if r.Kind == feed.KindEvent {
			e = append(e, r)
		}
	}
	return e
}

func countState(recs []feed.Record, state string) int {
	n := 0
	for _, s := range states(recs) {
		if s == state {
			n++
		}
	}
	return n
}

func lastState(recs []feed.Record, state string) (feed.Record, bool) {
	for i := len(recs) - 1; i >= 0; i-- {
		if recs[i].Kind == feed.KindState && recs[i].State == state {
			return recs[i], true
		}
	}
	return feed.Record{}, false
}

// runner runs a source until stopped.
type runner struct {
	cancel context.CancelFunc
	done   chan error
}

type runnable interface {
	Run(ctx context.Context, sink feed.Sink) error
}

func start(t *testing.T, src runnable, sink feed.Sink) *runner {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &runner{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- src.Run(ctx, sink) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels Run and returns its result.
func (r *runner) stop(t *testing.T) error {
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err
		return err
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after its context ended")
		return nil
	}
}

// wait returns Run's result once it returns by itself.
func (r *runner) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err
		return err
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return")
		return nil
	}
}

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
