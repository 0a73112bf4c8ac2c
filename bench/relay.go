package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The relay section: fanscope's relay against a Node.js relay (http +
// better-sse, bench/node/relay.mjs) in the same run. Both are held at N idle
// SSE connections by one client in this process, then one message at a
// time goes through Redis to all of them.

// relayRun is one relay held at conns connections.
type relayRun struct {
	name               string
	conns, held        int
	connectTime        time.Duration
	idleRSS, heldRSS   int64 // kB: before connecting, and with every connection held (settled)
	heldHWM            int64 // kB, peak so far
	probes, complete   int   // probes sent, probes that reached every connection
	p50, p99           float64
	connectCPU, fanCPU float64 // relay CPU seconds while connecting, during the probes
}

func (r relayRun) perConnKB() float64 {
	if r.held == 0 {
		return 0
	}
	return float64(r.heldRSS-r.idleRSS) / float64(r.held)
}

func (r relayRun) connectRate() float64 {
	if r.connectTime <= 0 {
		return 0
	}
	return float64(r.held) / r.connectTime.Seconds()
}

// fanClient holds SSE connections and notes when each probe reached each.
// After the handshake every connection is read by one goroutine through
// its own epoll set (level-triggered, raw read(2)), not by a goroutine
// per connection: the client shares the two cores with the relay under
// test, and this keeps its cost per delivery to one read and a scan, so
// the fan-out time measures the relay, not the client's scheduler.
type fanClient struct {
	base  time.Time
	conns []net.Conn
	fds   []int
	carry [][]byte // per connection: bytes after the last probe seen, when a read ended mid-probe
	epfd  int
	got   []atomic.Int64 // per probe: connections that read it
	last  []atomic.Int64 // per probe: latest read, ns since base
	stop  atomic.Bool
	done  chan struct{}
}

// dialFan opens n connections to addr+path from source addresses
// 127.0.0.2, 127.0.0.3, ... (each holds at most perSource, so the
// ephemeral port range of one address is never the limit), with at most
// 256 connects in flight. It returns once every connection has its 200
// (or one failed).
func dialFan(ctx context.Context, addr, path string, n, probes int) (*fanClient, error) {
	const perSource = 12_000
	sources := (n + perSource - 1) / perSource
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll: %w", err)
	}
	fc := &fanClient{base: time.Now(), conns: make([]net.Conn, n), fds: make([]int, n), carry: make([][]byte, n), epfd: epfd,
		got: make([]atomic.Int64, probes), last: make([]atomic.Int64, probes), done: make(chan struct{})}
	go fc.loop()
	req := []byte("GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nAccept: text/event-stream\r\n\r\n")
	var (
		next   atomic.Int64
		failed atomic.Pointer[error]
		wg     sync.WaitGroup
	)
	for range min(n, 256) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || failed.Load() != nil || ctx.Err() != nil {
					return
				}
				d := net.Dialer{Timeout: 30 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%sources))}}
				c, err := d.DialContext(ctx, "tcp", addr)
				if err == nil {
					fc.conns[i] = c
					err = fc.start(i, c, req)
				}
				if err != nil {
					err = fmt.Errorf("connection %d of %d: %w", i+1, n, err)
					failed.CompareAndSwap(nil, &err)
					return
				}
			}
		})
	}
	wg.Wait()
	if p := failed.Load(); p != nil {
		fc.close()
		return nil, *p
	}
	if err := ctx.Err(); err != nil {
		fc.close()
		return nil, err
	}
	return fc, nil
}

// start sends the request, reads the response head and hands the
// connection to the epoll loop.
func (fc *fanClient) start(i int, c net.Conn, req []byte) error {
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(req); err != nil {
		return err
	}
	// Read the head byte by byte up to the blank line, so nothing of the
	// body is left in a buffer the epoll loop does not see.
	var head []byte
	b := make([]byte, 1)
	for !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
		if _, err := c.Read(b); err != nil {
			return fmt.Errorf("response head: %w", err)
		}
		head = append(head, b[0])
		if len(head) > 8192 {
			return errors.New("response head over 8 KiB")
		}
	}
	if !bytes.HasPrefix(head, []byte("HTTP/1.1 200")) {
		line, _, _ := bytes.Cut(head, []byte("\r\n"))
		return fmt.Errorf("got %q, want 200", line)
	}
	_ = c.SetDeadline(time.Time{})
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return err
	}
	var fd int
	_ = raw.Control(func(f uintptr) { fd = int(f) })
	fc.fds[i] = fd
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(i)}
	return syscall.EpollCtl(fc.epfd, syscall.EPOLL_CTL_ADD, fd, &ev)
}

// loop reads every ready connection and notes the probes in what it read.
func (fc *fanClient) loop() {
	defer close(fc.done)
	events := make([]syscall.EpollEvent, 1024)
	buf := make([]byte, 64<<10)
	for !fc.stop.Load() {
		n, err := syscall.EpollWait(fc.epfd, events, 100)
		if err != nil && err != syscall.EINTR {
			return
		}
		for _, ev := range events[:max(n, 0)] {
			i := int(ev.Fd)
			fd := fc.fds[i]
			m, err := syscall.Read(fd, buf)
			if m <= 0 {
				if err != syscall.EAGAIN {
					_ = syscall.EpollCtl(fc.epfd, syscall.EPOLL_CTL_DEL, fd, nil)
				}
				continue
			}
			at := int64(time.Since(fc.base))
			fc.scan(i, buf[:m], at)
		}
	}
}

// scan notes every complete "seq":N, in carry+p and keeps what may be the
// start of one cut by the end of the read.
func (fc *fanClient) scan(i int, p []byte, at int64) {
	data := p
	if len(fc.carry[i]) > 0 {
		data = append(fc.carry[i], p...)
	}
	key := []byte(`"seq":`)
	end := 0
	for {
		j := bytes.Index(data[end:], key)
		if j < 0 {
			break
		}
		start := end + j + len(key)
		k := bytes.IndexByte(data[start:], ',')
		if k < 0 {
			end = end + j // cut mid-probe: keep from the key on
			fc.carry[i] = append([]byte(nil), data[end:]...)
			return
		}
		seq, err := strconv.Atoi(string(data[start : start+k]))
		end = start + k
		if err != nil || seq < 0 || seq >= len(fc.got) {
			continue
		}
		fc.got[seq].Add(1)
		for {
			old := fc.last[seq].Load()
			if at <= old || fc.last[seq].CompareAndSwap(old, at) {
				break
			}
		}
	}
	// Keep a tail that may hold the first bytes of the key.
	fc.carry[i] = append(fc.carry[i][:0], data[max(end, len(data)-len(key)):]...)
}

// close resets every connection (no TIME_WAIT left on the source ports
// for the next run) and stops the loop.
func (fc *fanClient) close() {
	fc.stop.Store(true)
	<-fc.done
	for _, c := range fc.conns {
		if c != nil {
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			c.Close()
		}
	}
	syscall.Close(fc.epfd)
}

// startRelayKind runs the relay named kind on a free loopback port and
// waits for /healthz.
func startRelayKind(ctx context.Context, e *env, kind string, rs *redisServer, ch string, run int) (*child, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	name := fmt.Sprintf("relay-%s-%d", kind, run)
	var c *child
	switch kind {
	case "fanscope":
		c, err = e.spawn(name, nil, e.fanscope, "relay", "--redis", rs.url(), "--listen", addr, "-c", ch)
	case "node":
		c, err = e.spawn(name, nil, e.node, filepath.Join(e.nodeDir, "relay.mjs"), strconv.Itoa(port), rs.url(), ch, relayPath)
	default:
		return nil, "", fmt.Errorf("unknown relay %q", kind)
	}
	if err != nil {
		return nil, "", err
	}
	hc := http.Client{Timeout: time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := hc.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return c, addr, nil
			}
		}
		if c.exitCode() >= 0 || time.Now().After(deadline) || ctx.Err() != nil {
			c.kill()
			return nil, "", fmt.Errorf("%s relay did not answer /healthz on %s (exit %d, log: %s)", kind, addr, c.exitCode(), c.logTail(3))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// measureRelay starts a relay of kind, holds conns idle connections,
// measures its RSS, then sends probes through Redis one every interval.
func measureRelay(ctx context.Context, e *env, rs *redisServer, kind string, conns, probes int, interval time.Duration, run int) (relayRun, error) {
	r := relayRun{name: kind, conns: conns, probes: probes}
	ch := fmt.Sprintf("bench:relay:%d", time.Now().UnixNano())
	c, addr, err := startRelayKind(ctx, e, kind, rs, ch, run)
	if err != nil {
		return r, err
	}
	defer c.stop(5 * time.Second)
	time.Sleep(500 * time.Millisecond)
	st, err := procStatus(c.pid())
	if err != nil {
		return r, err
	}
	r.idleRSS = st["VmRSS"]
	cpu0, _ := procCPU(c.pid())

	t0 := time.Now()
	fc, err := dialFan(ctx, addr, relayPath, conns, probes)
	if err != nil {
		return r, fmt.Errorf("%s relay, %d connections: %w (relay log: %s)", kind, conns, err, c.logTail(2))
	}
	defer fc.close()
	r.connectTime = time.Since(t0)
	r.held = conns
	cpu1, _ := procCPU(c.pid())
	r.connectCPU = cpu1 - cpu0
	// Idle: let the relay settle (a GC, the connect burst's garbage)
	// before reading its RSS, as a long-lived relay would be.
	time.Sleep(pick(e, 3*time.Second, time.Second))
	st, err = procStatus(c.pid())
	if err != nil {
		return r, err
	}
	r.heldRSS, r.heldHWM = st["VmRSS"], st["VmHWM"]

	pub := rs.client()
	defer pub.Close()
	sent := make([]int64, probes)
	cpu2, _ := procCPU(c.pid())
	next := time.Now()
	for i := range probes {
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		next = next.Add(interval)
		now := time.Now()
		sent[i] = int64(now.Sub(fc.base))
		if err := pub.Publish(ctx, ch, probePayload("relaybench", i, now)).Err(); err != nil {
			return r, fmt.Errorf("publish: %w", err)
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for fc.got[probes-1].Load() < int64(conns) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cpu3, _ := procCPU(c.pid())
	r.fanCPU = cpu3 - cpu2
	var done []time.Duration
	for i := range probes {
		if fc.got[i].Load() >= int64(conns) {
			done = append(done, time.Duration(fc.last[i].Load()-sent[i]))
		}
	}
	slices.Sort(done)
	r.complete = len(done)
	r.p50, r.p99 = percentile(done, 50), percentile(done, 99)
	e.logf("   %-8s %6d conns: connect %s (%.0f/s, relay CPU %.1fs), RSS %d -> %d kB (%.2f KB/conn, HWM %d kB), %d/%d probes complete, p50 %s p99 %s, relay CPU %.2fs for the probes",
		kind, conns, r.connectTime.Round(time.Millisecond), r.connectRate(), r.connectCPU, r.idleRSS, r.heldRSS, r.perConnKB(), r.heldHWM,
		r.complete, probes, ms(r.p50), ms(r.p99), r.fanCPU)
	return r, nil
}

// findNode reports the node binary and the folder where scripts/bench
// installed better-sse and ioredis (with relay.mjs copied in), if both are there.
func findNode(dir string) (string, string, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return "", "", errors.New("node is not on PATH")
	}
	if dir == "" {
		return "", "", errors.New("no --node-dir (scripts/bench installs better-sse there)")
	}
	for _, p := range []string{"relay.mjs", "node_modules/better-sse", "node_modules/ioredis"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			return "", "", fmt.Errorf("%s: %w", dir, err)
		}
	}
	return node, dir, nil
}

func runRelay(ctx context.Context, e *env) ([]row, error) {
	rs, err := e.redisServer()
	if err != nil {
		return nil, err
	}
	conns := pick(e, 10_000, 2_000)
	probes := pick(e, 10, 5)
	interval := pick(e, 500*time.Millisecond, 300*time.Millisecond)
	// Each connection is a descriptor in the relay and one in this
	// process. Sizes past the open-file limit (which only a process with
	// CAP_SYS_RESOURCE can raise) are reported as such, and the largest
	// size that fits is measured instead.
	lim := int(fdLimit())
	fits := func(n int) bool { return n+512 <= lim }
	if !fits(conns) {
		return nil, fmt.Errorf("open-file limit %d is below %d connections: raise it (ulimit -n; the hard limit needs root with CAP_SYS_RESOURCE)", lim, conns)
	}
	var scale, unreachable []int
	for _, sz := range pick(e, []int{25_000, 50_000}, []int{5_000}) {
		if fits(sz) {
			scale = append(scale, sz)
		} else {
			unreachable = append(unreachable, sz)
		}
	}
	if len(unreachable) > 0 {
		if most := (lim - 512) / 1000 * 1000; most > conns && (len(scale) == 0 || most > slices.Max(scale)) {
			scale = append(scale, most)
		}
	}
	var rows []row
	fs, err := measureRelay(ctx, e, rs, "fanscope", conns, probes, interval, 0)
	if err != nil {
		return nil, err
	}
	nodeOK := e.node != ""
	var nd relayRun
	if nodeOK {
		if nd, err = measureRelay(ctx, e, rs, "node", conns, probes, interval, 0); err != nil {
			return nil, err
		}
	}
	n := count(int64(conns))
	base := func(f func(relayRun) string) string {
		if !nodeOK {
			return "no node: " + e.nodeErr
		}
		return f(nd) + " Node (http + better-sse)"
	}
	memOK := fs.held == conns && fs.perConnKB() <= 12 && (!nodeOK || fs.perConnKB() <= nd.perConnKB())
	fanOK := fs.complete == probes && fs.p99 <= 100 && (!nodeOK || (nd.complete == probes && fs.p99 <= nd.p99) || nd.complete < probes)
	memTarget, fanTarget := "<= 12 KB and <= Node", "<= 100 ms and <= Node"
	if !nodeOK {
		memTarget, fanTarget = "<= 12 KB", "<= 100 ms"
	}
	kb := func(r relayRun) string { return fmt.Sprintf("%.1f KB", r.perConnKB()) }
	rows = append(rows,
		row{"relay", fmt.Sprintf("RSS per idle SSE connection at %s ((VmRSS held - VmRSS idle) / N)", n), kb(fs), base(kb),
			ratioIf(nodeOK, fs.perConnKB(), nd.perConnKB()), memTarget, verdict(memOK)},
		row{"relay", fmt.Sprintf("one message to %s connections: p99 publish -> last connection (%d probes)", n, probes),
			fmt.Sprintf("%s, %d/%d complete", ms(fs.p99), fs.complete, probes), base(func(r relayRun) string { return fmt.Sprintf("%s, %d/%d complete", ms(r.p99), r.complete, probes) }),
			ratioIf(nodeOK, fs.p99, nd.p99), fanTarget, verdict(fanOK)},
		row{"relay", fmt.Sprintf("fan-out p50 at %s", n), ms(fs.p50), base(func(r relayRun) string { return ms(r.p50) }), ratioIf(nodeOK, fs.p50, nd.p50), "-", info},
		row{"relay", fmt.Sprintf("connect rate to %s (256 in flight)", n), rate(fs.connectRate()), base(func(r relayRun) string { return rate(r.connectRate()) }),
			ratioIf(nodeOK, fs.connectRate(), nd.connectRate()), "-", info},
		row{"relay", fmt.Sprintf("relay CPU for %d messages to %s", probes, n), fmt.Sprintf("%.2f s", fs.fanCPU), base(func(r relayRun) string { return fmt.Sprintf("%.2f s", r.fanCPU) }),
			ratioIf(nodeOK, fs.fanCPU, nd.fanCPU), "-", info},
	)
	scaleOK := true
	for i, sz := range scale {
		if ctx.Err() != nil {
			return rows, ctx.Err()
		}
		r, err := measureRelay(ctx, e, rs, "fanscope", sz, probes, interval, i+1)
		if err != nil {
			rows = append(rows, row{"relay", fmt.Sprintf("fanscope relay at %s connections", count(int64(sz))), "error: " + err.Error(), "-", "-", "held", fail})
			scaleOK = false
			continue
		}
		ok := r.held == sz && r.complete == probes
		scaleOK = scaleOK && ok
		res := info
		target := "-"
		if i == len(scale)-1 && len(unreachable) == 0 {
			res, target = verdict(ok), fmt.Sprintf("%s held, every probe to every one", count(int64(sz)))
		}
		rows = append(rows, row{"relay", fmt.Sprintf("scale %s: connect rate, RSS per connection, fan-out p50 / p99", count(int64(sz))),
			fmt.Sprintf("%s, %.1f KB, %s / %s, %d/%d complete", rate(r.connectRate()), r.perConnKB(), ms(r.p50), ms(r.p99), r.complete, probes),
			fmt.Sprintf("%s: %s, %.1f KB, %s / %s", n, rate(fs.connectRate()), fs.perConnKB(), ms(fs.p50), ms(fs.p99)), "-", target, res})
	}
	for _, sz := range unreachable {
		rows = append(rows, row{"relay", fmt.Sprintf("scale %s", count(int64(sz))),
			fmt.Sprintf("not run: open-file hard limit %d here (raising it needs CAP_SYS_RESOURCE)", lim), "-", "-",
			fmt.Sprintf("%s held", count(int64(sz))), fail})
	}
	return rows, nil // FAIL rows say what missed
}

// ratioIf is ratio(a, b) when there is a baseline.
func ratioIf(ok bool, a, b float64) string {
	if !ok {
		return "-"
	}
	return ratio(a, b)
}
