package ssex

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/internal/feedtest"
)

// TestManyConnectionsOneTransport opens 1,000 connections to one host
// through one shared transport (fanscope probe --sse-clients 1000): every
// one must connect and receive every event.
func TestManyConnectionsOneTransport(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 1,000 connections")
	}
	const conns, events = 1000, 5
	release := make(chan struct{})
	var open atomic.Int32
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		open.Add(1)
		streamHeaders(w)
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		for i := 1; i <= events; i++ {
			write(w, fmt.Sprintf("id: %d\ndata: e%d\n\n", i, i))
		}
		<-r.Context().Done()
	}))
	tr, err := NewTransport("", false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.CloseIdleConnections)

	var got atomic.Int64
	sink := feed.SinkFunc(func(r feed.Record) {
		if r.Kind == feed.KindEvent {
			got.Add(1)
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, conns)
	clients := make([]*Client, conns)
	for i := range clients {
		c, err := NewClient(Config{Name: "load", URL: srv.URL, Conn: i, Transport: tr})
		if err != nil {
			t.Fatal(err)
		}
		clients[i] = c
		go func() { done <- c.Run(ctx, sink) }()
	}
	t.Cleanup(func() {
		cancel()
		for range conns {
			<-done
		}
	})
	deadline := time.After(2 * feedtest.Eventually)
	for i, c := range clients {
		select {
		case <-c.Connected():
		case <-deadline:
			t.Fatalf("connection %d of %d not connected; %d open at the server", i, conns, open.Load())
		}
	}
	close(release)
	for got.Load() < conns*events {
		select {
		case <-deadline:
			t.Fatalf("events: got %d, want %d", got.Load(), conns*events)
		case <-time.After(10 * time.Millisecond):
		}
	}
	if n := open.Load(); n != conns {
		t.Errorf("requests at the server: got %d, want %d (one per connection, no reconnects)", n, conns)
	}
	for i, c := range clients {
		if d := waitDiag(t, c, eventsAtLeast(events)); d.Events != events || d.Connects != 1 || d.LastEventID != fmt.Sprint(events) {
			t.Fatalf("connection %d: got %d events over %d connections, last id %q", i, d.Events, d.Connects, d.LastEventID)
		}
	}
}

// BenchmarkIdleConnectionMemory reports the heap and stack in use per
// connected, idle connection. The test server runs in this process too, so
// it first measures the server's share with bare TCP clients (a GET and
// nothing else), then the same number of Clients: "client-bytes/conn" is
// the difference, "total-bytes/conn" both ends together.
func BenchmarkIdleConnectionMemory(b *testing.B) {
	var opened atomic.Int32
	srv := newServer(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		streamHeaders(w)
		opened.Add(1)
		defer opened.Add(-1)
		<-r.Context().Done()
	}))
	const conns = 500
	waitOpened := func(n int32) {
		for opened.Load() < n {
			time.Sleep(time.Millisecond)
		}
	}

	inUse := func() int64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m)
		return int64(m.HeapInuse + m.StackInuse)
	}
	base := inUse()
	bare := make([]net.Conn, conns)
	for i := range bare {
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		if _, err := conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")); err != nil {
			b.Fatal(err)
		}
		bare[i] = conn
	}
	waitOpened(conns)
	serverOnly := inUse() - base
	for _, conn := range bare {
		conn.Close()
	}

	tr, err := NewTransport("", false)
	if err != nil {
		b.Fatal(err)
	}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for opened.Load() > 0 {
		time.Sleep(time.Millisecond) // let the server drop the bare connections
	}
	base = inUse()
	clients := make([]*Client, conns)
	for i := range clients {
		c, err := NewClient(Config{URL: srv.URL, Conn: i, Transport: tr})
		if err != nil {
			b.Fatal(err)
		}
		clients[i] = c
		go func() { _ = c.Run(ctx, feed.SinkFunc(func(feed.Record) {})) }()
	}
	for _, c := range clients {
		<-c.Connected()
	}
	total := inUse() - base
	for b.Loop() {
	}
	b.ReportMetric(float64(total)/conns, "total-bytes/conn")
	b.ReportMetric(float64(total-serverOnly)/conns, "client-bytes/conn")
}

// BenchmarkStream measures the read loop: one connection, b.N small events.
func BenchmarkStream(b *testing.B) {
	chunk := []byte{}
	for i := range 100 {
		chunk = fmt.Appendf(chunk, "event: story-published\nid: %d\ndata: {\"storyId\":\"s%d\",\"title\":\"a story\"}\n\n", i, i)
	}
	start := make(chan int, 1)
	srv := newServer(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		streamHeaders(w)
		var n int
		select {
		case n = <-start:
		case <-r.Context().Done():
			return
		}
		for sent := 0; sent < n; sent += 100 {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	var got atomic.Int64
	done := make(chan struct{})
	want := int64((b.N + 99) / 100 * 100)
	sink := feed.SinkFunc(func(r feed.Record) {
		if r.Kind == feed.KindEvent && got.Add(1) == want {
			close(done)
		}
	})
	c, err := NewClient(Config{URL: srv.URL})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = c.Run(ctx, sink) }()
	<-c.Connected()
	b.SetBytes(int64(len(chunk) / 100))
	b.ResetTimer()
	start <- b.N
	<-done
}
