// Package feedtest holds the test helpers every package's tests share: a
// Sink that records what sources emit and lets a test wait for a
// condition on it, filters over records, Start to run a source for the
// length of a test, CheckMasked and NoSecrets to show that no secret
// reaches a record, a Status or an error, and a Buffer safe to read while
// a command writes it.
package feedtest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fanscope/fanscope/feed"
)

// Eventually is how long WaitFor waits by default: generous for -race on
// a loaded machine.
const Eventually = 20 * time.Second

// Sink records every record emitted to it (one at a time or in batches).
type Sink struct {
	mu      sync.Mutex
	recs    []feed.Record
	largest int // the largest batch seen
	wake    chan struct{}
}

var _ feed.BatchSink = (*Sink)(nil)

// NewSink returns an empty Sink.
func NewSink() *Sink { return &Sink{wake: make(chan struct{}, 1)} }

// Emit records r.
func (s *Sink) Emit(r feed.Record) {
	s.mu.Lock()
	s.recs = append(s.recs, r)
	s.mu.Unlock()
	s.signal()
}

// EmitBatch records rs, then clears the slice: a source must not rely on
// it after the call.
func (s *Sink) EmitBatch(rs []feed.Record) {
	s.mu.Lock()
	s.recs = append(s.recs, rs...)
	s.largest = max(s.largest, len(rs))
	s.mu.Unlock()
	clear(rs)
	s.signal()
}

func (s *Sink) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// All returns a copy of the records so far.
func (s *Sink) All() []feed.Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]feed.Record(nil), s.recs...)
}

// Largest is the largest batch EmitBatch took.
func (s *Sink) Largest() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.largest
}

// Kind returns the records of kind k so far.
func (s *Sink) Kind(k feed.Kind) []feed.Record {
	var out []feed.Record
	for _, r := range s.All() {
		if r.Kind == k {
			out = append(out, r)
		}
	}
	return out
}

// WaitFor waits up to timeout (Eventually when 0) until cond holds for the
// records so far, and returns them; it fails the test, listing the
// records, when it does not.
func (s *Sink) WaitFor(t testing.TB, timeout time.Duration, what string, cond func([]feed.Record) bool) []feed.Record {
	t.Helper()
	if timeout <= 0 {
		timeout = Eventually
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond) // conditions may depend on time too
	defer tick.Stop()
	for {
		recs := s.All()
		if cond(recs) {
			return recs
		}
		select {
		case <-s.wake:
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for %s; records:\n%s", timeout, what, Dump(recs))
		}
	}
}

// Dump lists records one a line, payloads cut short, for failure messages.
func Dump(recs []feed.Record) string {
	var b strings.Builder
	for _, r := range recs {
		d := r.Data
		if len(d) > 60 {
			d = d[:60] + "…"
		}
		fmt.Fprintf(&b, "  %s/%s state=%q status=%d attempt=%d err=%q type=%q id=%q retry=%d data=%q\n",
			r.Source, r.Kind, r.State, r.Status, r.Attempt, r.Error, r.Type, r.ID, r.RetryMS, d)
	}
	return b.String()
}

// Buffer is a bytes.Buffer safe to read while another goroutine writes it
// (a command's stdout, a child process's output). With Limit > 0 it keeps
// only the first Limit bytes.
type Buffer struct {
	Limit int
	mu    sync.Mutex
	b     bytes.Buffer
}

func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.Limit > 0 && l.b.Len() > l.Limit {
		return len(p), nil
	}
	return l.b.Write(p)
}

// String returns what was written so far.
func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// OfKind returns the records of kind k in recs.
func OfKind(recs []feed.Record, k feed.Kind) []feed.Record {
	var out []feed.Record
	for _, r := range recs {
		if r.Kind == k {
			out = append(out, r)
		}
	}
	return out
}

// States is the sequence of state values in recs.
func States(recs []feed.Record) []string {
	var s []string
	for _, r := range recs {
		if r.Kind == feed.KindState {
			s = append(s, r.State)
		}
	}
	return s
}

// StateRecords returns the state records of state in recs.
func StateRecords(recs []feed.Record, state string) []feed.Record {
	var out []feed.Record
	for _, r := range recs {
		if r.Kind == feed.KindState && r.State == state {
			out = append(out, r)
		}
	}
	return out
}

// LastState returns the last state record of state in recs.
func LastState(recs []feed.Record, state string) (feed.Record, bool) {
	s := StateRecords(recs, state)
	if len(s) == 0 {
		return feed.Record{}, false
	}
	return s[len(s)-1], true
}

// CountKind is a WaitFor condition: at least n records of kind k.
func CountKind(k feed.Kind, n int) func([]feed.Record) bool {
	return func(recs []feed.Record) bool { return len(OfKind(recs, k)) >= n }
}

// HasState is a WaitFor condition: a state record of state whose Error
// holds errPart.
func HasState(state, errPart string) func([]feed.Record) bool {
	return func(recs []feed.Record) bool {
		for _, r := range StateRecords(recs, state) {
			if strings.Contains(r.Error, errPart) {
				return true
			}
		}
		return false
	}
}

// Source is what Start runs: a delivery path's Run.
type Source interface {
	Run(ctx context.Context, sink feed.Sink) error
}

// Running is a source started by Start.
type Running struct {
	cancel context.CancelFunc
	done   chan error
}

// Start runs src with sink until Stop or the end of the test, when it
// checks that Run returned after its context ended.
func Start(t testing.TB, src Source, sink feed.Sink) *Running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &Running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- src.Run(ctx, sink) }()
	t.Cleanup(func() { r.Stop(t) })
	return r
}

// Stop cancels Run's context and returns Run's result.
func (r *Running) Stop(t testing.TB) error {
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err // for the next Stop or Wait
		return err
	case <-time.After(Eventually):
		t.Errorf("Run did not return within %s after its context ended", Eventually)
		return nil
	}
}

// Wait returns Run's result once Run returns by itself.
func (r *Running) Wait(t testing.TB) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err
		return err
	case <-time.After(Eventually):
		t.Fatalf("Run did not return within %s", Eventually)
		return nil
	}
}

// Returned reports Run's result if Run has returned, without waiting.
func (r *Running) Returned() (err error, ok bool) {
	select {
	case err := <-r.done:
		r.done <- err
		return err, true
	default:
		return nil, false
	}
}

// StatusSource is a delivery path that reports its health.
type StatusSource interface {
	Source
	Status() feed.Status
}

// CheckMasked runs src until Run fails for good (fatal) or it retried
// twice, and checks what it showed: the last state record's error holds
// want, Status.URL has its password masked, and no secret occurs in a
// record, the Status or Run's error. It returns Run's error.
func CheckMasked(t testing.TB, src StatusSource, fatal bool, want string, secrets ...string) error {
	t.Helper()
	sink := NewSink()
	run := Start(t, src, sink)
	var recs []feed.Record
	var err error
	if fatal {
		err = run.Wait(t)
		recs = sink.All()
		if err == nil {
			t.Fatalf("Run = nil, want it to fail for good; records:\n%s", Dump(recs))
		}
	} else {
		recs = sink.WaitFor(t, 0, "two retries", func(r []feed.Record) bool {
			return len(StateRecords(r, feed.StateReconnecting)) >= 2
		})
		err = run.Stop(t)
	}
	if last := recs[len(recs)-1]; !strings.Contains(last.Error, want) {
		t.Errorf("last state %s error %q, want %q in it", last.State, last.Error, want)
	}
	st := src.Status()
	if !strings.Contains(st.URL, ":***@") {
		t.Errorf("Status.URL = %q, want the password masked", st.URL)
	}
	texts := append([]string{st.URL, st.Error}, st.Details...)
	if err != nil {
		texts = append(texts, err.Error())
	}
	NoSecrets(t, recs, texts, secrets...)
	return err
}

// NoSecrets fails the test when any secret occurs in a record's text
// fields or in one of texts (an error, a Status's URL and Error).
func NoSecrets(t testing.TB, recs []feed.Record, texts []string, secrets ...string) {
	t.Helper()
	for _, r := range recs {
		texts = append(texts, r.Endpoint, r.Error, r.Type, r.ID, r.Data)
	}
	for _, s := range secrets {
		for _, text := range texts {
			if strings.Contains(text, s) {
				t.Errorf("secret %q shown in %q", s, text)
			}
		}
	}
}

// ServeTCP runs a loopback TCP server for a test whose peer is written by
// hand (a fake Redis, an HTTP server writing exact bytes, a proxy): handle
// gets each accepted connection on a goroutine of its own, and the
// connection is closed when handle returns. When the test ends, the
// listener and every open connection are closed and ServeTCP waits for
// the handlers. It returns the server's address (host:port).
func ServeTCP(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		open  = map[net.Conn]struct{}{}
		ended bool
	)
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		ended = true
		for c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if ended {
				mu.Unlock()
				c.Close()
				return
			}
			open[c] = struct{}{}
			wg.Add(1)
			mu.Unlock()
			go func() {
				defer wg.Done()
				defer func() {
					mu.Lock()
					delete(open, c)
					mu.Unlock()
					c.Close()
				}()
				handle(c)
			}()
		}
	}()
	return ln.Addr().String()
}
