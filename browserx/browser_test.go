package browserx

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestTreeRSS(t *testing.T) {
	if _, err := os.Stat("/proc/self/statm"); err != nil {
		t.Skip("no /proc")
	}
	if got := treeRSS(os.Getpid()); got <= 0 {
		t.Errorf("treeRSS(self) = %d, want > 0", got)
	}
	if got := treeRSS(1 << 30); got != 0 {
		t.Errorf("treeRSS(no such pid) = %d, want 0", got)
	}
}

// TestBrowserProfile: Chromium runs with the flags fanscope promises and a
// fresh profile directory that Close removes; RSS counts its process tree.
func TestBrowserProfile(t *testing.T) {
	b := newBrowser(t)
	pid := b.PID()
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		t.Skipf("no /proc cmdline: %v", err)
	}
	args := strings.Split(string(bytes.TrimRight(cmdline, "\x00")), "\x00")
	var dir string
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--user-data-dir="); ok {
			dir = v
		}
	}
	for _, want := range []string{"--headless", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"} {
		found := false
		for _, a := range args {
			found = found || a == want || strings.HasPrefix(a, want+"=")
		}
		if !found {
			t.Errorf("chromium runs without %s: %q", want, args)
		}
	}
	if dir == "" {
		t.Fatalf("no --user-data-dir in %q", args)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("profile dir %s: %v", dir, err)
	}
	if rss, self := b.RSS(), treeRSS(pid); rss <= 0 || self <= 0 {
		t.Errorf("RSS = %d (tree %d), want > 0", rss, self)
	}
	b.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(dir); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("profile dir %s still there 10s after Close", dir)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := b.RSS(); got != 0 {
		t.Errorf("RSS after Close = %d, want 0", got)
	}
}
