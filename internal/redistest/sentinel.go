package redistest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Sentinel is a Sentinel-managed setup on loopback: a primary, a replica
// and one redis-sentinel with quorum 1, owned by a test.
type Sentinel struct {
	t        testing.TB
	Name     string  // the master name
	Primary  *Server // the primary at start (a failover swaps the roles)
	Replica  *Server
	Sentinel *Server // CLI talks to the sentinel
}

// StartSentinel starts a primary, a replica of it and a Sentinel watching
// them as master name, and waits until the Sentinel knows the replica.
func StartSentinel(t testing.TB, name string) *Sentinel {
	t.Helper()
	primary := Start(t)
	replica := Start(t, "replicaof 127.0.0.1 "+strconv.Itoa(primary.Port))
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(replica.CLI("INFO", "replication"), "master_link_status:up") {
		if time.Now().After(deadline) {
			t.Fatalf("replica did not sync with the primary within 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}

	bin, err := exec.LookPath("redis-sentinel")
	if err != nil {
		bin, err = exec.LookPath("redis-server")
		if err != nil {
			t.Fatalf("redis-sentinel not found on PATH: apt-get install redis-sentinel")
		}
	}
	s := &Server{t: t, Port: FreePort(t), Dir: t.TempDir()}
	conf := []string{
		"bind 127.0.0.1",
		"port " + strconv.Itoa(s.Port),
		"dir " + s.Dir,
		"sentinel resolve-hostnames no",
		"sentinel monitor " + name + " 127.0.0.1 " + strconv.Itoa(primary.Port) + " 1",
		"sentinel down-after-milliseconds " + name + " 2000",
		"sentinel failover-timeout " + name + " 10000",
		"sentinel parallel-syncs " + name + " 1",
	}
	path := filepath.Join(s.Dir, "sentinel.conf")
	if err := os.WriteFile(path, []byte(strings.Join(conf, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.args = []string{bin, path, "--sentinel"}
	s.start()
	t.Cleanup(s.Close)

	st := &Sentinel{t: t, Name: name, Primary: primary, Replica: replica, Sentinel: s}
	deadline = time.Now().Add(30 * time.Second)
	for !st.replicaKnown() {
		if time.Now().After(deadline) {
			t.Fatalf("sentinel did not discover the replica within 30s:\n%s", s.CLI("SENTINEL", "REPLICAS", name))
		}
		time.Sleep(100 * time.Millisecond)
	}
	return st
}

// URL is the Sentinel's redis:// URL.
func (st *Sentinel) URL() string { return st.Sentinel.URL() }

// replicaKnown reports whether the Sentinel lists the replica as healthy.
func (st *Sentinel) replicaKnown() bool {
	out := st.Sentinel.CLI("SENTINEL", "REPLICAS", st.Name)
	if !strings.Contains(out, strconv.Itoa(st.Replica.Port)) {
		return false
	}
	lines := strings.Split(out, "\n")
	for i := 0; i+1 < len(lines); i++ {
		if strings.TrimSpace(lines[i]) == "flags" {
			flags := strings.TrimSpace(lines[i+1])
			return flags == "slave"
		}
	}
	return false
}

// MasterPort is the primary's port as the Sentinel names it now.
func (st *Sentinel) MasterPort() int {
	st.t.Helper()
	f := strings.Fields(st.Sentinel.CLI("SENTINEL", "GET-MASTER-ADDR-BY-NAME", st.Name))
	if len(f) != 2 {
		st.t.Fatalf("SENTINEL GET-MASTER-ADDR-BY-NAME %s: got %q", st.Name, f)
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

// Failover runs SENTINEL FAILOVER and waits until the Sentinel names the
// replica as the primary and the replica says it is one.
func (st *Sentinel) Failover() {
	st.t.Helper()
	before := st.MasterPort()
	st.Sentinel.CLI("SENTINEL", "FAILOVER", st.Name)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if p := st.MasterPort(); p != before {
			if p == st.Replica.Port {
				st.Primary, st.Replica = st.Replica, st.Primary
			}
			if strings.Contains(st.Primary.CLI("ROLE"), "master") {
				return
			}
		}
		if time.Now().After(deadline) {
			st.t.Fatalf("SENTINEL FAILOVER %s did not complete within 30s", st.Name)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
