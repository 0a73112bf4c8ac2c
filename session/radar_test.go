package session

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/fanscope/fanscope/internal/redistest"
	"github.com/fanscope/fanscope/redisx"
)

// TestSnapshotNamesOutputBufferDisconnect: a Pub/Sub client that never
// reads is cut off by Redis at the output buffer limit; the snapshot watch
// and serve read names it as such, instead of letting it vanish.
func TestSnapshotNamesOutputBufferDisconnect(t *testing.T) {
	srv := redistest.Start(t, "client-output-buffer-limit pubsub 1mb 1mb 0")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Open(ctx, Config{
		Redis:        &redisx.Options{URLs: []string{srv.URL()}},
		Subscription: redisx.Subscription{Channels: []string{"flood"}},
		Introspect:   100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	slow, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fmt.Fprint(slow, "*3\r\n$6\r\nCLIENT\r\n$7\r\nSETNAME\r\n$9\r\nslow-tab1\r\n*2\r\n$9\r\nSUBSCRIBE\r\n$5\r\nflood\r\n")
	// Let the radar see the slow client before the flood.
	deadline := time.Now().Add(40 * time.Second)
	for !strings.Contains(fmt.Sprint(s.Snapshot(time.Now()).Introspection.Clients), "slow-tab1") {
		if time.Now().After(deadline) {
			t.Fatal("the radar never listed the slow client")
		}
		time.Sleep(50 * time.Millisecond)
	}
	pub, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	go func() { _, _ = bufio.NewReader(pub).Discard(1 << 30) }()
	w := bufio.NewWriter(pub)
	payload := strings.Repeat("x", 32<<10)
	// Publish in small steps (so the radar sees the buffer grow) until the
	// kernel's socket buffers are full and Redis cuts the client off.
	for {
		snap := s.Snapshot(time.Now())
		for _, ev := range snap.BufferEvents {
			if strings.Contains(ev, redisx.DisconnectedByLimit) && strings.Contains(ev, "slow-tab1") {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no disconnect event naming slow-tab1; events %q, clients %v", snap.BufferEvents, snap.Introspection.Clients)
		}
		fmt.Fprintf(w, "*3\r\n$7\r\nPUBLISH\r\n$5\r\nflood\r\n$%d\r\n%s\r\n", len(payload), payload)
		_ = w.Flush()
		time.Sleep(20 * time.Millisecond)
	}
}
