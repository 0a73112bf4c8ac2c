package redisx

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// PingResult is one PING round trip to one node.
type PingResult struct {
	Node string // the node's address
	RTT  time.Duration
}

// Ping sends one PING to every node that takes commands (the server, the
// Sentinel primary, every Cluster node) and returns the round trips,
// sorted by node. An error names the node that did not answer and why.
func (c *Client) Ping(ctx context.Context) ([]PingResult, error) {
	var mu sync.Mutex
	var out []PingResult
	err := c.forEachNode(ctx, func(ctx context.Context, node string, rc *redis.Client) error {
		start := time.Now()
		if err := rc.Ping(ctx).Err(); err != nil {
			return fmt.Errorf("%s: %w", node, err)
		}
		rtt := time.Since(start)
		mu.Lock()
		out = append(out, PingResult{Node: node, RTT: rtt})
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, wrapErr("ping "+c.target, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out, nil
}
