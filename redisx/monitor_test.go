package redisx

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/internal/redistest"
)

// sdsRepr writes s as Redis's sdscatrepr does (src/sds.c), the quoting
// MONITOR uses for every argument.
func sdsRepr(s string) string {
	b := []byte{'"'}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '\\', '"':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		case '\a':
			b = append(b, '\\', 'a')
		case '\b':
			b = append(b, '\\', 'b')
		default:
			if c >= 0x20 && c < 0x7f {
				b = append(b, c)
			} else {
				b = fmt.Appendf(b, "\\x%02x", c)
			}
		}
	}
	return string(append(b, '"'))
}

func TestParseMonitorLine(t *testing.T) {
	tests := []struct {
		name string
		line string
		want MonitorEntry
		err  string
	}{
		{"publish", `1733090000.123456 [0 127.0.0.1:51234] "PUBLISH" "story:published" "{\"a\":1}"`,
			MonitorEntry{Time: time.Unix(1733090000, 123456000).UTC(), Addr: "127.0.0.1:51234", Args: []string{"PUBLISH", "story:published", `{"a":1}`}}, ""},
		{"escapes", `1.000001 [3 unix:/tmp/redis.sock] "publish" "a\"b" "x\\y\n\x01\xff\"\a\b\t\r \xc3\xa9"`,
			MonitorEntry{Time: time.Unix(1, 1000).UTC(), DB: 3, Addr: "unix:/tmp/redis.sock", Args: []string{"publish", `a"b`, "x\\y\n\x01\xff\"\a\b\t\r \xc3\xa9"}}, ""},
		{"lua", `1796167158.593440 [0 lua] "publish" "x" ""`,
			MonitorEntry{Time: time.Unix(1796167158, 593440000).UTC(), Addr: "lua", Args: []string{"publish", "x", ""}}, ""},
		{"ipv6", `5.5 [0 [::1]:6000] "PING"`,
			MonitorEntry{Time: time.Unix(5, 500000000).UTC(), Addr: "[::1]:6000", Args: []string{"PING"}}, ""},
		{"no timestamp", `[0 lua] "x"`, MonitorEntry{}, "timestamp"},
		{"bad timestamp", `12a.5 [0 lua] "x"`, MonitorEntry{}, "bad timestamp"},
		{"no command", `1.5 [0 lua]`, MonitorEntry{}, "no command"},
		{"unterminated", `1.5 [0 lua] "PUBLISH" "ch`, MonitorEntry{}, "unterminated"},
		{"bad hex", `1.5 [0 lua] "a\xzz"`, MonitorEntry{}, "bad \\x"},
		{"unknown escape", `1.5 [0 lua] "a\q"`, MonitorEntry{}, "unknown escape"},
		{"glued arguments", `1.5 [0 lua] "a""b"`, MonitorEntry{}, "no space"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseMonitorLine([]byte(tt.line), false)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("got error %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !got.Time.Equal(tt.want.Time) || got.DB != tt.want.DB || got.Addr != tt.want.Addr || fmt.Sprintf("%q", got.Args) != fmt.Sprintf("%q", tt.want.Args) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// FuzzMonitorQuoting checks that decoding undoes Redis's quoting for any
// bytes: sdsRepr is a transcription of sdscatrepr, and
// TestMonitorPayloadsRoundTrip checks the real server against the same
// decoder.
func FuzzMonitorQuoting(f *testing.F) {
	for _, s := range []string{"", `"`, `\`, "\n\r\t\a\b", "\x00\xff\x7f", "é", `{"a":"b\"c"}`, `\x41`} {
		f.Add(s, "ch")
	}
	f.Fuzz(func(t *testing.T, payload, channel string) {
		line := "1733090000.123456 [0 127.0.0.1:1] \"PUBLISH\" " + sdsRepr(channel) + " " + sdsRepr(payload)
		e, err := ParseMonitorLine([]byte(line), false)
		if err != nil {
			t.Fatalf("parse %q: %v", line, err)
		}
		if len(e.Args) != 3 || e.Args[1] != channel || e.Args[2] != payload {
			t.Fatalf("got %q, want channel %q payload %q", e.Args, channel, payload)
		}
		head, err := ParseMonitorLine([]byte(line), true)
		if err != nil || len(head.Args) != 2 || head.Args[1] != channel {
			t.Fatalf("head only: got %q, %v", head.Args, err)
		}
	})
}

func TestGlobMatchAgainstRedis(t *testing.T) {
	s := redistest.Start(t)
	c := open(t, fastOptions(s.URL()))
	names := []string{"story:published", "story:deleted", "story/x", "a", "ab", "abc", "a*c", "a?c", "[x]", "h^llo", "hallo", "hbllo", "h-llo", `back\slash`, ""}
	sub := subscribe(t, c, Subscription{Channels: names[:len(names)-1]}, newCollector())
	_ = sub
	patterns := []string{"*", "story:*", "story*", "*:*", "a?", "a??", "a[bc]c", "a[^b]*", "h[a-b]llo", "h[b-a]llo", "h[^a]llo",
		`a\*c`, `a\?c`, `\[x\]`, "[[]x]", "h[\\^]llo", "*llo", "**", "a*", `back\\slash`, "?", "", "h[-]llo"}
	for _, p := range patterns {
		got := map[string]bool{}
		for _, n := range names {
			if GlobMatch(p, n) {
				got[n] = true
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		want, err := c.ChannelNames(ctx, p, false)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range want {
			if !got[n] {
				t.Errorf("pattern %q: Redis matches %q, GlobMatch does not", p, n)
			}
			delete(got, n)
		}
		for n := range got {
			if n != "" {
				t.Errorf("pattern %q: GlobMatch matches %q, Redis does not", p, n)
			}
		}
	}
}

// startMonitor runs m until the test ends and waits until it is connected.
func startMonitor(t *testing.T, m *Monitor, sink feed.Sink) <-chan error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, sink) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run ended with %v, want nil when its context ends", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return within 10s of its context ending")
		}
	})
	select {
	case <-m.Connected():
	case err := <-done:
		t.Fatalf("Run ended before connecting: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatalf("monitor did not connect within 15s; status %+v", m.Status())
	}
	return done
}

func publishes(recs []feed.Record) []feed.Record {
	var out []feed.Record
	for _, r := range recs {
		if r.Kind == feed.KindPublish {
			out = append(out, r)
		}
	}
	return out
}

func TestMonitorPayloadsRoundTrip(t *testing.T) {
	s := redistest.Start(t)
	c := open(t, fastOptions(s.URL()))
	col := newCollector()
	startMonitor(t, c.NewMonitor(MonitorFilter{Channels: []string{"ch", `q"uo\te` + "\n\xff"}}), col)
	rng := rand.New(rand.NewPCG(1, 2))
	payloads := []string{"", `"`, `\`, `\\"\"`, "line1\nline2\r\n", "\a\b\t\x00\x7f\x80\xff", "caf\xc3\xa9 \xe9t\xe9", `{"storyId":"s1","t":"a \"q\""}`, `\x41 is not A`}
	for i := 0; i < 200; i++ {
		b := make([]byte, rng.IntN(64))
		for j := range b {
			b[j] = byte(rng.IntN(256))
		}
		payloads = append(payloads, string(b))
	}
	big := make([]byte, 1<<20)
	for j := range big {
		big[j] = byte(rng.IntN(256))
	}
	payloads = append(payloads, string(big))
	for i, p := range payloads {
		ch := "ch"
		if i%3 == 1 {
			ch = `q"uo\te` + "\n\xff"
		}
		publish(t, c, ch, p)
	}
	publish(t, c, "other", "filtered out")
	publish(t, c, "ch", "last")
	col.waitFor(t, 30*time.Second, "every publish", func(recs []feed.Record) bool {
		return len(publishes(recs)) >= len(payloads)+1
	})
	got := publishes(col.snapshot())
	if len(got) != len(payloads)+1 {
		t.Fatalf("got %d publish records, want %d (the filtered channel must not show)", len(got), len(payloads)+1)
	}
	for i, p := range payloads {
		r := got[i]
		if r.Data != p {
			t.Errorf("payload %d: got %q, want %q", i, trunc(r.Data), trunc(p))
		}
		if r.Source != feed.SourceMonitor || r.Client == "" || r.ServerTS.IsZero() {
			t.Errorf("payload %d: record %+v lacks source, client or server time", i, r)
		}
	}
}

func trunc(s string) string {
	if len(s) > 80 {
		return s[:80] + fmt.Sprintf("…(%d bytes)", len(s))
	}
	return s
}

func TestMonitorClientNames(t *testing.T) {
	s := redistest.Start(t)
	c := open(t, fastOptions(s.URL()))
	// This publisher is named before MONITOR starts: only CLIENT LIST knows.
	o := fastOptions(s.URL())
	o.ClientName = "backend-1"
	early := open(t, o)
	col := newCollector()
	m := c.NewMonitor(MonitorFilter{Patterns: []string{"story:*"}})
	startMonitor(t, m, col)
	publish(t, early, "story:published", "from backend-1")
	// This one names itself while MONITOR watches.
	s.CLI("EVAL", "return 1", "0") // unrelated traffic
	o.ClientName = "backend-2"
	late := open(t, o)
	publish(t, late, "story:published", "from backend-2")
	publish(t, c, "story:published", "from fanscope")
	s.CLI("PUBLISH", "story:published", "from redis-cli")
	col.waitFor(t, 15*time.Second, "four publishes", func(recs []feed.Record) bool { return len(publishes(recs)) >= 4 })
	want := map[string]string{"from backend-1": "backend-1", "from backend-2": "backend-2", "from fanscope": "fanscope", "from redis-cli": ""}
	for _, r := range publishes(col.snapshot()) {
		if name, ok := want[r.Data]; !ok || r.ClientName != name {
			t.Errorf("publish %q by %s: client_name %q, want %q", r.Data, r.Client, r.ClientName, name)
		}
		if !strings.HasPrefix(r.Client, "127.0.0.1:") {
			t.Errorf("publish %q: client %q, want the publisher's address", r.Data, r.Client)
		}
		local, ok := m.LocalTime(&r)
		if !ok {
			t.Errorf("no clock offset for %q", r.Data)
		} else if d := r.TS.Sub(local); d < 0 || d > 10*time.Second {
			t.Errorf("publish %q seen %s after its corrected server time, want a small positive delay", r.Data, d)
		}
	}
	st := m.Status()
	if st.State != feed.StateConnected || st.Events != 4 || st.Path() == "" {
		t.Errorf("status %+v, want connected with 4 events", st)
	}
}

func TestMonitorRefused(t *testing.T) {
	tests := []struct {
		name   string
		config []string
		acl    bool
		want   error
		text   string
	}{
		{"acl without +monitor", nil, true, ErrNoPerm, "'monitor'"},
		{"renamed", []string{`rename-command MONITOR ""`}, false, ErrMonitorDisabled, "disabled or renamed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := redistest.Start(t, tt.config...)
			url := s.URL()
			if tt.acl {
				s.CLI("ACL", "SETUSER", "watcher", "on", ">watcher-pw", "allchannels", "~*", "+@all", "-monitor")
				url = "redis://watcher:watcher-pw@" + s.Addr()
			}
			c := open(t, fastOptions(url))
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			col := newCollector()
			m := c.NewMonitor(MonitorFilter{})
			err := m.Run(ctx, col)
			if ctx.Err() != nil {
				t.Fatalf("Run hung until the test's deadline")
			}
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.text) {
				t.Fatalf("got %v, want %v naming %q", err, tt.want, tt.text)
			}
			if strings.Contains(err.Error(), "watcher-pw") {
				t.Errorf("error shows the password: %v", err)
			}
			if st := m.Status(); st.State != feed.StateFailed || st.Error == "" {
				t.Errorf("status %+v, want failed with the reason", st)
			}
			select {
			case <-m.Connected():
				t.Errorf("Connected closed for a refused MONITOR")
			default:
			}
		})
	}
}

func TestMonitorHealsAfterRestart(t *testing.T) {
	s := redistest.Start(t)
	c := open(t, fastOptions(s.URL()))
	col := newCollector()
	m := c.NewMonitor(MonitorFilter{Channels: []string{"ch"}})
	startMonitor(t, m, col)
	s.Stop()
	col.waitFor(t, 15*time.Second, "disconnected after the freeze", func(recs []feed.Record) bool {
		return hasState(recs, feed.StateDisconnected, 0)
	})
	s.Restart() // thaws and kills it first
	// MONITOR does not replay: publish only once the new server has the
	// monitor connected.
	deadline := time.Now().Add(15 * time.Second)
	for !monitoring(s.CLI("CLIENT", "LIST")) {
		if time.Now().After(deadline) {
			t.Fatalf("monitor did not reconnect to the restarted server; records:\n%s", describe(col.snapshot()))
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.CLI("PUBLISH", "ch", "after restart")
	col.waitFor(t, 15*time.Second, "the publish after the restart", func(recs []feed.Record) bool {
		p := publishes(recs)
		return len(p) == 1 && p[0].Data == "after restart"
	})
	if st := m.Status(); st.Reconnects < 1 {
		t.Errorf("status %+v, want a reconnect counted", st)
	}
}

func TestMonitorCluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	o := fastOptions(cl.URLs()[0])
	o.Cluster = true
	c := open(t, o)
	col := newCollector()
	m := c.NewMonitor(MonitorFilter{})
	startMonitor(t, m, col)
	if st := m.Status(); len(st.Details) != 3 {
		t.Fatalf("status details %q, want one line per primary", st.Details)
	}
	for i, n := range cl.Nodes {
		n.CLI("PUBLISH", "story:published", fmt.Sprintf("via node %d", i))
	}
	// SPUBLISH goes to the slot's owner.
	owner := cl.Owner(cl.Slot("{s}feed"))
	owner.CLI("SPUBLISH", "{s}feed", "sharded")
	col.waitFor(t, 15*time.Second, "every node's publish", func(recs []feed.Record) bool { return len(publishes(recs)) >= 4 })
	seen := map[string]string{}
	for _, r := range publishes(col.snapshot()) {
		seen[r.Data] = r.Target
		if r.Data == "sharded" && (!r.Shard || r.Channel != "{s}feed") {
			t.Errorf("SPUBLISH record %+v, want shard channel {s}feed", r)
		}
	}
	for i, n := range cl.Nodes {
		if got := seen[fmt.Sprintf("via node %d", i)]; got != n.Addr() {
			t.Errorf("publish via node %d seen on %q, want %s", i, got, n.Addr())
		}
	}
	if seen["sharded"] != owner.Addr() {
		t.Errorf("SPUBLISH seen on %q, want %s", seen["sharded"], owner.Addr())
	}
}

func TestBestOffset(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	ms := time.Millisecond
	tests := []struct {
		name    string
		samples []ClockSample
		offset  time.Duration
		rtt     time.Duration
		err     bool
	}{
		{"one sample, server ahead", []ClockSample{{t0, t0.Add(2 * ms), t0.Add(101 * ms)}}, 100 * ms, 2 * ms, false},
		{"smallest round trip wins", []ClockSample{
			{t0, t0.Add(10 * ms), t0.Add(-45 * ms)},
			{t0.Add(20 * ms), t0.Add(21 * ms), t0.Add(-29500 * time.Microsecond)},
			{t0.Add(30 * ms), t0.Add(34 * ms), t0.Add(0)},
		}, -50 * ms, ms, false},
		{"clock step ignored", []ClockSample{{t0, t0.Add(-ms), t0}, {t0, t0.Add(4 * ms), t0.Add(2 * ms)}}, 0, 4 * ms, false},
		{"nothing usable", []ClockSample{{t0, t0.Add(-ms), t0}}, 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := BestOffset(tt.samples)
			if tt.err {
				if err == nil {
					t.Fatalf("got %+v, want an error", got)
				}
				return
			}
			if err != nil || got.Offset != tt.offset || got.RTT != tt.rtt {
				t.Fatalf("got %+v, %v; want offset %s rtt %s", got, err, tt.offset, tt.rtt)
			}
			if server := got.At.Add(got.Offset); !got.Local(server).Equal(got.At) {
				t.Errorf("Local(%s) = %s, want %s", server, got.Local(server), got.At)
			}
		})
	}
}

func TestClockOffsetSameMachine(t *testing.T) {
	s := redistest.Start(t)
	c := open(t, fastOptions(s.URL()))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	off, err := c.ClockOffset(ctx, 5)
	if err != nil {
		t.Fatal(err)
	}
	// The server reads the same clock somewhere inside the round trip and
	// truncates to microseconds, so the midpoint is off by at most RTT/2.
	if bound := off.RTT/2 + 2*time.Microsecond; off.Offset > bound || off.Offset < -bound {
		t.Fatalf("offset %s with rtt %s: beyond ±%s on one machine", off.Offset, off.RTT, bound)
	}
	if off.Samples != 5 {
		t.Errorf("samples %d, want 5", off.Samples)
	}
}

func TestMonitorFollowsSentinelFailover(t *testing.T) {
	st := redistest.StartSentinel(t, "mon")
	c := open(t, fastOptions(st.URL()).withSentinel("mon"))
	col := newCollector()
	m := c.NewMonitor(MonitorFilter{Channels: []string{"ch"}})
	startMonitor(t, m, col)
	st.Primary.CLI("PUBLISH", "ch", "before")
	st.Failover()
	newPrimary := st.Primary.Addr()
	deadline := time.Now().Add(30 * time.Second)
	for {
		d := m.Status().Details
		if len(d) == 1 && strings.HasPrefix(d[0], newPrimary+" connected") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("monitor does not follow the new primary %s: %q", newPrimary, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The old primary is a replica now: its MONITOR would repeat this
	// PUBLISH, replicated; it must show once.
	st.Primary.CLI("PUBLISH", "ch", "after")
	st.Primary.CLI("PUBLISH", "ch", "marker")
	col.waitFor(t, 15*time.Second, "the publishes on the new primary", func(recs []feed.Record) bool {
		p := publishes(recs)
		return len(p) > 0 && p[len(p)-1].Data == "marker"
	})
	var got []string
	for _, r := range publishes(col.snapshot()) {
		got = append(got, r.Data)
	}
	if fmt.Sprint(got) != "[before after marker]" {
		t.Fatalf("publishes %q, want before, after, marker once each", got)
	}
}

// monitoring reports whether CLIENT LIST output shows fanscope's MONITOR
// connection in monitor mode (flag O).
func monitoring(clientList string) bool {
	for _, line := range strings.Split(clientList, "\n") {
		if strings.Contains(line, " name=fanscope-monitor ") && strings.Contains(line, " flags=O ") {
			return true
		}
	}
	return false
}
