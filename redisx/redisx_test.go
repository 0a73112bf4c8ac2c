package redisx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/internal/redistest"
)

func TestParseEndpoint(t *testing.T) {
	tests := []struct {
		name, url string
		want      string // Target
		loopback  bool
		err       string // substring of the error; empty means no error
	}{
		{"plain", "redis://127.0.0.1:6379", "redis://127.0.0.1:6379/0", true, ""},
		{"default port", "redis://localhost", "redis://localhost:6379/0", true, ""},
		{"bare host:port", "10.0.0.5:7000", "redis://10.0.0.5:7000/0", false, ""},
		{"acl user and db", "redis://app:s3cret@10.0.0.5:6379/2", "redis://app:***@10.0.0.5:6379/2", false, ""},
		{"password only", "redis://:s3cret@[::1]:6379", "redis://:***@[::1]:6379/0", true, ""},
		{"user only", "redis://app@127.0.0.1:6379", "redis://app@127.0.0.1:6379/0", true, ""},
		{"db query", "redis://127.0.0.1:6379?db=3", "redis://127.0.0.1:6379/3", true, ""},
		{"tls", "rediss://u:p@cache.example.com:6380/1", "rediss://u:***@cache.example.com:6380/1", false, ""},
		{"unix", "unix:///run/redis/redis.sock", "unix:///run/redis/redis.sock", true, ""},
		{"unix with auth and db", "unix://u:pw@/run/redis.sock?db=4", "unix://u:***@/run/redis.sock?db=4", true, ""},
		{"bad scheme", "http://127.0.0.1:6379", "", false, "unsupported scheme"},
		{"bad port", "redis://u:s3cret@127.0.0.1:notaport", "", false, "malformed URL"},
		{"bad db", "redis://127.0.0.1:6379/x", "", false, "bad database number"},
		{"unknown param", "redis://127.0.0.1:6379?dial_timeout=3", "", false, "unsupported URL parameter"},
		{"unix without path", "unix://", "", false, "no socket path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ep, err := parseEndpoint(tt.url, Options{})
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("got error %v, want one containing %q", err, tt.err)
				}
				if strings.Contains(err.Error(), "s3cret") {
					t.Fatalf("error %q shows the password", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want none", err)
			}
			if got := ep.String(); got != tt.want {
				t.Errorf("got target %q, want %q", got, tt.want)
			}
			if got := ep.loopback(); got != tt.loopback {
				t.Errorf("got loopback %v, want %v", got, tt.loopback)
			}
		})
	}
}

func TestOpenUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		o    Options
	}{
		{"no url", Options{}},
		{"malformed url with password", Options{URLs: []string{"redis://u:s3cret@127.0.0.1:port"}}},
		{"tls options on redis://", Options{URLs: []string{"redis://127.0.0.1:6379"}, TLSInsecure: true}},
		{"missing CA file", Options{URLs: []string{"rediss://127.0.0.1:6379"}, TLSCA: "/nonexistent/ca.pem"}},
		{"cluster and sentinel", Options{URLs: []string{"redis://127.0.0.1:6379"}, Cluster: true, SentinelMaster: "m"}},
		{"unix in a cluster", Options{URLs: []string{"unix:///tmp/a.sock", "redis://127.0.0.1:6379"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Open(context.Background(), tt.o)
			if !errors.Is(err, ErrUsage) {
				t.Fatalf("got %v, want an ErrUsage", err)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("error %q shows the password", err)
			}
		})
	}
}

func TestOpenUnreachable(t *testing.T) {
	port := redistest.FreePort(t)
	url := fmt.Sprintf("redis://app:s3cret@127.0.0.1:%d", port)
	start := time.Now()
	_, err := Open(context.Background(), Options{URLs: []string{url}})
	took := time.Since(start)
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("got %v, want an ErrUnreachable", err)
	}
	want := fmt.Sprintf("connect redis://app:***@127.0.0.1:%d/0: connection refused (is redis-server running there?)", port)
	if err.Error() != want {
		t.Errorf("got %q, want %q", err, want)
	}
	// "Within a few seconds": a generous bound that still catches a retry storm.
	if took > 10*time.Second {
		t.Errorf("took %s to fail", took)
	}

	tests := []struct {
		name, url, want string
	}{
		{"no socket", "unix:///nonexistent/redis.sock", "no such socket file"},
		{"unknown host", "redis://nonexistent.invalid:6379", "nonexistent.invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Open(context.Background(), Options{URLs: []string{tt.url}})
			if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an ErrUnreachable saying %q", err, tt.want)
			}
		})
	}

	t.Run("frozen server", func(t *testing.T) {
		s := redistest.Start(t)
		s.Stop()
		defer s.Cont()
		_, err := Open(context.Background(), Options{URLs: []string{s.URL()}, DialTimeout: time.Second})
		if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "no answer in time") {
			t.Fatalf("got %v, want an ErrUnreachable saying there was no answer", err)
		}
	})
}

func TestOpenAuthErrors(t *testing.T) {
	s := redistest.Start(t, "requirepass right-password")
	tests := []struct {
		name, url, want string
	}{
		{"wrong password", fmt.Sprintf("redis://:wrong-password@%s", s.Addr()), "wrong user name or password"},
		{"wrong acl user", fmt.Sprintf("redis://nobody:wrong-password@%s", s.Addr()), "wrong user name or password"},
		{"no password", s.URL(), "requires a password"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			_, err := Open(context.Background(), Options{URLs: []string{tt.url}})
			if !errors.Is(err, ErrAuth) {
				t.Fatalf("got %v, want an ErrAuth", err)
			}
			if time.Since(start) > 10*time.Second {
				t.Errorf("took %s to fail", time.Since(start))
			}
			msg := err.Error()
			if strings.Contains(msg, "wrong-password") {
				t.Errorf("error %q shows the password", msg)
			}
			if !strings.Contains(msg, s.Addr()) || !strings.Contains(msg, tt.want) {
				t.Errorf("got %q, want it to name %s and say %q", msg, s.Addr(), tt.want)
			}
			if strings.Contains(tt.url, "wrong-password") && !strings.Contains(msg, ":***@") {
				t.Errorf("got %q, want the password shown as ***", msg)
			}
		})
	}
	c := open(t, Options{URLs: []string{fmt.Sprintf("redis://:right-password@%s", s.Addr())}})
	if got, want := c.Target(), fmt.Sprintf("redis://:***@%s/0", s.Addr()); got != want {
		t.Errorf("got target %q, want %q", got, want)
	}
}

func TestDelivery(t *testing.T) {
	s := redistest.Start(t)
	c := open(t, fastOptions(s.URL()))
	if !c.Loopback() {
		t.Errorf("got Loopback false for %s, want true", c.Target())
	}
	col := newCollector()
	sub := subscribe(t, c, Subscription{
		Channels:      []string{"story:published", "other"},
		Patterns:      []string{"story:*"},
		ShardChannels: []string{"shard:1"},
	}, col)
	if got := sub.Stats().State; got != feed.StateSubscribed {
		t.Errorf("got state %q after Subscribe, want subscribed", got)
	}

	if n := publish(t, c, "story:published", `{"storyId":"s1"}`); n != 2 {
		t.Errorf("got %d receivers for story:published, want 2 (channel and pattern)", n)
	}
	publish(t, c, "story:liked", "like")
	publish(t, c, "other", "o")
	n, err := c.SPublish(context.Background(), "shard:1", "sharded")
	if err != nil || n != 1 {
		t.Errorf("SPublish: got %d, %v; want 1 receiver", n, err)
	}
	col.waitFor(t, 5*time.Second, "5 messages", func(r []feed.Record) bool { return countMessages(r, "") >= 5 })

	type msg struct {
		Channel, Pattern, Data string
		Shard                  bool
	}
	got := map[msg]int{}
	for _, r := range col.messages() {
		if r.Source != feed.SourceRedis || r.TS.IsZero() {
			t.Errorf("got record %+v, want Source redis and a receive time", r)
		}
		got[msg{r.Channel, r.Pattern, r.Data, r.Shard}]++
	}
	want := map[msg]int{
		{"story:published", "", `{"storyId":"s1"}`, false}:        1,
		{"story:published", "story:*", `{"storyId":"s1"}`, false}: 1,
		{"story:liked", "story:*", "like", false}:                 1,
		{"other", "", "o", false}:                                 1,
		{"shard:1", "", "sharded", true}:                          1,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got messages %v, want %v", got, want)
	}

	states := col.states()
	if len(states) < 2 || states[0].State != feed.StateConnecting || states[0].Target != c.Target() {
		t.Errorf("got first state records %s, want connecting with target %s", describe(states), c.Target())
	}
	st := sub.Stats()
	if st.Messages != 5 || st.Conns != 2 || st.LastMessage.IsZero() {
		t.Errorf("got stats %+v, want 5 messages on 2 connections", st)
	}
}

func TestNumSubMatchesCLI(t *testing.T) {
	s := redistest.Start(t)
	c := open(t, fastOptions(s.URL()))
	subscribe(t, c, Subscription{Channels: []string{"a", "b"}}, newCollector())
	subscribe(t, c, Subscription{Channels: []string{"a"}}, newCollector())
	got, err := c.NumSub(context.Background(), "a", "b", "none")
	if err != nil {
		t.Fatal(err)
	}
	cli := strings.Fields(s.CLI("PUBSUB", "NUMSUB", "a", "b", "none"))
	want := map[string]int64{}
	for i := 0; i+1 < len(cli); i += 2 {
		n, _ := strconv.ParseInt(cli[i+1], 10, 64)
		want[cli[i]] = n
	}
	if fmt.Sprint(got) != fmt.Sprint(want) || want["a"] != 2 || want["b"] != 1 {
		t.Errorf("got NumSub %v, want %v (redis-cli PUBSUB NUMSUB)", got, want)
	}
}

func TestKillAndRestart(t *testing.T) {
	s := redistest.Start(t)
	c := open(t, fastOptions(s.URL()))
	col := newCollector()
	sub := subscribe(t, c, Subscription{Channels: []string{"ch"}, ShardChannels: []string{"sh"}}, col)
	publish(t, c, "ch", "before")
	col.waitFor(t, 5*time.Second, "the first message", func(r []feed.Record) bool { return countMessages(r, "ch") == 1 })

	mark := len(col.snapshot())
	s.Kill()
	col.waitFor(t, 10*time.Second, "disconnected and reconnecting", func(r []feed.Record) bool {
		return hasState(r, feed.StateDisconnected, mark) && hasState(r, feed.StateReconnecting, mark)
	})
	s.Restart()
	col.waitFor(t, 15*time.Second, "resubscribed", func(r []feed.Record) bool {
		n := 0
		for _, x := range r[mark:] {
			if x.Kind == feed.KindState && x.State == feed.StateSubscribed {
				n++
			}
		}
		return n == 2 // the channel and the shard connection
	})
	publish(t, c, "ch", "after")
	if _, err := c.SPublish(context.Background(), "sh", "after"); err != nil {
		t.Fatal(err)
	}
	col.waitFor(t, 5*time.Second, "delivery after the restart", func(r []feed.Record) bool {
		return countMessages(r, "ch") == 2 && countMessages(r, "sh") == 1
	})

	var sawGap, sawAttempt bool
	for _, r := range col.states()[0:] {
		if r.State == feed.StateDisconnected && strings.Contains(r.Error, "may be lost") {
			sawGap = true
		}
		if r.State == feed.StateReconnecting && r.Attempt >= 1 {
			sawAttempt = true
		}
	}
	if !sawGap || !sawAttempt {
		t.Errorf("got states\n%s want a disconnected record warning of lost messages and numbered attempts", describe(col.states()))
	}
	st := sub.Stats()
	if st.Reconnects != 2 || st.Gaps != 2 || st.State != feed.StateSubscribed || st.GapTime <= 0 {
		t.Errorf("got stats %+v, want 2 reconnects, 2 gaps, subscribed", st)
	}
}

func TestFrozenServer(t *testing.T) {
	s := redistest.Start(t)
	c := open(t, Options{URLs: []string{s.URL()}}) // the default watchdog timing: PING after 1s, give up 2s later
	col := newCollector()
	sub := subscribe(t, c, Subscription{Channels: []string{"ch"}}, col)
	publish(t, c, "ch", "before")
	col.waitFor(t, 5*time.Second, "the first message", func(r []feed.Record) bool { return countMessages(r, "ch") == 1 })

	mark := len(col.snapshot())
	s.Stop()
	stopped := time.Now()
	col.waitFor(t, 10*time.Second, "the watchdog to notice", func(r []feed.Record) bool {
		return hasState(r, feed.StateDisconnected, mark)
	})
	t.Logf("watchdog noticed the frozen server after %s", time.Since(stopped).Round(time.Millisecond))
	var reason string
	for _, r := range col.states() {
		if r.State == feed.StateDisconnected {
			reason = r.Error
		}
	}
	if !strings.Contains(reason, "no reply to PING") || !strings.Contains(reason, "may be lost") {
		t.Errorf("got disconnect reason %q, want the watchdog's", reason)
	}
	time.Sleep(10*time.Second - time.Since(stopped))
	s.Cont()
	resumed := time.Now()
	col.waitFor(t, 15*time.Second, "resubscribed after SIGCONT", func(r []feed.Record) bool {
		for _, x := range r[mark:] {
			if x.Kind == feed.KindState && x.State == feed.StateSubscribed {
				return true
			}
		}
		return false
	})
	t.Logf("resubscribed %s after SIGCONT", time.Since(resumed).Round(time.Millisecond))
	publish(t, c, "ch", "after")
	col.waitFor(t, 5*time.Second, "delivery after SIGCONT", func(r []feed.Record) bool { return countMessages(r, "ch") == 2 })
	if st := sub.Stats(); st.Reconnects < 1 || st.Gaps < 1 {
		t.Errorf("got stats %+v, want a reconnect and a gap", st)
	}
}

func TestNoPermission(t *testing.T) {
	s := redistest.Start(t)
	s.CLI("ACL", "SETUSER", "limited", "on", ">limited-pw", "resetchannels", "&allowed", "+@all", "~*")
	c := open(t, Options{URLs: []string{fmt.Sprintf("redis://limited:limited-pw@%s", s.Addr())}})
	col := newCollector()
	_, err := c.Subscribe(context.Background(), Subscription{Channels: []string{"allowed", "forbidden"}}, col)
	if !errors.Is(err, ErrNoPerm) {
		t.Fatalf("got %v, want an ErrNoPerm", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, "forbidden") || !strings.Contains(msg, "limited:***@") || strings.Contains(msg, "limited-pw") {
		t.Errorf("got %q, want the channels and the masked target", msg)
	}
	_, err = c.Subscribe(context.Background(), Subscription{Patterns: []string{"*"}}, col)
	if !errors.Is(err, ErrNoPerm) {
		t.Errorf("pattern: got %v, want an ErrNoPerm", err)
	}
	subscribe(t, c, Subscription{Channels: []string{"allowed"}}, col)
}

func TestUnixSocket(t *testing.T) {
	s := redistest.Start(t)
	c := open(t, fastOptions("unix://"+s.Socket()))
	if got, want := c.Target(), "unix://"+s.Socket(); got != want {
		t.Errorf("got target %q, want %q", got, want)
	}
	col := newCollector()
	subscribe(t, c, Subscription{Channels: []string{"ch"}}, col)
	publish(t, c, "ch", "over the socket")
	col.waitFor(t, 5*time.Second, "the message", func(r []feed.Record) bool { return countMessages(r, "ch") == 1 })
}

func TestPayloadsPreserved(t *testing.T) {
	s := redistest.Start(t)
	c := open(t, fastOptions(s.URL()))
	big := bytes.Repeat([]byte("0123456789abcdef"), 10<<20/16)
	binary := make([]byte, 256)
	for i := range binary {
		binary[i] = byte(i)
	}
	tests := []struct {
		name, payload string
	}{
		{"10 MB", string(big)},
		{"binary non-UTF-8", string(binary) + "\xff\xfe\xc3\x28"},
		{"terminal escapes", "\x1b[2J\x1b[H\x1b]52;c;aGVsbG8=\x07\x1b[31mred\x1b[0m\r\n\x00end"},
		{"empty", ""},
	}
	col := newCollector()
	subscribe(t, c, Subscription{Channels: []string{"payload"}}, col)
	for i, tt := range tests {
		publish(t, c, "payload", tt.payload)
		col.waitFor(t, 10*time.Second, tt.name, func(r []feed.Record) bool { return countMessages(r, "payload") == i+1 })
		got := col.messages()[i].Data
		if got != tt.payload {
			t.Errorf("%s: got %d bytes (%.40q…), want %d bytes (%.40q…)", tt.name, len(got), got, len(tt.payload), tt.payload)
		}
	}
}

func TestPipelinedFlood(t *testing.T) {
	t.Run("sink", func(t *testing.T) { testPipelinedFlood(t, false) })
	t.Run("batch sink", func(t *testing.T) { testPipelinedFlood(t, true) })
}

func testPipelinedFlood(t *testing.T, batches bool) {
	const total = 100_000
	s := redistest.Start(t)
	c := open(t, fastOptions(s.URL()))
	col := newCollector()
	var sink feed.Sink = col
	bc := &batchCollector{collector: col}
	if batches {
		sink = bc
	}
	sub := subscribe(t, c, Subscription{Channels: []string{"flood"}}, sink)

	rc := redis.NewClient(&redis.Options{Addr: s.Addr()})
	defer rc.Close()
	ctx := context.Background()
	for start := 0; start < total; start += 10_000 {
		pipe := rc.Pipeline()
		for i := start; i < start+10_000; i++ {
			pipe.Publish(ctx, "flood", strconv.Itoa(i))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
	}
	col.waitFor(t, 60*time.Second, "every message", func(r []feed.Record) bool { return countMessages(r, "flood") >= total })
	msgs := col.messages()
	if len(msgs) != total {
		t.Fatalf("got %d messages, want %d", len(msgs), total)
	}
	for i, m := range msgs {
		if m.Data != strconv.Itoa(i) {
			t.Fatalf("message %d: got %q, want %q (out of order or lost)", i, m.Data, strconv.Itoa(i))
		}
		if i > 0 && m.TS.Before(msgs[i-1].TS) {
			t.Fatalf("message %d: receive time goes backwards", i)
		}
	}
	if st := sub.Stats(); st.Messages != total || st.Gaps != 0 {
		t.Errorf("got stats %+v, want %d messages and no gaps", st, total)
	}
	if batches && (bc.largest < 2 || bc.largest > maxBatch) {
		t.Errorf("largest batch: %d messages, want 2 to %d (10,000 pipelined messages fill many reads)", bc.largest, maxBatch)
	}
}

func TestPingRTTSampled(t *testing.T) {
	s := redistest.Start(t)
	o := fastOptions(s.URL())
	o.RTTInterval = 200 * time.Millisecond
	c := open(t, o)
	sub := subscribe(t, c, Subscription{Channels: []string{"ch"}}, newCollector())
	deadline := time.Now().Add(5 * time.Second)
	for sub.Stats().PingRTT == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	st := sub.Stats()
	if st.PingRTT <= 0 || st.LastPing.IsZero() {
		t.Errorf("got stats %+v, want a PING round trip", st)
	}
}

func TestSubscribeAuthError(t *testing.T) {
	s := redistest.Start(t)
	s.CLI("ACL", "SETUSER", "app", "on", ">first-pw", "allchannels", "+@all", "~*")
	c := open(t, Options{URLs: []string{fmt.Sprintf("redis://app:first-pw@%s", s.Addr())}})
	s.CLI("ACL", "SETUSER", "app", "resetpass", ">second-pw")
	_, err := c.Subscribe(context.Background(), Subscription{Channels: []string{"ch"}}, newCollector())
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("got %v, want an ErrAuth", err)
	}
	if msg := err.Error(); strings.Contains(msg, "first-pw") || !strings.Contains(msg, "app:***@") {
		t.Errorf("got %q, want the target with the password masked", msg)
	}
}
