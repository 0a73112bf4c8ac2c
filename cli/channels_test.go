package cli

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fanscope/fanscope/internal/redistest"
	"github.com/fanscope/fanscope/redisx"
)

type channelsJSON struct {
	Channels []map[string]any `json:"channels"`
	NumPat   *int64           `json:"numpat"`
	Nodes    []struct {
		Node     string           `json:"node"`
		Channels []map[string]any `json:"channels"`
		NumPat   int64            `json:"numpat"`
	} `json:"nodes"`
}

// redisCLIView is what redis-cli reports on one server, as
// "channel=N" / "shard:channel=N" lines, sorted, plus NUMPAT.
func redisCLIView(t *testing.T, s *redistest.Server) ([]string, int64) {
	t.Helper()
	var out []string
	for _, kind := range []string{"", "SHARD"} {
		for _, n := range strings.Fields(s.CLI("PUBSUB", kind+"CHANNELS")) {
			f := strings.Fields(s.CLI("PUBSUB", kind+"NUMSUB", n))
			prefix := ""
			if kind != "" {
				prefix = "shard:"
			}
			out = append(out, prefix+n+"="+f[1])
		}
	}
	sort.Strings(out)
	numpat, _ := strconv.ParseInt(s.CLI("PUBSUB", "NUMPAT"), 10, 64)
	return out, numpat
}

// view turns JSON channel objects into the same lines, checking that each
// has exactly the SPEC's fields.
func view(t *testing.T, chans []map[string]any) []string {
	t.Helper()
	var out []string
	for _, c := range chans {
		if len(c) != 3 {
			t.Errorf("channel object %v: want exactly channel, subscribers, shard", c)
		}
		name, _ := c["channel"].(string)
		n, _ := c["subscribers"].(float64)
		shard, ok := c["shard"].(bool)
		if !ok {
			t.Errorf("channel object %v: shard is not a boolean", c)
		}
		prefix := ""
		if shard {
			prefix = "shard:"
		}
		out = append(out, fmt.Sprintf("%s%s=%d", prefix, name, int64(n)))
	}
	sort.Strings(out)
	return out
}

func TestChannelsCommandOneServer(t *testing.T) {
	s := redistest.Start(t)
	subscribers(t, s.URL(), 2, redisx.Subscription{Channels: []string{"story:published", "other"}, Patterns: []string{"story:*"}, ShardChannels: []string{"feed:1"}})
	subscribers(t, s.URL(), 1, redisx.Subscription{Channels: []string{"story:published"}})
	waitNumSub(t, s, "story:published", 3)
	res := runCmd(t, "channels", "--redis", s.URL(), "--json")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	var got channelsJSON
	if err := json.Unmarshal([]byte(res.stdout), &got); err != nil || got.NumPat == nil {
		t.Fatalf("stdout %q: %v (numpat present: %v)", res.stdout, err, got.NumPat != nil)
	}
	want, numpat := redisCLIView(t, s)
	if g := view(t, got.Channels); fmt.Sprint(g) != fmt.Sprint(want) {
		t.Errorf("channels %v, redis-cli says %v", g, want)
	}
	if *got.NumPat != numpat || len(got.Nodes) != 1 || got.Nodes[0].Node != s.Addr() {
		t.Errorf("numpat %d (redis-cli %d), nodes %+v", *got.NumPat, numpat, got.Nodes)
	}

	res = runCmd(t, "channels", "--redis", s.URL(), "story:*")
	if res.code != 0 || !strings.Contains(res.stdout, "story:published  3") || strings.Contains(res.stdout, "other") ||
		!strings.Contains(res.stdout, "1 channel, 1 pattern (NUMPAT)") {
		t.Errorf("text output:\n%s", res.stdout)
	}
	if res := runCmd(t, "channels", "--redis", s.URL(), "a*", "b*"); res.code != 2 || !strings.Contains(res.stderr, "one GLOB") {
		t.Errorf("two globs: exit %d, stderr %q; want 2", res.code, res.stderr)
	}
	res = runCmd(t, "channels", "--redis", s.URL(), "nothing*", "--json")
	if res.code != 0 || res.stdout != `{"channels":[],"numpat":1,"nodes":[{"node":"`+s.Addr()+`","channels":[],"numpat":1}]}`+"\n" {
		t.Errorf("no match: stdout %q", res.stdout)
	}
}

func TestChannelsCommandClusterSumsNodes(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	for i, n := range cl.Nodes {
		subscribers(t, n.URL(), i+1, redisx.Subscription{Channels: []string{"story:published", "only:" + strconv.Itoa(i)}, Patterns: []string{"p*"}})
	}
	for _, ch := range []string{"{a}feed", "{b}feed", "{c}feed"} {
		subscribers(t, cl.Owner(cl.Slot(ch)).URL(), 2, redisx.Subscription{ShardChannels: []string{ch}})
	}
	deadline := time.Now().Add(15 * time.Second)
	var res cmdResult
	var got channelsJSON
	for {
		res = runCmd(t, "channels", "--cluster", "--redis", cl.URLs()[0], "--json")
		if res.code != 0 {
			t.Fatalf("exit %d: %s", res.code, res.stderr)
		}
		got = channelsJSON{}
		if err := json.Unmarshal([]byte(res.stdout), &got); err != nil {
			t.Fatal(err)
		}
		if len(view(t, got.Channels)) == 7 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	sum := map[string]int64{}
	var numpat int64
	if len(got.Nodes) != 3 {
		t.Fatalf("nodes %+v, want 3", got.Nodes)
	}
	for _, n := range cl.Nodes {
		want, np := redisCLIView(t, n)
		numpat += np
		for _, line := range want {
			k, v, _ := strings.Cut(line, "=")
			x, _ := strconv.ParseInt(v, 10, 64)
			sum[k] += x
		}
		for _, gn := range got.Nodes {
			if gn.Node == n.Addr() && (fmt.Sprint(view(t, gn.Channels)) != fmt.Sprint(want) || gn.NumPat != np) {
				t.Errorf("node %s: %v numpat %d, redis-cli there says %v numpat %d", n.Addr(), view(t, gn.Channels), gn.NumPat, want, np)
			}
		}
	}
	var want []string
	for k, v := range sum {
		want = append(want, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(want)
	if g := view(t, got.Channels); fmt.Sprint(g) != fmt.Sprint(want) {
		t.Errorf("summed channels %v, the sum of redis-cli over the nodes is %v", g, want)
	}
	// NUMPAT counts distinct patterns per node: p* on each of three.
	if *got.NumPat != numpat || numpat != 3 {
		t.Errorf("numpat %d, redis-cli sum %d, want 3", *got.NumPat, numpat)
	}
	if !strings.Contains(fmt.Sprint(want), "story:published=6") {
		t.Errorf("story:published is not 1+2+3 in %v", want)
	}
}

func TestChannelCompletion(t *testing.T) {
	s := redistest.Start(t)
	subscribers(t, s.URL(), 1, redisx.Subscription{Channels: []string{"story:published", "story:deleted", "other"}, ShardChannels: []string{"story:shard"}})
	waitNumSub(t, s, "story:published", 1)
	res := runCmd(t, "__complete", "publish", "--redis", s.URL(), "-c", "story:")
	if res.code != 0 || !strings.HasPrefix(res.stdout, "story:deleted\nstory:published\n:4\n") {
		t.Fatalf("exit %d, stdout %q", res.code, res.stdout)
	}
	res = runCmd(t, "__complete", "monitor", "--redis", s.URL(), "-s", "")
	if res.code != 0 || !strings.HasPrefix(res.stdout, "story:shard\n:4\n") {
		t.Fatalf("shard: exit %d, stdout %q", res.code, res.stdout)
	}
	// Glob characters typed are taken literally.
	res = runCmd(t, "__complete", "publish", "--redis", s.URL(), "-c", "*")
	if res.code != 0 || !strings.HasPrefix(res.stdout, ":4\n") {
		t.Fatalf("literal *: exit %d, stdout %q", res.code, res.stdout)
	}
	// Nothing there: silently empty, promptly.
	start := time.Now()
	res = runCmd(t, "__complete", "publish", "--redis", fmt.Sprintf("redis://127.0.0.1:%d", redistest.FreePort(t)), "-c", "sto")
	if res.code != 0 || !strings.HasPrefix(res.stdout, ":4\n") || strings.Contains(res.stdout, "refused") {
		t.Fatalf("unreachable: exit %d, stdout %q", res.code, res.stdout)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("completion against nothing took %s", d)
	}
}
