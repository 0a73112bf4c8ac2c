package redisx

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"github.com/redis/go-redis/v9"
)

// ChannelCount is one active channel and its subscriber count.
type ChannelCount struct {
	Channel     string `json:"channel"`
	Subscribers int64  `json:"subscribers"`
	Shard       bool   `json:"shard"` // a shard channel (SSUBSCRIBE)
}

// NodeChannels is what one node reports: its own active channels,
// subscriber counts and pattern subscriptions.
type NodeChannels struct {
	Node     string         `json:"node"`
	Channels []ChannelCount `json:"channels"`
	NumPat   int64          `json:"numpat"`
}

// Channels is the deployment's active channels: PUBSUB CHANNELS and
// NUMSUB, SHARDCHANNELS and SHARDNUMSUB, and NUMPAT. In a Cluster each
// node counts only its own subscribers, so the counts are summed over
// every node, and Nodes holds each node's own view.
type Channels struct {
	Channels []ChannelCount `json:"channels"` // sorted by name, classic before shard
	NumPat   int64          `json:"numpat"`   // PUBSUB NUMPAT: distinct patterns, summed over the nodes
	Nodes    []NodeChannels `json:"nodes"`    // sorted by address
}

// Channels lists the active channels matching glob ("" or "*": all) with
// their subscriber counts, summed over every node.
func (c *Client) Channels(ctx context.Context, glob string) (Channels, error) {
	if glob == "" {
		glob = "*"
	}
	var mu sync.Mutex
	var nodes []NodeChannels
	err := c.forEachNode(ctx, func(ctx context.Context, node string, rc *redis.Client) error {
		nc, err := nodeChannels(ctx, rc, glob)
		if err != nil {
			return fmt.Errorf("%s: %w", node, err)
		}
		nc.Node = node
		mu.Lock()
		nodes = append(nodes, nc)
		mu.Unlock()
		return nil
	})
	if err != nil {
		return Channels{}, wrapErr("list channels on "+c.target, err)
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Node < nodes[j].Node })
	out := Channels{Nodes: nodes}
	type key struct {
		name  string
		shard bool
	}
	sum := map[key]int64{}
	for _, n := range nodes {
		out.NumPat += n.NumPat
		for _, ch := range n.Channels {
			sum[key{ch.Channel, ch.Shard}] += ch.Subscribers
		}
	}
	for k, v := range sum {
		out.Channels = append(out.Channels, ChannelCount{Channel: k.name, Subscribers: v, Shard: k.shard})
	}
	sortChannels(out.Channels)
	return out, nil
}

func sortChannels(cs []ChannelCount) {
	sort.Slice(cs, func(i, j int) bool {
		if cs[i].Shard != cs[j].Shard {
			return !cs[i].Shard
		}
		return cs[i].Channel < cs[j].Channel
	})
}

// nodeChannels asks one node. SHARDNUMSUB is asked one channel at a time:
// in a Cluster, channels of different slots in one call are a CROSSSLOT
// error, and each node lists only the shard channels of slots it serves.
func nodeChannels(ctx context.Context, rc *redis.Client, glob string) (NodeChannels, error) {
	var nc NodeChannels
	names, err := rc.PubSubChannels(ctx, glob).Result()
	if err != nil {
		return nc, fmt.Errorf("PUBSUB CHANNELS: %w", err)
	}
	if len(names) > 0 {
		counts, err := rc.PubSubNumSub(ctx, names...).Result()
		if err != nil {
			return nc, fmt.Errorf("PUBSUB NUMSUB: %w", err)
		}
		for _, n := range names {
			nc.Channels = append(nc.Channels, ChannelCount{Channel: n, Subscribers: counts[n]})
		}
	}
	if nc.NumPat, err = rc.PubSubNumPat(ctx).Result(); err != nil {
		return nc, fmt.Errorf("PUBSUB NUMPAT: %w", err)
	}
	shard, err := rc.PubSubShardChannels(ctx, glob).Result()
	if err != nil {
		return nc, fmt.Errorf("PUBSUB SHARDCHANNELS: %w", err)
	}
	for _, n := range shard {
		counts, err := rc.PubSubShardNumSub(ctx, n).Result()
		if err != nil {
			return nc, fmt.Errorf("PUBSUB SHARDNUMSUB %s: %w", n, err)
		}
		nc.Channels = append(nc.Channels, ChannelCount{Channel: n, Subscribers: counts[n], Shard: true})
	}
	sortChannels(nc.Channels)
	if nc.Channels == nil {
		nc.Channels = []ChannelCount{}
	}
	return nc, nil
}

// ChannelNames is PUBSUB CHANNELS (and SHARDCHANNELS with shard) for glob,
// deduplicated over every node and sorted: what shell completion offers.
func (c *Client) ChannelNames(ctx context.Context, glob string, shard bool) ([]string, error) {
	var mu sync.Mutex
	seen := map[string]bool{}
	err := c.forEachNode(ctx, func(ctx context.Context, node string, rc *redis.Client) error {
		var names []string
		var err error
		if shard {
			names, err = rc.PubSubShardChannels(ctx, glob).Result()
		} else {
			names, err = rc.PubSubChannels(ctx, glob).Result()
		}
		if err != nil {
			return fmt.Errorf("%s: %w", node, err)
		}
		mu.Lock()
		for _, n := range names {
			seen[n] = true
		}
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, wrapErr("list channels on "+c.target, err)
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}

// GlobQuote escapes Redis glob characters in s, so that GlobQuote(p)+"*"
// matches the names that start with p.
func GlobQuote(s string) string {
	var b []byte
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', ']', '\\', '^', '-':
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return string(b)
}
