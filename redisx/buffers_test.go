package redisx

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/fanscope/fanscope/internal/redistest"
)

func TestBufferWatch(t *testing.T) {
	limit := OutputBufferLimit{Available: true, Hard: 32 << 20, Soft: 8 << 20, SoftSeconds: 60}
	tight := OutputBufferLimit{Available: true, Hard: 1 << 20, Soft: 1 << 20, SoftSeconds: 0}
	slow := PubSubClient{ID: 7, Addr: "10.0.0.9:5000", Name: "sse-relay", OMem: 9 << 20}
	calm := PubSubClient{ID: 8, Addr: "10.0.0.9:5001", OMem: 0}
	filling := PubSubClient{ID: 9, Addr: "10.0.0.9:5002", OMem: 900 << 10}
	round := func(l OutputBufferLimit, disc string, clients ...PubSubClient) Introspection {
		in := Introspection{Limit: l, Clients: clients, Info: map[string]string{}}
		if disc != "" {
			in.Info[infoBufferDisconnections] = disc
		}
		return in
	}
	noList := round(limit, "")
	noList.Unavailable = []string{"CLIENT LIST: permission denied by ACL"}
	tests := []struct {
		name   string
		rounds []Introspection
		want   []string // substrings of the events of the last round, in order
	}{
		{"the first round only takes note", []Introspection{round(limit, "3", slow)}, nil},
		{"vanished above the soft limit",
			[]Introspection{round(limit, "", slow, calm), round(limit, "", calm)},
			[]string{"pub/sub client 10.0.0.9:5000 (sse-relay) disconnected by Redis (output buffer limit): its output buffer held 9.0 MiB, above the soft limit of 8.0 MiB (a subscriber that reads too slowly; client-output-buffer-limit pubsub 33554432 8388608 60)"}},
		{"vanished past half the hard limit when soft equals hard",
			[]Introspection{round(tight, "", filling), round(tight, "")},
			[]string{"10.0.0.9:5002 disconnected by Redis (output buffer limit): its output buffer held 900 KiB of the hard limit of 1.0 MiB"}},
		{"an ordinary disconnect says nothing",
			[]Introspection{round(limit, "", calm, filling), round(limit, "")}, nil},
		{"the counter rose: an event, and the fullest vanished client is named",
			[]Introspection{round(limit, "3", calm, filling), round(limit, "4")},
			[]string{"Redis disconnected 1 client(s) at the output buffer limit (INFO client_output_buffer_limit_disconnections 3 -> 4)",
				"10.0.0.9:5002 disconnected by Redis (output buffer limit): INFO client_output_buffer_limit_disconnections rose by 1 as it vanished"}},
		{"the counter rose with no pub/sub client gone (another class)",
			[]Introspection{round(limit, "3", calm), round(limit, "5", calm)},
			[]string{"Redis disconnected 2 client(s)"}},
		{"a restarted server's counter going down is no event",
			[]Introspection{round(limit, "9", calm), round(limit, "0", calm)}, nil},
		{"CLIENT LIST unreadable: no guess about vanished clients",
			[]Introspection{round(limit, "", slow), noList}, nil},
		{"after an unreadable round the last good list still counts",
			[]Introspection{round(limit, "", slow), noList, round(limit, "")},
			[]string{"10.0.0.9:5000 (sse-relay) disconnected by Redis"}},
		{"same address, new connection (new id): the old one vanished",
			[]Introspection{round(limit, "", slow), round(limit, "", PubSubClient{ID: 70, Addr: slow.Addr})},
			[]string{"10.0.0.9:5000 (sse-relay) disconnected by Redis"}},
		{"limit unknown: only the counter can tell",
			[]Introspection{round(OutputBufferLimit{}, "", slow), round(OutputBufferLimit{}, "")}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w BufferWatch
			var events []BufferEvent
			for _, in := range tt.rounds {
				events = w.Observe(in)
			}
			if len(events) != len(tt.want) {
				t.Fatalf("got %d events %+v, want %d", len(events), events, len(tt.want))
			}
			for i, e := range events {
				if !strings.Contains(e.Message, tt.want[i]) {
					t.Errorf("event %d: got %q, want it to contain %q", i, e.Message, tt.want[i])
				}
			}
		})
	}
}

// slowSubscriber subscribes on a raw connection that never reads again,
// named so that it can be found in CLIENT LIST.
func slowSubscriber(t *testing.T, addr, name, channel string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	// A small receive buffer, so Redis's output buffer fills sooner.
	_ = conn.(*net.TCPConn).SetReadBuffer(4096)
	fmt.Fprintf(conn, "CLIENT SETNAME %s\r\nSUBSCRIBE %s\r\n", name, channel)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(conn)
	for _, want := range []string{"+OK", "*3", "$9", "subscribe"} {
		line, err := r.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, want) {
			t.Fatalf("slow subscriber: got %q, %v; want %s", line, err, want)
		}
	}
	return conn
}

// A subscriber that never reads is cut off by Redis at
// client-output-buffer-limit pubsub 1mb 1mb 0; the radar's watch names it.
func TestBufferWatchSeesLimitDisconnect(t *testing.T) {
	s := redistest.Start(t, "client-output-buffer-limit pubsub 1mb 1mb 0")
	c := open(t, fastOptions(s.URL()))
	slowSubscriber(t, s.Addr(), "slowpoke", "flood")
	payload := strings.Repeat("x", 64<<10)
	var w BufferWatch
	ctx := context.Background()
	var seen int64
	for i := 0; i < 2000; i++ {
		in, err := c.Introspect(ctx, Subscription{Channels: []string{"flood"}})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			t.Logf("INFO %s: %q (Redis 7.2+ only)", infoBufferDisconnections, in.Info[infoBufferDisconnections])
		}
		for _, cl := range in.Clients {
			if cl.Name == "slowpoke" {
				seen = max(seen, cl.OMem)
			}
		}
		for _, e := range w.Observe(in) {
			t.Logf("event: %s", e.Message)
			if e.Client.Name == "slowpoke" && strings.Contains(e.Message, DisconnectedByLimit) {
				return
			}
		}
		publish(t, c, "flood", payload)
	}
	t.Fatalf("no output-buffer disconnect event after 2000 publishes of 64 KiB; the slow client's largest omem seen: %d", seen)
}
