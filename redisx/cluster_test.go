package redisx

import (
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

// rawSubscribe holds a plain SUBSCRIBE on one node, like an app server's.
func rawSubscribe(t *testing.T, s *redistest.Server, channel string) {
	t.Helper()
	rc := redis.NewClient(&redis.Options{Addr: s.Addr(), Protocol: 2})
	ps := rc.Subscribe(context.Background(), channel)
	if _, err := ps.ReceiveTimeout(context.Background(), 5*time.Second); err != nil {
		t.Fatalf("subscribe on %s: %v", s.Addr(), err)
	}
	t.Cleanup(func() { _ = ps.Close(); _ = rc.Close() })
}

func cliNumSub(t *testing.T, s *redistest.Server, channel string) int64 {
	f := strings.Fields(s.CLI("PUBSUB", "NUMSUB", channel))
	if len(f) != 2 {
		t.Fatalf("PUBSUB NUMSUB on %s: got %q", s.Addr(), f)
	}
	n, _ := strconv.ParseInt(f[1], 10, 64)
	return n
}

func TestCluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	c := open(t, fastOptions(cl.URLs()...))
	if !strings.HasPrefix(c.Target(), "cluster redis://") || !c.Loopback() {
		t.Errorf("got target %q loopback %v, want a loopback cluster", c.Target(), c.Loopback())
	}

	t.Run("hash slots as the server computes them", func(t *testing.T) {
		for _, key := range []string{"", "foo", "story:published", "{user1000}.following", "{user1000}.followers",
			"foo{}{bar}", "foo{{bar}}zap", "foo{bar}{zap}", "{}", "{", "a}b{c", "\xffbin"} {
			if got, want := keySlot(key), cl.Slot(key); got != want {
				t.Errorf("keySlot(%q): got %d, want %d (CLUSTER KEYSLOT)", key, got, want)
			}
		}
	})

	t.Run("numsub summed over nodes", func(t *testing.T) {
		const ch = "story:published"
		// App servers spread over the nodes: 1 on the first, 2 on the second, none on the third.
		rawSubscribe(t, cl.Nodes[0], ch)
		rawSubscribe(t, cl.Nodes[1], ch)
		rawSubscribe(t, cl.Nodes[1], ch)
		col := newCollector()
		subscribe(t, c, Subscription{Channels: []string{ch}, Patterns: []string{"story:*"}}, col)

		var sum int64
		perNode := map[string]int64{}
		for _, s := range cl.Nodes {
			n := cliNumSub(t, s, ch)
			perNode[s.Addr()] = n
			sum += n
		}
		got, err := c.NumSub(context.Background(), ch)
		if err != nil {
			t.Fatal(err)
		}
		if got[ch] != sum || sum != 4 {
			t.Errorf("got NumSub %d, want %d (the sum of every node's own PUBSUB NUMSUB %v)", got[ch], sum, perNode)
		}
		in, err := c.Introspect(context.Background(), Subscription{Channels: []string{ch}, Patterns: []string{"story:*"}})
		if err != nil {
			t.Fatal(err)
		}
		if in.NumSub[ch] != sum || in.NumPat != 1 || len(in.ByNode) != 3 {
			t.Errorf("got NumSub %v NumPat %d ByNode %v, want %d, 1 and three nodes", in.NumSub, in.NumPat, in.ByNode, sum)
		}
		for addr, n := range perNode {
			if in.ByNode[addr][ch] != n {
				t.Errorf("node %s: got %d in ByNode, want %d (its own PUBSUB NUMSUB)", addr, in.ByNode[addr][ch], n)
			}
		}
		if len(in.Clients) != 4 || in.Clients[0].Node == "" {
			t.Errorf("got clients %+v, want 4 with their node", in.Clients)
		}
		if strings.Join(in.Channels, ",") != ch {
			t.Errorf("got channels %v, want [%s]", in.Channels, ch)
		}

		// A PUBLISH on any node reaches the subscription, wherever it is.
		for i, s := range cl.Nodes {
			rc := redis.NewClient(&redis.Options{Addr: s.Addr()})
			if err := rc.Publish(context.Background(), ch, "via "+s.Addr()).Err(); err != nil {
				t.Fatal(err)
			}
			_ = rc.Close()
			col.waitFor(t, 5*time.Second, "delivery from "+s.Addr(), func(r []feed.Record) bool {
				return countMessages(r, ch) == 2*(i+1) // channel and pattern
			})
		}
	})

	t.Run("shard channel follows its slot", func(t *testing.T) {
		const moving, staying = "news:{eu}", "news:{us}"
		col := newCollector()
		sub := subscribe(t, c, Subscription{ShardChannels: []string{moving, staying}}, col)
		spublish := func(ch, payload string) {
			t.Helper()
			n, err := c.SPublish(context.Background(), ch, payload)
			if err != nil || n != 1 {
				t.Fatalf("SPublish(%s): got %d, %v; want 1 receiver", ch, n, err)
			}
		}
		spublish(moving, "before")
		spublish(staying, "before")
		col.waitFor(t, 5*time.Second, "both shard messages", func(r []feed.Record) bool {
			return countMessages(r, moving) == 1 && countMessages(r, staying) == 1
		})
		for _, r := range col.messages() {
			if !r.Shard {
				t.Errorf("got %+v, want Shard set", r)
			}
		}

		slot := cl.Slot(moving)
		from := cl.Owner(slot)
		to := cl.Nodes[0]
		if to == from {
			to = cl.Nodes[1]
		}
		mark := len(col.snapshot())
		cl.MigrateSlot(slot, to)
		col.waitFor(t, 15*time.Second, "resubscribed after the migration", func(r []feed.Record) bool {
			return hasState(r, feed.StateSubscribed, mark)
		})
		var reason, resub string
		for _, r := range col.states()[0:] {
			if r.State == feed.StateDisconnected && r.Error != "" {
				reason = r.Error
			}
			if r.State == feed.StateSubscribed && r.Error != "" {
				resub = r.Target
			}
		}
		t.Logf("state records:\n%s", describe(col.states()))
		if !strings.Contains(reason, "slot moved") || !strings.Contains(reason, moving) {
			t.Errorf("got disconnect reason %q, want it to say the slot of %s moved", reason, moving)
		}
		if !strings.Contains(resub, to.Addr()) {
			t.Errorf("got resubscribed on %q, want %s", resub, to.Addr())
		}
		spublish(moving, "after")
		spublish(staying, "after")
		col.waitFor(t, 5*time.Second, "delivery after the migration", func(r []feed.Record) bool {
			return countMessages(r, moving) == 2 && countMessages(r, staying) == 2
		})
		if st := sub.Stats(); st.Conns != 2 || st.Reconnects != 1 || st.State != feed.StateSubscribed {
			t.Errorf("got stats %+v, want 2 connections, 1 reconnect, subscribed", st)
		}
		in, err := c.Introspect(context.Background(), Subscription{ShardChannels: []string{moving, staying}})
		if err != nil {
			t.Fatal(err)
		}
		if in.ShardNumSub[moving] != 1 || in.ShardNumSub[staying] != 1 {
			t.Errorf("got ShardNumSub %v, want 1 each from the owning nodes (%v)", in.ShardNumSub, in.Unavailable)
		}
	})
}

func TestClusterNotACluster(t *testing.T) {
	s := redistest.Start(t)
	_, err := Open(context.Background(), Options{URLs: []string{s.URL()}, Cluster: true})
	if !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), "not a Redis Cluster") {
		t.Errorf("got %v, want an ErrUsage saying it is not a cluster", err)
	}
}

func TestSentinelFailover(t *testing.T) {
	st := redistest.StartSentinel(t, "mymaster")
	c := open(t, fastOptions(st.URL()).withSentinel("mymaster"))
	if want := "sentinel master mymaster via redis://" + st.Sentinel.Addr(); c.Target() != want {
		t.Errorf("got target %q, want %q", c.Target(), want)
	}
	col := newCollector()
	sub := subscribe(t, c, Subscription{Channels: []string{"ch"}}, col)
	if n := publish(t, c, "ch", "before"); n != 1 {
		t.Errorf("got %d receivers, want 1", n)
	}
	col.waitFor(t, 5*time.Second, "the first message", func(r []feed.Record) bool { return countMessages(r, "ch") == 1 })

	mark := len(col.snapshot())
	old := st.Primary.Addr()
	st.Failover()
	col.waitFor(t, 20*time.Second, "resubscribed on the new primary", func(r []feed.Record) bool {
		for _, x := range r[mark:] {
			if x.Kind == feed.KindState && x.State == feed.StateSubscribed && strings.Contains(x.Target, st.Primary.Addr()) {
				return true
			}
		}
		return false
	})
	var reason string
	for _, r := range col.snapshot()[mark:] {
		if r.Kind == feed.KindState && r.State == feed.StateDisconnected {
			reason = r.Error
			break
		}
	}
	if !strings.Contains(reason, "failover") || !strings.Contains(reason, old) || !strings.Contains(reason, "may be lost") {
		t.Errorf("got disconnect reason %q, want the failover from %s and the gap; states:\n%s", reason, old, describe(col.states()))
	}

	// Publish until the message lands: right after a failover a PUBLISH may
	// still reach the old primary, which is now a replica.
	deadline := time.Now().Add(15 * time.Second)
	for i := 0; countMessages(col.snapshot(), "ch") < 2; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("no delivery after the failover; records:\n%s", describe(col.snapshot()))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, _ = c.Publish(ctx, "ch", fmt.Sprintf("after %d", i))
		cancel()
		time.Sleep(200 * time.Millisecond)
	}
	if s := sub.Stats(); s.Reconnects < 1 || s.State != feed.StateSubscribed {
		t.Errorf("got stats %+v, want a reconnect and subscribed", s)
	}
	in, err := c.Introspect(context.Background(), Subscription{Channels: []string{"ch"}})
	if err != nil || in.NumSub["ch"] != 1 {
		t.Errorf("got NumSub %v, %v; want 1 on the new primary", in.NumSub, err)
	}

	_, err = Open(context.Background(), Options{URLs: []string{st.URL()}, SentinelMaster: "nosuchmaster"})
	if !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), "nosuchmaster") {
		t.Errorf("got %v, want an ErrUsage naming the unknown master", err)
	}
}

func (o Options) withSentinel(name string) Options {
	o.SentinelMaster = name
	return o
}

func TestClusterNodeDies(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	c := open(t, fastOptions(cl.URLs()...))
	col := newCollector()
	sub := subscribe(t, c, Subscription{Channels: []string{"ch"}}, col)
	var on *redistest.Server
	for _, r := range col.states() {
		for _, s := range cl.Nodes {
			if strings.Contains(r.Target, s.Addr()) {
				on = s
			}
		}
	}
	if on == nil {
		t.Fatalf("no state record names a node; records:\n%s", describe(col.snapshot()))
	}
	mark := len(col.snapshot())
	on.Kill()
	col.waitFor(t, 15*time.Second, "resubscribed on another node", func(r []feed.Record) bool {
		for _, x := range r[mark:] {
			if x.Kind == feed.KindState && x.State == feed.StateSubscribed && !strings.Contains(x.Target, on.Addr()) {
				return true
			}
		}
		return false
	})
	for _, s := range cl.Nodes {
		if s == on {
			continue
		}
		rc := redis.NewClient(&redis.Options{Addr: s.Addr()})
		if err := rc.Publish(context.Background(), "ch", "via "+s.Addr()).Err(); err != nil {
			t.Fatal(err)
		}
		_ = rc.Close()
	}
	col.waitFor(t, 5*time.Second, "delivery from both live nodes", func(r []feed.Record) bool { return countMessages(r, "ch") == 2 })
	if st := sub.Stats(); st.Reconnects != 1 {
		t.Errorf("got stats %+v, want 1 reconnect", st)
	}
}

func TestSentinelPrimaryDies(t *testing.T) {
	st := redistest.StartSentinel(t, "crashy")
	c := open(t, fastOptions(st.URL()).withSentinel("crashy"))
	col := newCollector()
	subscribe(t, c, Subscription{Channels: []string{"ch"}}, col)
	mark := len(col.snapshot())
	old := st.Primary
	old.Kill()
	// The sentinel needs down-after-milliseconds (2s) to call the primary
	// down, then promotes the replica.
	col.waitFor(t, 30*time.Second, "resubscribed on the promoted replica", func(r []feed.Record) bool {
		for _, x := range r[mark:] {
			if x.Kind == feed.KindState && x.State == feed.StateSubscribed && strings.Contains(x.Target, st.Replica.Addr()) {
				return true
			}
		}
		return false
	})
	deadline := time.Now().Add(15 * time.Second)
	for i := 0; countMessages(col.snapshot(), "ch") < 1; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("no delivery after the failover; records:\n%s", describe(col.snapshot()))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, _ = c.Publish(ctx, "ch", fmt.Sprintf("after %d", i))
		cancel()
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("state records:\n%s", describe(col.states()))
}
