package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The soak section (issue 15): `fanscope serve` runs for --soak-duration
// against the run's redis-server and fanscope's relay, plus one SSE
// endpoint (flapper, below) that goes away and comes back every 10 s,
// while organic messages flow and probes go out every 10 s. /metrics is
// scraped every 10 s; RSS and goroutines must stay flat.

const (
	soakScrapeEvery = 10 * time.Second
	soakFlapPeriod  = 10 * time.Second // one outage and one return per period
	soakBaselineAt  = time.Minute      // the value judged against: after start-up
	soakGrowthMark  = 0.20             // last at most +20% over the baseline
)

// flapper is an SSE endpoint on a fixed loopback port that is up for the
// first half of every period and gone (listener closed, connections cut)
// for the second half.
type flapper struct {
	addr     string
	outages  atomic.Int64
	conns    atomic.Int64
	cancel   context.CancelFunc
	done     chan struct{}
	mu       sync.Mutex
	srv      *http.Server
	startErr error
}

func startFlapper(ctx context.Context, period time.Duration) (*flapper, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	f := &flapper{addr: "127.0.0.1:" + strconv.Itoa(port), done: make(chan struct{})}
	if err := f.up(); err != nil {
		return nil, err
	}
	ctx, f.cancel = context.WithCancel(ctx)
	go func() {
		defer close(f.done)
		defer f.down()
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(period / 2):
			}
			f.down()
			f.outages.Add(1)
			select {
			case <-ctx.Done():
				return
			case <-time.After(period / 2):
			}
			// The port may be briefly taken by another process: try again
			// at the next period rather than end the soak.
			if err := f.up(); err != nil {
				f.mu.Lock()
				f.startErr = err
				f.mu.Unlock()
			}
		}
	}()
	return f, nil
}

func (f *flapper) up() error {
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		return fmt.Errorf("flapping endpoint: listen on %s: %w", f.addr, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(f.serve), ReadHeaderTimeout: 5 * time.Second}
	f.mu.Lock()
	f.srv = srv
	f.mu.Unlock()
	go srv.Serve(ln)
	return nil
}

func (f *flapper) down() {
	f.mu.Lock()
	srv := f.srv
	f.srv = nil
	f.mu.Unlock()
	if srv != nil {
		srv.Close() // the listener and every connection, at once
	}
}

// serve sends a keep-alive and a small event every second until the
// client goes or the endpoint goes down.
func (f *flapper) serve(w http.ResponseWriter, r *http.Request) {
	f.conns.Add(1)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for seq := 0; ; seq++ {
		if _, err := fmt.Fprintf(w, ": keep-alive\n\nid: %d\ndata: {\"flap\":%d}\n\n", seq, seq); err != nil {
			return
		}
		if fl != nil {
			fl.Flush()
		}
		select {
		case <-r.Context().Done():
			return
		case <-t.C:
		}
	}
}

func (f *flapper) close() {
	f.cancel()
	<-f.done
}

// metricValue returns the first sample of the metric name in a Prometheus
// text exposition whose labels include every name="value" in want.
func metricValue(text, name string, want ...string) (float64, bool) {
	s := bufio.NewScanner(strings.NewReader(text))
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		l := s.Text()
		rest, ok := strings.CutPrefix(l, name)
		if !ok || len(rest) == 0 || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		labels := ""
		if rest[0] == '{' {
			i := strings.LastIndexByte(rest, '}')
			if i < 0 {
				continue
			}
			labels, rest = rest[1:i], rest[i+1:]
		}
		match := true
		for _, w := range want {
			if !strings.Contains(","+labels+",", ","+w+",") {
				match = false
				break
			}
		}
		if !match {
			continue
		}
		fs := strings.Fields(rest)
		if len(fs) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fs[0], 64)
		if err != nil {
			continue
		}
		return v, true
	}
	return 0, false
}

// soakSample is one scrape.
type soakSample struct {
	at         time.Duration
	rssKB      int64   // VmRSS from /proc
	goroutines float64 // go_goroutines
	flapRecon  float64 // fanscope_reconnects_total{path="sse:flap"}
	flapUp     float64 // fanscope_path_up{path="sse:flap"}
	probes     float64 // fanscope_probes_sent_total
	delivered  float64 // fanscope_probe_deliveries_total{path="sse:relay"}
}

// flatness summarises one series: first, the baseline (the first sample
// at or after soakBaselineAt), last and peak, and whether last stayed
// within +20% of the baseline.
type flatness struct {
	first, base, last, peak float64
	ok                      bool
}

func judgeFlat(ss []soakSample, v func(soakSample) float64) flatness {
	if len(ss) == 0 {
		return flatness{}
	}
	f := flatness{first: v(ss[0]), base: v(ss[0]), last: v(ss[len(ss)-1])}
	found := false
	for _, s := range ss {
		if !found && s.at >= soakBaselineAt {
			f.base, found = v(s), true
		}
		f.peak = max(f.peak, v(s))
	}
	f.ok = found && f.base > 0 && f.last <= f.base*(1+soakGrowthMark)
	return f
}

func scrape(ctx context.Context, hc *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), nil
}

func runSoak(ctx context.Context, e *env) ([]row, error) {
	dur := e.soak
	rs, err := e.redisServer()
	if err != nil {
		return nil, err
	}
	ch := fmt.Sprintf("bench:soak:%d", time.Now().UnixNano())
	relay, relayAddr, err := startRelayKind(ctx, e, "fanscope", rs, ch, 0)
	if err != nil {
		return nil, err
	}
	defer relay.stop(5 * time.Second)
	flap, err := startFlapper(ctx, soakFlapPeriod)
	if err != nil {
		return nil, err
	}
	defer flap.close()
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	listen := "127.0.0.1:" + strconv.Itoa(port)
	sv, err := e.spawn("soak-serve", nil, e.fanscope, "serve", "--redis", rs.url(), "-c", ch,
		"--sse", "relay=http://"+relayAddr+relayPath, "--sse", "flap=http://"+flap.addr+"/events",
		"--listen", listen, "--probe-every", "10s", "--probe-channel", ch)
	if err != nil {
		return nil, err
	}
	defer sv.stopWith(syscall.SIGTERM, 10*time.Second)
	hc := &http.Client{Timeout: 5 * time.Second}
	metrics := "http://" + listen + "/metrics"
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := scrape(ctx, hc, "http://"+listen+"/healthz"); err == nil {
			break
		}
		if sv.exitCode() >= 0 || time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("fanscope serve did not answer /healthz on %s (exit %d, log: %s)", listen, sv.exitCode(), sv.logTail(3))
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.logf("soak: fanscope serve for %s: relay on %s, endpoint on %s down 5 s of every 10 s, 20 msgs/s, a probe every 10 s", dur, relayAddr, flap.addr)

	// Organic traffic: 20 messages a second through Redis and the relay.
	pctx, stopPub := context.WithCancel(ctx)
	defer stopPub()
	var published atomic.Int64
	go func() {
		pub := rs.client()
		defer pub.Close()
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for i := 0; ; i++ {
			select {
			case <-pctx.Done():
				return
			case <-t.C:
			}
			if pub.Publish(pctx, ch, payload(i, 200)).Err() == nil {
				published.Add(1)
			}
		}
	}()

	var ss []soakSample
	start := time.Now()
	nextLog := time.Minute
	for at := time.Duration(0); ; at += soakScrapeEvery {
		if wait := time.Until(start.Add(at)); wait > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(wait):
			}
		}
		if sv.exitCode() >= 0 {
			return nil, fmt.Errorf("fanscope serve exited %d after %s (log: %s)", sv.exitCode(), time.Since(start).Round(time.Second), sv.logTail(3))
		}
		body, err := scrape(ctx, hc, metrics)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("scrape /metrics after %s: %w", time.Since(start).Round(time.Second), err)
		}
		st, err := procStatus(sv.pid())
		if err != nil {
			return nil, fmt.Errorf("read fanscope serve's RSS: %w", err)
		}
		g, okG := metricValue(body, "go_goroutines")
		if !okG {
			return nil, errors.New("/metrics has no go_goroutines: serve no longer registers the Go collector")
		}
		s := soakSample{at: time.Since(start), rssKB: st["VmRSS"], goroutines: g}
		s.flapRecon, _ = metricValue(body, "fanscope_reconnects_total", `path="sse:flap"`)
		s.flapUp, _ = metricValue(body, "fanscope_path_up", `path="sse:flap"`)
		s.probes, _ = metricValue(body, "fanscope_probes_sent_total")
		s.delivered, _ = metricValue(body, "fanscope_probe_deliveries_total", `path="sse:relay"`)
		ss = append(ss, s)
		if s.at >= nextLog {
			e.logf("   %s: RSS %s, %.0f goroutines, %.0f reconnects of sse:flap, %.0f probes (%.0f delivered via the relay), %d published",
				s.at.Round(time.Second), mb(s.rssKB), s.goroutines, s.flapRecon, s.probes, s.delivered, published.Load())
			nextLog += time.Minute
		}
		if s.at >= dur {
			break
		}
	}
	stopPub()
	flap.mu.Lock()
	if flap.startErr != nil {
		e.logf("   the flapping endpoint missed a return: %v", flap.startErr)
	}
	flap.mu.Unlock()
	rss := judgeFlat(ss, func(s soakSample) float64 { return float64(s.rssKB) })
	gor := judgeFlat(ss, func(s soakSample) float64 { return s.goroutines })
	last := ss[len(ss)-1]
	target := fmt.Sprintf("last <= +%.0f%% of 1 min", soakGrowthMark*100)
	d := dur.Round(time.Second).String()
	rows := []row{
		{"soak", fmt.Sprintf("serve RSS over %s: first / 1 min / last / peak", d),
			fmt.Sprintf("%s / %s / %s / %s", mb(int64(rss.first)), mb(int64(rss.base)), mb(int64(rss.last)), mb(int64(rss.peak))),
			"-", ratio(rss.last, rss.base), target, verdict(rss.ok)},
		{"soak", fmt.Sprintf("serve goroutines over %s: first / 1 min / last / peak", d),
			fmt.Sprintf("%.0f / %.0f / %.0f / %.0f", gor.first, gor.base, gor.last, gor.peak),
			"-", ratio(gor.last, gor.base), target, verdict(gor.ok)},
		{"soak", "flapping endpoint outages / its reconnects / probes sent / delivered via relay / messages published",
			fmt.Sprintf("%d / %.0f / %.0f / %.0f / %s", flap.outages.Load(), last.flapRecon, last.probes, last.delivered, count(published.Load())),
			fmt.Sprintf("endpoint: %s connections", count(flap.conns.Load())), "-", "-", info},
	}
	return rows, nil
}
