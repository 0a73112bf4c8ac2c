package redisx

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
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
	ID   int64  // CLIENT ID: unique for the server's lifetime
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
	// INFO stats, Redis 7.2 and later: clients of any class disconnected
	// at their output buffer limit since the server started.
	infoBufferDisconnections,
}

const infoBufferDisconnections = "client_output_buffer_limit_disconnections"

// Introspect gathers the server's view of Pub/Sub for sub. It fails only
// when the server cannot be reached at all; anything else that could not
// be fetched (CONFIG renamed, an ACL forbidding CLIENT LIST, a Cluster
// node down) is listed in Unavailable.
func (c *Client) Introspect(ctx context.Context, sub Subscription) (Introspection, error) {
	sub = sub.normalized()
	var mu sync.Mutex
	var views []nodeView
	err := c.forEachNode(ctx, func(ctx context.Context, node string, rc *redis.Client) error {
		v := c.gatherNode(ctx, node, rc, sub.Channels)
		mu.Lock()
		views = append(views, v)
		mu.Unlock()
		return nil // a node's failure is in its view
	})
	if err != nil && len(views) == 0 {
		// The node list itself could not be had (a Cluster with no node answering).
		views = append(views, nodeView{Node: c.target, Err: err})
	}
	in, err := mergeIntrospection(sub, c.mode == modeCluster, views)
	if err != nil {
		return in, wrapErr("introspect "+c.target, err)
	}
	for _, ch := range sub.ShardChannels {
		n, err := c.shardNumSub(ctx, ch)
		if err != nil {
			in.Unavailable = append(in.Unavailable, "PUBSUB SHARDNUMSUB "+ch+": "+shortErr(err))
			continue
		}
		in.ShardNumSub[ch] = n
	}
	sort.Strings(in.Unavailable)
	return in, nil
}

// nodeView is what one node answered, gathered before merging. A node
// that could not be reached has only Node and Err.
type nodeView struct {
	Node        string
	Err         error
	NumSub      map[string]int64 // nil when not asked (no channels)
	NumPat      int64
	Channels    []string
	Clients     []PubSubClient
	Info        map[string]string // the infoFields the node gave
	Limit       OutputBufferLimit
	Unavailable []string // "PUBSUB NUMPAT: reason", without the node
}

// gatherNode asks one node everything Introspect shows. Only a failure of
// the first command (NUMSUB, or PING without channels) marks the node
// unreachable; later failures are listed as unavailable.
func (c *Client) gatherNode(ctx context.Context, node string, rc *redis.Client, channels []string) nodeView {
	v := nodeView{Node: node}
	if len(channels) > 0 {
		m, err := rc.PubSubNumSub(ctx, channels...).Result()
		if err != nil {
			v.Err = err
			return v
		}
		v.NumSub = m
	} else if err := rc.Ping(ctx).Err(); err != nil {
		v.Err = err
		return v
	}
	unavailable := func(what string, err error) {
		v.Unavailable = append(v.Unavailable, what+": "+shortErr(err))
	}
	if n, err := rc.PubSubNumPat(ctx).Result(); err != nil {
		unavailable("PUBSUB NUMPAT", err)
	} else {
		v.NumPat = n
	}
	if names, err := rc.PubSubChannels(ctx, "*").Result(); err != nil {
		unavailable("PUBSUB CHANNELS", err)
	} else {
		v.Channels = names
	}
	if text, err := rc.Do(ctx, "client", "list", "type", "pubsub").Text(); err != nil {
		unavailable("CLIENT LIST", err)
	} else {
		v.Clients = ParseClientList(text)
	}
	if text, err := rc.Info(ctx, "stats", "clients").Result(); err != nil {
		unavailable("INFO", err)
	} else {
		fields := parseInfo(text)
		v.Info = map[string]string{}
		for _, k := range infoFields {
			if val, ok := fields[k]; ok {
				v.Info[k] = val
			}
		}
	}
	v.Limit = outputBufferLimit(ctx, rc)
	return v
}

// mergeIntrospection adds up what the nodes answered: NUMSUB, NUMPAT and
// the INFO counters are summed (client_recent_max_output_buffer is the
// largest), channels and clients are joined and sorted, and in a Cluster
// each node's NUMSUB is kept in ByNode and its name is put on its clients
// and its unavailable items. Unreachable nodes are listed in Unavailable;
// when no node was reachable it returns the first node's error.
func mergeIntrospection(sub Subscription, cluster bool, nodes []nodeView) (Introspection, error) {
	in := Introspection{
		NumSub:      map[string]int64{},
		ShardNumSub: map[string]int64{},
		Info:        map[string]string{},
	}
	for _, ch := range sub.Channels {
		in.NumSub[ch] = 0
	}
	if cluster {
		in.ByNode = map[string]map[string]int64{}
	}
	nodes = slices.Clone(nodes)
	slices.SortFunc(nodes, func(a, b nodeView) int { return strings.Compare(a.Node, b.Node) })
	channels := map[string]bool{}
	sums := map[string]int64{}
	var firstErr error
	reached := 0
	for _, v := range nodes {
		prefix := ""
		if cluster {
			prefix = v.Node + " "
		}
		if v.Err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("%s: %w", v.Node, v.Err)
			}
			in.Unavailable = append(in.Unavailable, "node "+v.Node+": "+shortErr(v.Err))
			continue
		}
		reached++
		for _, u := range v.Unavailable {
			in.Unavailable = append(in.Unavailable, prefix+u)
		}
		for ch, n := range v.NumSub {
			in.NumSub[ch] += n
		}
		if cluster && v.NumSub != nil {
			in.ByNode[v.Node] = maps.Clone(v.NumSub)
		}
		in.NumPat += v.NumPat
		for _, ch := range v.Channels {
			channels[ch] = true
		}
		for _, cl := range v.Clients {
			if cluster {
				cl.Node = v.Node
			}
			in.Clients = append(in.Clients, cl)
		}
		for k, val := range v.Info {
			n, err := strconv.ParseInt(val, 10, 64)
			switch {
			case err != nil:
				in.Info[k] = val
			case k == "client_recent_max_output_buffer":
				sums[k] = max(sums[k], n)
			default:
				sums[k] += n
			}
		}
		if !in.Limit.Available && (v.Limit.Available || in.Limit.Reason == "") {
			in.Limit = v.Limit
		}
	}
	if reached == 0 {
		if firstErr == nil {
			firstErr = errors.New("no node to ask")
		}
		return in, firstErr
	}
	for k, n := range sums {
		in.Info[k] = strconv.FormatInt(n, 10)
	}
	for ch := range channels {
		in.Channels = append(in.Channels, ch)
	}
	sort.Strings(in.Channels)
	sort.SliceStable(in.Clients, func(i, j int) bool {
		if in.Clients[i].Node != in.Clients[j].Node {
			return in.Clients[i].Node < in.Clients[j].Node
		}
		return in.Clients[i].Addr < in.Clients[j].Addr
	})
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
			case "id":
				cl.ID, _ = strconv.ParseInt(v, 10, 64)
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
