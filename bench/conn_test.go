package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/ssex"
)

// idleSSEServer accepts connections, answers each GET as a net/http
// server answers an event stream (200, text/event-stream, chunked, a
// keep-alive comment) and then holds the connection without a goroutine,
// so almost all memory in the process is the clients'. Until release is
// called it reads requests and does not answer them, as a busy server
// answers thousands of new connections only after a while.
type idleSSEServer struct {
	ln       net.Listener
	requests atomic.Int64
	mu       sync.Mutex
	released bool
	pending  []net.Conn // requests not answered yet
	conns    []net.Conn
}

func startIdleSSEServer(tb testing.TB) *idleSSEServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &idleSSEServer{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				br := bufio.NewReaderSize(c, 1024)
				for {
					line, err := br.ReadSlice('\n')
					if err != nil {
						c.Close()
						return
					}
					if len(line) <= 2 {
						break
					}
				}
				s.mu.Lock()
				if s.released {
					s.answer(c)
				} else {
					s.pending = append(s.pending, c)
				}
				s.mu.Unlock()
				s.requests.Add(1)
			}()
		}
	}()
	tb.Cleanup(s.close)
	return s
}

// answer sends c the response head; s.mu is held, so that a broadcast
// after the client saw the response reaches this connection too.
func (s *idleSSEServer) answer(c net.Conn) {
	c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n: hi\n\n\r\n"))
	s.conns = append(s.conns, c)
}

// release answers the requests held so far and every later one at once.
func (s *idleSSEServer) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.released = true
	for _, c := range s.pending {
		s.answer(c)
	}
	s.pending = nil
}

func (s *idleSSEServer) url() string { return "http://" + s.ln.Addr().String() + "/events" }

// broadcast sends one event, as one chunk, to every held connection, as a
// probe does.
func (s *idleSSEServer) broadcast(tb testing.TB, id int) {
	ev := fmt.Sprintf("id: %d\ndata: {\"probe\":\"fanscope-probe-%d\",\"ts\":%d}\n\n", id, id, time.Now().UnixNano())
	chunk := []byte(fmt.Sprintf("%x\r\n%s\r\n", len(ev), ev))
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		if _, err := c.Write(chunk); err != nil {
			tb.Fatal(err)
		}
	}
}

func (s *idleSSEServer) close() {
	s.ln.Close()
	s.mu.Lock()
	for _, c := range append(s.conns, s.pending...) {
		c.Close()
	}
	s.conns, s.pending = nil, nil
	s.mu.Unlock()
}

func memNow() (heap, stack uint64, goroutines int) {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse, m.StackInuse, runtime.NumGoroutine()
}

// connMemory measures one benchmark's connections: heap and stack after
// two collections, the stack before them, and the process's peak RSS
// growth (VmHWM, as scripts/bench measures fanscope), which also counts
// garbage and stacks grown while the connections were being opened. The
// in-process server's share of the peak is the same for every client.
type connMemory struct {
	conns  int
	h0, s0 uint64
	g0     int
	rss0   int64 // kB; -1 when the peak cannot be reset

	waitStack, waitHeap uint64 // before GC, while requests wait for an answer
}

func startConnMemory(conns int) *connMemory {
	m := &connMemory{conns: conns}
	m.h0, m.s0, m.g0 = memNow()
	m.rss0 = -1
	// Memory an earlier run freed would otherwise be reused without
	// raising RSS. Writing 5 to clear_refs resets VmHWM to the current RSS.
	debug.FreeOSMemory()
	if os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil {
		m.rss0 = procStatusKB("VmRSS")
	}
	return m
}

// waiting waits until srv holds every connection's request unanswered,
// notes the stack and heap of connections waiting for a response, and
// lets srv answer.
func (m *connMemory) waiting(b *testing.B, srv *idleSSEServer) {
	waitCount(b, &srv.requests, int64(m.conns), "requests")
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m.waitStack, m.waitHeap = ms.StackInuse, ms.HeapInuse
	srv.release()
}

// report is called once every connection is open and has seen an event.
func (m *connMemory) report(b *testing.B) {
	hwm := procStatusKB("VmHWM")
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	h1, s1, g1 := memNow()
	n := float64(m.conns)
	b.ReportMetric(float64(h1-m.h0)/n, "heapB/conn")
	b.ReportMetric(float64(s1-m.s0)/n, "stackB/conn")
	b.ReportMetric(float64(ms.StackInuse-m.s0)/n, "stackBeforeGCB/conn")
	b.ReportMetric(float64(m.waitStack-m.s0)/n, "waitingStackB/conn")
	b.ReportMetric(float64(m.waitHeap-m.h0)/n, "waitingHeapB/conn")
	b.ReportMetric(float64(g1-m.g0)/n, "goroutines/conn")
	if m.rss0 >= 0 && hwm >= 0 {
		b.ReportMetric(float64(hwm-m.rss0)*1024/n, "peakRSSB/conn")
	}
}

// held runs the part every connection benchmark shares: waits for every
// request, lets srv answer, waits for connected(), sends each connection
// one event, waits until events counts all of them, and reports.
func (m *connMemory) held(b *testing.B, srv *idleSSEServer, connected func(), events *atomic.Int64) {
	m.waiting(b, srv)
	connected()
	srv.broadcast(b, 1)
	waitCount(b, events, int64(m.conns), "events")
	m.report(b)
}

// procStatusKB reads a kB field of /proc/self/status, -1 when it cannot.
func procStatusKB(field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(v, "kB")), 10, 64)
			if err != nil {
				return -1
			}
			return n
		}
	}
	return -1
}

// waitCount waits until n reaches want.
func waitCount(b *testing.B, n *atomic.Int64, want int64, what string) {
	deadline := time.Now().Add(30 * time.Second)
	for n.Load() < want {
		if time.Now().After(deadline) {
			b.Fatalf("%s: %d of %d within 30s", what, n.Load(), want)
		}
		time.Sleep(time.Millisecond)
	}
}

// BenchmarkSSEConnMemory holds 1,000 ssex client connections per iteration,
// as `fanscope probe --sse-clients` does, sends each one event, and reports
// heap bytes, stack bytes, goroutines and peak RSS per connection. Run with
// -memprofile to see where the heap part goes.
func BenchmarkSSEConnMemory(b *testing.B) {
	const conns = 1000
	if os.Getenv("BENCH_PROFILE_DIR") != "" {
		runtime.MemProfileRate = 1 // every allocation, so small per-connection objects show
	}
	srv := startIdleSSEServer(b)
	for b.Loop() {
		ctx, cancel := context.WithCancel(context.Background())
		q := feed.NewQueue(0)
		var events atomic.Int64
		go func() {
			var spare []feed.Record
			for {
				got := q.Take(ctx, spare)
				if got == nil {
					return
				}
				for _, r := range got {
					if r.Kind == feed.KindEvent {
						events.Add(1)
					}
				}
				spare = got
			}
		}()
		m := startConnMemory(conns)
		// The transport `fanscope probe --sse-clients` shares between its connections.
		tr, err := ssex.NewTransport("", false)
		if err != nil {
			b.Fatal(err)
		}
		var wg sync.WaitGroup
		clients := make([]*ssex.Client, conns)
		for i := range clients {
			c, err := ssex.NewClient(ssex.Config{Name: "bench", URL: srv.url(), Conn: i, Transport: tr})
			if err != nil {
				b.Fatal(err)
			}
			clients[i] = c
			wg.Add(1)
			go func() { defer wg.Done(); c.Run(ctx, q) }()
		}
		m.held(b, srv, func() {
			for _, c := range clients {
				select {
				case <-c.Connected():
				case <-time.After(30 * time.Second):
					b.Fatal("a client did not connect within 30s")
				}
			}
		}, &events)
		writeHeldProfiles(b)
		cancel()
		wg.Wait()
		srv.close()
		srv = startIdleSSEServer(b)
	}
}

// writeHeldProfiles writes heap and goroutine profiles while the
// connections are held, when $BENCH_PROFILE_DIR is set (the heap profile
// then records every allocation).
func writeHeldProfiles(b *testing.B) {
	dir := os.Getenv("BENCH_PROFILE_DIR")
	if dir == "" {
		return
	}
	for _, name := range []string{"heap", "goroutine"} {
		f, err := os.Create(filepath.Join(dir, "held-"+name+".prof"))
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.Lookup(name).WriteTo(f, 0); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}

// BenchmarkMinimalConnMemory is the same for the minimal net/http client
// of the fan-out baseline, for comparison.
func BenchmarkMinimalConnMemory(b *testing.B) {
	const conns = 1000
	srv := startIdleSSEServer(b)
	for b.Loop() {
		ctx, cancel := context.WithCancel(context.Background())
		m := startConnMemory(conns)
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: -1, DisableCompression: true}}
		var wg, ready sync.WaitGroup
		var events atomic.Int64
		ready.Add(conns)
		for range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequestWithContext(ctx, "GET", srv.url(), nil)
				resp, err := client.Do(req)
				ready.Done()
				if err != nil {
					return
				}
				br := bufio.NewReader(resp.Body)
				for {
					line, err := br.ReadSlice('\n')
					if err != nil {
						return
					}
					if strings.HasPrefix(string(line), "data:") {
						events.Add(1)
					}
				}
			}()
		}
		m.held(b, srv, ready.Wait, &events)
		cancel()
		wg.Wait()
		srv.close()
		srv = startIdleSSEServer(b)
	}
}

// BenchmarkRawConnMemory sketches a lighter client connection for
// --sse-clients: no net/http Transport, so no readLoop and writeLoop
// goroutines and no transport buffers; one goroutine per connection dials,
// writes the GET, reads the response head with http.ReadResponse from a
// 2 KiB bufio.Reader and feeds the body to an ssex.Parser.
func BenchmarkRawConnMemory(b *testing.B) {
	const conns = 1000
	srv := startIdleSSEServer(b)
	addr := srv.ln.Addr().String()
	for b.Loop() {
		ctx, cancel := context.WithCancel(context.Background())
		m := startConnMemory(conns)
		var wg, ready sync.WaitGroup
		var events atomic.Int64
		ready.Add(conns)
		for range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var d net.Dialer
				c, err := d.DialContext(ctx, "tcp", addr)
				if err != nil {
					ready.Done()
					return
				}
				stop := context.AfterFunc(ctx, func() { c.Close() })
				defer stop()
				req, _ := http.NewRequest("GET", "http://"+addr+"/events", nil)
				req.Header.Set("Accept", "text/event-stream")
				if err := req.Write(c); err != nil {
					ready.Done()
					return
				}
				br := bufio.NewReaderSize(c, 2<<10)
				resp, err := http.ReadResponse(br, req)
				ready.Done()
				if err != nil {
					return
				}
				p := ssex.NewParser(0)
				buf := make([]byte, 2<<10)
				count := func(o ssex.Observation) {
					if o.Kind == ssex.ObsEvent {
						events.Add(1)
					}
				}
				for {
					n, err := resp.Body.Read(buf)
					if n > 0 {
						p.Feed(buf[:n], time.Now(), count)
					}
					if err != nil {
						return
					}
				}
			}()
		}
		m.held(b, srv, ready.Wait, &events)
		cancel()
		wg.Wait()
		srv.close()
		srv = startIdleSSEServer(b)
		addr = srv.ln.Addr().String()
	}
}
