package redistest

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Cluster is a real Redis Cluster of primaries (no replicas) on loopback,
// owned by a test.
type Cluster struct {
	t     testing.TB
	Nodes []*Server
}

// StartCluster starts n cluster-enabled redis-servers, joins them with
// `redis-cli --cluster create`, waits until every node reports the cluster
// ok and agrees on the slots, and stops them when the test ends.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	c := &Cluster{t: t}
	var addrs []string
	for i := 0; i < n; i++ {
		s := Start(t,
			"cluster-enabled yes",
			"cluster-config-file nodes.conf",
			"cluster-port "+strconv.Itoa(FreePort(t)),
			"cluster-node-timeout 2000",
			"cluster-require-full-coverage no",
		)
		c.Nodes = append(c.Nodes, s)
		addrs = append(addrs, s.Addr())
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitConsistent()
	return c
}

// URLs are the redis:// URLs of every node.
func (c *Cluster) URLs() []string {
	var out []string
	for _, s := range c.Nodes {
		out = append(out, s.URL())
	}
	return out
}

// ID is the node's cluster ID (CLUSTER MYID).
func (s *Server) ID() string { return s.CLI("CLUSTER", "MYID") }

// Owner is the node that serves slot according to the first node.
func (c *Cluster) Owner(slot int) *Server {
	c.t.Helper()
	owners := c.owners(c.Nodes[0])
	for _, s := range c.Nodes {
		if owners[slot] == s.Addr() {
			return s
		}
	}
	c.t.Fatalf("no node serves slot %d", slot)
	return nil
}

// Slot is CLUSTER KEYSLOT of key (channels hash the same way).
func (c *Cluster) Slot(key string) int {
	c.t.Helper()
	n, err := strconv.Atoi(c.Nodes[0].CLI("CLUSTER", "KEYSLOT", key))
	if err != nil {
		c.t.Fatalf("CLUSTER KEYSLOT %s: %v", key, err)
	}
	return n
}

// owners maps every slot to the address of its primary, as node s sees it
// (from CLUSTER NODES).
func (c *Cluster) owners(s *Server) map[int]string {
	out := map[int]string{}
	for _, line := range strings.Split(s.CLI("CLUSTER", "NODES"), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 || !strings.Contains(f[2], "master") {
			continue
		}
		addr := f[1]
		if i := strings.IndexByte(addr, '@'); i >= 0 {
			addr = addr[:i]
		}
		for _, r := range f[8:] {
			if strings.HasPrefix(r, "[") {
				continue // a slot being migrated or imported
			}
			lo, hi, found := strings.Cut(r, "-")
			a, _ := strconv.Atoi(lo)
			b := a
			if found {
				b, _ = strconv.Atoi(hi)
			}
			for i := a; i <= b; i++ {
				out[i] = addr
			}
		}
	}
	return out
}

// WaitConsistent waits until every node says cluster_state:ok and all
// nodes agree on who serves every slot.
func (c *Cluster) WaitConsistent() {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok := true
		var first map[int]string
		for _, s := range c.Nodes {
			if !strings.Contains(s.CLI("CLUSTER", "INFO"), "cluster_state:ok") {
				ok = false
				break
			}
			o := c.owners(s)
			if len(o) != 16384 {
				ok = false
				break
			}
			if first == nil {
				first = o
				continue
			}
			for slot, addr := range first {
				if o[slot] != addr {
					ok = false
					break
				}
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("cluster did not become consistent within 30s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// MigrateSlot moves slot (and any keys in it) to node to, the way
// `redis-cli --cluster reshard` does: IMPORTING on the target, MIGRATING
// on the source, MIGRATE the keys, then SETSLOT NODE on every node.
func (c *Cluster) MigrateSlot(slot int, to *Server) {
	c.t.Helper()
	from := c.Owner(slot)
	if from == to {
		c.t.Fatalf("slot %d is already on %s", slot, to.Addr())
	}
	s := strconv.Itoa(slot)
	to.CLI("CLUSTER", "SETSLOT", s, "IMPORTING", from.ID())
	from.CLI("CLUSTER", "SETSLOT", s, "MIGRATING", to.ID())
	for {
		keys := strings.Fields(from.CLI("CLUSTER", "GETKEYSINSLOT", s, "100"))
		if len(keys) == 0 {
			break
		}
		args := append([]string{"MIGRATE", "127.0.0.1", strconv.Itoa(to.Port), "", "0", "5000", "KEYS"}, keys...)
		from.CLI(args...)
	}
	id := to.ID()
	to.CLI("CLUSTER", "SETSLOT", s, "NODE", id)
	from.CLI("CLUSTER", "SETSLOT", s, "NODE", id)
	for _, n := range c.Nodes {
		if n != to && n != from {
			n.CLI("CLUSTER", "SETSLOT", s, "NODE", id)
		}
	}
	c.WaitConsistent()
}
