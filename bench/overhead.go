package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// probeReport is the part of `fanscope probe --json` the bench reads.
type probeReport struct {
	Pass  bool `json:"pass"`
	Sent  int  `json:"sent"`
	Paths []struct {
		Path      string  `json:"path"`
		Delivered int64   `json:"delivered"`
		Lost      int64   `json:"lost"`
		P50MS     float64 `json:"p50_ms"`
		P90MS     float64 `json:"p90_ms"`
		P99MS     float64 `json:"p99_ms"`
		MaxMS     float64 `json:"max_ms"`
	} `json:"paths"`
	Fanout []struct {
		Path        string  `json:"path"`
		Connections int     `json:"connections"`
		Complete    int64   `json:"complete"`
		P50MS       float64 `json:"p50_ms"`
		P99MS       float64 `json:"p99_ms"`
		MaxMS       float64 `json:"max_ms"`
	} `json:"fanout"`
	Failures []string `json:"failures"`
}

// latencies is one side's result: p50 and p99 in milliseconds.
type latencies struct {
	p50, p99  float64
	delivered int
}

// percentile is the nearest-rank percentile (0-100) of sorted ds, in ms.
func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.5) - 1
	i = min(max(i, 0), len(sorted)-1)
	return float64(sorted[i]) / float64(time.Millisecond)
}

// baselineLoop is the minimal go-redis publish→receive loop: a dedicated
// subscriber connection whose receive loop stamps time.Now() right after
// ReceiveTimeout returns, and a publisher that stamps just before PUBLISH,
// sending n probe-shaped payloads every interval.
func baselineLoop(ctx context.Context, rs *redisServer, n int, interval time.Duration) (latencies, error) {
	ch := fmt.Sprintf("bench:baseline:%d", time.Now().UnixNano())
	subc, pub := rs.client(), rs.client()
	defer subc.Close()
	defer pub.Close()
	ps := subc.Subscribe(ctx, ch)
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		return latencies{}, fmt.Errorf("subscribe: %w", err)
	}
	if err := pub.Ping(ctx).Err(); err != nil {
		return latencies{}, fmt.Errorf("connect publisher: %w", err)
	}

	sent := make([]time.Time, n)
	got := make(chan time.Duration, n)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		for {
			msg, err := ps.ReceiveTimeout(rctx, time.Second)
			at := time.Now()
			if rctx.Err() != nil {
				return
			}
			if err != nil {
				continue
			}
			m, isMsg := msg.(*redis.Message)
			if !isMsg {
				continue
			}
			payload := m.Payload
			seq, ok := probeSeq(payload)
			if ok && seq >= 0 && seq < n {
				got <- at.Sub(sent[seq])
			}
		}
	}()

	runID := "b0b0b0b0"
	next := time.Now()
	for i := range n {
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		next = next.Add(interval)
		sent[i] = time.Now()
		body := probePayload(runID, i, sent[i])
		if err := pub.Publish(ctx, ch, body).Err(); err != nil {
			return latencies{}, fmt.Errorf("publish: %w", err)
		}
	}
	var ds []time.Duration
	timeout := time.After(5 * time.Second)
collect:
	for len(ds) < n {
		select {
		case d := <-got:
			ds = append(ds, d)
		case <-timeout:
			break collect
		case <-ctx.Done():
			return latencies{}, ctx.Err()
		}
	}
	slices.Sort(ds)
	return latencies{p50: percentile(ds, 50), p99: percentile(ds, 99), delivered: len(ds)}, nil
}

// probePayload is the shape of fanscope's default probe template, so both
// sides move the same bytes.
func probePayload(runID string, seq int, at time.Time) string {
	return `{"fanscope_probe":"fsp-` + runID + "-" + strconv.Itoa(seq) + `","seq":` + strconv.Itoa(seq) +
		`,"sent_at":"` + at.UTC().Format(time.RFC3339Nano) + `"}`
}

func probeSeq(payload string) (int, bool) {
	_, rest, ok := strings.Cut(payload, `"seq":`)
	if !ok {
		return 0, false
	}
	end := strings.IndexByte(rest, ',')
	if end < 0 {
		return 0, false
	}
	n, err := strconv.Atoi(rest[:end])
	return n, err == nil
}

// fanscopeProbe runs `fanscope probe ... --json` and parses its report.
func fanscopeProbe(ctx context.Context, e *env, name string, timeout time.Duration, args ...string) (probeReport, *child, error) {
	var rep probeReport
	out := e.workPath(name + ".json")
	f, err := os.Create(out)
	if err != nil {
		return rep, nil, err
	}
	defer f.Close()
	c, err := e.spawn(name, f, append([]string{e.fanscope, "probe"}, args...)...)
	if err != nil {
		return rep, nil, err
	}
	if err := waitChild(ctx, c, timeout); err != nil {
		return rep, c, err
	}
	b, _ := os.ReadFile(out)
	if err := json.Unmarshal(bytes.TrimSpace(b), &rep); err != nil {
		return rep, c, fmt.Errorf("fanscope probe exited %d without a JSON report (%s): %w", c.exitCode(), c.logTail(3), err)
	}
	return rep, c, nil
}

// waitChild waits for c to exit by itself within timeout, else stops it.
func waitChild(ctx context.Context, c *child, timeout time.Duration) error {
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		c.kill()
		return ctx.Err()
	case <-time.After(timeout):
		c.stop(5 * time.Second)
		return fmt.Errorf("%s did not finish within %s (log: %s)", c.name, timeout, c.logTail(3))
	}
}

func runOverhead(ctx context.Context, e *env) ([]row, error) {
	rs, err := e.redisServer()
	if err != nil {
		return nil, err
	}
	n := pick(e, 1000, 300)
	rounds := pick(e, 3, 1)
	interval := 2 * time.Millisecond
	e.logf("overhead: %d probes every %s, %d round(s) each, medians", n, interval, rounds)
	var base, fs []latencies
	for round := range rounds {
		b, err := baselineLoop(ctx, rs, n, interval)
		if err != nil {
			return nil, fmt.Errorf("baseline loop: %w", err)
		}
		e.logf("   go-redis loop  p50 %s p99 %s (%d/%d)", ms(b.p50), ms(b.p99), b.delivered, n)
		base = append(base, b)

		ch := fmt.Sprintf("bench:probe:%d:%d", round, time.Now().UnixNano())
		rep, c, err := fanscopeProbe(ctx, e, "overhead-probe", 60*time.Second,
			"--redis", rs.url(), "-c", ch, "-n", strconv.Itoa(n), "--interval", interval.String(), "--json")
		if err != nil {
			return nil, err
		}
		var got *latencies
		for _, p := range rep.Paths {
			if p.Path == "redis" {
				got = &latencies{p50: p.P50MS, p99: p.P99MS, delivered: int(p.Delivered)}
			}
		}
		if got == nil {
			return nil, fmt.Errorf("fanscope probe report has no redis path (exit %d, %s)", c.exitCode(), c.logTail(3))
		}
		e.logf("   fanscope probe p50 %s p99 %s (%d/%d)", ms(got.p50), ms(got.p99), got.delivered, n)
		fs = append(fs, *got)
	}
	med := func(ls []latencies, f func(latencies) float64) float64 {
		v := make([]float64, len(ls))
		for i, l := range ls {
			v[i] = f(l)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	p50 := func(l latencies) float64 { return l.p50 }
	p99 := func(l latencies) float64 { return l.p99 }
	bp50, fp50 := med(base, p50), med(fs, p50)
	bp99, fp99 := med(base, p99), med(fs, p99)
	delivered := 0
	for _, l := range fs {
		delivered += l.delivered
	}
	rows := []row{
		{"overhead", fmt.Sprintf("redis path p50, %d probes @ %s", n, interval), ms(fp50), ms(bp50) + " go-redis loop",
			ratio(fp50, bp50), "<= 1.25x", verdict(fp50 > 0 && fp50 <= 1.25*bp50)},
		{"overhead", "redis path p99", ms(fp99), ms(bp99) + " go-redis loop", ratio(fp99, bp99), "-", info},
	}
	if delivered < n*rounds {
		rows = append(rows, row{"overhead", "probes delivered", fmt.Sprintf("%d of %d", delivered, n*rounds), "", "", "all", fail})
		return rows, errors.New("fanscope probe lost probes on loopback")
	}
	return rows, nil
}
