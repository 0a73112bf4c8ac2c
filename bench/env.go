package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// env is what every section shares: the binary under test, the work
// directory, the redis-server, and the child processes to clean up.
type env struct {
	fanscope string
	quick    bool
	soak     time.Duration // how long the soak section runs
	// node and nodeDir run the Node relay baseline; nodeErr says why not
	// when node is "".
	node, nodeDir, nodeErr string
	dir                    string
	log                    io.Writer

	redisOnce sync.Once
	redis     *redisServer
	redisErr  error

	mu       sync.Mutex
	children []*child
	seq      int
}

func newEnv(bin, nodeDir string, quick bool, log io.Writer) (*env, error) {
	fs, err := findFanscope(bin)
	if err != nil {
		return nil, err
	}
	raiseFDLimit(log)
	dir, err := os.MkdirTemp("", "fanscope-bench-")
	if err != nil {
		return nil, fmt.Errorf("create work directory: %w", err)
	}
	e := &env{fanscope: fs, quick: quick, dir: dir, log: log}
	if e.node, e.nodeDir, err = findNode(nodeDir); err != nil {
		e.nodeErr = err.Error()
	}
	return e, nil
}

// raiseFDLimit sets the soft open-file limit to the hard one. Setting it
// explicitly (rather than relying on the Go runtime's own raise) makes
// child processes inherit it too.
func raiseFDLimit(log io.Writer) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		fmt.Fprintf(log, "bench: read open-file limit: %v\n", err)
		return
	}
	// The relay section holds 50,000 connections (two descriptors each on
	// one machine): as root, raise the hard limit too.
	const want = 200_000
	if l.Max < want {
		up := syscall.Rlimit{Cur: want, Max: want}
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &up) == nil {
			return
		}
	}
	l.Cur = l.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		fmt.Fprintf(log, "bench: raise open-file limit: %v\n", err)
	}
}

func fdLimit() uint64 {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0
	}
	return l.Cur
}

func (e *env) logf(format string, args ...any) {
	fmt.Fprintf(e.log, "bench: "+format+"\n", args...)
}

func (e *env) mode() string {
	if e.quick {
		return "quick"
	}
	return "full"
}

// pick returns quick in --quick mode, else full.
func pick[T any](e *env, full, quick T) T {
	if e.quick {
		return quick
	}
	return full
}

// machine describes the host in one line: cores, CPU model, Go and Redis.
func (e *env) machine() string {
	return fmt.Sprintf("%d cores (%s), %s, %s", runtime.NumCPU(), cpuModel(), runtime.Version(), redisVersion())
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func redisVersion() string {
	out, err := exec.Command("redis-server", "--version").Output()
	if err != nil {
		return "redis-server not found"
	}
	for _, f := range strings.Fields(string(out)) {
		if v, ok := strings.CutPrefix(f, "v="); ok {
			return "Redis " + v
		}
	}
	return strings.TrimSpace(string(out))
}

// workPath returns a fresh path in the work directory for name.
func (e *env) workPath(name string) string {
	e.mu.Lock()
	e.seq++
	n := e.seq
	e.mu.Unlock()
	return filepath.Join(e.dir, fmt.Sprintf("%02d-%s", n, name))
}

func (e *env) close() {
	e.mu.Lock()
	kids := e.children
	e.children = nil
	e.mu.Unlock()
	for _, c := range kids {
		c.kill()
	}
	if e.redis != nil {
		e.redis.stop()
	}
}

// redisServer is the redis-server this run started.
type redisServer struct {
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

func (r *redisServer) addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }
func (r *redisServer) url() string  { return "redis://" + r.addr() }

func (r *redisServer) client() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: r.addr(), Protocol: 2})
}

func (r *redisServer) stop() {
	if r.cmd.Process != nil {
		r.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-r.done:
		case <-time.After(5 * time.Second):
			r.cmd.Process.Kill()
			<-r.done
		}
	}
}

// redisServer starts (once) a redis-server from PATH on a free loopback
// port. Pub/Sub output buffers are unlimited so that a slow subscriber is
// measured, not disconnected: the ingest section floods on purpose.
func (e *env) redisServer() (*redisServer, error) {
	e.redisOnce.Do(func() {
		e.redis, e.redisErr = e.startRedis("redis", "client-output-buffer-limit pubsub 0 0 0")
	})
	return e.redis, e.redisErr
}

// startRedis starts a redis-server named name (its work folder) with the
// extra configuration lines given.
func (e *env) startRedis(name string, extra ...string) (*redisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errors.New("redis-server not found on PATH: install it (e.g. apt-get install redis-server) and run again")
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir := e.workPath(name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create redis directory: %w", err)
	}
	conf := strings.Join(append([]string{
		"bind 127.0.0.1",
		"port " + strconv.Itoa(port),
		`save ""`,
		"appendonly no",
		"dir " + dir,
		"logfile " + filepath.Join(dir, "redis.log"),
	}, extra...), "\n") + "\n"
	path := filepath.Join(dir, "redis.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return nil, fmt.Errorf("write redis config: %w", err)
	}
	cmd := exec.Command(bin, path)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	r := &redisServer{port: port, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(r.done) }()
	c := r.client()
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			e.logf("redis-server %s on %s", redisVersion(), r.addr())
			return r, nil
		}
		select {
		case <-r.done:
			return nil, fmt.Errorf("redis-server exited at start (see %s)", filepath.Join(dir, "redis.log"))
		default:
		}
		if time.Now().After(deadline) {
			r.stop()
			return nil, fmt.Errorf("redis-server on %s did not answer within 10s: %w", r.addr(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitSubscribers waits until PUBSUB NUMSUB ch is at least n.
func waitSubscribers(ctx context.Context, c *redis.Client, ch string, n int64, timeout time.Duration, exited <-chan struct{}) error {
	deadline := time.Now().Add(timeout)
	for {
		got, err := c.PubSubNumSub(ctx, ch).Result()
		if err == nil && got[ch] >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("wait for %d subscriber(s) on %s: got %d after %s", n, ch, got[ch], timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-exited:
			return errors.New("the subscriber exited before subscribing")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// child is a process started by the bench, killed at the end at the latest.
type child struct {
	name   string
	cmd    *exec.Cmd
	stderr *bytes.Buffer // when not redirected to a file
	logf   string
	done   chan struct{}
	err    error
}

// spawn starts a child whose stderr goes to a log file in the work
// directory (and, for stdout, to out unless nil: then it goes there too).
func (e *env) spawn(name string, out io.Writer, args ...string) (*child, error) {
	logPath := e.workPath(name + ".log")
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("create log: %w", err)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stderr = lf
	cmd.Stdout = out
	if out == nil {
		cmd.Stdout = lf
	}
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, logf: logPath, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		lf.Close()
		close(c.done)
	}()
	e.mu.Lock()
	e.children = append(e.children, c)
	e.mu.Unlock()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// stop sends SIGINT and waits up to grace, then kills.
func (c *child) stop(grace time.Duration) { c.stopWith(os.Interrupt, grace) }

// stopWith sends sig and waits up to grace, then kills.
func (c *child) stopWith(sig os.Signal, grace time.Duration) {
	select {
	case <-c.done:
		return
	default:
	}
	c.cmd.Process.Signal(sig)
	select {
	case <-c.done:
	case <-time.After(grace):
		c.kill()
	}
}

func (c *child) kill() {
	select {
	case <-c.done:
		return
	default:
	}
	c.cmd.Process.Kill()
	<-c.done
}

// wait waits for the child to exit on its own, up to timeout.
func (c *child) wait(timeout time.Duration) error {
	select {
	case <-c.done:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("%s did not finish within %s", c.name, timeout)
	}
}

// exitCode is the child's exit status, -1 while it runs or when killed.
func (c *child) exitCode() int {
	select {
	case <-c.done:
		return c.cmd.ProcessState.ExitCode()
	default:
		return -1
	}
}

// logTail returns the last lines of the child's stderr log.
func (c *child) logTail(n int) string {
	b, _ := os.ReadFile(c.logf)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " / ")
}

// procStatus reads kB figures (VmRSS, VmHWM, ...) from /proc/PID/status.
func procStatus(pid int) (map[string]int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]int64{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		k, v, ok := strings.Cut(s.Text(), ":")
		if !ok {
			continue
		}
		fs := strings.Fields(v)
		if len(fs) == 2 && fs[1] == "kB" {
			n, err := strconv.ParseInt(fs[0], 10, 64)
			if err == nil {
				out[k] = n
			}
		} else if len(fs) == 1 && k == "Threads" {
			n, _ := strconv.ParseInt(fs[0], 10, 64)
			out[k] = n
		}
	}
	return out, s.Err()
}

// clockTicks is USER_HZ, which is 100 on every Linux the bench targets.
const clockTicks = 100

// procCPU returns utime+stime of pid in seconds, from /proc/PID/stat.
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name is in parentheses and may hold spaces: split after it.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	fs := strings.Fields(string(b[i+1:]))
	// Fields after the name start at field 3 (state); utime is 14, stime 15.
	if len(fs) < 13 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	ut, err1 := strconv.ParseInt(fs[11], 10, 64)
	st, err2 := strconv.ParseInt(fs[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	return float64(ut+st) / clockTicks, nil
}

// countFDs counts the open file descriptors of pid.
func countFDs(pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0
	}
	return len(ents)
}

// payload returns a realistic story-published JSON message of exactly n
// bytes (n >= 64), with seq in it so every message differs.
func payload(seq, n int) string {
	s := fmt.Sprintf(`{"storyId":"s%07d","author":"u%05d","title":"`, seq, seq%99991)
	tail := `"}`
	pad := n - len(s) - len(tail)
	if pad < 0 {
		pad = 0
	}
	const words = "A walk along the harbour at dawn and what the fishermen said "
	var b strings.Builder
	b.WriteString(s)
	for b.Len() < len(s)+pad {
		b.WriteString(words)
	}
	out := b.String()[:len(s)+pad] + tail
	return out
}
