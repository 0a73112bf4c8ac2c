package ssex

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/internal/feedtest"
)

// inOrder reports whether state records with the given states appear in
// recs in this order (others may come between).
func inOrder(recs []feed.Record, states ...string) bool {
	i := 0
	for _, r := range recs {
		if i < len(states) && r.Kind == feed.KindState && r.State == states[i] {
			i++
		}
	}
	return i == len(states)
}

// states lists the state records' states.
func states(recs []feed.Record) []string {
	var out []string
	for _, r := range feedtest.OfKind(recs, feed.KindState) {
		out = append(out, r.State)
	}
	return out
}

func TestStallThreshold(t *testing.T) {
	tests := []struct {
		name       string
		fixed      time.Duration
		keepAlives int64
		maxGap     time.Duration
		want       time.Duration
	}{
		{"before keep-alives", 0, 0, 0, DefaultStallTimeout},
		{"one keep-alive", 0, 1, 20 * time.Second, DefaultStallTimeout},
		{"two keep-alives", 0, 2, 15 * time.Second, 45 * time.Second},
		{"slow keep-alives", 0, 5, 30 * time.Second, 90 * time.Second},
		{"fast stream, floor", 0, 9, 100 * time.Millisecond, MinStallTimeout},
		{"--stall", 2 * time.Second, 9, 30 * time.Second, 2 * time.Second},
	}
	for _, tt := range tests {
		if got := stallThreshold(tt.fixed, tt.keepAlives, tt.maxGap); got != tt.want {
			t.Errorf("%s: stallThreshold(%s, %d, %s) = %s, want %s", tt.name, tt.fixed, tt.keepAlives, tt.maxGap, got, tt.want)
		}
	}
}

// TestStalledThenConnectedOnSameConnection: a server that stops writing
// is reported stalled before anything else happens, and connected again
// when it writes, on the same connection.
func TestStalledThenConnectedOnSameConnection(t *testing.T) {
	resume := make(chan struct{})
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		streamHeaders(w)
		write(w, ": ka\n\ndata: before\n\n")
		select {
		case <-resume:
		case <-r.Context().Done():
			return
		}
		write(w, "data: after\n\n")
		<-r.Context().Done()
	}))
	rn := startClient(t, Config{URL: srv.URL, StallTimeout: 300 * time.Millisecond}, nil)
	rn.sink.WaitFor(t, 0, "stalled", feedtest.HasState(feed.StateStalled, "no bytes for"))
	if s := rn.c.Status(); s.State != feed.StateStalled || s.Stalls != 1 || s.StallAfter != 300*time.Millisecond || !strings.Contains(s.Error, "stall threshold 300ms") {
		t.Errorf("Status while stalled: state %q stalls %d after %s error %q, want stalled 1 300ms and the threshold named", s.State, s.Stalls, s.StallAfter, s.Error)
	}
	close(resume)
	recs := rn.sink.WaitFor(t, 0, "the event after the stall", func(recs []feed.Record) bool {
		ev := feedtest.OfKind(recs, feed.KindEvent)
		return len(ev) == 2 && ev[1].Data == "after"
	})
	if got := strings.Join(states(recs), " "); got != "connecting connected stalled connected" {
		t.Errorf("states: got %q, want %q", got, "connecting connected stalled connected")
	}
	// connected comes before what the bytes brought.
	last := recs[len(recs)-2]
	if last.Kind != feed.KindState || last.State != feed.StateConnected {
		t.Errorf("record before the event: got %s %s, want state connected", last.Kind, last.State)
	}
	if d := rn.c.Diagnostics(); d.Connects != 1 || d.Stalls != 1 || d.State != feed.StateConnected {
		t.Errorf("diagnostics: connects %d stalls %d state %s, want 1 1 connected", d.Connects, d.Stalls, d.State)
	}
}

// TestStallThresholdLearnedFromKeepAlives: once a stream has sent two
// keep-alives the threshold is 3x its longest gap, at least 5 s; silence
// past it is a stall, not a reconnect.
func TestStallThresholdLearnedFromKeepAlives(t *testing.T) {
	if testing.Short() {
		t.Skip("waits the 5 s least stall threshold")
	}
	resume := make(chan struct{})
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		streamHeaders(w)
		for i := 0; i < 3; i++ {
			write(w, ": ka\n")
			time.Sleep(20 * time.Millisecond)
		}
		select {
		case <-resume:
		case <-r.Context().Done():
			return
		}
		write(w, "data: after\n\n")
		<-r.Context().Done()
	}))
	rn := startClient(t, Config{URL: srv.URL}, nil)
	if d := rn.c.Diagnostics(); d.StallAfter != DefaultStallTimeout {
		t.Errorf("threshold before keep-alives: got %s, want %s", d.StallAfter, DefaultStallTimeout)
	}
	d := waitDiag(t, rn.c, func(d Diagnostics) bool { return d.Comments >= 3 })
	if d.StallAfter != MinStallTimeout {
		t.Errorf("threshold after 3 fast keep-alives: got %s, want %s", d.StallAfter, MinStallTimeout)
	}
	rn.sink.WaitFor(t, 0, "stalled", feedtest.HasState(feed.StateStalled, "stall threshold 5s"))
	close(resume)
	recs := rn.sink.WaitFor(t, 0, "the event after the stall", feedtest.CountKind(feed.KindEvent, 1))
	if !inOrder(recs, feed.StateConnected, feed.StateStalled, feed.StateConnected) || len(feedtest.OfKind(recs, feed.KindState)) != 4 {
		t.Errorf("states: got %q, want connecting connected stalled connected", states(recs))
	}
}

// TestHelperSSEServer is not a test: run by TestStallOfFrozenProcess as
// a child process, it serves an event stream with a keep-alive every
// 100 ms and prints its URL.
func TestHelperSSEServer(t *testing.T) {
	if os.Getenv("FANSCOPE_SSEX_HELPER") != "1" {
		t.Skip("a helper process for TestStallOfFrozenProcess")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		streamHeaders(w)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-r.Context().Done():
				return
			case <-tick.C:
				write(w, fmt.Sprintf(": ka\ndata: %d\n\n", i))
			}
		}
	})}
	fmt.Printf("http://%s/\n", ln.Addr())
	go func() {
		// The parent closes stdin (or dies): stop.
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		srv.Close()
	}()
	_ = srv.Serve(ln)
	os.Exit(0)
}

// TestStallOfFrozenProcess freezes a real server process with SIGSTOP:
// stalled within the threshold, then SIGCONT: connected again on the same
// connection.
func TestStallOfFrozenProcess(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperSSEServer$")
	cmd.Env = append(os.Environ(), "FANSCOPE_SSEX_HELPER=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "http://127.0.0.1:") {
		t.Fatalf("helper server: got %q, %v, want its URL", line, err)
	}
	rn := startClient(t, Config{URL: strings.TrimSpace(line), StallTimeout: time.Second}, nil)
	rn.sink.WaitFor(t, 0, "events", feedtest.CountKind(feed.KindEvent, 3))
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	rn.sink.WaitFor(t, 0, "stalled", feedtest.HasState(feed.StateStalled, "no bytes for"))
	if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	recs := rn.sink.WaitFor(t, 0, "connected after the stall", func(recs []feed.Record) bool {
		return inOrder(recs, feed.StateStalled, feed.StateConnected)
	})
	if inOrder(recs, feed.StateStalled, feed.StateReconnecting) {
		t.Errorf("reconnected instead of resuming:\n%s", feedtest.Dump(recs))
	}
	if d := rn.c.Diagnostics(); d.Connects != 1 || d.Stalls != 1 {
		t.Errorf("diagnostics: connects %d stalls %d, want 1 1", d.Connects, d.Stalls)
	}
}
