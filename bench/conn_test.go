package main

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sync"
	"testing"
	"time"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/ssex"
)

// idleSSEServer accepts connections, answers each GET with a 200
// text/event-stream header and then holds the connection without a
// goroutine, so almost all memory in the process is the clients'.
type idleSSEServer struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
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
				c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\r\n: hi\n\n"))
				s.mu.Lock()
				s.conns = append(s.conns, c)
				s.mu.Unlock()
			}()
		}
	}()
	tb.Cleanup(s.close)
	return s
}

func (s *idleSSEServer) url() string { return "http://" + s.ln.Addr().String() + "/events" }

func (s *idleSSEServer) close() {
	s.ln.Close()
	s.mu.Lock()
	for _, c := range s.conns {
		c.Close()
	}
	s.conns = nil
	s.mu.Unlock()
}

func memNow() (heap, stack uint64, goroutines int) {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse, m.StackInuse, runtime.NumGoroutine()
}

// BenchmarkSSEConnMemory holds 1,000 ssex client connections per iteration,
// as `fanscope probe --sse-clients` does, and reports heap bytes, stack
// bytes and goroutines per connection. Run with -memprofile to see where
// the heap part goes.
func BenchmarkSSEConnMemory(b *testing.B) {
	const conns = 1000
	srv := startIdleSSEServer(b)
	for b.Loop() {
		ctx, cancel := context.WithCancel(context.Background())
		q := feed.NewQueue(0)
		go func() {
			var spare []feed.Record
			for {
				got := q.Take(ctx, spare)
				if got == nil {
					return
				}
				spare = got
			}
		}()
		h0, s0, g0 := memNow()
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
		for _, c := range clients {
			select {
			case <-c.Connected():
			case <-time.After(30 * time.Second):
				b.Fatal("a client did not connect within 30s")
			}
		}
		h1, s1, g1 := memNow()
		b.ReportMetric(float64(h1-h0)/conns, "heapB/conn")
		b.ReportMetric(float64(s1-s0)/conns, "stackB/conn")
		b.ReportMetric(float64(g1-g0)/conns, "goroutines/conn")
		writeHeldProfiles(b)
		cancel()
		wg.Wait()
		srv.close()
		srv = startIdleSSEServer(b)
	}
}

// writeHeldProfiles writes heap and goroutine profiles while the
// connections are held, when $BENCH_PROFILE_DIR is set.
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
		h0, s0, g0 := memNow()
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: -1, DisableCompression: true}}
		var wg, ready sync.WaitGroup
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
					if _, err := br.ReadSlice('\n'); err != nil {
						return
					}
				}
			}()
		}
		ready.Wait()
		h1, s1, g1 := memNow()
		b.ReportMetric(float64(h1-h0)/conns, "heapB/conn")
		b.ReportMetric(float64(s1-s0)/conns, "stackB/conn")
		b.ReportMetric(float64(g1-g0)/conns, "goroutines/conn")
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
		h0, s0, g0 := memNow()
		var wg, ready sync.WaitGroup
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
				for {
					n, err := resp.Body.Read(buf)
					if n > 0 {
						p.Feed(buf[:n], time.Now(), func(ssex.Observation) {})
					}
					if err != nil {
						return
					}
				}
			}()
		}
		ready.Wait()
		h1, s1, g1 := memNow()
		b.ReportMetric(float64(h1-h0)/conns, "heapB/conn")
		b.ReportMetric(float64(s1-s0)/conns, "stackB/conn")
		b.ReportMetric(float64(g1-g0)/conns, "goroutines/conn")
		cancel()
		wg.Wait()
		srv.close()
		srv = startIdleSSEServer(b)
		addr = srv.ln.Addr().String()
	}
}
