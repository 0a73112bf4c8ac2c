// Package serve is fanscope's always-on side (`fanscope serve`): it turns
// what a session observes (records, the probe engine's counters, source
// health, Redis's Pub/Sub introspection) into Prometheus metrics, keeps a
// sliding window of completed probes to judge budgets, and serves
// /metrics, /healthz and /report. It reads sessions through the small
// Session interface, so one process can watch several targets, each
// retried on its own while the others keep going.
package serve

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// LatencyBuckets are the classic histogram bounds of both latency
// histograms, in seconds: 1, 2.5 and 5 per decade from 0.1 ms, up to 30 s.
var LatencyBuckets = latencyBuckets()

func latencyBuckets() []float64 {
	var b []float64
	for decade := 1e-4; decade < 30; decade *= 10 {
		for _, m := range []float64{1, 2.5, 5} {
			if v := m * decade; v < 30 {
				// Round away float noise (2.5e-4 must print as 0.00025).
				b = append(b, roundSig(v))
			}
		}
	}
	return append(b, 30)
}

// roundSig rounds v to 6 significant digits.
func roundSig(v float64) float64 {
	f, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'g', 6, 64), 64)
	return f
}

// Native histograms, for a scraper that negotiates them: buckets grow by
// at most 10% (a 5% relative error), capped in number so that one wild
// value cannot grow the exposition without bound.
const (
	nativeFactor     = 1.1
	nativeMaxBuckets = 160
)

// Label names the metrics use themselves; constant and per-target labels
// may not take them.
var reservedLabels = map[string]bool{
	"target": true, "path": true, "channel": true, "le": true, "quantile": true, "job": true, "instance": true,
}

var labelNameRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// ValidateLabelName says why name cannot be a label name, or nil.
func ValidateLabelName(name string) error {
	switch {
	case !labelNameRE.MatchString(name):
		return fmt.Errorf("label name %q: want letters, digits and underscores, not starting with a digit", name)
	case strings.HasPrefix(name, "__"):
		return fmt.Errorf("label name %q: names starting with __ are reserved by Prometheus", name)
	case reservedLabels[name]:
		return fmt.Errorf("label name %q is one fanscope or Prometheus sets itself (pick another, e.g. %s_name)", name, name)
	}
	return nil
}

// Metrics are every metric serve exports: names, types and labels are a
// contract with dashboards and alert rules. Each carries the constant
// labels (--label), "target", the per-target label names (the union over
// all targets; "" where a target does not set one, which Prometheus treats
// as absent), and "path" or "channel" where the table says so.
type Metrics struct {
	targetLabels []string // per-target label names, sorted

	probesSent    *prometheus.CounterVec
	publishErrors *prometheus.CounterVec
	deliveries    *prometheus.CounterVec
	lost          *prometheus.CounterVec
	duplicates    *prometheus.CounterVec
	probeLatency  *prometheus.HistogramVec
	hopLatency    *prometheus.HistogramVec
	messages      *prometheus.CounterVec
	pathUp        *prometheus.GaugeVec
	pathStalled   *prometheus.GaugeVec
	reconnects    *prometheus.CounterVec
	subscribers   *prometheus.GaugeVec
	bufferRatio   *prometheus.GaugeVec
	lastSuccess   *prometheus.GaugeVec
}

// NewMetrics creates the metrics with constLabels on every series and
// registers them with reg. targetLabels are the label names targets may
// set (TargetConfig.Labels); each is validated, as are constLabels.
func NewMetrics(reg prometheus.Registerer, constLabels map[string]string, targetLabels []string) (*Metrics, error) {
	for _, k := range slices.Sorted(maps.Keys(constLabels)) {
		if err := ValidateLabelName(k); err != nil {
			return nil, err
		}
	}
	tl := slices.Clone(targetLabels)
	slices.Sort(tl)
	tl = slices.Compact(tl)
	for _, k := range tl {
		if err := ValidateLabelName(k); err != nil {
			return nil, err
		}
		if _, ok := constLabels[k]; ok {
			return nil, fmt.Errorf("label %q is set both for the process (--label) and for a target; keep one", k)
		}
	}
	base := append([]string{"target"}, tl...)
	perPath := append(slices.Clone(base), "path")
	cl := prometheus.Labels(maps.Clone(constLabels))

	counter := func(name, help string, labels []string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: cl}, labels)
	}
	gauge := func(name, help string, labels []string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: cl}, labels)
	}
	hist := func(name, help string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:                            name,
			Help:                            help,
			ConstLabels:                     cl,
			Buckets:                         LatencyBuckets,
			NativeHistogramBucketFactor:     nativeFactor,
			NativeHistogramMaxBucketNumber:  nativeMaxBuckets,
			NativeHistogramMinResetDuration: time.Hour,
		}, perPath)
	}
	m := &Metrics{
		targetLabels: tl,
		probesSent: counter("fanscope_probes_sent_total",
			"Probes published to the target's probe channel (PUBLISH or SPUBLISH attempted).", base),
		publishErrors: counter("fanscope_probe_publish_errors_total",
			"Probes whose PUBLISH failed; they count here, not as lost on any path.", base),
		deliveries: counter("fanscope_probe_deliveries_total",
			"Probes delivered on the path within the probe timeout (to every connection of the path).", perPath),
		lost: counter("fanscope_probe_lost_total",
			"Probes not delivered on the path within the probe timeout.", perPath),
		duplicates: counter("fanscope_probe_duplicates_total",
			"Repeated deliveries of one probe on one connection of the path.", perPath),
		probeLatency: hist("fanscope_probe_latency_seconds",
			"Probe latency from just before PUBLISH to the receipt on the path, one observation per connection that received the probe."),
		hopLatency: hist("fanscope_hop_latency_seconds",
			"Organic traffic: time from fanscope's receipt of a Redis message to its delivery on the path."),
		messages: counter("fanscope_messages_total",
			"Organic records received on the path: Redis messages and endpoint events that are not probes.", perPath),
		pathUp: gauge("fanscope_path_up",
			"1 while every connection of the path is connected (Redis: subscribed), 0 otherwise.", perPath),
		pathStalled: gauge("fanscope_path_stalled",
			"1 while a connection of the path is stalled (sent nothing, not even a keep-alive, past its stall threshold).", perPath),
		reconnects: counter("fanscope_reconnects_total",
			"Connection attempts after the first, summed over the path's connections.", perPath),
		subscribers: gauge("fanscope_channel_subscribers",
			"Subscribers of the channel across the deployment (PUBSUB NUMSUB, summed over a Cluster's nodes).", append(slices.Clone(base), "channel")),
		bufferRatio: gauge("fanscope_pubsub_output_buffer_max_ratio",
			"Largest output buffer of a Pub/Sub client (CLIENT LIST omem) divided by the pubsub soft limit of client-output-buffer-limit (the hard limit when no soft one is set); Redis disconnects the client past the limit.", base),
		lastSuccess: gauge("fanscope_last_probe_success",
			"1 when the probes completed within the current --window met every budget (delivery and latency) on every path, 0 otherwise; absent until a probe completed.", base),
	}
	for _, c := range m.collectors() {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return m, nil
}

func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{
		m.probesSent, m.publishErrors, m.deliveries, m.lost, m.duplicates, m.probeLatency, m.hopLatency,
		m.messages, m.pathUp, m.pathStalled, m.reconnects, m.subscribers, m.bufferRatio, m.lastSuccess,
	}
}

// targetValues are the label values of "target" and the per-target labels
// for one target, in the metrics' label order.
func (m *Metrics) targetValues(name string, labels map[string]string) []string {
	v := make([]string, 0, 1+len(m.targetLabels))
	v = append(v, name)
	for _, k := range m.targetLabels {
		v = append(v, labels[k])
	}
	return v
}

// pathMetrics are one path's series of one target, looked up once.
type pathMetrics struct {
	deliveries, lost, duplicates, messages, reconnects prometheus.Counter
	probeLatency, hopLatency                           prometheus.Observer
	up, stalled                                        prometheus.Gauge
}

func (m *Metrics) forPath(target []string, path string) *pathMetrics {
	lv := append(slices.Clone(target), path)
	return &pathMetrics{
		deliveries:   m.deliveries.WithLabelValues(lv...),
		lost:         m.lost.WithLabelValues(lv...),
		duplicates:   m.duplicates.WithLabelValues(lv...),
		messages:     m.messages.WithLabelValues(lv...),
		reconnects:   m.reconnects.WithLabelValues(lv...),
		probeLatency: m.probeLatency.WithLabelValues(lv...),
		hopLatency:   m.hopLatency.WithLabelValues(lv...),
		up:           m.pathUp.WithLabelValues(lv...),
		stalled:      m.pathStalled.WithLabelValues(lv...),
	}
}
