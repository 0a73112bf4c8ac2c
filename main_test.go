package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fanscope/fanscope/internal/redistest"
)

// TestMain lets the test binary run as fanscope itself (FANSCOPE_AS_MAIN),
// so signal handling is tested on the real main.
func TestMain(m *testing.M) {
	if os.Getenv("FANSCOPE_AS_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// TestSecondSignalExitsWhileStdoutBlocked: tail writing to a pipe nobody
// reads is stuck in a write; the first SIGINT cannot end it cleanly, the
// second ends the process at once.
func TestSecondSignalExitsWhileStdoutBlocked(t *testing.T) {
	srv := redistest.Start(t)
	cmd := exec.Command(os.Args[0], "tail", "--redis", srv.URL(), "-c", "flood")
	cmd.Env = append(os.Environ(), "FANSCOPE_AS_MAIN=1")
	stdout, err := cmd.StdoutPipe() // never read
	if err != nil {
		t.Fatal(err)
	}
	defer stdout.Close()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(srv.CLI("PUBSUB", "NUMSUB", "flood"), "1") {
		if time.Now().After(deadline) {
			t.Fatal("fanscope did not subscribe")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Far more than a pipe buffer holds.
	c, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w := bufio.NewWriter(c)
	payload := strings.Repeat("x", 64<<10)
	for i := 0; i < 64; i++ {
		fmt.Fprintf(w, "*3\r\n$7\r\nPUBLISH\r\n$5\r\nflood\r\n$%d\r\n%s\r\n", len(payload), payload)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	_ = cmd.Process.Signal(syscall.SIGINT)
	time.Sleep(300 * time.Millisecond)
	_ = cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 130 || !strings.Contains(stderr.String(), "exiting now") {
			t.Errorf("got %v (stderr %q), want exit 130 saying it exits now", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the second SIGINT did not end fanscope")
	}
}
