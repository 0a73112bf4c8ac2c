package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// tmux runs tmux on the bench's own server socket, in the work directory,
// so the user's sessions are never touched and nothing is left behind.
type tmux struct {
	socket string
}

func (t tmux) cmd(args ...string) *exec.Cmd {
	c := exec.Command("tmux", append([]string{"-S", t.socket, "-f", "/dev/null"}, args...)...)
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TMUX=") && !strings.HasPrefix(kv, "TMUX_PANE=") {
			env = append(env, kv)
		}
	}
	c.Env = append(env, "TERM=xterm-256color")
	return c
}

func (t tmux) run(args ...string) (string, error) {
	out, err := t.cmd(args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("tmux %s: %w: %s", args[0], err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

func (t tmux) kill() { t.cmd("kill-server").Run() }

// tuiSample is one reading of the process under test.
type tuiSample struct {
	at  time.Duration // since the publisher started
	cpu float64       // seconds of CPU used so far
	rss int64         // kB
}

// tuiRun is one program in a 200x50 tmux pane under a steady publish rate.
type tuiRun struct {
	samples   []tuiSample
	published int64
	screen    string
}

// cpuBetween is the CPU the process used between a and b, in cores.
func (r tuiRun) cpuBetween(a, b time.Duration) float64 {
	sa, sb := r.sampleAt(a), r.sampleAt(b)
	if sb.at <= sa.at {
		return 0
	}
	return (sb.cpu - sa.cpu) / (sb.at - sa.at).Seconds()
}

// sampleAt is the last sample taken at or before d.
func (r tuiRun) sampleAt(d time.Duration) tuiSample {
	var s tuiSample
	for _, x := range r.samples {
		if x.at <= d {
			s = x
		}
	}
	return s
}

// runInTmux starts command in a detached 200x50 tmux session, waits for it
// to subscribe to ch, publishes at perSec for dur and samples the process.
func runInTmux(ctx context.Context, e *env, rs *redisServer, name, command, ch string, perSec int, dur time.Duration) (tuiRun, error) {
	var r tuiRun
	logPath := e.workPath("tui-" + name + ".log")
	command += " 2>" + logPath
	// What the program said and showed, for an error message.
	why := func(t tmux) string {
		screen, _ := t.run("capture-pane", "-p")
		b, _ := os.ReadFile(logPath)
		return fmt.Sprintf("stderr: %q; screen: %s", strings.TrimSpace(string(b)), squash(screen))
	}
	t := tmux{socket: e.workPath("tmux-" + name)}
	defer t.kill()
	out, err := t.run("new-session", "-d", "-x", "200", "-y", "50", "-P", "-F", "#{pane_pid}", "exec "+command)
	if err != nil {
		return r, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		return r, fmt.Errorf("tmux gave no pane pid: %q", out)
	}
	pub := rs.client()
	defer pub.Close()
	exited := make(chan struct{})
	go func() {
		for {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
				close(exited)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	if err := waitSubscribers(ctx, pub, ch, 1, 15*time.Second, exited); err != nil {
		return r, fmt.Errorf("%s: %w; %s", name, err, why(t))
	}
	time.Sleep(500 * time.Millisecond) // let the first frame draw

	sample := func(at time.Duration) error {
		cpu, err := procCPU(pid)
		if err != nil {
			return fmt.Errorf("%s exited during the run", name)
		}
		st, err := procStatus(pid)
		if err != nil {
			return fmt.Errorf("%s exited during the run", name)
		}
		r.samples = append(r.samples, tuiSample{at: at, cpu: cpu, rss: st["VmRSS"]})
		return nil
	}
	start := time.Now()
	if err := sample(0); err != nil {
		return r, err
	}
	msgs := make([]string, 1000)
	for i := range msgs {
		msgs[i] = payload(i, 100)
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	nextSample := time.Second
	for {
		var now time.Duration
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-tick.C:
			now = time.Since(start)
		}
		if now >= dur {
			break
		}
		due := int64(now.Seconds() * float64(perSec))
		if k := due - r.published; k > 0 {
			if err := publishBatch(ctx, pub, ch, msgs, int(r.published), int(k)); err != nil {
				return r, err
			}
			r.published = due
		}
		if now >= nextSample {
			if err := sample(now); err != nil {
				return r, fmt.Errorf("%w; %s", err, why(t))
			}
			nextSample += time.Second
		}
	}
	if err := sample(time.Since(start)); err != nil {
		return r, err
	}
	r.screen, _ = t.run("capture-pane", "-p")
	t.run("send-keys", "q")
	return r, nil
}

func publishBatch(ctx context.Context, c *redis.Client, ch string, msgs []string, from, k int) error {
	p := c.Pipeline()
	for i := range k {
		p.Publish(ctx, ch, msgs[(from+i)%len(msgs)])
	}
	_, err := p.Exec(ctx)
	return err
}

// squash puts a captured screen on one line for an error message.
func squash(screen string) string {
	var lines []string
	for _, l := range strings.Split(screen, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > 6 {
		lines = lines[:6]
	}
	return strings.Join(lines, " | ")
}

func runTUI(ctx context.Context, e *env) ([]row, error) {
	if _, err := exec.LookPath("tmux"); err != nil {
		return nil, errors.New("tmux not found on PATH: install it (e.g. apt-get install tmux) and run again")
	}
	rs, err := e.redisServer()
	if err != nil {
		return nil, err
	}
	perSec := 20_000
	dur := pick(e, 30*time.Second, 15*time.Second)
	early := pick(e, 10*time.Second, 7*time.Second)
	e.logf("tui: %d msgs/s of 100 B for %s in a 200x50 tmux pane", perSec, dur)

	fsCh := fmt.Sprintf("bench:tui:fanscope:%d", time.Now().UnixNano())
	fs, err := runInTmux(ctx, e, rs, "watch", fmt.Sprintf("%s watch --redis %s -c %s", e.fanscope, rs.url(), fsCh), fsCh, perSec, dur)
	if err != nil {
		return nil, fmt.Errorf("fanscope watch: %w", err)
	}
	rcCh := fmt.Sprintf("bench:tui:redis-cli:%d", time.Now().UnixNano())
	rc, err := runInTmux(ctx, e, rs, "redis-cli", fmt.Sprintf("redis-cli -u %s SUBSCRIBE %s", rs.url(), rcCh), rcCh, perSec, dur)
	if err != nil {
		return nil, fmt.Errorf("redis-cli in tmux: %w", err)
	}
	// CPU from 2 s in (past start-up) to the end.
	end := dur + time.Second
	fsCPU, rcCPU := fs.cpuBetween(2*time.Second, end), rc.cpuBetween(2*time.Second, end)
	rssEarly, rssEnd := fs.sampleAt(early).rss, fs.sampleAt(end).rss
	growth := float64(rssEnd-rssEarly) / float64(max(rssEarly, 1))
	e.logf("   watch:     CPU %.2f cores, RSS %d kB at %s, %d kB at the end, published %d", fsCPU, rssEarly, early, rssEnd, fs.published)
	e.logf("   redis-cli: CPU %.2f cores, RSS %d kB at the end", rcCPU, rc.sampleAt(end).rss)
	var curve []string
	for _, s := range fs.samples {
		if s.at >= time.Second && int(s.at.Seconds())%5 == 0 {
			curve = append(curve, fmt.Sprintf("%ds:%dMB", int(s.at.Seconds()), s.rss>>10))
		}
	}
	e.logf("   watch RSS: %s", strings.Join(curve, " "))
	e.logf("   watch screen at the end: %s", squash(fs.screen))
	rows := []row{
		{"tui", fmt.Sprintf("watch CPU at %s msgs/s, 200x50 tmux", count(int64(perSec))), fmt.Sprintf("%.2f cores", fsCPU),
			fmt.Sprintf("%.2f cores redis-cli SUBSCRIBE in tmux", rcCPU), ratio(fsCPU, rcCPU), "< 1 core", verdict(fsCPU > 0 && fsCPU < 1)},
		{"tui", fmt.Sprintf("watch RSS at %s and %s (growth)", early, dur), fmt.Sprintf("%.1f -> %.1f MB (%+.1f%%)", float64(rssEarly)/1024, float64(rssEnd)/1024, growth*100),
			fmt.Sprintf("%.1f MB redis-cli", float64(rc.sampleAt(end).rss)/1024), ratio(float64(rssEnd), float64(rc.sampleAt(end).rss)), "flat (<= +10%)", verdict(rssEarly > 0 && growth <= 0.10)},
	}
	return rows, nil
}
