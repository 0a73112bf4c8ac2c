package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// dialHostile starts a hostile server for life, connects and sends an
// HTTP request head.
func dialHostile(t *testing.T, life time.Duration, handle func(context.Context, *hostileServer, net.Conn)) (*hostileServer, net.Conn) {
	t.Helper()
	h, err := startHostile(context.Background(), life, handle)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.close)
	c, err := net.Dial("tcp", h.addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, "GET /events HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 7\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	return h, c
}

// The endless heads never reach the blank line, and the server ends the
// connection when its life is over.
func TestEndlessHeads(t *testing.T) {
	for name, handle := range map[string]func(context.Context, *hostileServer, net.Conn){
		"line": endlessHeaderLine, "headers": endlessHeaders,
	} {
		t.Run(name, func(t *testing.T) {
			h, c := dialHostile(t, 2*time.Second, handle)
			head := make([]byte, 4<<20)
			if _, err := io.ReadFull(c, head); err != nil {
				t.Fatalf("read 4 MiB of head: %v", err)
			}
			if !bytes.HasPrefix(head, []byte("HTTP/1.1 200 OK\r\n")) {
				t.Fatalf("head starts %q", head[:40])
			}
			if bytes.Contains(head, []byte("\r\n\r\n")) {
				t.Fatal("the head ended within 4 MiB")
			}
			lines := bytes.Count(head, []byte("\r\n"))
			if name == "line" && lines != 2 {
				t.Errorf("got %d line ends, want 2 (status, Content-Type, then one endless line)", lines)
			}
			if name == "headers" && lines < 10_000 {
				t.Errorf("got %d header lines in 4 MiB, want many", lines)
			}
			// Bounded in time: the connection ends soon after the life.
			c.SetReadDeadline(time.Now().Add(20 * time.Second))
			if _, err := io.Copy(io.Discard, c); err != nil {
				t.Fatalf("the server did not end the connection: %v", err)
			}
			if h.conns.Load() != 1 || h.sent.Load() < 4<<20 {
				t.Errorf("counted %d connections, %d bytes", h.conns.Load(), h.sent.Load())
			}
		})
	}
}

func TestBigThenNormal(t *testing.T) {
	_, c := dialHostile(t, 5*time.Second, bigThenNormal)
	resp, err := http.ReadResponse(bufio.NewReaderSize(c, 1<<20), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReaderSize(resp.Body, 1<<20)
	var sizes []int
	for len(sizes) < 5 {
		ev, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("after %d events: %v", len(sizes), err)
		}
		if d, ok := strings.CutPrefix(ev, "data: "); ok {
			sizes = append(sizes, len(d)-1)
		}
	}
	want := []int{bigEventSize, bigEventSize, bigEventSize, len(`{"seq":0}`), len(`{"seq":1}`)}
	if fmt.Sprint(sizes) != fmt.Sprint(want) {
		t.Fatalf("data sizes %v, want %v", sizes, want)
	}
}

func TestRetryThenClose(t *testing.T) {
	h, c := dialHostile(t, 5*time.Second, retryThenClose("0"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("want the server to close at once: %v", err)
	}
	if !strings.HasSuffix(string(b), "\r\n\r\nretry: 0\ndata: hello\n\n") {
		t.Fatalf("got %q", b)
	}
	if h.conns.Load() != 1 {
		t.Errorf("counted %d connections, want 1", h.conns.Load())
	}
}

// The fake Redis answers a handshake as go-redis or fanscope sends it,
// confirms SUBSCRIBE, counts it, then sends junk.
func TestJunkRedis(t *testing.T) {
	h, err := startHostile(context.Background(), 5*time.Second, junkRedis)
	if err != nil {
		t.Fatal(err)
	}
	defer h.close()
	c, err := net.Dial("tcp", h.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	send := func(args ...string) {
		var b strings.Builder
		fmt.Fprintf(&b, "*%d\r\n", len(args))
		for _, a := range args {
			fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
		}
		if _, err := io.WriteString(c, b.String()); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(want string) {
		t.Helper()
		got := make([]byte, len(want))
		if _, err := io.ReadFull(r, got); err != nil || string(got) != want {
			t.Fatalf("got %q (%v), want %q", got, err, want)
		}
	}
	send("HELLO", "3")
	expect("-ERR unknown command 'HELLO'\r\n")
	send("CLIENT", "SETNAME", "fanscope")
	expect("+OK\r\n")
	io.WriteString(c, "PING\r\n")
	expect("+PONG\r\n")
	send("SUBSCRIBE", "a", "bc")
	expect("*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$2\r\nbc\r\n:2\r\n?this is not RESP")
	if n := h.connects.Load(); n != 1 {
		t.Errorf("counted %d SUBSCRIBEs, want 1", n)
	}
}

func TestReadRESPCommand(t *testing.T) {
	r := bufio.NewReader(strings.NewReader("*2\r\n$3\r\nGET\r\n$4\r\na\r\nb\r\nPING x\r\n*1\r\n$-5\r\n"))
	for _, want := range []string{"[GET a\r\nb]", "[PING x]"} {
		got, err := readRESPCommand(r)
		if err != nil || fmt.Sprint(got) != want {
			t.Fatalf("got %q (%v), want %q", got, err, want)
		}
	}
	if _, err := readRESPCommand(r); err == nil {
		t.Fatal("a negative bulk length was accepted")
	}
}

func TestRSSSampler(t *testing.T) {
	s := sampleRSS(os.Getpid())
	time.Sleep(3 * hostileSampleEvery)
	s.finish()
	if s.samples.Load() < 2 || s.peak.Load() <= 0 || s.killed.Load() {
		t.Fatalf("samples %d, peak %d kB, killed %v", s.samples.Load(), s.peak.Load(), s.killed.Load())
	}
}

func TestHostileVerdict(t *testing.T) {
	for _, c := range []struct {
		r    hostileResult
		want bool
	}{
		{hostileResult{peakKB: 50 << 10, samples: 10, connects: 5, dur: 10 * time.Second}, true},
		{hostileResult{peakKB: 50 << 10, samples: 10, connects: -1, dur: 10 * time.Second}, true},
		{hostileResult{peakKB: 500 << 10, samples: 10, connects: 1, dur: 10 * time.Second}, false},
		{hostileResult{peakKB: 50 << 10, samples: 10, connects: 1001, dur: 10 * time.Second}, false},
		{hostileResult{peakKB: 50 << 10, samples: 10, killed: true, connects: 1, dur: 10 * time.Second}, false},
		{hostileResult{peakKB: 0, samples: 0, connects: 1, dur: 10 * time.Second}, false},
		{hostileResult{peakKB: 50 << 10, samples: 10, deaf: true, connects: -1, dur: 10 * time.Second}, false},
	} {
		if got := c.r.ok(); got != c.want {
			t.Errorf("%+v: ok %v, want %v", c.r, got, c.want)
		}
	}
}

func TestMetricValue(t *testing.T) {
	text := `# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 42
go_goroutines_extra 7
fanscope_reconnects_total{path="redis",target="default"} 1
fanscope_reconnects_total{path="sse:flap",target="default"} 17
fanscope_path_up{path="sse:flap",target="default"} 0
`
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
		ok     bool
	}{
		{"go_goroutines", nil, 42, true},
		{"fanscope_reconnects_total", []string{`path="sse:flap"`}, 17, true},
		{"fanscope_reconnects_total", nil, 1, true},
		{"fanscope_path_up", []string{`path="sse:flap"`, `target="default"`}, 0, true},
		{"fanscope_path_up", []string{`path="sse:fla"`}, 0, false},
		{"go_gorout", nil, 0, false},
	} {
		got, ok := metricValue(text, c.name, c.labels...)
		if got != c.want || ok != c.ok {
			t.Errorf("%s %v: got %v %v, want %v %v", c.name, c.labels, got, ok, c.want, c.ok)
		}
	}
}

func TestJudgeFlat(t *testing.T) {
	series := func(vals ...float64) []soakSample {
		var ss []soakSample
		for i, v := range vals {
			ss = append(ss, soakSample{at: time.Duration(i) * 30 * time.Second, goroutines: v})
		}
		return ss
	}
	g := func(s soakSample) float64 { return s.goroutines }
	// Start-up growth before the first minute does not count.
	if f := judgeFlat(series(10, 30, 40, 44, 47), g); !f.ok || f.first != 10 || f.base != 40 || f.last != 47 || f.peak != 47 {
		t.Errorf("flat after start-up: %+v", f)
	}
	if f := judgeFlat(series(10, 30, 40, 45, 49), g); f.ok {
		t.Errorf("+22%% after the first minute passed: %+v", f)
	}
	if f := judgeFlat(series(10, 10), g); f.ok {
		t.Errorf("no sample after the first minute passed: %+v", f)
	}
}

// The flapping endpoint goes away (connections refused) and comes back.
func TestFlapper(t *testing.T) {
	f, err := startFlapper(context.Background(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer f.close()
	hc := &http.Client{Timeout: 2 * time.Second}
	get := func() error {
		resp, err := hc.Get("http://" + f.addr + "/events")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b := make([]byte, 5)
		if _, err := io.ReadFull(resp.Body, b); err != nil {
			return err
		}
		if string(b) != ": kee" {
			return fmt.Errorf("got %q", b)
		}
		return nil
	}
	waitFor := func(what string, cond func(error) bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			err := get()
			if cond(err) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: last result %v", what, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	up := func(err error) bool { return err == nil }
	down := func(err error) bool {
		var op *net.OpError
		return errors.As(err, &op) && op.Op == "dial"
	}
	waitFor("up at start", up)
	waitFor("gone", down)
	waitFor("back", up)
	waitFor("gone again", down)
	if f.outages.Load() < 2 {
		t.Errorf("counted %d outages, want at least 2", f.outages.Load())
	}
}

func TestSelected(t *testing.T) {
	for _, c := range []struct {
		name     string
		optional bool
		only     string
		soak     bool
		want     bool
	}{
		{"hostile", false, "", false, true},
		{"soak", true, "", false, false},
		{"soak", true, "", true, true},
		{"soak", true, "soak", false, true},
		{"hostile", false, "soak", false, false},
		{"soak", true, "hostile", true, false},
	} {
		if got := selected(c.name, c.optional, c.only, c.soak); got != c.want {
			t.Errorf("%+v: got %v", c, got)
		}
	}
}

func TestSoakDurationTooShort(t *testing.T) {
	var stderr strings.Builder
	if code := run(context.Background(), []string{"--soak-duration", "1m"}, io.Discard, &stderr); code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	if !strings.Contains(stderr.String(), "--soak-duration 1m0s: want at least 2m") {
		t.Fatalf("stderr: %q", stderr.String())
	}
}
