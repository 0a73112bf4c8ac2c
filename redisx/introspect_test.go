package redisx

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/internal/redistest"
)

func TestParseClientList(t *testing.T) {
	text := "id=5 addr=127.0.0.1:51234 laddr=127.0.0.1:6379 fd=9 name=fanscope age=12 idle=3 flags=P db=0 sub=2 psub=1 ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=1024 rbp=0 obl=0 oll=0 omem=0 tot-mem=1800 events=r cmd=subscribe user=default redir=-1 resp=2\n" +
		"id=6 addr=10.1.2.3:40000 laddr=10.1.2.1:6379 fd=10 name= age=7200 idle=0 flags=P db=0 sub=0 psub=0 ssub=3 multi=-1 qbuf=0 omem=16777216 cmd=ssubscribe user=app\n"
	got := ParseClientList(text)
	want := []PubSubClient{
		{ID: 5, Addr: "127.0.0.1:51234", Name: "fanscope", Sub: 2, PSub: 1, Age: 12 * time.Second, Idle: 3 * time.Second},
		{ID: 6, Addr: "10.1.2.3:40000", SSub: 3, OMem: 16 << 20, Age: 2 * time.Hour},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if got := ParseClientList(""); len(got) != 0 {
		t.Errorf("got %+v for empty output, want none", got)
	}
}

func TestParseOutputBufferLimit(t *testing.T) {
	tests := []struct {
		name, in string
		want     OutputBufferLimit
		err      bool
	}{
		{"default", "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60",
			OutputBufferLimit{Available: true, Hard: 33554432, Soft: 8388608, SoftSeconds: 60}, false},
		{"units", "pubsub 32mb 8mb 60 normal 0 0 0", OutputBufferLimit{Available: true, Hard: 32 << 20, Soft: 8 << 20, SoftSeconds: 60}, false},
		{"unlimited", "pubsub 0 0 0", OutputBufferLimit{Available: true}, false},
		{"no pubsub class", "normal 0 0 0", OutputBufferLimit{}, true},
		{"garbage", "pubsub lots some 60", OutputBufferLimit{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseOutputBufferLimit(tt.in)
			if (err != nil) != tt.err {
				t.Fatalf("got error %v, want error %v", err, tt.err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestIntrospect(t *testing.T) {
	s := redistest.Start(t, "client-output-buffer-limit pubsub 16mb 4mb 30")
	c := open(t, fastOptions(s.URL()))
	sub := Subscription{Channels: []string{"story:published", "quiet"}, Patterns: []string{"story:*"}, ShardChannels: []string{"sh"}}
	subscribe(t, c, sub, newCollector())
	subscribe(t, c, Subscription{Channels: []string{"story:published"}}, newCollector())

	in, err := c.Introspect(context.Background(), sub)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(in.NumSub), "map[quiet:1 story:published:2]"; got != want {
		t.Errorf("got NumSub %s, want %s", got, want)
	}
	if in.NumPat != 1 {
		t.Errorf("got NumPat %d, want 1", in.NumPat)
	}
	if got, want := fmt.Sprint(in.ShardNumSub), "map[sh:1]"; got != want {
		t.Errorf("got ShardNumSub %s, want %s", got, want)
	}
	if got, want := strings.Join(in.Channels, ","), "quiet,story:published"; got != want {
		t.Errorf("got Channels %s, want %s", got, want)
	}
	want := OutputBufferLimit{Available: true, Hard: 16 << 20, Soft: 4 << 20, SoftSeconds: 30}
	if in.Limit != want {
		t.Errorf("got Limit %+v, want %+v", in.Limit, want)
	}
	if in.Info["pubsub_channels"] != "2" || in.Info["pubsub_patterns"] != "1" || in.Info["pubsubshard_channels"] != "1" {
		t.Errorf("got Info %v, want pubsub_channels 2, pubsub_patterns 1, pubsubshard_channels 1", in.Info)
	}
	// Three subscription connections: channels+patterns and shard of the
	// first Subscriber, channels of the second; all named "fanscope".
	var sub0, psub, ssub int
	for _, cl := range in.Clients {
		if cl.Name != "fanscope" || cl.Addr == "" {
			t.Errorf("got client %+v, want name fanscope and an address", cl)
		}
		sub0 += cl.Sub
		psub += cl.PSub
		ssub += cl.SSub
	}
	if len(in.Clients) != 3 || sub0 != 3 || psub != 1 || ssub != 1 {
		t.Errorf("got clients %+v, want 3 with sub 3, psub 1, ssub 1 in total", in.Clients)
	}
	if len(in.Unavailable) != 0 {
		t.Errorf("got Unavailable %v, want nothing", in.Unavailable)
	}
}

func TestIntrospectWithoutConfig(t *testing.T) {
	s := redistest.Start(t, `rename-command CONFIG ""`)
	c := open(t, fastOptions(s.URL()))
	in, err := c.Introspect(context.Background(), Subscription{Channels: []string{"a"}})
	if err != nil {
		t.Fatalf("got %v, want Introspect to work without CONFIG", err)
	}
	if in.Limit.Available || !strings.Contains(in.Limit.Reason, "CONFIG is disabled or renamed") {
		t.Errorf("got Limit %+v, want unavailable because CONFIG is renamed", in.Limit)
	}
	if in.NumSub["a"] != 0 || in.Info["pubsub_channels"] != "0" {
		t.Errorf("got %+v, want the rest filled in", in)
	}
}

func TestIntrospectUnreachable(t *testing.T) {
	s := redistest.Start(t)
	c := open(t, fastOptions(s.URL()))
	s.Kill()
	_, err := c.Introspect(context.Background(), Subscription{Channels: []string{"a"}})
	if !errors.Is(err, ErrUnreachable) {
		t.Errorf("got %v, want an ErrUnreachable", err)
	}
}

// tlsFiles writes a CA and a server certificate for 127.0.0.1 signed by it.
func tlsFiles(t *testing.T) (dir string) {
	t.Helper()
	dir = t.TempDir()
	write := func(name, typ string, der []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fanscope test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	write("ca.pem", "CERTIFICATE", caDER)
	write("server.pem", "CERTIFICATE", der)
	write("server.key", "EC PRIVATE KEY", keyDER)
	return dir
}

func TestTLS(t *testing.T) {
	dir := tlsFiles(t)
	port := redistest.FreePort(t)
	s := redistest.Start(t,
		"tls-port "+strconv.Itoa(port),
		"tls-cert-file "+filepath.Join(dir, "server.pem"),
		"tls-key-file "+filepath.Join(dir, "server.key"),
		"tls-ca-cert-file "+filepath.Join(dir, "ca.pem"),
		"tls-auth-clients no",
	)
	tlsURL := fmt.Sprintf("rediss://127.0.0.1:%d", port)
	ca := filepath.Join(dir, "ca.pem")

	t.Run("with CA", func(t *testing.T) {
		c := open(t, Options{URLs: []string{tlsURL}, TLSCA: ca})
		if got, want := c.Target(), tlsURL+"/0"; got != want {
			t.Errorf("got target %q, want %q", got, want)
		}
		col := newCollector()
		subscribe(t, c, Subscription{Channels: []string{"secure"}}, col)
		publish(t, c, "secure", "over TLS")
		col.waitFor(t, 5*time.Second, "the message", func(r []feed.Record) bool { return countMessages(r, "secure") == 1 })
	})
	t.Run("insecure", func(t *testing.T) {
		open(t, Options{URLs: []string{tlsURL}, TLSInsecure: true})
	})
	errTests := []struct {
		name, url, ca, want string
	}{
		{"unknown CA", tlsURL, "", "unknown authority"},
		{"TLS to a plain port", "rediss://" + s.Addr(), ca, "did not answer with TLS"},
		{"plain to the TLS port", fmt.Sprintf("redis://127.0.0.1:%d", port), "", "closed the connection"},
	}
	for _, tt := range errTests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Open(context.Background(), Options{URLs: []string{tt.url}, TLSCA: tt.ca, DialTimeout: 2 * time.Second})
			if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an ErrUnreachable saying %q", err, tt.want)
			}
		})
	}
}

func TestMergeIntrospection(t *testing.T) {
	refused := fmt.Errorf("dial tcp 10.0.0.3:6379: connect: %w", syscall.ECONNREFUSED)
	limit := OutputBufferLimit{Available: true, Hard: 32 << 20, Soft: 8 << 20, SoftSeconds: 60}
	node := func(name string, numsub map[string]int64, clients ...PubSubClient) nodeView {
		return nodeView{Node: name, NumSub: numsub, NumPat: 1, Channels: []string{"b", "a"}, Clients: clients,
			Info:  map[string]string{"pubsub_clients": "2", "client_recent_max_output_buffer": "100", "client_output_buffer_limit_disconnections": "1"},
			Limit: limit}
	}
	tests := []struct {
		name    string
		sub     Subscription
		cluster bool
		nodes   []nodeView
		want    string // fmt of the interesting fields
		err     string // substring of the error; empty means none
	}{
		{
			name:  "single server",
			sub:   Subscription{Channels: []string{"a", "quiet"}},
			nodes: []nodeView{node("127.0.0.1:6379", map[string]int64{"a": 2, "quiet": 0}, PubSubClient{Addr: "127.0.0.1:5000", Sub: 1})},
			want:  "numsub=map[a:2 quiet:0] numpat=1 channels=[a b] clients=[/127.0.0.1:5000] info=map[client_output_buffer_limit_disconnections:1 client_recent_max_output_buffer:100 pubsub_clients:2] bynode=map[] limit=true unavailable=[]",
		},
		{
			name:    "cluster sums, keeps each node's NUMSUB and names the node of each client",
			sub:     Subscription{Channels: []string{"a"}},
			cluster: true,
			nodes: []nodeView{
				node("10.0.0.2:6379", map[string]int64{"a": 3}, PubSubClient{Addr: "10.0.0.9:1"}),
				node("10.0.0.1:6379", map[string]int64{"a": 1}, PubSubClient{Addr: "10.0.0.9:2"}),
			},
			want: "numsub=map[a:4] numpat=2 channels=[a b] clients=[10.0.0.1:6379/10.0.0.9:2 10.0.0.2:6379/10.0.0.9:1] info=map[client_output_buffer_limit_disconnections:2 client_recent_max_output_buffer:100 pubsub_clients:4] bynode=map[10.0.0.1:6379:map[a:1] 10.0.0.2:6379:map[a:3]] limit=true unavailable=[]",
		},
		{
			name:    "a node down is listed and the others still count",
			sub:     Subscription{Channels: []string{"a"}},
			cluster: true,
			nodes: []nodeView{
				node("10.0.0.1:6379", map[string]int64{"a": 1}),
				{Node: "10.0.0.3:6379", Err: refused},
			},
			want: "numsub=map[a:1] numpat=1 channels=[a b] clients=[] info=map[client_output_buffer_limit_disconnections:1 client_recent_max_output_buffer:100 pubsub_clients:2] bynode=map[10.0.0.1:6379:map[a:1]] limit=true unavailable=[node 10.0.0.3:6379: connection refused]",
		},
		{
			name:    "a missing node (no view at all) leaves its channels at zero",
			sub:     Subscription{Channels: []string{"a", "b"}},
			cluster: true,
			nodes:   []nodeView{{Node: "10.0.0.1:6379", NumSub: map[string]int64{"a": 1}}},
			want:    "numsub=map[a:1 b:0] numpat=0 channels=[] clients=[] info=map[] bynode=map[10.0.0.1:6379:map[a:1]] limit=false unavailable=[]",
		},
		{
			name:    "per-node failures are named by node in a cluster",
			sub:     Subscription{},
			cluster: true,
			nodes: []nodeView{
				{Node: "10.0.0.1:6379", Unavailable: []string{"CLIENT LIST: permission denied"}, Limit: OutputBufferLimit{Reason: "unavailable: CONFIG is disabled"}},
				{Node: "10.0.0.2:6379", Limit: limit},
			},
			want: "numsub=map[] numpat=0 channels=[] clients=[] info=map[] bynode=map[] limit=true unavailable=[10.0.0.1:6379 CLIENT LIST: permission denied]",
		},
		{
			name:  "non-numeric INFO values are kept as given",
			nodes: []nodeView{{Node: "n", Info: map[string]string{"pubsub_clients": "many"}}},
			want:  "numsub=map[] numpat=0 channels=[] clients=[] info=map[pubsub_clients:many] bynode=map[] limit=false unavailable=[]",
		},
		{
			name:  "every node down is an error",
			sub:   Subscription{Channels: []string{"a"}},
			nodes: []nodeView{{Node: "127.0.0.1:6379", Err: refused}},
			err:   "127.0.0.1:6379: dial tcp 10.0.0.3:6379: connect: connection refused",
		},
		{
			name: "no node at all is an error",
			err:  "no node",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, err := mergeIntrospection(tt.sub, tt.cluster, tt.nodes)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("got error %v, want one containing %q", err, tt.err)
				}
				if !errors.Is(err, syscall.ECONNREFUSED) && tt.nodes != nil {
					t.Errorf("got %v, want it to wrap the node's error", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want none", err)
			}
			var clients []string
			for _, c := range in.Clients {
				clients = append(clients, c.Node+"/"+c.Addr)
			}
			got := fmt.Sprintf("numsub=%v numpat=%d channels=%v clients=%v info=%v bynode=%v limit=%v unavailable=%v",
				in.NumSub, in.NumPat, in.Channels, clients, in.Info, in.ByNode, in.Limit.Available, in.Unavailable)
			if got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}
