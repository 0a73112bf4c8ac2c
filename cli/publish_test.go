package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/internal/redistest"
	"github.com/fanscope/fanscope/redisx"
)

// runWithStdin runs fanscope with stdin and waits for it.
func runWithStdin(t *testing.T, stdin io.Reader, args ...string) cmdResult {
	t.Helper()
	out, errOut := &lockedBuffer{}, &lockedBuffer{}
	e := &env{stdin: stdin, stdout: out, stderr: errOut, getenv: func(string) string { return "" }}
	done := make(chan int, 1)
	go func() { done <- run(context.Background(), e, args) }()
	select {
	case code := <-done:
		return cmdResult{code, out.String(), errOut.String()}
	case <-time.After(60 * time.Second):
		t.Fatalf("fanscope %v did not end within 60s", args)
		return cmdResult{}
	}
}

// received collects what a real subscriber gets.
type received struct {
	mu   sync.Mutex
	data []string
}

func (r *received) Emit(rec feed.Record) {
	if rec.Kind == feed.KindMessage {
		r.mu.Lock()
		r.data = append(r.data, rec.Data)
		r.mu.Unlock()
	}
}

func (r *received) waitN(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r.mu.Lock()
		got := append([]string(nil), r.data...)
		r.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("subscriber got %d messages, want %d", len(got), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// subscribers opens n subscriptions to sub on url and returns the first one's messages.
func subscribers(t *testing.T, url string, n int, sub redisx.Subscription) *received {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	first := &received{}
	for i := 0; i < n; i++ {
		c, err := redisx.Open(ctx, redisx.Options{URLs: []string{url}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		var sink feed.Sink = &received{}
		if i == 0 {
			sink = first
		}
		s, err := c.Subscribe(ctx, sub, sink)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cancel(); <-s.Done() })
	}
	return first
}

func TestPublishReceiversMatchRedisCLI(t *testing.T) {
	s := redistest.Start(t)
	subscribers(t, s.URL(), 3, redisx.Subscription{Channels: []string{"story:published"}, ShardChannels: []string{"feed:1"}})
	waitNumSub(t, s, "story:published", 3)
	want := s.CLI("PUBLISH", "story:published", "from redis-cli")
	res := runCmd(t, "publish", "--redis", s.URL(), "-c", "story:published", `{"storyId":"s1"}`)
	if res.code != 0 || res.stdout != "story:published: "+want+" receivers\n" {
		t.Fatalf("exit %d, stdout %q (stderr %s); redis-cli says %s", res.code, res.stdout, res.stderr, want)
	}
	res = runCmd(t, "publish", "--redis", s.URL(), "-c", "nobody", "x", "--json")
	if res.code != 0 || res.stdout != `{"channel":"nobody","receivers":0}`+"\n" {
		t.Fatalf("exit %d, stdout %q (stderr %s)", res.code, res.stdout, res.stderr)
	}
	wantShard := s.CLI("SPUBLISH", "feed:1", "from redis-cli")
	res = runCmd(t, "publish", "--redis", s.URL(), "-s", "feed:1", "sharded", "--json")
	if res.code != 0 || res.stdout != `{"channel":"feed:1","receivers":`+wantShard+"}\n" {
		t.Fatalf("exit %d, stdout %q (stderr %s); redis-cli SPUBLISH says %s", res.code, res.stdout, res.stderr, wantShard)
	}
}

func TestPublishStdinLinesInOrder(t *testing.T) {
	s := redistest.Start(t)
	got := subscribers(t, s.URL(), 1, redisx.Subscription{Channels: []string{"ch"}})
	waitNumSub(t, s, "ch", 1)
	lines := []string{"one", `{"storyId":"s2"}`, "", "with\rcarriage return", "last without newline"}
	res := runWithStdin(t, strings.NewReader(strings.Join(lines, "\n")), "publish", "--redis", s.URL(), "-c", "ch", "-", "--json")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	if want := strings.Repeat(`{"channel":"ch","receivers":1}`+"\n", len(lines)); res.stdout != want {
		t.Fatalf("stdout %q, want %q", res.stdout, want)
	}
	data := got.waitN(t, len(lines))
	if fmt.Sprintf("%q", data) != fmt.Sprintf("%q", lines) {
		t.Fatalf("subscriber got %q, want %q in order", data, lines)
	}
}

func TestPublishLargeAndBinary(t *testing.T) {
	s := redistest.Start(t)
	got := subscribers(t, s.URL(), 1, redisx.Subscription{Channels: []string{"ch"}})
	waitNumSub(t, s, "ch", 1)
	rng := rand.New(rand.NewPCG(3, 4))
	randomBytes := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.IntN(256))
			if b[i] == '\n' {
				b[i] = 0
			}
		}
		return string(b)
	}
	binary := "\x00\xff\xfe\r\x1b[2J\"\\é" + randomBytes(1000)
	huge := randomBytes(17 << 20) // beyond 16 MiB on one line
	stdin := binary + "\n" + huge + "\n"
	res := runWithStdin(t, strings.NewReader(stdin), "publish", "--redis", s.URL(), "-c", "ch", "-")
	if res.code != 0 || strings.Count(res.stdout, "ch: 1 receiver\n") != 2 {
		t.Fatalf("exit %d, stdout %q, stderr %s", res.code, res.stdout, res.stderr)
	}
	tenMB := randomBytes(10 << 20)
	res = runCmd(t, "publish", "--redis", s.URL(), "-c", "ch", tenMB)
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	data := got.waitN(t, 3)
	for i, want := range []string{binary, huge, tenMB} {
		if data[i] != want {
			t.Errorf("message %d: got %d bytes, want %d exact bytes", i, len(data[i]), len(want))
		}
	}
}

func TestPublishUsageErrors(t *testing.T) {
	s := redistest.Start(t)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no channel", []string{"publish", "--redis", s.URL(), "x"}, "-c CHANNEL"},
		{"two channels", []string{"publish", "--redis", s.URL(), "-c", "a", "-s", "b", "x"}, "give one channel"},
		{"no payload", []string{"publish", "--redis", s.URL(), "-c", "a"}, "one PAYLOAD"},
		{"two payloads", []string{"publish", "--redis", s.URL(), "-c", "a", "x", "y"}, "one PAYLOAD"},
		{"a pattern", []string{"publish", "--redis", s.URL(), "-p", "a*", "x"}, "unknown shorthand flag: 'p'"},
		{"bad url", []string{"publish", "--redis", "redis://h:99999", "-c", "a", "x"}, "bad port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := runCmd(t, tt.args...)
			if res.code != 2 || !strings.Contains(res.stderr, tt.want) {
				t.Fatalf("exit %d, stderr %q; want exit 2 naming %q", res.code, res.stderr, tt.want)
			}
		})
	}
	// Unreachable is exit 3, like every source.
	res := runCmd(t, "publish", "--redis", fmt.Sprintf("redis://127.0.0.1:%d", redistest.FreePort(t)), "-c", "a", "x")
	if res.code != 3 || !strings.Contains(res.stderr, "connection refused") {
		t.Fatalf("exit %d, stderr %q; want 3 naming the refusal", res.code, res.stderr)
	}
}

func TestConfirmPublish(t *testing.T) {
	tests := []struct {
		name     string
		terminal bool
		input    string
		ok       bool
		want     string
	}{
		{"no terminal", false, "story:published\n", false, "--allow-publish"},
		{"typed the channel", true, "story:published\nnext line stays\n", true, ""},
		{"typed something else", true, "yes\n", false, "not confirmed"},
		{"nothing typed", true, "", false, "not confirmed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := bufio.NewReader(strings.NewReader(tt.input))
			var prompt strings.Builder
			err := confirmPublish(in, tt.terminal, &prompt, "redis://10.0.0.5:6379/0", "story:published")
			if tt.ok {
				if err != nil {
					t.Fatal(err)
				}
				if rest, _ := in.ReadString('\n'); rest != "next line stays\n" {
					t.Errorf("the confirmation read past its line: rest %q", rest)
				}
				if !strings.Contains(prompt.String(), "Type the channel name") {
					t.Errorf("prompt %q does not ask", prompt.String())
				}
				return
			}
			if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v (exit %d), want exit 2 naming %q", err, exitCode(err), tt.want)
			}
		})
	}
}

// 0.0.0.0 reaches this machine but is not a loopback address, so the
// production guard applies: the refusal path end to end.
func TestPublishGuardRefusesWithoutTerminal(t *testing.T) {
	s := redistest.Start(t)
	url := fmt.Sprintf("redis://0.0.0.0:%d", s.Port)
	c, err := redisx.Open(context.Background(), redisx.Options{URLs: []string{url}})
	if err != nil {
		t.Skipf("0.0.0.0 does not reach the local server here: %v", err)
	}
	_ = c.Close()
	res := runCmd(t, "publish", "--redis", url, "-c", "ch", "x")
	if res.code != 2 || !strings.Contains(res.stderr, "not on loopback") || !strings.Contains(res.stderr, "--allow-publish") {
		t.Fatalf("exit %d, stderr %q; want exit 2 naming --allow-publish", res.code, res.stderr)
	}
	res = runCmd(t, "publish", "--redis", url, "-c", "ch", "x", "--allow-publish")
	if res.code != 0 || res.stdout != "ch: 0 receivers\n" {
		t.Fatalf("--allow-publish: exit %d, stdout %q, stderr %s", res.code, res.stdout, res.stderr)
	}
	old := stdinIsTerminal
	stdinIsTerminal = func(io.Reader) bool { return true }
	defer func() { stdinIsTerminal = old }()
	res = runWithStdin(t, strings.NewReader("ch\nfirst\nsecond\n"), "publish", "--redis", url, "-c", "ch", "-")
	if res.code != 0 || res.stdout != "ch: 0 receivers\nch: 0 receivers\n" || !strings.Contains(res.stderr, "Type the channel name") {
		t.Fatalf("confirmed on a terminal: exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}
}

func TestReadLineLimit(t *testing.T) {
	r := bufio.NewReaderSize(strings.NewReader(strings.Repeat("x", 100)+"\nok\n"), 16)
	if _, err := readLine(r, 50); !errors.Is(err, errLineTooLong) {
		t.Fatalf("got %v, want errLineTooLong", err)
	}
	r = bufio.NewReaderSize(strings.NewReader(strings.Repeat("y", 50)+"\n"), 16)
	if got, err := readLine(r, 50); err != nil || got != strings.Repeat("y", 50) {
		t.Fatalf("got %d bytes, %v; want the 50-byte line", len(got), err)
	}
}
