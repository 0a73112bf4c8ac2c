package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// subscriberUnderTest is one program that subscribes and prints what it gets.
type subscriberUnderTest struct {
	name string
	// args builds the command line for channel ch on server url.
	// n > 0 asks it to stop by itself after n messages, where it can.
	args func(e *env, url, ch string, n int) []string
	// linesPer is how many stdout lines one message produces; preamble is
	// how many lines precede the first message.
	linesPer, preamble int64
	// stop ends it: redis-cli ignores SIGINT while subscribed; fanscope
	// prints its drop count on SIGINT.
	stop os.Signal
}

var ingestSubjects = []subscriberUnderTest{
	{
		name: "redis-cli",
		args: func(_ *env, url, ch string, _ int) []string {
			return []string{"redis-cli", "-u", url, "SUBSCRIBE", ch}
		},
		// Without a terminal redis-cli prints "message", the channel and the
		// payload on three lines, after the three lines of the confirmation.
		linesPer: 3, preamble: 3, stop: syscall.SIGTERM,
	},
	{
		name: "fanscope",
		args: func(e *env, url, ch string, n int) []string {
			args := []string{e.fanscope, "tail", "--redis", url, "-c", ch, "--json", "--no-state"}
			if n > 0 {
				args = append(args, "-n", strconv.Itoa(n))
			}
			return args
		},
		linesPer: 1, preamble: 0, stop: os.Interrupt,
	},
}

// ingestResult is one subscriber's run against one flood.
type ingestResult struct {
	sent, received int64 // messages
	elapsed        time.Duration
	pubRate        float64 // messages/s the publisher achieved
	dropped        int64   // what the subscriber said it dropped, -1 if it did not say
	cpu            float64 // CPU seconds the subscriber used, start-up included
	incomplete     bool    // it went idle (or timed out) before the last message
}

// cpuPerMsg is the subscriber's CPU time per message received, in µs.
func (r ingestResult) cpuPerMsg() float64 {
	if r.received == 0 {
		return 0
	}
	return r.cpu / float64(r.received) * 1e6
}

func (r ingestResult) rate() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.received) / r.elapsed.Seconds()
}

// lineCounter counts newlines written to it and remembers when the count
// last grew.
type lineCounter struct {
	mu    sync.Mutex
	lines int64
	last  time.Time
	grew  chan struct{}
}

func (c *lineCounter) consume(r io.Reader) {
	buf := make([]byte, 1<<20)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			k := int64(0)
			for _, b := range buf[:n] {
				if b == '\n' {
					k++
				}
			}
			if k > 0 {
				now := time.Now()
				c.mu.Lock()
				c.lines += k
				c.last = now
				c.mu.Unlock()
				select {
				case c.grew <- struct{}{}:
				default:
				}
			}
		}
		if err != nil {
			return
		}
	}
}

func (c *lineCounter) get() (int64, time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lines, c.last
}

var droppedRE = regexp.MustCompile(`(\d+) records? (?:were|was) dropped`)

// sink is where the subscriber under test writes: a file on tmpfs (what
// "> /dev/null" costs, but measurable), or a pipe this process reads.
type sink int

const (
	sinkNull sink = iota
	sinkFile
	sinkPipe
)

// fileWatch polls the size of a file and remembers when it last grew.
type fileWatch struct {
	mu   sync.Mutex
	size int64
	last time.Time
	stop chan struct{}
	done chan struct{}
}

func watchFile(path string) *fileWatch {
	w := &fileWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			if st, err := os.Stat(path); err == nil {
				now := time.Now()
				w.mu.Lock()
				if st.Size() != w.size {
					w.size, w.last = st.Size(), now
				}
				w.mu.Unlock()
			}
			select {
			case <-w.stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	return w
}

func (w *fileWatch) get() (int64, time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.size, w.last
}

func (w *fileWatch) close() {
	close(w.stop)
	<-w.done
}

// countLines counts the newlines in a file.
func countLines(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	c := &lineCounter{grew: make(chan struct{}, 1)}
	c.consume(f)
	n, _ := c.get()
	return n, nil
}

// scratchDir is where file sinks go: tmpfs when there is one, so writing
// costs about what writing to /dev/null does.
func scratchDir(e *env) string {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "fanscope-bench-"); err == nil {
			return d
		}
	}
	return e.dir
}

// ingestOnce floods ch with n messages of size bytes while subj writes
// them to out, and measures from the first publish to the moment the
// subscriber's output last grew (file) or its last expected line arrived
// (pipe). Messages received are counted from that output.
//
// With backlog set, the subscriber is frozen (SIGSTOP) during the flood, so
// Redis queues every message in its output buffer, and the clock starts when
// it is thawed: that measures how fast it drains, without a publisher
// competing for the CPU.
func ingestOnce(ctx context.Context, e *env, rs *redisServer, subj subscriberUnderTest, out sink, n, size int, backlog bool) (ingestResult, error) {
	res := ingestResult{dropped: -1}
	ch := fmt.Sprintf("bench:ingest:%s:%d", subj.name, time.Now().UnixNano())
	var (
		c       *child
		err     error
		counter *lineCounter
		fw      *fileWatch
		path    string
	)
	readerDone := make(chan struct{})
	switch out {
	case sinkNull:
		f, ferr := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if ferr != nil {
			return res, fmt.Errorf("open %s: %w", os.DevNull, ferr)
		}
		// fanscope stops by itself after n messages; redis-cli cannot, so
		// it is done when it has written exactly the bytes of n messages.
		c, err = e.spawn("ingest-"+subj.name, f, subj.args(e, rs.url(), ch, n)...)
		f.Close()
		if err != nil {
			return res, err
		}
		if _, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", c.pid())); err != nil {
			return res, fmt.Errorf("read what %s wrote to /dev/null: %w", subj.name, err)
		}
		close(readerDone)
	case sinkPipe:
		pr, pw, perr := os.Pipe()
		if perr != nil {
			return res, fmt.Errorf("create pipe: %w", perr)
		}
		defer pr.Close()
		c, err = e.spawn("ingest-"+subj.name, pw, subj.args(e, rs.url(), ch, 0)...)
		pw.Close()
		if err != nil {
			return res, err
		}
		counter = &lineCounter{grew: make(chan struct{}, 1)}
		go func() { counter.consume(pr); close(readerDone) }()
	default:
		dir := scratchDir(e)
		defer os.RemoveAll(dir)
		path = filepath.Join(dir, subj.name+".out")
		f, ferr := os.Create(path)
		if ferr != nil {
			return res, fmt.Errorf("create output file: %w", ferr)
		}
		c, err = e.spawn("ingest-"+subj.name, f, subj.args(e, rs.url(), ch, 0)...)
		f.Close()
		if err != nil {
			return res, err
		}
		fw = watchFile(path)
		defer fw.close()
		close(readerDone)
	}
	defer c.kill()
	lines := func() (int64, time.Time) {
		switch {
		case counter != nil:
			return counter.get()
		case fw != nil:
			return fw.get()
		}
		return 0, time.Time{}
	}

	pub := rs.client()
	defer pub.Close()
	if err := waitSubscribers(ctx, pub, ch, 1, 15*time.Second, c.done); err != nil {
		return res, fmt.Errorf("%s: %w (log: %s)", subj.name, err, c.logTail(3))
	}
	// Let the confirmation lines come through before the flood.
	time.Sleep(200 * time.Millisecond)
	w0 := writtenBytes(c.pid())
	msg := payload(0, size)
	perMsg := int64(len("message\n") + len(ch) + 1 + len(msg) + 1) // redis-cli's lines for one message

	want := subj.preamble + int64(n)*subj.linesPer
	if backlog {
		if err := c.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			return res, fmt.Errorf("freeze %s: %w", subj.name, err)
		}
	}
	t0 := time.Now()
	sent, err := flood(ctx, e, rs, ch, msg, n)
	pubDone := time.Now()
	res.sent = int64(sent)
	res.pubRate = float64(sent) / pubDone.Sub(t0).Seconds()
	if backlog {
		c.cmd.Process.Signal(syscall.SIGCONT)
		t0 = time.Now()
		pubDone = t0
	}
	if err != nil {
		return res, fmt.Errorf("publish: %w", err)
	}

	// Wait for the last message, or until the output stopped growing.
	idle := 2 * time.Second
	hard := time.Now().Add(pick(e, 120*time.Second, 60*time.Second))
	var doneAt time.Time
	lastW, lastWAt := writtenBytes(c.pid()), pubDone
	for doneAt.IsZero() {
		now := time.Now()
		switch {
		case out == sinkNull && subj.name == "fanscope":
			if c.exitCode() >= 0 {
				doneAt = now
			}
		case out == sinkNull:
			if writtenBytes(c.pid())-w0 >= int64(n)*perMsg {
				doneAt = now
			}
		case counter != nil:
			if got, last := counter.get(); got >= want {
				doneAt = last
			}
		}
		if !doneAt.IsZero() {
			break
		}
		// Idle: the output (or, for /dev/null, the bytes written; a Go
		// runtime writes a few bytes now and then) stopped growing.
		if w := writtenBytes(c.pid()); w-lastW > 1024 {
			lastW, lastWAt = w, now
		}
		_, last := lines()
		if out == sinkNull {
			last = lastWAt
		}
		if last.Before(pubDone) {
			last = pubDone
		}
		if now.Sub(last) > idle || now.After(hard) || c.exitCode() >= 0 {
			doneAt = last
			res.incomplete = true
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	res.elapsed = doneAt.Sub(t0)
	res.cpu, _ = procCPU(c.pid())
	if c.exitCode() >= 0 {
		res.cpu = c.cmd.ProcessState.UserTime().Seconds() + c.cmd.ProcessState.SystemTime().Seconds()
	}
	wrote := writtenBytes(c.pid()) - w0
	c.stopWith(subj.stop, 5*time.Second)
	<-readerDone
	var got int64
	switch {
	case out == sinkNull && subj.name == "fanscope":
		if m := droppedRE.FindStringSubmatch(c.logTail(20)); m != nil {
			res.dropped, _ = strconv.ParseInt(m[1], 10, 64)
		}
		// It exits by itself only after n messages; otherwise count what
		// it says it dropped as the only loss (unverifiable on /dev/null).
		got = int64(n)
		if res.incomplete {
			got = int64(n) - max(res.dropped, 0)
		}
		res.received = got
	case out == sinkNull:
		res.received = min(int64(n), max(wrote, 0)/perMsg)
	default:
		if counter != nil {
			got, _ = counter.get()
		} else if got, err = countLines(path); err != nil {
			return res, fmt.Errorf("count output lines: %w", err)
		}
		res.received = max(0, (got-subj.preamble)/subj.linesPer)
	}
	if m := droppedRE.FindStringSubmatch(c.logTail(20)); m != nil {
		res.dropped, _ = strconv.ParseInt(m[1], 10, 64)
	}
	return res, nil
}

// writtenBytes is wchar from /proc/PID/io: every byte the process passed to
// write(2), also to /dev/null. After the process ended it keeps the last
// value seen.
func writtenBytes(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		lastWritten.Lock()
		defer lastWritten.Unlock()
		return lastWritten.m[pid]
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "wchar: "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			lastWritten.Lock()
			lastWritten.m[pid] = n
			lastWritten.Unlock()
			return n
		}
	}
	return 0
}

var lastWritten = struct {
	sync.Mutex
	m map[int]int64
}{m: map[int]int64{}}

// flood publishes n copies of msg to ch as fast as Redis takes them:
// redis-benchmark with pipelines of 1000 when it is on PATH (it publishes
// several times faster than a Go client on the same CPU), else go-redis
// pipelines of 1000.
func flood(ctx context.Context, e *env, rs *redisServer, ch, msg string, n int) (int, error) {
	if bin, err := exec.LookPath("redis-benchmark"); err == nil {
		cmd := exec.CommandContext(ctx, bin, "-h", "127.0.0.1", "-p", strconv.Itoa(rs.port),
			"-n", strconv.Itoa(n), "-P", "1000", "-c", "1", "-q", "PUBLISH", ch, msg)
		if out, err := cmd.CombinedOutput(); err != nil {
			return 0, fmt.Errorf("redis-benchmark: %w: %s", err, lastLine(string(out)))
		}
		return n, nil
	}
	c := rs.client()
	defer c.Close()
	sent := 0
	for sent < n {
		k := min(1000, n-sent)
		p := c.Pipeline()
		for range k {
			p.Publish(ctx, ch, msg)
		}
		if _, err := p.Exec(ctx); err != nil {
			return sent, err
		}
		sent += k
	}
	return sent, nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(strings.ReplaceAll(s, "\r", "\n"))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

func runIngest(ctx context.Context, e *env) ([]row, error) {
	rs, err := e.redisServer()
	if err != nil {
		return nil, err
	}
	n := pick(e, 1_000_000, 200_000)
	// Seven rounds: the publisher's own pace varies by a fifth from round to
	// round on a shared two-core machine, and a subscriber that keeps up
	// can only be as fast as the publisher; with few rounds, which
	// subscriber drew the publisher's fast rounds decides the ratio.
	rounds := 7
	const size = 100
	pubName := "go-redis pipelines of 1000"
	if _, err := exec.LookPath("redis-benchmark"); err == nil {
		pubName = "redis-benchmark -P 1000"
	}
	e.logf("ingest: %s x %d B messages from %s; %d rounds to /dev/null, best of each", count(int64(n)), size, pubName, rounds)
	var loss []string
	// measure runs every subject rounds times (alternating the order, so
	// neither always runs on a warm server) and keeps each one's best.
	all := map[string][]ingestResult{} // every /dev/null round, by subject
	measure := func(label string, out sink, backlog bool, rounds int) (map[string]ingestResult, error) {
		best := map[string]ingestResult{}
		for round := range rounds {
			order := slices.Clone(ingestSubjects)
			if round%2 == 1 {
				slices.Reverse(order)
			}
			for _, subj := range order {
				r, err := ingestOnce(ctx, e, rs, subj, out, n, size, backlog)
				if err != nil {
					return nil, err
				}
				e.logf("   %-8s %-9s %s of %s in %s: %s (publisher %s, drops reported: %d, CPU %.2f µs/msg)",
					label, subj.name, count(r.received), count(r.sent), r.elapsed.Round(time.Millisecond), rate(r.rate()),
					rate(r.pubRate), max(r.dropped, 0), r.cpuPerMsg())
				if r.received < r.sent {
					loss = append(loss, fmt.Sprintf("%s %s lost %d (reported %d)", label, subj.name, r.sent-r.received, max(r.dropped, 0)))
				}
				if b, ok := best[subj.name]; !ok || r.rate() > b.rate() {
					best[subj.name] = r
				}
				if label == "null" {
					all[subj.name] = append(all[subj.name], r)
				}
			}
		}
		return best, nil
	}

	best, err := measure("null", sinkNull, false, rounds)
	if err != nil {
		return nil, err
	}
	fs, rc := best["fanscope"], best["redis-cli"]
	rows := []row{{
		"ingest", fmt.Sprintf("msgs/s absorbed, %s x %d B flood, > /dev/null", count(int64(n)), size),
		rate(fs.rate()), rate(rc.rate()) + " redis-cli", ratio(fs.rate(), rc.rate()), ">= 1.00x",
		verdict(fs.rate() >= rc.rate() && fs.received == fs.sent),
	}}

	// What the best-of hides: how much CPU each subscriber spent per
	// message, and in how many rounds it kept pace with the publisher
	// (finished within 1% of the publisher's time), so its rate was the
	// publisher's.
	paced := func(rs []ingestResult) string {
		k := 0
		for _, r := range rs {
			if r.rate() >= 0.99*r.pubRate {
				k++
			}
		}
		return fmt.Sprintf("%d of %d rounds", k, len(rs))
	}
	medianCPU := func(rs []ingestResult) float64 {
		v := make([]float64, 0, len(rs))
		for _, r := range rs {
			v = append(v, r.cpuPerMsg())
		}
		slices.Sort(v)
		if len(v) == 0 {
			return 0
		}
		return v[len(v)/2]
	}
	fcpu, rcpu := medianCPU(all["fanscope"]), medianCPU(all["redis-cli"])
	rows = append(rows,
		row{"ingest", "subscriber CPU per message in the flood (median of the rounds)",
			fmt.Sprintf("%.2f µs", fcpu), fmt.Sprintf("%.2f µs redis-cli", rcpu), ratio(fcpu, rcpu), "-", info},
		row{"ingest", "rounds in which the subscriber kept pace with the publisher",
			paced(all["fanscope"]), paced(all["redis-cli"]) + " redis-cli", "-", "-", info},
	)

	// To a file, where every line is counted afterwards: the loss check.
	filed, err := measure("file", sinkFile, false, 2)
	if err != nil {
		return rows, err
	}
	ff, rf := filed["fanscope"], filed["redis-cli"]
	rows = append(rows, row{
		"ingest", "msgs/s absorbed, same flood, output to a tmpfs file",
		rate(ff.rate()), rate(rf.rate()) + " redis-cli", ratio(ff.rate(), rf.rate()), "-", info,
	})
	// Loss is allowed only when fanscope itself reported every dropped record.
	lost := int64(0)
	reported := int64(0)
	for _, r := range []ingestResult{fs, ff} {
		lost += r.sent - r.received
		reported += max(r.dropped, 0)
	}
	rows = append(rows, row{
		"ingest", "messages lost (lines counted in the file; fanscope reports drops on stderr)",
		fmt.Sprintf("%s lost, %s reported", count(ff.sent-ff.received), count(max(ff.dropped, 0))),
		fmt.Sprintf("%s lost", count(rf.sent-rf.received)), "-", "0, or all reported",
		verdict(ff.sent-ff.received == 0 || ff.dropped == ff.sent-ff.received),
	})

	// The ceiling without a publisher on the CPU: drain a frozen backlog.
	drain, err := measure("backlog", sinkNull, true, 2)
	if err != nil {
		return rows, err
	}
	fd, rd := drain["fanscope"], drain["redis-cli"]
	rows = append(rows, row{
		"ingest", fmt.Sprintf("msgs/s draining a %s-message backlog > /dev/null (no publisher)", count(int64(n))),
		rate(fd.rate()), rate(rd.rate()) + " redis-cli", ratio(fd.rate(), rd.rate()), "-", info,
	}, row{
		"ingest", "subscriber CPU per message while draining", fmt.Sprintf("%.2f µs", fd.cpuPerMsg()),
		fmt.Sprintf("%.2f µs redis-cli", rd.cpuPerMsg()), ratio(fd.cpuPerMsg(), rd.cpuPerMsg()), "-", info,
	})

	// Into a pipe, as in `fanscope tail --json | jq`: one round.
	piped, err := measure("pipe", sinkPipe, false, 1)
	if err != nil {
		return rows, err
	}
	fp, rp := piped["fanscope"], piped["redis-cli"]
	rows = append(rows, row{
		"ingest", "msgs/s absorbed, same flood, into a pipe the bench reads",
		rate(fp.rate()), rate(rp.rate()) + " redis-cli", ratio(fp.rate(), rp.rate()), "-", info,
	})
	_ = lost
	_ = reported
	if len(loss) > 0 {
		e.logf("   loss: %v", loss)
	}
	if fs.received == 0 {
		return rows, errors.New("fanscope tail printed no messages")
	}
	return rows, nil
}
