package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fanscope/fanscope/internal/redistest"
)

func TestServeConfigErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", "targets:\n  - name: a\n    redis: redis://127.0.0.1:1\n    channels: [x]\n")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown key", []string{"--config", write("unknown.yaml", "targets:\n  - name: a\n    redis: redis://h:1\n    channels: [x]\n    endpoint: {}\n")},
			`unknown.yaml, line 5: unknown key "endpoint" in a target`},
		{"wrong type", []string{"--config", write("type.yaml", "targets:\n  - name: a\n    redis: redis://h:1\n    channels: x\n    sse_clients: [1]\n")},
			`type.yaml, line 5: wrong type: want a whole number, got a list`},
		{"duplicate target", []string{"--config", write("dup.yaml", "targets:\n  - name: a\n    redis: redis://h:1\n    channels: [x]\n  - name: a\n    redis: redis://h:2\n    channels: [y]\n")},
			`dup.yaml, line 5: target name "a" is already used by the target at line 2`},
		{"missing redis", []string{"--config", write("noredis.yaml", "targets:\n  - name: a\n    channels: [x]\n")},
			`noredis.yaml, line 2: target "a" has no redis`},
		{"missing file", []string{"--config", filepath.Join(dir, "nope.yaml")}, "cannot read it: no such file or directory"},
		{"config and source flags", []string{"--config", good, "-c", "x", "--max-p99", "1s"}, "--channel, --max-p99: with --config the targets come from the file"},
		{"bad label", []string{"--config", good, "--label", "region"}, `--label "region": want k=v`},
		{"reserved label", []string{"--config", good, "--label", "path=x"}, `label name "path" is one fanscope or Prometheus sets itself`},
		{"probe too often", []string{"-c", "x", "--probe-every", "10ms"}, "--probe-every 10ms: want 0 (passive) or at least 1s"},
		{"nothing to watch", []string{"--sse", "http://127.0.0.1:1/"}, "serve needs something to watch"},
		{"bearer env unset", []string{"-c", "x", "--bearer-env", "NO_SUCH_TOKEN"}, "--bearer-env NO_SUCH_TOKEN: that environment variable is empty or unset"},
		{"bearer env unset in the file", []string{"--config", write("bearer.yaml", "targets:\n  - name: a\n    redis: redis://h:1\n    channels: [x]\n    bearer_env: NO_SUCH_TOKEN\n")},
			`target "a": bearer_env NO_SUCH_TOKEN: that environment variable is empty or unset`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, wait := startCmd(t, context.Background(), nil, append([]string{"serve", "--listen", "127.0.0.1:0"}, tc.args...)...)
			res := wait()
			if res.code != exitUsage {
				t.Errorf("exit %d, want %d; stderr: %s", res.code, exitUsage, res.stderr)
			}
			if !strings.Contains(res.stderr, tc.want) {
				t.Errorf("stderr %q does not contain %q", res.stderr, tc.want)
			}
		})
	}
	t.Run("check a good file", func(t *testing.T) {
		_, wait := startCmd(t, context.Background(), nil, "serve", "--config", good, "--check")
		res := wait()
		if res.code != 0 || !strings.Contains(res.stdout, "configuration good: 1 target(s), listen :9464") {
			t.Errorf("exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
		}
	})
}

// testRelay is a tiny Redis→SSE relay written for this test alone: it
// subscribes to channel on a real Redis with raw RESP and forwards every
// message to its SSE clients after delay, or drops every second message.
type testRelay struct {
	*httptest.Server
	delay time.Duration
	drop  bool

	mu      sync.Mutex
	clients map[chan relayMsg]bool
	got     int // messages received from Redis
	sent    int // messages forwarded (to each client)
}

type relayMsg struct {
	data string
	at   time.Time
}

func startTestRelay(t *testing.T, redisAddr, channel string, delay time.Duration, drop bool) *testRelay {
	t.Helper()
	r := &testRelay{delay: delay, drop: drop, clients: map[chan relayMsg]bool{}}
	conn, err := net.Dial("tcp", redisAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "SUBSCRIBE %s\r\n", channel)
	br := bufio.NewReader(conn)
	if _, err := readRESPArray(br); err != nil { // the subscribe confirmation
		t.Fatal(err)
	}
	go func() {
		for {
			msg, err := readRESPArray(br)
			if err != nil {
				return // Redis went away; this relay does not come back
			}
			at := time.Now().Add(r.delay)
			if len(msg) != 3 || msg[0] != "message" {
				continue
			}
			r.mu.Lock()
			r.got++
			if !r.drop || r.got%2 == 1 {
				r.sent++
				for c := range r.clients {
					select {
					case c <- relayMsg{msg[2], at}:
					default:
					}
				}
			}
			r.mu.Unlock()
		}
	}()
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		fl := w.(http.Flusher)
		io.WriteString(w, ": hello\n\n")
		fl.Flush()
		c := make(chan relayMsg, 1024)
		r.mu.Lock()
		r.clients[c] = true
		r.mu.Unlock()
		defer func() {
			r.mu.Lock()
			delete(r.clients, c)
			r.mu.Unlock()
		}()
		keepAlive := time.NewTicker(2 * time.Second)
		defer keepAlive.Stop()
		for {
			select {
			case <-req.Context().Done():
				return
			case <-keepAlive.C:
				io.WriteString(w, ": ka\n\n")
				fl.Flush()
			case m := <-c:
				select {
				case <-req.Context().Done():
					return
				case <-time.After(time.Until(m.at)):
				}
				fmt.Fprintf(w, "data: %s\n\n", m.data)
				fl.Flush()
			}
		}
	}))
	t.Cleanup(r.Server.Close)
	return r
}

func (r *testRelay) counts() (got, sent int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got, r.sent
}

// readRESPArray reads one RESP array of bulk strings.
func readRESPArray(br *bufio.Reader) ([]string, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(line, "*") {
		return nil, fmt.Errorf("want an array, got %q", line)
	}
	n, err := strconv.Atoi(strings.TrimSpace(line[1:]))
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, n)
	for range n {
		line, err := br.ReadString('\n')
		if err != nil {
			return nil, err
		}
		switch line[0] {
		case ':':
			out = append(out, strings.TrimSpace(line[1:]))
		case '$':
			size, err := strconv.Atoi(strings.TrimSpace(line[1:]))
			if err != nil {
				return nil, err
			}
			b := make([]byte, size+2)
			if _, err := io.ReadFull(br, b); err != nil {
				return nil, err
			}
			out = append(out, string(b[:size]))
		default:
			return nil, fmt.Errorf("unexpected %q", line)
		}
	}
	return out, nil
}

// promServer is a real Prometheus scraping one target every second.
type promServer struct {
	base string
}

func startPrometheus(t *testing.T, target string) *promServer {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus not on PATH: install Debian's prometheus package (apt-get install prometheus); scripts/test does")
	}
	dir := t.TempDir()
	conf := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: fanscope
    scrape_interval: 1s
    scrape_timeout: 900ms
    static_configs:
      - targets: [%q]
`, target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t))
	cmd := exec.Command(bin,
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		// Native histograms: fanscope's latency is then measured to about
		// 5% instead of to the classic bucket (0.1 s .. 0.25 s).
		"--enable-feature=native-histograms",
	)
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "prometheus.log"))
			t.Logf("prometheus log:\n%s", b)
		}
	})
	p := &promServer{base: "http://" + addr}
	waitUntil(t, "prometheus ready", 30*time.Second, func() bool {
		resp, err := http.Get(p.base + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return p
}

// query runs an instant PromQL query and returns the single value of its
// result, and false when the result is empty.
func (p *promServer) query(t *testing.T, q string) (float64, bool) {
	t.Helper()
	resp, err := http.Get(p.base + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		t.Fatalf("query %s: %v", q, err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("query %s: %v", q, err)
	}
	if body.Status != "success" {
		t.Fatalf("query %s: %s", q, body.Error)
	}
	if len(body.Data.Result) == 0 {
		return 0, false
	}
	if len(body.Data.Result) > 1 {
		t.Fatalf("query %s: %d series, want one", q, len(body.Data.Result))
	}
	s, _ := body.Data.Result[0].Value[1].(string)
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("query %s: value %q: %v", q, s, err)
	}
	return v, true
}

// eventually waits until q has a value for which ok holds.
func (p *promServer) eventually(t *testing.T, what, q string, ok func(float64) bool) float64 {
	t.Helper()
	var last float64
	var had bool
	deadline := time.Now().Add(45 * time.Second)
	for time.Now().Before(deadline) {
		if v, has := p.query(t, q); has {
			last, had = v, true
			if ok(v) {
				return v
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("%s: %s never held within 45s (last value %v, had a value: %v)", what, q, last, had)
	return 0
}

func waitUntil(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestServeWithPrometheus runs fanscope serve against a real Redis and two
// relays written here (one adds 150 ms, one drops every second message),
// has a real Prometheus scrape it every second, and checks through
// Prometheus's HTTP API that the figures match what the relays did.
func TestServeWithPrometheus(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Prometheus; skipped with -short")
	}
	if _, err := exec.LookPath("prometheus"); err != nil {
		t.Skip("prometheus not on PATH: install Debian's prometheus package (apt-get install prometheus); scripts/test does")
	}
	srv := redistest.Start(t)
	slow := startTestRelay(t, srv.Addr(), "story:published", 150*time.Millisecond, false)
	lossy := startTestRelay(t, srv.Addr(), "story:published", 0, true)

	listen := fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, wait := startCmd(t, ctx, nil, "serve",
		"--redis", srv.URL(), "-c", "story:published",
		"--sse", "slow="+slow.URL, "--sse", "lossy="+lossy.URL,
		"--listen", listen, "--probe-every", "1s", "--timeout", "1s", "--window", "15s",
		"--max-p99", "2s", "--label", "region=test-1", "--log-format", "json")
	prom := startPrometheus(t, listen)

	sent := prom.eventually(t, "probes sent", `fanscope_probes_sent_total{target="default",region="test-1"}`, func(v float64) bool { return v >= 1 })
	prom.eventually(t, "probe counter rises", `fanscope_probes_sent_total{target="default"}`, func(v float64) bool { return v >= sent+3 })

	// The slow relay: p50 near 150 ms, nothing lost.
	p50 := prom.eventually(t, "p50 of sse:slow",
		`histogram_quantile(0.5, sum(rate(fanscope_probe_latency_seconds{path="sse:slow"}[20s])))`,
		func(v float64) bool { return v > 0 })
	if p50 < 0.140 || p50 > 0.190 {
		t.Errorf("p50 of sse:slow through Prometheus: %.1f ms, want near 150 ms (140..190)", p50*1000)
	}
	if p50, _ := prom.query(t, `histogram_quantile(0.5, sum(rate(fanscope_probe_latency_seconds{path="sse:lossy"}[20s])))`); p50 > 0.05 {
		t.Errorf("p50 of sse:lossy (no delay): %.1f ms, want well under 50 ms", p50*1000)
	}
	// The lossy relay: half the probes lost, budgets failed.
	prom.eventually(t, "lost on sse:lossy", `fanscope_probe_lost_total{path="sse:lossy"}`, func(v float64) bool { return v >= 2 })
	prom.eventually(t, "budgets failed", `fanscope_last_probe_success{target="default"}`, func(v float64) bool { return v == 0 })
	lost, _ := prom.query(t, `fanscope_probe_lost_total{path="sse:lossy"}`)
	delivered, _ := prom.query(t, `fanscope_probe_deliveries_total{path="sse:lossy"}`)
	if lost < 2 || delivered < 2 || lost > 2*delivered+2 || delivered > 2*lost+2 {
		t.Errorf("sse:lossy: %v delivered, %v lost; the relay forwarded every second message", delivered, lost)
	}
	t.Logf("through Prometheus: sse:slow p50 %.1f ms; sse:lossy %v delivered, %v lost", p50*1000, delivered, lost)
	if v, _ := prom.query(t, `fanscope_probe_lost_total{path="sse:slow"}`); v != 0 {
		t.Errorf("sse:slow lost %v probes; that relay forwards every one", v)
	}
	if v, _ := prom.query(t, `fanscope_probe_lost_total{path="redis"}`); v != 0 {
		t.Errorf("redis lost %v probes", v)
	}
	got, fwd := lossy.counts()
	if got < 4 || fwd != (got+1)/2 {
		t.Errorf("the lossy relay got %d messages and forwarded %d: the test relay is broken", got, fwd)
	}
	if v, ok := prom.query(t, `fanscope_path_up{path="redis"}`); !ok || v != 1 {
		t.Fatalf("fanscope_path_up{path=\"redis\"} = %v (present %v), want 1 before Redis is killed", v, ok)
	}

	// PUBSUB NUMSUB: fanscope and the two relays.
	prom.eventually(t, "subscribers", `fanscope_channel_subscribers{channel="story:published"}`, func(v float64) bool { return v == 3 })
	prom.eventually(t, "buffer ratio", `fanscope_pubsub_output_buffer_max_ratio{target="default"}`, func(v float64) bool { return v >= 0 && v < 1 })

	// Redis killed: the redis path goes down; restarted: up again.
	srv.Kill()
	prom.eventually(t, "redis down", `fanscope_path_up{path="redis"}`, func(v float64) bool { return v == 0 })
	srv.Restart()
	prom.eventually(t, "redis up again", `fanscope_path_up{path="redis"}`, func(v float64) bool { return v == 1 })

	// /report and /healthz of serve itself.
	resp, err := http.Get("http://" + listen + "/report?target=default")
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Pass  bool `json:"pass"`
		Paths []struct {
			Path  string   `json:"path"`
			P50MS *float64 `json:"p50_ms"`
		} `json:"paths"`
	}
	err = json.NewDecoder(resp.Body).Decode(&rep)
	resp.Body.Close()
	if err != nil || rep.Pass {
		t.Errorf("/report: err %v, pass %v; want a failing report (sse:lossy drops probes)", err, rep.Pass)
	}

	cancel() // SIGTERM
	res := wait()
	if res.code != 0 {
		t.Errorf("serve after SIGTERM: exit %d, want 0; stderr:\n%s", res.code, res.stderr)
	}
	if !strings.Contains(res.stderr, `"msg":"draining"`) {
		t.Errorf("no JSON drain log line in stderr:\n%s", res.stderr)
	}
}
