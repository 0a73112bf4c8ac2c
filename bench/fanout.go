package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	childSSEArg = "__child-sse"
	relayPath   = "/api/community/events"
)

// memWatch samples VmRSS/VmHWM of a process until it exits or stop is called.
type memWatch struct {
	mu             sync.Mutex
	peakRSS, hwm   int64   // kB
	cpu            float64 // seconds, at the last sample
	stopped        chan struct{}
	done           chan struct{}
	samples, fdMax int
}

func watchMem(pid int, every time.Duration) *memWatch {
	w := &memWatch{stopped: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			st, err := procStatus(pid)
			if err != nil {
				return
			}
			fds := countFDs(pid)
			cpu, cerr := procCPU(pid)
			w.mu.Lock()
			if cerr == nil {
				w.cpu = cpu
			}
			w.peakRSS = max(w.peakRSS, st["VmRSS"])
			w.hwm = max(w.hwm, st["VmHWM"])
			w.fdMax = max(w.fdMax, fds)
			w.samples++
			w.mu.Unlock()
			select {
			case <-w.stopped:
				return
			case <-t.C:
			}
		}
	}()
	return w
}

// cpuSeconds is the CPU time the process had used at the last sample.
func (w *memWatch) cpuSeconds() float64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cpu
}

// result stops sampling and returns peak VmRSS, VmHWM (kB) and peak fds.
func (w *memWatch) result() (rss, hwm int64, fds int) {
	select {
	case <-w.stopped:
	default:
		close(w.stopped)
	}
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.peakRSS, w.hwm, w.fdMax
}

// relayStats is the part of the relay's /stats the bench reads.
type relayStats struct {
	Connections        int    `json:"connections"`
	SlowClientsDropped uint64 `json:"slow_clients_dropped"`
}

func getRelayStats(base string) (relayStats, error) {
	var s relayStats
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(base + "/stats")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&s)
	return s, err
}

// relayPeak polls the relay's connection count until stop is closed.
func relayPeak(base string, stop <-chan struct{}) <-chan int {
	out := make(chan int, 1)
	go func() {
		peak := 0
		for {
			if s, err := getRelayStats(base); err == nil {
				peak = max(peak, s.Connections)
			}
			select {
			case <-stop:
				out <- peak
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	return out
}

// startRelay runs `fanscope relay` on a free loopback port for ch and
// waits until /healthz answers.
func startRelay(ctx context.Context, e *env, rs *redisServer, ch string) (*child, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	listen := "127.0.0.1:" + strconv.Itoa(port)
	c, err := e.spawn("relay", nil, e.fanscope, "relay", "--redis", rs.url(), "--listen", listen, "-c", ch)
	if err != nil {
		return nil, "", err
	}
	base := "http://" + listen
	hc := http.Client{Timeout: time.Second}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := hc.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return c, base, nil
			}
		}
		if c.exitCode() >= 0 || time.Now().After(deadline) || ctx.Err() != nil {
			c.kill()
			return nil, "", fmt.Errorf("fanscope relay did not answer /healthz on %s (exit %d, log: %s)", listen, c.exitCode(), c.logTail(3))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// fanoutRun is one client process holding conns connections while probes flow.
type fanoutRun struct {
	conns, held int     // asked, held
	complete    int64   // probes every connection received
	sent        int     // probes sent
	p50, p99    float64 // fan-out completion (ms): publish to the last connection's read
	hwm, rss    int64   // kB
	fds         int
	cpu         float64 // CPU seconds the client used
	// The relay's VmRSS (kB) before the run and at its peak during it.
	relayIdleRSS, relayPeakRSS int64
	relayPeak                  int
	connectTime                time.Duration
	exit                       int
	failureDetail              string
}

// fanscopeFanout runs fanscope probe (the binary bin) with conns
// connections to the relay; name tells runs of different binaries apart.
func fanscopeFanout(ctx context.Context, e *env, rs *redisServer, bin, name, base, ch string, conns, probes int, interval time.Duration) (fanoutRun, error) {
	r := fanoutRun{conns: conns, sent: probes}
	out := e.workPath(fmt.Sprintf("fanout-%s-%d.json", name, conns))
	f, err := os.Create(out)
	if err != nil {
		return r, err
	}
	defer f.Close()
	stopPeak := make(chan struct{})
	peak := relayPeak(base, stopPeak)
	t0 := time.Now()
	c, err := e.spawn(fmt.Sprintf("fanout-%s-%d", name, conns), f, bin, "probe",
		"--redis", rs.url(), "-c", ch, "--sse", "bench="+base+relayPath,
		"--sse-clients", strconv.Itoa(conns), "-n", strconv.Itoa(probes), "--interval", interval.String(),
		"--timeout", "10s", "--json")
	if err != nil {
		close(stopPeak)
		return r, err
	}
	mw := watchMem(c.pid(), 50*time.Millisecond)
	err = waitChild(ctx, c, pick(e, 180*time.Second, 90*time.Second))
	r.rss, r.hwm, r.fds = mw.result()
	r.cpu = mw.cpuSeconds()
	close(stopPeak)
	r.relayPeak = <-peak
	r.connectTime = time.Since(t0)
	r.exit = c.exitCode()
	if err != nil {
		return r, err
	}
	var rep probeReport
	b, _ := os.ReadFile(out)
	if err := json.Unmarshal(bytes.TrimSpace(b), &rep); err != nil {
		return r, fmt.Errorf("fanscope probe --sse-clients %d exited %d without a JSON report (%s): %w", conns, r.exit, c.logTail(3), err)
	}
	for _, fo := range rep.Fanout {
		if fo.Path == "sse:bench" {
			r.held, r.complete, r.p50, r.p99 = fo.Connections, fo.Complete, fo.P50MS, fo.P99MS
		}
	}
	if len(rep.Fanout) == 0 {
		// A report without a fan-out section (one connection): use the path.
		for _, p := range rep.Paths {
			if p.Path == "sse:bench" {
				r.held, r.complete, r.p50, r.p99 = conns, p.Delivered, p.P50MS, p.P99MS
			}
		}
	}
	if len(rep.Failures) > 0 {
		r.failureDetail = strings.Join(rep.Failures, "; ")
	}
	return r, nil
}

// childSummary is what the minimal client prints when it is stopped.
type childSummary struct {
	Conns    int     `json:"conns"`
	Held     int     `json:"held"`
	Events   int64   `json:"events"`
	Complete int64   `json:"complete"`
	P50MS    float64 `json:"p50_ms"`
	P99MS    float64 `json:"p99_ms"`
}

// minimalFanout runs the minimal net/http client (this binary, re-executed)
// with conns connections while the bench publishes the same probes
// fanscope would.
func minimalFanout(ctx context.Context, e *env, rs *redisServer, base, ch string, conns, probes int, interval time.Duration) (fanoutRun, error) {
	r := fanoutRun{conns: conns, sent: probes}
	self, err := os.Executable()
	if err != nil {
		return r, fmt.Errorf("find the bench binary: %w", err)
	}
	out := e.workPath(fmt.Sprintf("fanout-minimal-%d.json", conns))
	f, err := os.Create(out)
	if err != nil {
		return r, err
	}
	defer f.Close()
	stopPeak := make(chan struct{})
	peak := relayPeak(base, stopPeak)
	t0 := time.Now()
	c, err := e.spawn(fmt.Sprintf("fanout-minimal-%d", conns), f, self, childSSEArg, base+relayPath, strconv.Itoa(conns), strconv.Itoa(probes))
	if err != nil {
		close(stopPeak)
		return r, err
	}
	defer c.kill()
	mw := watchMem(c.pid(), 50*time.Millisecond)
	// The child says on stderr when every connection got its 200.
	deadline := time.Now().Add(pick(e, 120*time.Second, 60*time.Second))
	for !strings.Contains(c.logTail(2), "ready") {
		if time.Now().After(deadline) || c.exitCode() >= 0 || ctx.Err() != nil {
			mw.result()
			close(stopPeak)
			return r, fmt.Errorf("minimal client did not connect %d times (log: %s)", conns, c.logTail(3))
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.connectTime = time.Since(t0)
	pub := rs.client()
	defer pub.Close()
	next := time.Now()
	for i := range probes {
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		next = next.Add(interval)
		if err := pub.Publish(ctx, ch, probePayload("b1b1b1b1", i, time.Now())).Err(); err != nil {
			mw.result()
			close(stopPeak)
			return r, fmt.Errorf("publish: %w", err)
		}
	}
	// Wait for the last probe to reach every connection, at most as long as
	// fanscope's --timeout.
	deadline = time.Now().Add(10 * time.Second)
	for !strings.Contains(c.logTail(1), fmt.Sprintf("probe %d complete", probes-1)) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	r.rss, r.hwm, r.fds = mw.result()
	r.cpu = mw.cpuSeconds()
	close(stopPeak)
	r.relayPeak = <-peak
	c.stop(10 * time.Second)
	r.exit = c.exitCode()
	var s childSummary
	b, _ := os.ReadFile(out)
	if err := json.Unmarshal(bytes.TrimSpace(b), &s); err != nil {
		return r, fmt.Errorf("minimal client printed no summary (%s): %w", c.logTail(3), err)
	}
	r.held, r.complete, r.p50, r.p99 = s.Held, s.Complete, s.P50MS, s.P99MS
	return r, nil
}

// childSSE is the minimal SSE client: one net/http Transport, one
// goroutine per connection reading lines with a bufio.Reader. It prints
// "ready" on stderr once every connection has its 200, and a JSON summary on
// stdout when interrupted: per probe, the time from sent_at (wall clock, in
// the payload) until the last connection read it.
func childSSE(args []string) int {
	if len(args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: bench "+childSSEArg+" URL CONNS PROBES")
		return 2
	}
	url := args[0]
	conns, _ := strconv.Atoi(args[1])
	probes, _ := strconv.Atoi(args[2])
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)

	tr := &http.Transport{MaxIdleConnsPerHost: -1, DisableCompression: true}
	client := &http.Client{Transport: tr}
	var (
		mu       sync.Mutex
		last     = make([]time.Duration, probes)
		got      = make([]int, probes)
		events   atomic.Int64
		held     atomic.Int64
		failed   atomic.Int64
		ready    sync.WaitGroup
		dialSlot = make(chan struct{}, 256) // connects in flight
	)
	ready.Add(conns)
	for range conns {
		go func() {
			dialSlot <- struct{}{}
			resp, err := client.Get(url)
			<-dialSlot
			if err != nil || resp.StatusCode != 200 {
				failed.Add(1)
				ready.Done()
				return
			}
			held.Add(1)
			ready.Done()
			br := bufio.NewReader(resp.Body)
			for {
				line, err := br.ReadSlice('\n')
				if err != nil {
					return
				}
				if !bytes.HasPrefix(line, []byte("data:")) {
					continue
				}
				at := time.Now()
				events.Add(1)
				seq, ok := probeSeq(string(line))
				_, rest, ok2 := strings.Cut(string(line), `"sent_at":"`)
				sentStr, _, _ := strings.Cut(rest, `"`)
				sent, err := time.Parse(time.RFC3339Nano, sentStr)
				if !ok || !ok2 || err != nil || seq < 0 || seq >= probes {
					continue
				}
				d := at.Sub(sent)
				mu.Lock()
				got[seq]++
				last[seq] = max(last[seq], d)
				if got[seq] == int(held.Load()) {
					fmt.Fprintf(os.Stderr, "probe %d complete\n", seq)
				}
				mu.Unlock()
			}
		}()
	}
	ready.Wait()
	fmt.Fprintf(os.Stderr, "ready: %d held, %d failed\n", held.Load(), failed.Load())
	<-sig
	mu.Lock()
	var done []time.Duration
	for i := range probes {
		if got[i] >= conns {
			done = append(done, last[i])
		}
	}
	mu.Unlock()
	slices.Sort(done)
	s := childSummary{Conns: conns, Held: int(held.Load()), Events: events.Load(), Complete: int64(len(done)),
		P50MS: percentile(done, 50), P99MS: percentile(done, 99)}
	b, _ := json.Marshal(s)
	fmt.Println(string(b))
	return 0
}

func runFanout(ctx context.Context, e *env) ([]row, error) {
	rs, err := e.redisServer()
	if err != nil {
		return nil, err
	}
	conns := pick(e, 10_000, 2_000)
	// A probe every 2 s gives each fan-out its own window: on this kind of
	// machine the relay needs about a second to write 10,000 connections.
	probes := pick(e, 10, 8)
	interval := pick(e, 2*time.Second, 500*time.Millisecond)
	if lim := fdLimit(); lim < uint64(conns)+256 {
		return nil, fmt.Errorf("open-file limit %d is below %d connections: raise it (ulimit -n) and run again", lim, conns)
	}
	// The scale run: 50,000 connections (issue 19) when the open-file
	// limit allows, else the largest thousand that fits beside the
	// client's other files.
	large := 50_000
	if lim := fdLimit(); lim < uint64(large)+512 {
		large = int(lim-512) / 1000 * 1000
	}
	if e.quick || large <= conns {
		large = 0
	}
	// $BENCH_FANSCOPE_BEFORE names an earlier fanscope binary, measured
	// the same way beside this one: how a change to the client moved it.
	before := os.Getenv("BENCH_FANSCOPE_BEFORE")
	ch := fmt.Sprintf("bench:fanout:%d", time.Now().UnixNano())
	relay, base, err := startRelay(ctx, e, rs, ch)
	if err != nil {
		return nil, err
	}
	defer relay.stop(5 * time.Second)
	e.logf("fanout: relay on %s, %s connections, %d probes every %s", base, count(int64(conns)), probes, interval)

	// Wait until the relay has dropped the previous run's connections.
	settle := func() {
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			if s, err := getRelayStats(base); err == nil && s.Connections == 0 {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	type named struct {
		name string
		run  func() (fanoutRun, error)
	}
	fanscope := func(bin, name string, n int) func() (fanoutRun, error) {
		return func() (fanoutRun, error) { return fanscopeFanout(ctx, e, rs, bin, name, base, ch, n, probes, interval) }
	}
	var results = map[string]fanoutRun{}
	steps := []named{
		{"minimal-1", func() (fanoutRun, error) { return minimalFanout(ctx, e, rs, base, ch, 1, probes, interval) }},
		{"minimal-N", func() (fanoutRun, error) { return minimalFanout(ctx, e, rs, base, ch, conns, probes, interval) }},
		{"fanscope-1", fanscope(e.fanscope, "fanscope", 1)},
		{"fanscope-N", fanscope(e.fanscope, "fanscope", conns)},
	}
	if before != "" {
		steps = append(steps, named{"before-1", fanscope(before, "before", 1)}, named{"before-N", fanscope(before, "before", conns)})
	}
	if large > 0 {
		steps = append(steps, named{"fanscope-L", fanscope(e.fanscope, "fanscope", large)})
	}
	for _, step := range steps {
		settle()
		var relayIdle int64
		if st, err := procStatus(relay.pid()); err == nil {
			relayIdle = st["VmRSS"]
		}
		rw := watchMem(relay.pid(), 100*time.Millisecond)
		r, err := step.run()
		relayPeak, _, _ := rw.result()
		r.relayIdleRSS, r.relayPeakRSS = relayIdle, relayPeak
		if err != nil {
			return nil, fmt.Errorf("%s: %w", step.name, err)
		}
		e.logf("   %-10s held %d/%d (relay peak %d), complete %d/%d, completion p50 %s p99 %s, VmHWM %d kB, peak VmRSS %d kB, fds %d, CPU %.1f s, exit %d %s",
			step.name, r.held, r.conns, r.relayPeak, r.complete, r.sent, ms(r.p50), ms(r.p99), r.hwm, r.rss, r.fds, r.cpu, r.exit, r.failureDetail)
		results[step.name] = r
	}
	m1, mN, f1, fN := results["minimal-1"], results["minimal-N"], results["fanscope-1"], results["fanscope-N"]
	perConn := func(n, one fanoutRun) float64 { return float64(n.hwm-one.hwm) / float64(n.conns) } // KiB
	fsKB, minKB := perConn(fN, f1), perConn(mN, m1)
	// Issue 19: at most 10 KB per connection at 50,000 (and so at every
	// size on the way).
	const targetKB = 10
	heldOK := fN.held == conns && fN.complete == int64(probes)
	rows := []row{
		{"fanout", fmt.Sprintf("SSE connections held, all %d probes to every one", probes),
			fmt.Sprintf("%s of %s, %d/%d complete", count(int64(fN.held)), count(int64(conns)), fN.complete, probes),
			fmt.Sprintf("%s, %d/%d complete, minimal net/http client", count(int64(mN.held)), mN.complete, probes),
			ratio(float64(fN.held), float64(mN.held)), fmt.Sprintf("%s held", count(int64(conns))), verdict(heldOK)},
		{"fanout", "client RSS per connection ((VmHWM N - VmHWM 1) / N)", fmt.Sprintf("%.1f KB", fsKB),
			fmt.Sprintf("%.1f KB minimal net/http client", minKB), ratio(fsKB, minKB), fmt.Sprintf("<= %d KB", targetKB), verdict(heldOK && fsKB <= targetKB)},
		{"fanout", "fan-out completion p99 (publish to last connection)", ms(fN.p99), ms(mN.p99) + " minimal client",
			ratio(fN.p99, mN.p99), "-", info},
		// Measured over the first large run only: a Go process keeps freed
		// memory for a while, so later runs start from a higher floor.
		{"fanout", fmt.Sprintf("fanscope relay RSS per connection (first %s-connection run, fresh relay)", count(int64(conns))),
			fmt.Sprintf("%.1f KB", float64(mN.relayPeakRSS-mN.relayIdleRSS)/float64(conns)), "-", "-", "-", info},
		{"fanout", fmt.Sprintf("client CPU, connect + %d probes to %s connections", probes, count(int64(conns))), fmt.Sprintf("%.1f s", fN.cpu),
			fmt.Sprintf("%.1f s minimal client", mN.cpu), ratio(fN.cpu, mN.cpu), "-", info},
	}
	if before != "" {
		b1, bN := results["before-1"], results["before-N"]
		bKB := perConn(bN, b1)
		rows = append(rows,
			row{"fanout", fmt.Sprintf("client RSS per connection at %s, this build vs the one before ($BENCH_FANSCOPE_BEFORE)", count(int64(conns))),
				fmt.Sprintf("%.1f KB", fsKB), fmt.Sprintf("%.1f KB before (%s of %s held, %d/%d complete)", bKB, count(int64(bN.held)), count(int64(conns)), bN.complete, probes),
				ratio(fsKB, bKB), "-", info},
			row{"fanout", "fan-out completion p99 and client CPU, this build vs the one before",
				fmt.Sprintf("%s, %.1f s", ms(fN.p99), fN.cpu), fmt.Sprintf("%s, %.1f s before", ms(bN.p99), bN.cpu), ratio(fN.cpu, bN.cpu), "-", info})
	}
	fL := results["fanscope-L"]
	switch {
	case large > 0:
		lKB := perConn(fL, f1)
		lOK := fL.held == large && fL.complete == int64(probes)
		rows = append(rows, row{"fanout", fmt.Sprintf("scale %s: held, probes complete, client RSS per connection", count(int64(large))),
			fmt.Sprintf("%s, %d/%d complete, %.1f KB", count(int64(fL.held)), fL.complete, probes, lKB),
			fmt.Sprintf("%s: %.1f KB", count(int64(conns)), fsKB), "-", fmt.Sprintf("all held, <= %d KB", targetKB), verdict(lOK && lKB <= targetKB)})
	case !e.quick:
		rows = append(rows, row{"fanout", "scale: client RSS per connection past 10,000",
			fmt.Sprintf("not run: open-file limit %d", fdLimit()), "-", "-", fmt.Sprintf("<= %d KB", targetKB), "FAIL"})
	}
	if large > 0 && large < 50_000 {
		rows = append(rows, row{"fanout", "scale 50,000", fmt.Sprintf("not run: open-file hard limit %d here (raising it needs CAP_SYS_RESOURCE)", fdLimit()),
			"-", "-", "50,000 held", "FAIL"})
	}
	if fN.exit != 0 && fN.exit != 1 {
		return rows, fmt.Errorf("fanscope probe --sse-clients %d exited %d", conns, fN.exit)
	}
	if !heldOK {
		return rows, errors.New("fanscope did not hold every connection or lost probes: " + fN.failureDetail)
	}
	return rows, nil
}
