package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// The hostile section (issue 14): fanscope pointed at servers that
// misbehave on purpose, each written here, on loopback, and each bounded in
// time. Every case runs the built binary (`tail --json` with stdout to
// /dev/null or to a pipe nobody reads, or `watch` in tmux), reads its VmRSS
// every 200 ms and counts, at the server, how often it came back.

const (
	hostileRSSMark  = 400 << 10 // kB: pass mark for the peak RSS of a case
	hostileRateMark = 10.0      // reconnects per second: pass mark
	// hostileKillMark ends a case whose process passes 3 GB: the machine is
	// shared, and the case has failed long before.
	hostileKillMark    = 3 << 20 // kB
	hostileSampleEvery = 200 * time.Millisecond
	bigEventSize       = 20 << 20 // bytes of data in one oversized event
	floodPayload       = 1 << 20  // bytes of one Redis flood message
)

// rssSampler reads one process's VmRSS and VmHWM every 200 ms until
// finish, and kills the process past hostileKillMark.
type rssSampler struct {
	pid     int
	peak    atomic.Int64 // kB, the largest VmRSS or VmHWM read
	samples atomic.Int64
	killed  atomic.Bool
	stop    chan struct{}
	done    chan struct{}
}

func sampleRSS(pid int) *rssSampler {
	s := &rssSampler{pid: pid, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(hostileSampleEvery)
		defer t.Stop()
		for {
			s.read()
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *rssSampler) read() {
	st, err := procStatus(s.pid)
	if err != nil {
		return // exited: the last reading stands
	}
	s.samples.Add(1)
	// VmHWM is the kernel's own high-water mark, so a spike between two
	// readings still counts.
	kb := max(st["VmRSS"], st["VmHWM"])
	if kb > s.peak.Load() {
		s.peak.Store(kb)
	}
	if kb > hostileKillMark && !s.killed.Load() {
		s.killed.Store(true)
		syscall.Kill(s.pid, syscall.SIGKILL)
	}
}

// finish takes a last reading and stops sampling.
func (s *rssSampler) finish() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

// hostileServer is a loopback TCP server that runs handle on every
// connection. It counts connections, the (re)connects its handler names
// (a Redis SUBSCRIBE, say) and bytes written; every connection ends when
// the server's life does.
type hostileServer struct {
	ln       net.Listener
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	conns    atomic.Int64
	connects atomic.Int64 // set by handlers that count something else than connections
	sent     atomic.Int64
	handle   func(ctx context.Context, h *hostileServer, c net.Conn)
}

// startHostile listens on a free loopback port; the server stops after
// life at the latest.
func startHostile(ctx context.Context, life time.Duration, handle func(ctx context.Context, h *hostileServer, c net.Conn)) (*hostileServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("hostile server: listen: %w", err)
	}
	h := &hostileServer{ln: ln, handle: handle}
	h.ctx, h.cancel = context.WithTimeout(ctx, life)
	context.AfterFunc(h.ctx, func() { ln.Close() })
	h.wg.Add(1)
	go h.accept()
	return h, nil
}

func (h *hostileServer) accept() {
	defer h.wg.Done()
	for {
		c, err := h.ln.Accept()
		if err != nil {
			return
		}
		h.conns.Add(1)
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			stop := context.AfterFunc(h.ctx, func() { c.Close() })
			defer stop()
			defer c.Close()
			h.handle(h.ctx, h, c)
		}()
	}
}

func (h *hostileServer) addr() string { return h.ln.Addr().String() }

// close ends the server and every connection, and waits for the handlers.
func (h *hostileServer) close() {
	h.cancel()
	h.ln.Close()
	h.wg.Wait()
}

// write sends b and counts it.
func (h *hostileServer) write(c net.Conn, b []byte) error {
	n, err := c.Write(b)
	h.sent.Add(int64(n))
	return err
}

// readRequestHead reads an HTTP request head (at most 64 KiB) and returns
// its header lines by lower-case name.
func readRequestHead(c net.Conn) (map[string]string, error) {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	r := bufio.NewReader(io.LimitReader(c, 64<<10))
	hdr := map[string]string{}
	for first := true; ; first = false {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, fmt.Errorf("read request head: %w", err)
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			return hdr, nil
		}
		if k, v, ok := strings.Cut(line, ":"); ok && !first {
			hdr[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
		}
	}
}

const sseHead = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"

// endlessHeaderLine answers with a status line and one header line that
// never ends.
func endlessHeaderLine(ctx context.Context, h *hostileServer, c net.Conn) {
	if _, err := readRequestHead(c); err != nil {
		return
	}
	if h.write(c, []byte("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-Endless: ")) != nil {
		return
	}
	chunk := []byte(strings.Repeat("a", 64<<10))
	for ctx.Err() == nil {
		if h.write(c, chunk) != nil {
			return
		}
	}
}

// endlessHeaders answers with a status line and header lines, each short
// and each with a new name, that never reach the blank line.
func endlessHeaders(ctx context.Context, h *hostileServer, c net.Conn) {
	if _, err := readRequestHead(c); err != nil {
		return
	}
	if h.write(c, []byte("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n")) != nil {
		return
	}
	buf := make([]byte, 0, 70<<10)
	for n := 0; ctx.Err() == nil; {
		buf = buf[:0]
		for len(buf) < 64<<10 {
			n++
			buf = append(buf, "X-Hostile-"...)
			buf = strconv.AppendInt(buf, int64(n), 10)
			buf = append(buf, ": a value that a header might carry\r\n"...)
		}
		if h.write(c, buf) != nil {
			return
		}
	}
}

// bigThenNormal sends three events of 20 MiB of data, then a small event
// every 100 ms, on every connection.
func bigThenNormal(ctx context.Context, h *hostileServer, c net.Conn) {
	if _, err := readRequestHead(c); err != nil {
		return
	}
	if h.write(c, []byte(sseHead)) != nil {
		return
	}
	data := []byte(strings.Repeat("x", bigEventSize))
	for i := range 3 {
		if h.write(c, fmt.Appendf(nil, "id: big-%d\nevent: big\ndata: ", i)) != nil ||
			h.write(c, data) != nil || h.write(c, []byte("\n\n")) != nil {
			return
		}
	}
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for seq := 0; ; seq++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if h.write(c, fmt.Appendf(nil, "id: n-%d\nevent: normal\ndata: {\"seq\":%d}\n\n", seq, seq)) != nil {
			return
		}
	}
}

// retryThenClose sends a retry field and one event, then closes at once.
func retryThenClose(retry string) func(ctx context.Context, h *hostileServer, c net.Conn) {
	return func(ctx context.Context, h *hostileServer, c net.Conn) {
		if _, err := readRequestHead(c); err != nil {
			return
		}
		h.write(c, []byte(sseHead+"retry: "+retry+"\ndata: hello\n\n"))
	}
}

// junkRedis is a fake Redis: it answers the handshake (an error to HELLO so
// that the client falls back to RESP2, +OK to AUTH and CLIENT, +PONG to
// PING), confirms every SUBSCRIBE and then sends bytes that are not RESP.
// Each SUBSCRIBE counts as a (re)connect.
func junkRedis(ctx context.Context, h *hostileServer, c net.Conn) {
	r := bufio.NewReader(c)
	for ctx.Err() == nil {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		args, err := readRESPCommand(r)
		if err != nil {
			return
		}
		if len(args) == 0 {
			continue
		}
		switch cmd := strings.ToUpper(args[0]); cmd {
		case "AUTH", "CLIENT", "SELECT":
			err = h.write(c, []byte("+OK\r\n"))
		case "PING":
			err = h.write(c, []byte("+PONG\r\n"))
		case "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE":
			h.connects.Add(1)
			var b []byte
			for i, name := range args[1:] {
				kind := strings.ToLower(cmd)
				b = fmt.Appendf(b, "*3\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n:%d\r\n", len(kind), kind, len(name), name, i+1)
			}
			b = append(b, "?this is not RESP\r\n\x00\xff junk junk\r\n"...)
			if h.write(c, b) != nil {
				return
			}
			// Hold until the client gives up on the connection.
			c.SetReadDeadline(time.Time{})
			io.Copy(io.Discard, c)
			return
		default:
			err = h.write(c, fmt.Appendf(nil, "-ERR unknown command '%s'\r\n", args[0]))
		}
		if err != nil {
			return
		}
	}
}

// readRESPCommand reads one command: an array of bulk strings, or an
// inline command line.
func readRESPCommand(r *bufio.Reader) ([]string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	line = strings.TrimRight(line, "\r\n")
	if !strings.HasPrefix(line, "*") {
		return strings.Fields(line), nil
	}
	n, err := strconv.Atoi(line[1:])
	if err != nil || n < 0 || n > 1024 {
		return nil, fmt.Errorf("bad array header %q", line)
	}
	args := make([]string, 0, n)
	for range n {
		hd, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		hd = strings.TrimRight(hd, "\r\n")
		if !strings.HasPrefix(hd, "$") {
			return nil, fmt.Errorf("bad bulk header %q", hd)
		}
		size, err := strconv.Atoi(hd[1:])
		if err != nil || size < 0 || size > 1<<20 {
			return nil, fmt.Errorf("bad bulk length %q", hd)
		}
		b := make([]byte, size+2)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, err
		}
		args = append(args, string(b[:size]))
	}
	return args, nil
}

// hostileResult is what one case measured.
type hostileResult struct {
	peakKB   int64
	samples  int64
	killed   bool
	dur      time.Duration // how long the process ran under load
	connects int64         // (re)connects the server saw; -1 when not counted
	ended    string        // how the process ended, when not by our first signal
	deaf     bool          // two SIGINTs did not end it
	server   string        // what the server did
}

// perSec is the rate of reconnects: connects after the first.
func (r hostileResult) perSec() float64 {
	if r.connects < 0 || r.dur <= 0 {
		return 0
	}
	return float64(max(r.connects-1, 0)) / r.dur.Seconds()
}

func (r hostileResult) ok() bool {
	return r.samples > 0 && !r.killed && !r.deaf && r.peakKB < hostileRSSMark && r.perSec() < hostileRateMark
}

func (r hostileResult) figure() string {
	peak := mb(r.peakKB)
	if r.killed {
		peak = fmt.Sprintf("over %s (killed)", mb(hostileKillMark))
	}
	s := "peak " + peak
	if r.connects >= 0 {
		s += fmt.Sprintf(", %.1f reconnects/s", r.perSec())
	}
	if r.ended != "" {
		s += ", " + r.ended
	}
	return s
}

func mb(kb int64) string { return fmt.Sprintf("%.0f MB", float64(kb)/1024) }

func gb(b int64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20))
	}
	return fmt.Sprintf("%.0f KiB", float64(b)/(1<<10))
}

// runTail runs `fanscope tail --json args...` for dur with stdout to
// /dev/null or, with unread, to a pipe nobody reads; during (if not nil)
// runs alongside until dur. It stops tail with SIGINT and says so when
// that was not enough.
func runTail(ctx context.Context, e *env, name string, unread bool, dur time.Duration, args []string, during func(ctx context.Context) error) (hostileResult, error) {
	res := hostileResult{connects: -1}
	var out *os.File
	var keep io.Closer // the read end of the unread pipe, held open
	if unread {
		r, w, err := os.Pipe()
		if err != nil {
			return res, fmt.Errorf("pipe: %w", err)
		}
		out, keep = w, r
	} else {
		f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err != nil {
			return res, err
		}
		out = f
	}
	c, err := e.spawn("hostile-"+name, out, append([]string{e.fanscope, "tail", "--json"}, args...)...)
	out.Close() // the child holds its own copy
	if keep != nil {
		defer keep.Close()
	}
	if err != nil {
		return res, err
	}
	s := sampleRSS(c.pid())
	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, dur)
	defer cancel()
	var derr error
	var dwg sync.WaitGroup
	if during != nil {
		dwg.Add(1)
		go func() { defer dwg.Done(); derr = during(cctx) }()
	}
	select {
	case <-cctx.Done():
	case <-c.done:
	}
	res.dur = time.Since(start)
	cancel()
	dwg.Wait()
	s.read()
	s.finish()
	res.peakKB, res.samples, res.killed = s.peak.Load(), s.samples.Load(), s.killed.Load()
	if code := c.exitCode(); code >= 0 || s.killed.Load() {
		if !s.killed.Load() {
			res.ended = fmt.Sprintf("exited %d after %.1fs (%s)", code, res.dur.Seconds(), c.logTail(1))
		}
	} else {
		// A blocked stdout must not keep a signal from working: the first
		// SIGINT may drain for a while, the second must end it at once.
		res.ended = stopTwice(c)
		res.deaf = strings.Contains(res.ended, "ignored")
	}
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	return res, derr
}

// stopTwice sends SIGINT, a second one 2 s later, and SIGKILL 3 s after
// that; it says what it took when one SIGINT was not enough.
func stopTwice(c *child) string {
	for i, wait := range []time.Duration{2 * time.Second, 3 * time.Second} {
		c.cmd.Process.Signal(os.Interrupt)
		select {
		case <-c.done:
			if i == 1 {
				return "needed a second SIGINT"
			}
			return ""
		case <-time.After(wait):
		}
	}
	c.kill()
	return "two SIGINTs ignored (killed)"
}

// hostileSSE runs one hostile SSE server case.
func hostileSSE(ctx context.Context, e *env, name string, unread bool, dur time.Duration, handle func(context.Context, *hostileServer, net.Conn)) (hostileResult, error) {
	h, err := startHostile(ctx, dur+10*time.Second, handle)
	if err != nil {
		return hostileResult{}, err
	}
	defer h.close()
	res, err := runTail(ctx, e, name, unread, dur, []string{"--sse", "hostile=http://" + h.addr() + "/events"}, nil)
	res.connects = h.conns.Load()
	res.server = fmt.Sprintf("server: %s connections, sent %s", count(h.conns.Load()), gb(h.sent.Load()))
	return res, err
}

// hostileJunkRedis runs tail against the fake Redis that sends junk after
// SUBSCRIBE.
func hostileJunkRedis(ctx context.Context, e *env, dur time.Duration) (hostileResult, error) {
	h, err := startHostile(ctx, dur+10*time.Second, junkRedis)
	if err != nil {
		return hostileResult{}, err
	}
	defer h.close()
	res, err := runTail(ctx, e, "junk-redis", false, dur, []string{"--redis", "redis://" + h.addr(), "-c", "bench:hostile"}, nil)
	res.connects = h.connects.Load()
	res.server = fmt.Sprintf("server: %s SUBSCRIBEs on %s connections", count(h.connects.Load()), count(h.conns.Load()))
	return res, err
}

// publishFlood publishes n 1 MiB messages to ch at perSec (n <= 0: until
// ctx ends), in pipelines of 10, and returns how many went out.
func publishFlood(ctx context.Context, c *redis.Client, ch string, perSec, n int) (int, error) {
	msgs := make([]string, 10)
	for i := range msgs {
		msgs[i] = payload(i, floodPayload)
	}
	start := time.Now()
	sent := 0
	for n <= 0 || sent < n {
		if ctx.Err() != nil {
			return sent, nil
		}
		k := min(10, n-sent)
		if n <= 0 {
			k = 10
		}
		p := c.Pipeline()
		for i := range k {
			p.Publish(ctx, ch, msgs[(sent+i)%len(msgs)])
		}
		if _, err := p.Exec(ctx); err != nil {
			if ctx.Err() != nil {
				return sent, nil
			}
			return sent, fmt.Errorf("publish: %w", err)
		}
		sent += k
		// Pace: the send of message sent is due at sent/perSec.
		if ahead := time.Duration(float64(sent)/float64(perSec)*float64(time.Second)) - time.Since(start); ahead > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(ahead):
			}
		}
	}
	return sent, nil
}

// connectionsReceived is INFO's total_connections_received.
func connectionsReceived(ctx context.Context, c *redis.Client) int64 {
	s, err := c.Info(ctx, "stats").Result()
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(s, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "total_connections_received:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return -1
}

// hostileFlood runs tail with a stdout nobody reads while 1 MiB messages
// arrive at 200/s.
func hostileFlood(ctx context.Context, e *env, rs *redisServer, dur time.Duration) (hostileResult, error) {
	pub := rs.client()
	defer pub.Close()
	ch := fmt.Sprintf("bench:hostile:flood:%d", time.Now().UnixNano())
	before := connectionsReceived(ctx, pub)
	var sent int
	res, err := runTail(ctx, e, "flood-unread", true, dur, []string{"--redis", rs.url(), "-c", ch}, func(ctx context.Context) error {
		if err := waitSubscribers(ctx, pub, ch, 1, 15*time.Second, nil); err != nil {
			return err
		}
		var err error
		sent, err = publishFlood(ctx, pub, ch, 200, 0)
		return err
	})
	if errors.Is(err, context.DeadlineExceeded) {
		err = nil
	}
	res.server = fmt.Sprintf("published %s x 1 MiB; %d new connections to Redis (tail's and the publisher's)", count(int64(sent)), connectionsReceived(context.Background(), pub)-before)
	return res, err
}

// hostileWatch runs `watch` in a 200x50 tmux pane while 2,500 messages of
// 1 MiB arrive (250/s), and samples it until dur or 3 s after the last.
func hostileWatch(ctx context.Context, e *env, rs *redisServer, dur time.Duration) (hostileResult, error) {
	res := hostileResult{connects: -1}
	if _, err := exec.LookPath("tmux"); err != nil {
		return res, errors.New("tmux not found on PATH: install it (e.g. apt-get install tmux) and run again")
	}
	const total = 2500
	ch := fmt.Sprintf("bench:hostile:watch:%d", time.Now().UnixNano())
	logPath := e.workPath("hostile-watch.log")
	t := tmux{socket: e.workPath("tmux-hostile")}
	defer t.kill()
	out, err := t.run("new-session", "-d", "-x", "200", "-y", "50", "-P", "-F", "#{pane_pid}",
		fmt.Sprintf("exec %s watch --redis %s -c %s 2>%s", e.fanscope, rs.url(), ch, logPath))
	if err != nil {
		return res, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		return res, fmt.Errorf("tmux gave no pane pid: %q", out)
	}
	pub := rs.client()
	defer pub.Close()
	if err := waitSubscribers(ctx, pub, ch, 1, 15*time.Second, nil); err != nil {
		b, _ := os.ReadFile(logPath)
		return res, fmt.Errorf("watch: %w (stderr: %q)", err, strings.TrimSpace(string(b)))
	}
	s := sampleRSS(pid)
	start := time.Now()
	sent, perr := publishFlood(ctx, pub, ch, 250, total)
	rest := max(dur-time.Since(start), 3*time.Second)
	select {
	case <-ctx.Done():
	case <-time.After(rest):
	}
	res.dur = time.Since(start)
	s.read()
	alive := syscall.Kill(pid, 0) == nil
	s.finish()
	res.peakKB, res.samples, res.killed = s.peak.Load(), s.samples.Load(), s.killed.Load()
	if !alive && !res.killed {
		b, _ := os.ReadFile(logPath)
		res.ended = fmt.Sprintf("exited during the run (%s)", strings.TrimSpace(string(b)))
		res.samples = 0 // a crash is a failure whatever the RSS
	}
	screen, _ := t.run("capture-pane", "-p")
	e.logf("   watch screen at the end: %s", squash(screen))
	t.run("send-keys", "q")
	res.server = fmt.Sprintf("published %s x 1 MiB at 250/s", count(int64(sent)))
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	return res, perr
}

func runHostile(ctx context.Context, e *env) ([]row, error) {
	dur := pick(e, 15*time.Second, 8*time.Second)
	// A Redis of its own: a subscriber that stops reading is cut off at
	// 1 GB of output buffer, so that a case cannot take the shared machine
	// down through redis-server either.
	rs, err := e.startRedis("redis-hostile", "client-output-buffer-limit pubsub 1gb 0 0")
	if err != nil {
		return nil, err
	}
	defer rs.stop()
	type hcase struct {
		metric string
		run    func() (hostileResult, error)
	}
	sse := func(name string, unread bool, h func(context.Context, *hostileServer, net.Conn)) func() (hostileResult, error) {
		return func() (hostileResult, error) { return hostileSSE(ctx, e, name, unread, dur, h) }
	}
	cases := []hcase{
		{"SSE: one header line that never ends (tail, stdout /dev/null)", sse("endless-line", false, endlessHeaderLine)},
		{"SSE: header lines that never end (tail, stdout /dev/null)", sse("endless-headers", false, endlessHeaders)},
		{"SSE: 3 events of 20 MiB, then small ones (tail, stdout /dev/null)", sse("big-events", false, bigThenNormal)},
		{"SSE: 3 events of 20 MiB, then small ones (tail, stdout unread)", sse("big-events-unread", true, bigThenNormal)},
		{"SSE: retry: 0, then close at once (tail)", sse("retry-0", false, retryThenClose("0"))},
		{"SSE: retry: 10^23 (overflows), then close at once (tail)", sse("retry-overflow", false, retryThenClose("99999999999999999999999"))},
		{"fake Redis: SUBSCRIBE confirmed, then junk (tail)", func() (hostileResult, error) { return hostileJunkRedis(ctx, e, dur) }},
		{"Redis: 1 MiB messages at 200/s (tail, stdout unread)", func() (hostileResult, error) { return hostileFlood(ctx, e, rs, dur) }},
		{"Redis: 2,500 x 1 MiB at 250/s (watch in 200x50 tmux)", func() (hostileResult, error) { return hostileWatch(ctx, e, rs, dur) }},
	}
	target := fmt.Sprintf("< %d MB, < %.0f/s, SIGINT works", hostileRSSMark>>10, hostileRateMark)
	var rows []row
	for _, c := range cases {
		if ctx.Err() != nil {
			return rows, ctx.Err()
		}
		res, err := c.run()
		if err != nil {
			if ctx.Err() != nil {
				return rows, ctx.Err()
			}
			rows = append(rows, row{"hostile", c.metric, "error: " + err.Error(), res.server, "-", target, fail})
			e.logf("   %s: error: %v", c.metric, err)
			continue
		}
		e.logf("   %s: %s (%d samples over %.1fs); %s", c.metric, res.figure(), res.samples, res.dur.Seconds(), res.server)
		rows = append(rows, row{"hostile", c.metric, res.figure(), res.server, "-", target, verdict(res.ok())})
	}
	return rows, nil
}
