package serve

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/probes"
	"github.com/fanscope/fanscope/redisx"
	"github.com/fanscope/fanscope/session"
)

// scriptedSession is a Session whose state the test sets: it stands in
// for the session core so that serve's own lifecycle (retry, probe
// schedule, drain) can be checked in isolation. The real session is
// exercised by cli's serve test.
type scriptedSession struct {
	mu       sync.Mutex
	statuses []feed.Status
	sent     int
	failed   int
	closed   bool
	sendErr  error
	errs     chan error
}

func (s *scriptedSession) Snapshot(now time.Time) session.Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return session.Snapshot{
		Now:      now,
		Statuses: append([]feed.Status(nil), s.statuses...),
		Probes: probes.Snapshot{At: now, RunID: "0123abcd", Sent: s.sent, PublishErrors: s.failed,
			Paths: []probes.PathStats{{Path: "redis", Delivered: int64(s.sent)}}},
		Introspection: redisx.Introspection{NumSub: map[string]int64{"story:published": 2}},
		Introspected:  true,
	}
}

func (s *scriptedSession) SendProbe(context.Context) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sendErr != nil {
		s.failed++
		return 0, s.sendErr
	}
	s.sent++
	return 2, nil
}

func (s *scriptedSession) Err() <-chan error { return s.errs }

func (s *scriptedSession) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
}

func get(t *testing.T, url string, header ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRunRetriesProbesAndDrains(t *testing.T) {
	sess := &scriptedSession{statuses: []feed.Status{{Source: feed.SourceRedis, State: feed.StateSubscribed}}}
	var mu sync.Mutex
	attempts := 0
	open := func(ctx context.Context, onBatch func([]feed.Record)) (Session, error) {
		mu.Lock()
		defer mu.Unlock()
		attempts++
		if attempts < 3 {
			return nil, errors.New("redis 127.0.0.1:1: connection refused")
		}
		return sess, nil
	}
	neverOpens := func(context.Context, func([]feed.Record)) (Session, error) {
		return nil, errors.New("sse endpoint app-2: connection refused")
	}
	srv, err := New(Options{SyncEvery: 10 * time.Millisecond, RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond},
		[]Target{
			{Tracker: TrackerConfig{Name: "prod", Paths: []string{"redis"}, ProbeChannel: "story:published"}, ProbeEvery: time.Second, Open: open},
			{Tracker: TrackerConfig{Name: "broken", Paths: []string{"redis", "sse:app-2"}}, ProbeEvery: time.Second, Open: neverOpens},
		})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, ln) }()

	waitFor(t, "prod up in /healthz", func() bool {
		code, body := get(t, base+"/healthz")
		return code == 200 && strings.Contains(body, "prod up\n") &&
			strings.Contains(body, "broken down: sse endpoint app-2: connection refused\n")
	})
	waitFor(t, "a probe sent and counted", func() bool {
		_, body := get(t, base+"/metrics")
		return strings.Contains(body, `fanscope_probes_sent_total{target="prod"} 1`)
	})
	_, body := get(t, base+"/metrics")
	for _, want := range []string{
		`fanscope_path_up{path="redis",target="prod"} 1`,
		`fanscope_path_up{path="redis",target="broken"} 0`,
		`fanscope_path_up{path="sse:app-2",target="broken"} 0`,
		`fanscope_channel_subscribers{channel="story:published",target="prod"} 2`,
		`fanscope_last_probe_success{target="prod"} 1`,
		"# HELP fanscope_probes_sent_total ",
		"go_goroutines ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	code, body := get(t, base+"/report")
	var reps map[string]TargetReport
	if err := json.Unmarshal([]byte(body), &reps); code != 200 || err != nil {
		t.Fatalf("/report: %d %v: %s", code, err, body)
	}
	if r, ok := reps["prod"]; !ok || !r.Pass || r.Window != "1m0s" || len(r.Paths) != 1 || r.Paths[0].Path != "redis" {
		t.Errorf("/report prod: got %+v", reps["prod"])
	}
	if _, ok := reps["broken"]; ok {
		t.Errorf("/report has broken, which completed no probe")
	}
	if code, body := get(t, base+"/report?target=broken"); code != 404 || !strings.Contains(body, "completed no probe yet") {
		t.Errorf("/report?target=broken: got %d %s", code, body)
	}
	if code, _ := get(t, base+"/report?target=nope"); code != 404 {
		t.Errorf("/report?target=nope: got %d, want 404", code)
	}

	// A failing PUBLISH counts as a publish error.
	sess.mu.Lock()
	sess.sendErr = errors.New("READONLY You can't write against a read only replica")
	sess.mu.Unlock()
	waitFor(t, "a publish error counted", func() bool {
		_, body := get(t, base+"/metrics")
		return strings.Contains(body, `fanscope_probe_publish_errors_total{target="prod"} 1`)
	})

	cancel() // SIGTERM
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after SIGTERM: got %v, want nil (exit 0)", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of SIGTERM")
	}
	sess.mu.Lock()
	closed := sess.closed
	sess.mu.Unlock()
	if !closed {
		t.Error("the session was not closed on drain")
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("the listener still accepts after Run returned")
	}
}

func TestNativeHistogramOnRequest(t *testing.T) {
	srv, err := New(Options{}, []Target{{Tracker: TrackerConfig{Name: "prod"}, Open: func(context.Context, func([]feed.Record)) (Session, error) {
		return nil, errors.New("unused")
	}}})
	if err != nil {
		t.Fatal(err)
	}
	srv.Trackers()[0].ObserveBatch([]feed.Record{probeRec(feed.SourceSSE, "a", 0, "p1", t0, 150_000)})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv.Handler()}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { _ = hs.Close() })

	// Prometheus asks for protobuf when native histograms are enabled.
	req, _ := http.NewRequest(http.MethodGet, "http://"+ln.Addr().String()+"/metrics", nil)
	req.Header.Set("Accept", "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	dec := expfmt.NewDecoder(resp.Body, expfmt.ResponseFormat(resp.Header))
	var h *dto.Histogram
	for {
		var mf dto.MetricFamily
		if err := dec.Decode(&mf); err != nil {
			break
		}
		if mf.GetName() == "fanscope_probe_latency_seconds" {
			h = mf.GetMetric()[0].GetHistogram()
		}
	}
	if h == nil {
		t.Fatal("no fanscope_probe_latency_seconds in the protobuf exposition")
	}
	if h.Schema == nil || len(h.GetPositiveSpan()) == 0 || len(h.GetBucket()) != len(LatencyBuckets) {
		t.Errorf("got schema %v, %d positive spans, %d classic buckets; want a native histogram alongside %d classic buckets",
			h.Schema, len(h.GetPositiveSpan()), len(h.GetBucket()), len(LatencyBuckets))
	}

	// The text format still has the classic buckets, 0.1 ms to 30 s.
	code, body := get(t, "http://"+ln.Addr().String()+"/metrics")
	if code != 200 || !strings.Contains(body, `fanscope_probe_latency_seconds_bucket{path="sse:a",target="prod",le="0.0001"} 0`) ||
		!strings.Contains(body, `fanscope_probe_latency_seconds_bucket{path="sse:a",target="prod",le="0.25"} 1`) ||
		!strings.Contains(body, `fanscope_probe_latency_seconds_bucket{path="sse:a",target="prod",le="30"} 1`) {
		t.Errorf("text exposition lacks the classic buckets:\n%s", body)
	}
}

func TestNewRefuses(t *testing.T) {
	open := func(context.Context, func([]feed.Record)) (Session, error) { return nil, errors.New("x") }
	for _, c := range []struct {
		name    string
		targets []Target
		want    string
	}{
		{"none", nil, "no target"},
		{"same name", []Target{{Tracker: TrackerConfig{Name: "a"}, Open: open}, {Tracker: TrackerConfig{Name: "a"}, Open: open}}, `two targets are named "a"`},
		{"too often", []Target{{Tracker: TrackerConfig{Name: "a"}, Open: open, ProbeEvery: 10 * time.Millisecond}}, "below the minimum 1s"},
	} {
		if _, err := New(Options{}, c.targets); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.name, err, c.want)
		}
	}
}
