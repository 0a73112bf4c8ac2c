package redisx

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/internal/feedtest"
	"github.com/fanscope/fanscope/internal/redistest"
)

// deniedText is Redis 7.0's protected-mode refusal, byte for byte
// (networking.c, clientAcceptHandler).
const deniedText = "DENIED Redis is running in protected mode because protected mode is enabled and no password is set for the default user. In this mode connections are only accepted from the loopback interface. If you want to connect from external computers to Redis you may adopt one of the following solutions: 1) Just disable protected mode sending the command 'CONFIG SET protected-mode no' from the loopback interface by connecting to Redis from the same host the server is running, however MAKE SURE Redis is not publicly accessible from internet if you do so. Use CONFIG REWRITE to make this change permanent. 2) Alternatively you can just disable the protected mode by editing the Redis configuration file, and setting the protected mode option to 'no', and then restarting the server. 3) If you started the server manually just for testing, restart it with the '--protected-mode no' option. 4) Set up an authentication password for the default user. NOTE: You only need to do one of the above things in order for the server to start accepting connections from the outside."

func TestClassifyServerRefusals(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		kind   error
		reason string // substring of the message
		hint   string // substring of the message
	}{
		{"protected mode", serverError(deniedText), ErrAuth,
			"refused by the server: DENIED Redis is running in protected mode because protected mode is enabled and no password is set for the default user. In this mode connections are only accepted from the loopback interface.",
			"set a password"},
		{"NOPERM command, Redis 7.0", serverError("NOPERM this user has no permissions to run the 'client|setname' command"), ErrNoPerm,
			"permission denied by ACL: NOPERM this user has no permissions to run the 'client|setname' command", "lacks +client|setname: ACL SETUSER <user> +client|setname"},
		{"NOPERM command, Redis 7.2", serverError("NOPERM User app has no permissions to run the 'config|get' command"), ErrNoPerm,
			"NOPERM User app has no permissions to run the 'config|get' command", "lacks +config|get"},
		{"NOPERM channel, Redis 7.0", serverError("NOPERM this user has no permissions to access one of the channels used as arguments"), ErrNoPerm,
			"access one of the channels", "&<channel>"},
		{"NOPERM channel, Redis 7.2", serverError("NOPERM No permissions to access a channel"), ErrNoPerm,
			"No permissions to access a channel", "allchannels"},
		{"maxclients", serverError("ERR max number of clients reached"), ErrUnreachable,
			"refused by the server: max number of clients reached", "maxclients"},
		{"broken pipe", &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", syscall.EPIPE)}, ErrUnreachable,
			"the server closed the connection", "maxclients"},
		{"EOF", io.EOF, ErrUnreachable, "the server closed the connection", "maxclients"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := wrapErr("connect redis://10.0.0.5:6379/0", tt.err)
			if !errors.Is(err, tt.kind) {
				t.Errorf("got %v, want kind %v", err, tt.kind)
			}
			if msg := err.Error(); !strings.Contains(msg, tt.reason) || !strings.Contains(msg, tt.hint) {
				t.Errorf("got %q, want %q and the hint %q", msg, tt.reason, tt.hint)
			}
		})
	}
}

// A server at maxclients refuses with an error and closes; the reason
// must reach the user, whichever of our writes or reads meets the close.
func TestMaxClients(t *testing.T) {
	s := redistest.Start(t, "maxclients 1")
	hold, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	if _, err := hold.Write([]byte("PING\r\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 7)
	_ = hold.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(hold, buf); err != nil || string(buf) != "+PONG\r\n" {
		t.Fatalf("holding connection: got %q, %v", buf, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_, err = Open(ctx, fastOptions(s.URL()))
	t.Logf("Open: %v", err)
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "max number of clients reached") || !strings.Contains(err.Error(), "maxclients") {
		t.Errorf("Open: got %v, want the server's maxclients refusal with a hint", err)
	}
	c, err := New(fastOptions(s.URL()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sub, _ := c.NewSubscriber(Subscription{Channels: []string{"ch"}})
	col := newCollector()
	runSubscriber(t, sub, col)
	col.waitFor(t, 15*time.Second, "an attempt refused for maxclients", func(r []feed.Record) bool {
		for _, x := range r {
			if x.State == feed.StateConnecting && strings.Contains(x.Error, "max number of clients reached") {
				return true
			}
		}
		return false
	})
	hold.Close()
	select {
	case <-sub.Connected():
	case <-time.After(15 * time.Second):
		t.Fatalf("not subscribed after the slot was freed; records:\n%s", describe(col.snapshot()))
	}
}

// protectedProxy forwards loopback connections to addr from the source
// address 127.0.0.2: Redis's protected mode serves only 127.0.0.1 and ::1,
// so through it a real redis-server says DENIED without leaving loopback.
func protectedProxy(t *testing.T, addr string) string {
	t.Helper()
	return feedtest.ServeTCP(t, func(in net.Conn) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 2 * time.Second}
		out, err := d.Dial("tcp", addr)
		if err != nil {
			return
		}
		defer out.Close()
		go func() {
			_, _ = io.Copy(out, in)
			out.Close()
		}()
		_, _ = io.Copy(in, out)
	})
}

func TestProtectedModeDenied(t *testing.T) {
	s := redistest.Start(t, "protected-mode yes")
	url := "redis://" + protectedProxy(t, s.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_, err := Open(ctx, fastOptions(url))
	t.Logf("Open: %v", err)
	if !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "DENIED Redis is running in protected mode") || !strings.Contains(err.Error(), "protected-mode no") {
		t.Errorf("Open: got %v, want the server's DENIED with a hint", err)
	}
	c, err := New(fastOptions(url))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Subscribe(ctx, Subscription{Channels: []string{"ch"}}, newCollector())
	if !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "DENIED") {
		t.Errorf("Subscribe: got %v, want the server's DENIED", err)
	}
	sub, _ := c.NewSubscriber(Subscription{Channels: []string{"ch"}})
	if err := sub.Run(ctx, newCollector()); !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "DENIED") {
		t.Errorf("Run: got %v, want it to end with the server's DENIED (retrying cannot fix it)", err)
	}
}
