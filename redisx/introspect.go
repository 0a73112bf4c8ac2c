package redisx

import (
	"bufio"
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Introspection is the server's view of Pub/Sub. In a Cluster the counts
// are summed over every node and ByNode has each node's own NUMSUB.
type Introspection struct {
	NumSub      map[string]int64            // PUBSUB NUMSUB for the subscribed channels
	NumPat      int64                       // PUBSUB NUMPAT
	ShardNumSub map[string]int64            // PUBSUB SHARDNUMSUB for the shard channels (from the owning node)
	Channels    []string                    // PUBSUB CHANNELS (sorted, deduplicated)
	Clients     []PubSubClient              // CLIENT LIST TYPE pubsub
	Limit       OutputBufferLimit           // client-output-buffer-limit, pubsub class
	Info        map[string]string           // INFO pubsub fields (summed in a Cluster)
	ByNode      map[string]map[string]int64 // node address -> channel -> NUMSUB
	Unavailable []string                    // what could not be fetched, and why
}

// PubSubClient is one line of CLIENT LIST TYPE pubsub.
type PubSubClient struct {
	Node string // node address (set in a Cluster)
	Addr string
	Name string
	Sub  int
	PSub int
	SSub int
	OMem int64 // output buffer memory: what Redis holds for a slow subscriber
	Age  time.Duration
	Idle time.Duration
}

// OutputBufferLimit is the pubsub class of client-output-buffer-limit:
// a subscriber is disconnected at Hard bytes, or after SoftSeconds above
// Soft bytes.
type OutputBufferLimit struct {
	Available   bool
	Reason      string // why it is unavailable
	Hard, Soft  int64
	SoftSeconds int
}

// infoFields are the INFO fields that describe Pub/Sub load.
var infoFields = []string{
	"pubsub_channels", "pubsub_patterns", "pubsubshard_channels", "pubsub_clients",
	"connected_clients", "client_recent_max_output_buffer",
}

// Introspect gathers the server's view of Pub/Sub for sub. It fails only
// when the server cannot be reached at all; anything else that could not
// be fetched (CONFIG renamed, an ACL forbidding CLIENT LIST) is listed in
// Unavailable.
func (c *Client) Introspect(ctx context.Context, sub Subscription) (Introspection, error) {
	sub = sub.normalized()
	in := Introspection{
		NumSub:      map[string]int64{},
		ShardNumSub: map[string]int64{},
		Info:        map[string]string{},
		ByNode:      map[string]map[string]int64{},
	}
	var mu sync.Mutex
	unavailable := func(what string, err error) {
		mu.Lock()
		in.Unavailable = append(in.Unavailable, what+": "+c.mask.mask(shortErr(err)))
		mu.Unlock()
	}
	for _, ch := range sub.Channels {
		in.NumSub[ch] = 0
	}
	channels := map[string]bool{}
	infoSum := map[string]int64{}
	var limitOnce sync.Once
	reached := false

	err := c.forEachNode(ctx, func(ctx context.Context, node string, rc *redis.Client) error {
		prefix := ""
		if c.mode == modeCluster {
			prefix = node + " "
		}
		if len(sub.Channels) > 0 {
			m, err := rc.PubSubNumSub(ctx, sub.Channels...).Result()
			if err != nil {
				return fmt.Errorf("%s: %w", node, err)
			}
			mu.Lock()
			in.ByNode[node] = m
			for ch, n := range m {
				in.NumSub[ch] += n
			}
			mu.Unlock()
		} else if err := rc.Ping(ctx).Err(); err != nil {
			return fmt.Errorf("%s: %w", node, err)
		}
		mu.Lock()
		reached = true
		mu.Unlock()

		if n, err := rc.PubSubNumPat(ctx).Result(); err != nil {
			unavailable(prefix+"PUBSUB NUMPAT", err)
		} else {
			mu.Lock()
			in.NumPat += n
			mu.Unlock()
		}
		if names, err := rc.PubSubChannels(ctx, "*").Result(); err != nil {
			unavailable(prefix+"PUBSUB CHANNELS", err)
		} else {
			mu.Lock()
			for _, n := range names {
				channels[n] = true
			}
			mu.Unlock()
		}
		if text, err := rc.Do(ctx, "client", "list", "type", "pubsub").Text(); err != nil {
			unavailable(prefix+"CLIENT LIST", err)
		} else {
			list := ParseClientList(text)
			if c.mode == modeCluster {
				for i := range list {
					list[i].Node = node
				}
			}
			mu.Lock()
			in.Clients = append(in.Clients, list...)
			mu.Unlock()
		}
		if text, err := rc.Info(ctx, "stats", "clients").Result(); err != nil {
			unavailable(prefix+"INFO", err)
		} else {
			fields := parseInfo(text)
			mu.Lock()
			for _, k := range infoFields {
				if v, ok := fields[k]; ok {
					n, err := strconv.ParseInt(v, 10, 64)
					if err != nil {
						in.Info[k] = v
						continue
					}
					if k == "client_recent_max_output_buffer" {
						infoSum[k] = max(infoSum[k], n)
					} else {
						infoSum[k] += n
					}
				}
			}
			mu.Unlock()
		}
		limitOnce.Do(func() { in.Limit = outputBufferLimit(ctx, rc) })
		return nil
	})
	if err != nil {
		if !reached {
			return in, wrapErr(c.mask, "introspect "+c.target, err)
		}
		unavailable("some nodes", err)
	}
	for k, n := range infoSum {
		in.Info[k] = strconv.FormatInt(n, 10)
	}
	for ch := range channels {
		in.Channels = append(in.Channels, ch)
	}
	sort.Strings(in.Channels)
	sort.Slice(in.Clients, func(i, j int) bool {
		if in.Clients[i].Node != in.Clients[j].Node {
			return in.Clients[i].Node < in.Clients[j].Node
		}
		return in.Clients[i].Addr < in.Clients[j].Addr
	})
	if c.mode != modeCluster {
		in.ByNode = nil
	}
	for _, ch := range sub.ShardChannels {
		n, err := c.shardNumSub(ctx, ch)
		if err != nil {
			unavailable("PUBSUB SHARDNUMSUB "+ch, err)
			continue
		}
		in.ShardNumSub[ch] = n
	}
	sort.Strings(in.Unavailable)
	return in, nil
}

// shardNumSub is PUBSUB SHARDNUMSUB for one channel, asked of the node that
// owns its slot.
func (c *Client) shardNumSub(ctx context.Context, channel string) (int64, error) {
	if c.mode != modeCluster {
		m, err := c.single.PubSubShardNumSub(ctx, channel).Result()
		if err != nil {
			return 0, err
		}
		return m[channel], nil
	}
	owner, err := c.slotOwner(ctx, keySlot(channel))
	if err != nil {
		return 0, err
	}
	var n int64
	found := false
	err = c.cluster.ForEachMaster(ctx, func(ctx context.Context, rc *redis.Client) error {
		if rc.Options().Addr != owner {
			return nil
		}
		m, err := rc.PubSubShardNumSub(ctx, channel).Result()
		if err != nil {
			return err
		}
		n, found = m[channel], true
		return nil
	})
	if err == nil && !found {
		err = fmt.Errorf("no client for %s, the owner of slot %d", owner, keySlot(channel))
	}
	return n, err
}

func outputBufferLimit(ctx context.Context, rc *redis.Client) OutputBufferLimit {
	m, err := rc.ConfigGet(ctx, "client-output-buffer-limit").Result()
	if err != nil {
		reason := shortErr(err)
		if strings.Contains(strings.ToLower(reason), "unknown command") {
			reason = "CONFIG is disabled or renamed on this server (" + reason + ")"
		}
		return OutputBufferLimit{Reason: "unavailable: " + reason}
	}
	v, ok := m["client-output-buffer-limit"]
	if !ok {
		return OutputBufferLimit{Reason: "unavailable: CONFIG GET returned no client-output-buffer-limit"}
	}
	l, err := ParseOutputBufferLimit(v)
	if err != nil {
		return OutputBufferLimit{Reason: "unavailable: " + err.Error()}
	}
	return l
}

// ParseOutputBufferLimit reads the pubsub class out of a
// client-output-buffer-limit value such as
// "normal 0 0 0 replica 268435456 67108864 60 pubsub 33554432 8388608 60".
func ParseOutputBufferLimit(v string) (OutputBufferLimit, error) {
	f := strings.Fields(v)
	for i := 0; i+3 < len(f); i += 4 {
		if f[i] != "pubsub" {
			continue
		}
		hard, err1 := parseMemory(f[i+1])
		soft, err2 := parseMemory(f[i+2])
		secs, err3 := strconv.Atoi(f[i+3])
		if err1 != nil || err2 != nil || err3 != nil {
			return OutputBufferLimit{}, fmt.Errorf("cannot read client-output-buffer-limit %q", v)
		}
		return OutputBufferLimit{Available: true, Hard: hard, Soft: soft, SoftSeconds: secs}, nil
	}
	return OutputBufferLimit{}, fmt.Errorf("client-output-buffer-limit %q has no pubsub class", v)
}

// parseMemory reads Redis memory sizes: 33554432, 32mb, 8gb, 64k.
func parseMemory(s string) (int64, error) {
	s = strings.ToLower(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"gb", 1 << 30}, {"mb", 1 << 20}, {"kb", 1 << 10}, {"g", 1e9}, {"m", 1e6}, {"k", 1e3}, {"b", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, err
	}
	return n * mult, nil
}

// ParseClientList reads CLIENT LIST output (one client per line,
// space-separated key=value fields).
func ParseClientList(text string) []PubSubClient {
	var out []PubSubClient
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var cl PubSubClient
		for _, kv := range strings.Fields(line) {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				continue
			}
			switch k {
			case "addr":
				cl.Addr = v
			case "name":
				cl.Name = v
			case "sub":
				cl.Sub, _ = strconv.Atoi(v)
			case "psub":
				cl.PSub, _ = strconv.Atoi(v)
			case "ssub":
				cl.SSub, _ = strconv.Atoi(v)
			case "omem":
				cl.OMem, _ = strconv.ParseInt(v, 10, 64)
			case "age":
				n, _ := strconv.ParseInt(v, 10, 64)
				cl.Age = time.Duration(n) * time.Second
			case "idle":
				n, _ := strconv.ParseInt(v, 10, 64)
				cl.Idle = time.Duration(n) * time.Second
			}
		}
		out = append(out, cl)
	}
	return out
}

func parseInfo(text string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = v
		}
	}
	return m
}
