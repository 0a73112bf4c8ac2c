package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// subscriberUnderTest is one program that subscribes and prints what it gets.
type subscriberUnderTest struct {
	name string
	// args builds the command line for channel ch on server url.
	args func(e *env, url, ch string) []string
	// linesPer is how many stdout lines one message produces; preamble is
	// how many lines precede the first message.
	linesPer, preamble int64
}

var ingestSubjects = []subscriberUnderTest{
	{
		name: "redis-cli",
		args: func(_ *env, url, ch string) []string {
			return []string{"redis-cli", "-u", url, "SUBSCRIBE", ch}
		},
		// Without a terminal redis-cli prints "message", the channel and the
		// payload on three lines, after the three lines of the confirmation.
		linesPer: 3, preamble: 3,
	},
	{
		name: "fanscope",
		args: func(e *env, url, ch string) []string {
			return []string{e.fanscope, "tail", "--redis", url, "-c", ch, "--json", "--no-state"}
		},
		linesPer: 1, preamble: 0,
	},
}

// ingestResult is one subscriber's run against one flood.
type ingestResult struct {
	sent, received int64 // messages
	elapsed        time.Duration
	pubRate        float64 // messages/s the publisher achieved
	dropped        int64   // what the subscriber said it dropped, -1 if it did not say
	cpu            float64 // CPU seconds the subscriber used, start-up included
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

// ingestOnce floods ch with n messages of size bytes while subj prints
// them into a pipe that this process reads, and measures from the first
// publish to the arrival of the last expected line.
//
// With backlog set, the subscriber is frozen (SIGSTOP) during the flood, so
// Redis queues every message in its output buffer, and the clock starts when
// it is thawed: that measures how fast it drains, without a publisher
// competing for the CPU.
func ingestOnce(ctx context.Context, e *env, rs *redisServer, subj subscriberUnderTest, n, size int, backlog bool) (ingestResult, error) {
	res := ingestResult{dropped: -1}
	ch := fmt.Sprintf("bench:ingest:%s:%d", subj.name, time.Now().UnixNano())
	pr, pw, err := os.Pipe()
	if err != nil {
		return res, fmt.Errorf("create pipe: %w", err)
	}
	defer pr.Close()
	c, err := e.spawn("ingest-"+subj.name, pw, subj.args(e, rs.url(), ch)...)
	pw.Close()
	if err != nil {
		return res, err
	}
	defer c.kill()
	counter := &lineCounter{grew: make(chan struct{}, 1)}
	readerDone := make(chan struct{})
	go func() { counter.consume(pr); close(readerDone) }()

	pub := rs.client()
	defer pub.Close()
	if err := waitSubscribers(ctx, pub, ch, 1, 15*time.Second, c.done); err != nil {
		return res, fmt.Errorf("%s: %w (log: %s)", subj.name, err, c.logTail(3))
	}
	// Let the confirmation lines come through before the flood.
	deadline := time.Now().Add(2 * time.Second)
	for {
		got, _ := counter.get()
		if got >= subj.preamble || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}

	msgs := make([]string, 1000)
	for i := range msgs {
		msgs[i] = payload(i, size)
	}
	want := subj.preamble + int64(n)*subj.linesPer
	if backlog {
		if err := c.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			return res, fmt.Errorf("freeze %s: %w", subj.name, err)
		}
	}
	t0 := time.Now()
	sent, err := flood(ctx, pub, ch, msgs, n)
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

	// Wait for the last line, or until nothing arrived for idle.
	idle := 3 * time.Second
	hard := time.Now().Add(pick(e, 120*time.Second, 60*time.Second))
	for {
		got, last := counter.get()
		if got >= want {
			break
		}
		if last.Before(pubDone) {
			last = pubDone
		}
		if time.Since(last) > idle || time.Now().After(hard) || c.exitCode() >= 0 {
			break
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-counter.grew:
		case <-time.After(100 * time.Millisecond):
		}
	}
	got, last := counter.get()
	res.received = max(0, (got-subj.preamble)/subj.linesPer)
	res.elapsed = last.Sub(t0)
	res.cpu, _ = procCPU(c.pid())
	c.stop(10 * time.Second)
	<-readerDone
	if m := droppedRE.FindStringSubmatch(c.logTail(20)); m != nil {
		res.dropped, _ = strconv.ParseInt(m[1], 10, 64)
	}
	return res, nil
}

// flood publishes n messages to ch in pipelines of len(msgs), as fast as
// Redis takes them.
func flood(ctx context.Context, c *redis.Client, ch string, msgs []string, n int) (int, error) {
	sent := 0
	for sent < n {
		k := min(len(msgs), n-sent)
		p := c.Pipeline()
		for i := range k {
			p.Publish(ctx, ch, msgs[i])
		}
		if _, err := p.Exec(ctx); err != nil {
			return sent, err
		}
		sent += k
	}
	return sent, nil
}

func runIngest(ctx context.Context, e *env) ([]row, error) {
	rs, err := e.redisServer()
	if err != nil {
		return nil, err
	}
	n := pick(e, 1_000_000, 200_000)
	rounds := 3
	const size = 100
	e.logf("ingest: %s x %d B messages, pipelines of 1000, %d round(s), best round counts", count(int64(n)), size, rounds)
	best := map[string]ingestResult{}
	var loss []string
	for round := range rounds {
		// Alternate the order so neither subscriber always runs on a warm server.
		order := slices.Clone(ingestSubjects)
		if round%2 == 1 {
			slices.Reverse(order)
		}
		for _, subj := range order {
			r, err := ingestOnce(ctx, e, rs, subj, n, size, false)
			if err != nil {
				return nil, err
			}
			e.logf("   %-9s %s received of %s in %s: %s (publisher %s, dropped reported: %d, CPU %.2f µs/msg)",
				subj.name, count(r.received), count(r.sent), r.elapsed.Round(time.Millisecond), rate(r.rate()), rate(r.pubRate), r.dropped, r.cpuPerMsg())
			if r.received < r.sent {
				loss = append(loss, fmt.Sprintf("%s lost %d (reported %d)", subj.name, r.sent-r.received, max(r.dropped, 0)))
			}
			if b, ok := best[subj.name]; !ok || r.rate() > b.rate() {
				best[subj.name] = r
			}
		}
	}
	fs, rc := best["fanscope"], best["redis-cli"]
	rows := []row{{
		"ingest", fmt.Sprintf("msgs/s absorbed, %s x %d B flood (tail --json)", count(int64(n)), size),
		rate(fs.rate()), rate(rc.rate()) + " redis-cli", ratio(fs.rate(), rc.rate()), ">= 1.00x",
		verdict(fs.rate() >= rc.rate() && fs.received > 0),
	}}
	// Loss is allowed only when fanscope itself reported every dropped record.
	lost := fs.sent - fs.received
	accounted := lost == 0 || (fs.dropped >= 0 && fs.dropped == lost)
	rows = append(rows, row{
		"ingest", "messages lost in the best round (fanscope reports drops on stderr)",
		fmt.Sprintf("%s lost, %s reported", count(lost), count(max(fs.dropped, 0))),
		fmt.Sprintf("%s lost", count(rc.sent-rc.received)), "-", "0, or all reported", verdict(accounted),
	})

	// The ceiling without a publisher on the CPU: drain a frozen backlog.
	drain := map[string]ingestResult{}
	for _, subj := range ingestSubjects {
		r, err := ingestOnce(ctx, e, rs, subj, n, size, true)
		if err != nil {
			return rows, err
		}
		e.logf("   %-9s drained %s of %s in %s: %s (dropped reported: %d, CPU %.2f µs/msg)",
			subj.name, count(r.received), count(r.sent), r.elapsed.Round(time.Millisecond), rate(r.rate()), r.dropped, r.cpuPerMsg())
		if r.received < r.sent {
			loss = append(loss, fmt.Sprintf("%s lost %d draining (reported %d)", subj.name, r.sent-r.received, max(r.dropped, 0)))
		}
		drain[subj.name] = r
	}
	fd, rd := drain["fanscope"], drain["redis-cli"]
	dl := fd.sent - fd.received
	rows = append(rows, row{
		"ingest", fmt.Sprintf("msgs/s draining a %s-message backlog (no publisher running)", count(int64(n))),
		fmt.Sprintf("%s, %s lost, %s reported", rate(fd.rate()), count(dl), count(max(fd.dropped, 0))),
		rate(rd.rate()) + " redis-cli", ratio(fd.rate(), rd.rate()), "-", info,
	}, row{
		"ingest", "subscriber CPU per message while draining", fmt.Sprintf("%.2f µs", fd.cpuPerMsg()),
		fmt.Sprintf("%.2f µs redis-cli", rd.cpuPerMsg()), ratio(fd.cpuPerMsg(), rd.cpuPerMsg()), "-", info,
	})
	if len(loss) > 0 {
		e.logf("   loss: %v", loss)
	}
	if fs.received == 0 {
		return rows, errors.New("fanscope tail printed no messages")
	}
	return rows, nil
}
