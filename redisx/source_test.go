package redisx

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/internal/redistest"
)

// runSubscriber starts s.Run with a context that ends with the test and
// returns Run's result channel.
func runSubscriber(t *testing.T, s *Subscriber, sink feed.Sink) (context.CancelFunc, <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx, sink) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.Done():
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return within 10s of its context")
		}
	})
	return cancel, errc
}

// A subscription that starts while nothing listens on the port keeps
// trying, says why in its state records and Status, and subscribes once
// redis-server starts there.
func TestSubscriberWaitsForRedis(t *testing.T) {
	port := redistest.FreePort(t)
	url := fmt.Sprintf("redis://127.0.0.1:%d", port)

	// The fail-fast way still fails at once, with the kind that means exit 3.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := Open(ctx, fastOptions(url)); !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Open: got %v, want an ErrUnreachable saying connection refused", err)
	}
	c, err := New(fastOptions(url))
	if err != nil {
		t.Fatalf("New with Redis down: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Check(ctx); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("Check: got %v, want an ErrUnreachable", err)
	}

	s, err := c.NewSubscriber(Subscription{Channels: []string{"ch"}})
	if err != nil {
		t.Fatal(err)
	}
	if s.Path() != feed.PathRedis {
		t.Errorf("got path %q, want %q", s.Path(), feed.PathRedis)
	}
	col := newCollector()
	stop, errc := runSubscriber(t, s, col)
	col.waitFor(t, 15*time.Second, "a third attempt that names the refusal", func(r []feed.Record) bool {
		for _, x := range r {
			if x.Kind == feed.KindState && x.State == feed.StateConnecting && x.Attempt >= 3 && strings.Contains(x.Error, "connection refused") {
				return true
			}
		}
		return false
	})
	if err := s.Err(); !errors.Is(err, ErrUnreachable) {
		t.Errorf("got Err() %v, want an ErrUnreachable", err)
	}
	if st := s.Status(); st.State != feed.StateConnecting || st.Attempt < 3 || !strings.Contains(st.Error, "connection refused") || st.URL != c.Target() || st.Up() {
		t.Errorf("got status %+v, want connecting, attempt >= 3, the refusal and the target", st)
	}
	select {
	case <-s.Connected():
		t.Fatal("Connected is closed while Redis is down")
	case err := <-errc:
		t.Fatalf("Run returned %v while Redis is down, want it to keep trying", err)
	default:
	}

	// The attempts are paced: a refused connection does not spin.
	attempts := 0
	for _, r := range col.states() {
		if r.State == feed.StateConnecting {
			attempts++
		}
	}
	time.Sleep(time.Second)
	later := 0
	for _, r := range col.states() {
		if r.State == feed.StateConnecting {
			later++
		}
	}
	if later-attempts > 15 {
		t.Errorf("got %d attempts in a second, want a backoff (at most 10 a second)", later-attempts)
	}

	redistest.StartPort(t, port)
	select {
	case <-s.Connected():
	case <-time.After(15 * time.Second):
		t.Fatalf("not subscribed 15s after redis-server started; records:\n%s", describe(col.snapshot()))
	}
	if err := s.Err(); err != nil {
		t.Errorf("got Err() %v once subscribed, want nil", err)
	}
	if st := s.Status(); st.State != feed.StateSubscribed || st.Error != "" || st.ConnectedAt.IsZero() {
		t.Errorf("got status %+v, want subscribed, no error, a connect time", st)
	}
	if n := publish(t, c, "ch", "hello"); n != 1 {
		t.Errorf("got %d receivers, want 1", n)
	}
	col.waitFor(t, 5*time.Second, "the message", func(r []feed.Record) bool { return countMessages(r, "ch") == 1 })
	if got := s.Status().Events; got != 1 {
		t.Errorf("got Status().Events %d, want 1", got)
	}

	stop()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("Run returned %v when its context ended, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if st := s.Status(); st.State != feed.StateDisconnected {
		t.Errorf("got state %q after Run ended, want disconnected", st.State)
	}
}

// What retrying cannot fix ends Run with the typed error.
func TestSubscriberRunPermanentErrors(t *testing.T) {
	s := redistest.Start(t)
	s.CLI("ACL", "SETUSER", "limited", "on", ">limited-pw", "resetchannels", "&allowed", "+@all", "~*")
	tests := []struct {
		name string
		url  string
		want error
	}{
		{"NOPERM", fmt.Sprintf("redis://limited:limited-pw@%s", s.Addr()), ErrNoPerm},
		{"wrong password", fmt.Sprintf("redis://limited:wrong-pw@%s", s.Addr()), ErrAuth},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(Options{URLs: []string{tt.url}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			sub, err := c.NewSubscriber(Subscription{Channels: []string{"forbidden"}})
			if err != nil {
				t.Fatal(err)
			}
			col := newCollector()
			_, errc := runSubscriber(t, sub, col)
			select {
			case err := <-errc:
				if !errors.Is(err, tt.want) {
					t.Errorf("got %v, want %v", err, tt.want)
				}
				if !errors.Is(sub.Err(), tt.want) || sub.Status().State != feed.StateFailed {
					t.Errorf("got Err %v and status %+v, want the error and failed", sub.Err(), sub.Status())
				}
				if strings.Contains(err.Error(), "-pw") {
					t.Errorf("got %q, want the password masked", err)
				}
			case <-time.After(15 * time.Second):
				t.Fatalf("Run still going after 15s; records:\n%s", describe(col.snapshot()))
			}
			if err := sub.Run(context.Background(), col); !errors.Is(err, ErrUsage) {
				t.Errorf("second Run: got %v, want an ErrUsage", err)
			}
		})
	}
}

// New works with a Cluster or Sentinels down too; their subscriptions keep
// trying and say why.
func TestSubscriberWaitsForClusterAndSentinel(t *testing.T) {
	url := fmt.Sprintf("redis://127.0.0.1:%d", redistest.FreePort(t))
	for _, o := range []Options{
		{URLs: []string{url}, Cluster: true},
		{URLs: []string{url}, SentinelMaster: "mymaster"},
	} {
		c, err := New(o)
		if err != nil {
			t.Fatalf("New(%+v) with nothing listening: %v", o, err)
		}
		defer c.Close()
		if !c.Loopback() {
			t.Errorf("%s: got Loopback false, want true for a loopback seed", c.Target())
		}
		sub, err := c.NewSubscriber(Subscription{Channels: []string{"ch"}})
		if err != nil {
			t.Fatal(err)
		}
		col := newCollector()
		runSubscriber(t, sub, col)
		col.waitFor(t, 15*time.Second, "a second attempt that names the refusal", func(r []feed.Record) bool {
			for _, x := range r {
				if x.Kind == feed.KindState && x.State == feed.StateConnecting && x.Attempt >= 2 && strings.Contains(x.Error, "connection refused") {
					return true
				}
			}
			return false
		})
		if !errors.Is(sub.Err(), ErrUnreachable) {
			t.Errorf("%s: got Err() %v, want an ErrUnreachable", c.Target(), sub.Err())
		}
	}
}

// Every listener wakes at a failover and reads the latest one; a nil
// announcer (no Sentinel) never fires.
func TestAnnouncer(t *testing.T) {
	a := newAnnouncer()
	_, ch1 := a.next()
	_, ch2 := a.next()
	a.announce(failover{master: "m", from: "10.0.0.1:6379", to: "10.0.0.2:6379", why: "+switch-master"})
	a.announce(failover{master: "m", from: "10.0.0.2:6379", to: "10.0.0.3:6379", why: "the sentinels now name 10.0.0.3:6379"})
	for i, ch := range []<-chan struct{}{ch1, ch2} {
		select {
		case <-ch:
		default:
			t.Fatalf("listener %d did not wake", i)
		}
	}
	f, next := a.next()
	if f.to != "10.0.0.3:6379" || !strings.Contains(f.reason(), "from 10.0.0.2:6379 to 10.0.0.3:6379") {
		t.Errorf("got %+v (%s), want the latest failover", f, f.reason())
	}
	select {
	case <-next:
		t.Error("the fresh channel is already closed")
	default:
	}
	var none *announcer
	if f, ch := none.next(); ch != nil || f.to != "" {
		t.Errorf("nil announcer: got %+v, %v; want nothing and a nil channel", f, ch)
	}
}

// A fail-fast Subscriber's Run ends with the first failure, with the kind
// that means exit 3.
func TestSubscriberFailFast(t *testing.T) {
	c, err := New(fastOptions(fmt.Sprintf("redis://127.0.0.1:%d", redistest.FreePort(t))))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, _ := c.NewSubscriber(Subscription{Channels: []string{"ch"}})
	col := newCollector()
	_, errc := runSubscriber(t, s.FailFast(), col)
	select {
	case err := <-errc:
		if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "connection refused") {
			t.Errorf("got %v, want an ErrUnreachable saying connection refused", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("a fail-fast Run still going after 15s; records:\n%s", describe(col.snapshot()))
	}
	if st := s.Status(); st.State != feed.StateFailed {
		t.Errorf("got state %q, want failed", st.State)
	}
}
