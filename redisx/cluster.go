package redisx

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

func (c *Client) newCluster() error {
	var seeds, shown []string
	for _, ep := range c.eps {
		if ep.db != 0 {
			return usageError("Redis Cluster has only database 0: " + ep.String())
		}
		seeds = append(seeds, ep.addr)
		shown = append(shown, ep.String())
	}
	c.target = "cluster " + strings.Join(shown, ",")
	o := c.options(c.base, seeds...)
	c.cluster = redis.NewClusterClient(o.Cluster())
	c.cluster.OnNewNode(func(rc *redis.Client) { rc.AddHook(authHook{}) })
	c.cmd = c.cluster
	c.loopback = true
	for _, ep := range c.eps {
		c.loopback = c.loopback && ep.loopback()
	}
	return nil
}

func (c *Client) checkCluster(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(ctx, 2*c.o.DialTimeout+2*time.Second)
	defer cancel()
	slots, err := c.cluster.ClusterSlots(pctx).Result()
	if err != nil {
		if strings.Contains(err.Error(), "cluster support disabled") {
			return usageError("connect " + c.target + ": the server is not a Redis Cluster (drop --cluster; several --redis URLs also mean a cluster)")
		}
		return wrapErr("connect "+c.target, err)
	}
	if len(slots) == 0 {
		return &Error{Kind: ErrUnreachable, msg: "connect " + c.target + ": the cluster serves no hash slots (is it set up? redis-cli --cluster create …)"}
	}
	if err := c.cluster.ForEachShard(pctx, func(ctx context.Context, rc *redis.Client) error {
		return rc.Ping(ctx).Err()
	}); err != nil {
		return wrapErr("connect "+c.target, err)
	}
	loopback := true
	for _, ep := range c.eps {
		loopback = loopback && ep.loopback()
	}
	for _, s := range slots {
		for _, n := range s.Nodes {
			loopback = loopback && c.base.withAddr(n.Addr).loopback()
		}
	}
	c.setLoopback(loopback)
	return nil
}

// clusterSlots asks the cluster which node serves which slots. It asks
// every time instead of trusting a cache, because it is used right after a
// slot moved.
func (c *Client) clusterSlots(ctx context.Context) ([]redis.ClusterSlot, error) {
	slots, err := c.cluster.ClusterSlots(ctx).Result()
	if err != nil {
		return nil, err
	}
	return slots, nil
}

// slotOwner is the address of the primary that serves slot.
func (c *Client) slotOwner(ctx context.Context, slot int) (string, error) {
	slots, err := c.clusterSlots(ctx)
	if err != nil {
		return "", err
	}
	for _, s := range slots {
		if slot >= s.Start && slot <= s.End && len(s.Nodes) > 0 {
			return s.Nodes[0].Addr, nil
		}
	}
	return "", fmt.Errorf("no node serves hash slot %d", slot)
}

// primaries lists the cluster's primaries, sorted.
func (c *Client) primaries(ctx context.Context) ([]string, error) {
	slots, err := c.clusterSlots(ctx)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []string
	for _, s := range slots {
		if len(s.Nodes) > 0 && !seen[s.Nodes[0].Addr] {
			seen[s.Nodes[0].Addr] = true
			out = append(out, s.Nodes[0].Addr)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("the cluster serves no hash slots")
	}
	sort.Strings(out)
	return out, nil
}

// planCluster puts channels and patterns on one connection to any primary
// (a Cluster forwards every PUBLISH to every node), and shard channels on
// one connection per hash slot, to the primary that owns it: SSUBSCRIBE
// may name one slot only, and when the slot moves the server ends just
// that subscription.
func (c *Client) planCluster(sub Subscription) []*link {
	var links []*link
	if len(sub.Channels)+len(sub.Patterns) > 0 {
		var next atomic.Uint32
		links = append(links, &link{
			sub: Subscription{Channels: sub.Channels, Patterns: sub.Patterns},
			resolve: func(ctx context.Context) (endpoint, error) {
				nodes, err := c.primaries(ctx)
				if err != nil {
					return endpoint{}, wrapErr("find a node of "+c.target, err)
				}
				// Each attempt tries the next primary, so a dead node is left behind.
				i := int(next.Add(1)-1) % len(nodes)
				return c.base.withAddr(nodes[i]), nil
			},
		})
	}
	bySlot := map[int][]string{}
	var slots []int
	for _, ch := range sub.ShardChannels {
		s := keySlot(ch)
		if bySlot[s] == nil {
			slots = append(slots, s)
		}
		bySlot[s] = append(bySlot[s], ch)
	}
	sort.Ints(slots)
	for _, slot := range slots {
		links = append(links, &link{
			sub:   Subscription{ShardChannels: bySlot[slot]},
			shard: true,
			resolve: func(ctx context.Context) (endpoint, error) {
				addr, err := c.slotOwner(ctx, slot)
				if err != nil {
					return endpoint{}, wrapErr(fmt.Sprintf("find the owner of slot %d on %s", slot, c.target), err)
				}
				return c.base.withAddr(addr), nil
			},
		})
	}
	return links
}

// movedTo returns the address in a MOVED redirection, if err is one.
func movedTo(err error) (string, bool) {
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return "", false
	}
	f := strings.Fields(rerr.Error())
	if len(f) == 3 && (f[0] == "MOVED" || f[0] == "ASK") {
		return f[2], true
	}
	return "", false
}

// keySlot is the Redis Cluster hash slot of a key or channel:
// CRC16/XMODEM of the key (or of its {hash tag}) modulo 16384.
func keySlot(key string) int {
	if s := strings.IndexByte(key, '{'); s >= 0 {
		if e := strings.IndexByte(key[s+1:], '}'); e > 0 {
			key = key[s+1 : s+1+e]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for b := 0; b < 8; b++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % 16384
}
