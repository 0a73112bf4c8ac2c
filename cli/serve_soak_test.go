package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fanscope/fanscope/internal/redistest"
)

// TestServeSoak is a benchmark, not a test: it runs only with
// FANSCOPE_SOAK=DURATION (scripts/bench runs it for 10m). serve watches a
// real Redis with organic traffic, one steady SSE endpoint and one that
// flaps (down 5 s every 10 s), probing every second; its own /metrics are
// sampled for RSS and goroutines, which must stay flat.
func TestServeSoak(t *testing.T) {
	spec := os.Getenv("FANSCOPE_SOAK")
	if spec == "" {
		t.Skip("a soak benchmark: run with FANSCOPE_SOAK=10m (scripts/bench does)")
	}
	dur, err := time.ParseDuration(spec)
	if err != nil || dur < 2*time.Minute {
		t.Fatalf("FANSCOPE_SOAK=%q: want a duration of at least 2m", spec)
	}
	srv := redistest.Start(t)
	steady := startTestRelay(t, srv.Addr(), "story:published", 0, false)
	flapAddr := fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(2)
	go func() { defer wg.Done(); flappingSSE(ctx, flapAddr, 10*time.Second, 5*time.Second) }()
	go func() { defer wg.Done(); publishOrganic(ctx, srv.Addr(), "story:published", 500) }()

	listen := fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t))
	_, wait := startCmd(t, ctx, nil, "serve",
		"--redis", srv.URL(), "-c", "story:published",
		"--sse", "steady="+steady.URL, "--sse", "flappy=http://"+flapAddr+"/events",
		"--listen", listen, "--probe-every", "1s", "--timeout", "2s", "--stall", "3s")

	type sample struct {
		at         time.Duration
		rss, heap  float64
		goroutines float64
		messages   float64
		reconnects float64
	}
	var samples []sample
	start := time.Now()
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for time.Since(start) < dur {
		<-tick.C
		m := scrape(t, "http://"+listen+"/metrics")
		samples = append(samples, sample{
			at: time.Since(start).Round(time.Second), rss: m["process_resident_memory_bytes"],
			heap: m["go_memstats_heap_inuse_bytes"], goroutines: m["go_goroutines"],
			messages:   m[`fanscope_messages_total{path="redis",target="default"}`],
			reconnects: m[`fanscope_reconnects_total{path="sse:flappy",target="default"}`],
		})
		s := samples[len(samples)-1]
		t.Logf("%8v  rss %6.1f MiB  heap %6.1f MiB  goroutines %4.0f  organic messages %9.0f  flappy reconnects %4.0f",
			s.at, s.rss/(1<<20), s.heap/(1<<20), s.goroutines, s.messages, s.reconnects)
	}
	cancel()
	if res := wait(); res.code != 0 {
		t.Errorf("serve exit %d; stderr:\n%s", res.code, res.stderr)
	}
	// Flat: after the first minute (warm-up), the last third's peak stays
	// within 25% (RSS) of the middle third's, and goroutines within a few.
	if last := samples[len(samples)-1]; last.reconnects < 2 {
		t.Errorf("the flapping endpoint was reconnected %v times: it did not flap", last.reconnects)
	}
	if len(samples) < 9 {
		t.Fatalf("only %d samples", len(samples))
	}
	rest := samples[6:]
	third := len(rest) / 3
	peak := func(s []sample, f func(sample) float64) float64 {
		v := make([]float64, len(s))
		for i := range s {
			v[i] = f(s[i])
		}
		return slices.Max(v)
	}
	mid, last := rest[third:2*third], rest[2*third:]
	rssMid, rssLast := peak(mid, func(s sample) float64 { return s.rss }), peak(last, func(s sample) float64 { return s.rss })
	gMid, gLast := peak(mid, func(s sample) float64 { return s.goroutines }), peak(last, func(s sample) float64 { return s.goroutines })
	t.Logf("peak RSS middle third %.1f MiB, last third %.1f MiB; peak goroutines %.0f, %.0f",
		rssMid/(1<<20), rssLast/(1<<20), gMid, gLast)
	if rssLast > rssMid*1.25 {
		t.Errorf("RSS grew from %.1f to %.1f MiB between the middle and last third", rssMid/(1<<20), rssLast/(1<<20))
	}
	if gLast > gMid+10 {
		t.Errorf("goroutines grew from %.0f to %.0f", gMid, gLast)
	}
}

// scrape reads a text exposition into series → value (histogram buckets
// included as written).
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// flappingSSE serves an SSE endpoint on addr that is up for period-down,
// then gone (listener and connections closed) for down, until ctx ends.
func flappingSSE(ctx context.Context, addr string, period, down time.Duration) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, ": hello\n\n")
		w.(http.Flusher).Flush()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-r.Context().Done():
				return
			case <-tick.C:
				io.WriteString(w, ": ka\n\n")
				w.(http.Flusher).Flush()
			}
		}
	})
	for ctx.Err() == nil {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		hs := &http.Server{Handler: h}
		go func() { _ = hs.Serve(ln) }()
		select {
		case <-ctx.Done():
		case <-time.After(period - down):
		}
		_ = hs.Close()
		select {
		case <-ctx.Done():
		case <-time.After(down):
		}
	}
}

// publishOrganic publishes rate messages a second to channel until ctx ends.
func publishOrganic(ctx context.Context, addr, channel string, rate int) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return
	}
	defer c.Close()
	go func() { _, _ = io.Copy(io.Discard, c) }()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	n := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		var b strings.Builder
		for range rate / 10 {
			n++
			data := fmt.Sprintf(`{"storyId":%d,"title":"organic"}`, n)
			fmt.Fprintf(&b, "*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len(channel), channel, len(data), data)
		}
		if _, err := io.WriteString(c, b.String()); err != nil {
			return
		}
	}
}
