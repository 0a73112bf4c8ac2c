package serve

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

const deployDir = "../deploy"

// TestDeployRules loads the alert rules with Prometheus's own promtool and
// runs their unit tests (scripts/test installs Debian's prometheus, which
// has promtool).
func TestDeployRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not on PATH: install Debian's prometheus package (apt-get install prometheus) to check deploy/prometheus; scripts/test does")
	}
	dir := filepath.Join(deployDir, "prometheus")
	for _, args := range [][]string{
		{"check", "rules", "fanscope-rules.yml"},
		{"test", "rules", "fanscope-rules.test.yml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// The rules and the dashboard name only metrics serve exports.
func TestDeployNamesExist(t *testing.T) {
	m, err := NewMetrics(prometheus.NewRegistry(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var have []string
	descs := make(chan *prometheus.Desc, 64)
	for _, c := range m.collectors() {
		c.Describe(descs)
	}
	close(descs)
	nameRE := regexp.MustCompile(`fqName: "([a-z_]+)"`)
	for d := range descs {
		if sub := nameRE.FindStringSubmatch(d.String()); sub != nil {
			have = append(have, sub[1])
		}
	}
	if len(have) != 14 {
		t.Fatalf("got %d metric names, want the 14 of the contract: %v", len(have), have)
	}
	used := regexp.MustCompile(`fanscope_[a-z_]+`)
	for _, f := range []string{"prometheus/fanscope-rules.yml", "grafana/fanscope-dashboard.json"} {
		b, err := os.ReadFile(filepath.Join(deployDir, f))
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, n := range used.FindAllString(string(b), -1) {
			base := n
			for _, suf := range []string{"_bucket", "_sum", "_count"} {
				if s, ok := strings.CutSuffix(n, suf); ok && strings.HasSuffix(s, "_seconds") {
					base = s
				}
			}
			if strings.HasPrefix(n, "fanscope_fanout") {
				continue // the dashboard's uid
			}
			if !slices.Contains(have, base) && !seen[n] {
				t.Errorf("%s uses %s, which serve does not export", f, n)
			}
			seen[n] = true
		}
	}
}

func TestDeployDashboardJSON(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(deployDir, "grafana", "fanscope-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	var exprs []string
	for _, p := range d.Panels {
		for _, q := range p.Targets {
			exprs = append(exprs, q.Expr)
		}
	}
	all := strings.Join(exprs, "\n")
	for _, want := range []string{"fanscope_probe_latency_seconds_bucket", "fanscope_probe_lost_total", "fanscope_channel_subscribers", "fanscope_pubsub_output_buffer_max_ratio"} {
		if !strings.Contains(all, want) {
			t.Errorf("the dashboard has no panel on %s", want)
		}
	}
}

func TestDeployExampleConfig(t *testing.T) {
	cfg, err := LoadConfig(filepath.Join(deployDir, "fanscope.example.yaml"))
	if err != nil {
		t.Fatalf("the example config is refused: %v", err)
	}
	if len(cfg.Targets) != 2 {
		t.Errorf("got %d targets, want 2", len(cfg.Targets))
	}
}
