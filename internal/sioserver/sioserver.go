// Package sioserver runs the reference Socket.IO v4 server (server.js,
// Node's socket.io package from the npm registry) for tests: wsx's own,
// and the probe tests that carry Redis messages over Socket.IO.
package sioserver

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Dir is the folder holding server.js and its node_modules:
// $FANSCOPE_SIOSERVER_DIR, else this package's own folder.
func Dir() string {
	if d := os.Getenv("FANSCOPE_SIOSERVER_DIR"); d != "" {
		return d
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}

// Server is a running server.js.
type Server struct {
	cmd  *exec.Cmd
	Port string
}

// Available says why the server cannot run here (nil when it can): node
// or the socket.io package is missing.
func Available() error {
	if _, err := exec.LookPath("node"); err != nil {
		return fmt.Errorf("node is not installed: the Socket.IO tests need node and `npm ci --prefix internal/sioserver` (scripts/test does both)")
	}
	dir, _ := filepath.Abs(Dir())
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "socket.io")); err != nil {
		return fmt.Errorf("socket.io is not installed in %s: run `npm ci --prefix internal/sioserver` (or set FANSCOPE_SIOSERVER_DIR)", dir)
	}
	return nil
}

// Start runs server.js on a free loopback port; env adds settings such as
// PING_INTERVAL. The test skips, saying what to install, when node or the
// package is missing; the server ends with the test.
func Start(t testing.TB, env ...string) *Server {
	t.Helper()
	if err := Available(); err != nil {
		t.Skip(err.Error())
	}
	dir, _ := filepath.Abs(Dir())
	cmd := exec.Command("node", "server.js")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), append([]string{"PORT=0"}, env...)...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start node server.js: %v", err)
	}
	s := &Server{cmd: cmd}
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line := make(chan string, 1)
	go func() {
		br := bufio.NewReader(out)
		l, _ := br.ReadString('\n')
		line <- l
		_, _ = io.Copy(io.Discard, br)
	}()
	select {
	case l := <-line:
		port, ok := strings.CutPrefix(strings.TrimSpace(l), "listening ")
		if !ok {
			t.Fatalf("server.js said %q, want \"listening PORT\"", l)
		}
		s.Port = port
	case <-time.After(20 * time.Second):
		t.Fatal("server.js did not start listening")
	}
	return s
}

// URL is the server's URL with pathQuery ("/private", "/?scenario=kick").
func (s *Server) URL(pathQuery string) string { return "http://127.0.0.1:" + s.Port + pathQuery }

// Signal sends sig to the server (SIGSTOP freezes it, SIGCONT resumes it).
func (s *Server) Signal(sig syscall.Signal) error { return s.cmd.Process.Signal(sig) }

// Emit has the server emit event with data (one string argument) to
// every socket of the "/" namespace.
func (s *Server) Emit(event, data string) error {
	resp, err := http.Post(s.URL("/emit?event="+url.QueryEscape(event)), "text/plain", strings.NewReader(data))
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}
