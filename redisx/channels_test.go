package redisx

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fanscope/fanscope/internal/redistest"
)

// cliChannels is what redis-cli reports, summed over servers: channel
// (with "shard:" before shard channels) -> subscribers, and NUMPAT.
func cliChannels(t *testing.T, glob string, servers ...*redistest.Server) (map[string]int64, int64) {
	t.Helper()
	want := map[string]int64{}
	var numpat int64
	for _, s := range servers {
		for _, kind := range []string{"", "SHARD"} {
			names := strings.Fields(s.CLI("PUBSUB", kind+"CHANNELS", glob))
			for _, n := range names {
				f := strings.Fields(s.CLI("PUBSUB", kind+"NUMSUB", n))
				if len(f) != 2 {
					t.Fatalf("redis-cli PUBSUB %sNUMSUB %s: %q", kind, n, f)
				}
				v, _ := strconv.ParseInt(f[1], 10, 64)
				key := n
				if kind != "" {
					key = "shard:" + n
				}
				want[key] += v
			}
		}
		v, _ := strconv.ParseInt(s.CLI("PUBSUB", "NUMPAT"), 10, 64)
		numpat += v
	}
	return want, numpat
}

func checkChannels(t *testing.T, c *Client, glob string, servers ...*redistest.Server) Channels {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := c.Channels(ctx, glob)
	if err != nil {
		t.Fatal(err)
	}
	want, numpat := cliChannels(t, glob, servers...)
	have := map[string]int64{}
	for _, ch := range got.Channels {
		key := ch.Channel
		if ch.Shard {
			key = "shard:" + key
		}
		have[key] = ch.Subscribers
	}
	if len(have) != len(want) {
		t.Errorf("glob %q: got channels %v, want %v", glob, have, want)
	}
	for k, v := range want {
		if have[k] != v {
			t.Errorf("glob %q: %s has %d subscribers, redis-cli says %d", glob, k, have[k], v)
		}
	}
	if got.NumPat != numpat {
		t.Errorf("numpat %d, redis-cli says %d", got.NumPat, numpat)
	}
	if len(got.Nodes) != len(servers) {
		t.Errorf("%d nodes in the breakdown, want %d", len(got.Nodes), len(servers))
	}
	return got
}

func TestChannelsOneServer(t *testing.T) {
	s := redistest.Start(t)
	c := open(t, fastOptions(s.URL()))
	subscribe(t, c, Subscription{Channels: []string{"story:published", "story:deleted", "other"}, Patterns: []string{"story:*"}, ShardChannels: []string{"feed:1"}}, newCollector())
	c2 := open(t, fastOptions(s.URL()))
	subscribe(t, c2, Subscription{Channels: []string{"story:published"}, Patterns: []string{"x*", "y*"}, ShardChannels: []string{"feed:1", "feed:2"}}, newCollector())
	got := checkChannels(t, c, "*", s)
	if len(got.Channels) != 5 || got.Channels[0].Channel != "other" || got.Channels[3].Channel != "feed:1" || !got.Channels[3].Shard || got.Channels[3].Subscribers != 2 {
		t.Errorf("got %+v, want classic channels sorted, then shard channels", got.Channels)
	}
	checkChannels(t, c, "story:*", s)
	checkChannels(t, c, "nothing*", s)
}

func TestChannelsClusterSumsNodes(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	o := fastOptions(cl.URLs()...)
	c := open(t, o)
	// Subscribers on each node directly, so every node counts its own.
	for i, n := range cl.Nodes {
		nc := open(t, fastOptions(n.URL()))
		chans := []string{"story:published"}
		if i > 0 {
			chans = append(chans, "node:"+strconv.Itoa(i))
		}
		subscribe(t, nc, Subscription{Channels: chans, Patterns: []string{"p" + strconv.Itoa(i) + "*"}}, newCollector())
	}
	for _, ch := range []string{"{a}feed", "{b}feed", "{c}feed", "{a}feed2"} {
		owner := cl.Owner(cl.Slot(ch))
		subscribe(t, open(t, fastOptions(owner.URL())), Subscription{ShardChannels: []string{ch}}, newCollector())
	}
	got := checkChannels(t, c, "*", cl.Nodes...)
	for _, ch := range got.Channels {
		if ch.Channel == "story:published" && ch.Subscribers != 3 {
			t.Errorf("story:published: %d subscribers, want 3 (one per node)", ch.Subscribers)
		}
	}
	if got.NumPat != 3 {
		t.Errorf("numpat %d, want 3", got.NumPat)
	}
	checkChannels(t, c, "{a}*", cl.Nodes...)
}

func TestPing(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	c := open(t, fastOptions(cl.URLs()...))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := c.Ping(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("got %+v, want one round trip per node", got)
	}
	for _, n := range cl.Nodes {
		found := false
		for _, r := range got {
			found = found || (r.Node == n.Addr() && r.RTT > 0)
		}
		if !found {
			t.Errorf("no round trip for %s in %+v", n.Addr(), got)
		}
	}
	cl.Nodes[1].Kill()
	_, err = c.Ping(ctx)
	if err == nil || !strings.Contains(err.Error(), cl.Nodes[1].Addr()) {
		t.Errorf("got %v, want an error naming the dead node %s", err, cl.Nodes[1].Addr())
	}
}
