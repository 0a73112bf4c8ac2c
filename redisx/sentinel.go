package redisx

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// sentinelState finds the primary through the Sentinels and follows
// failovers: it listens for +switch-master on every Sentinel (and asks
// them every couple of seconds in case an announcement is missed) and
// announces every change of primary; each subscription connection
// listens for the announcement and rebuilds on the new primary, because
// Redis never moves an existing pub/sub connection.
type sentinelState struct {
	c         *Client
	name      string
	sentinels []endpoint

	mu   sync.Mutex
	addr string // the primary as last announced

	failovers *announcer

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// sentinelPoll is how often the Sentinels are asked for the primary, as a
// safety net under +switch-master.
const sentinelPoll = 2 * time.Second

func (c *Client) newSentinel() {
	var shown []string
	for _, ep := range c.eps {
		shown = append(shown, ep.addr)
	}
	c.target = fmt.Sprintf("sentinel master %s via %s", c.o.SentinelMaster, c.base.scheme+"://"+strings.Join(shown, ","))
	st := &sentinelState{c: c, name: c.o.SentinelMaster, sentinels: c.eps, failovers: newAnnouncer()}
	c.sentinel = st
	// The URL's credentials and db are for the data nodes; Sentinels are
	// reached without them.
	var sentinelAddrs []string
	for _, ep := range c.eps {
		sentinelAddrs = append(sentinelAddrs, ep.addr)
	}
	o := c.options(c.base, sentinelAddrs...)
	o.MasterName = st.name
	c.single = redis.NewFailoverClient(o.Failover())
	c.single.AddHook(authHook{})
	c.cmd = c.single
	c.loopback = true
	for _, ep := range c.eps {
		c.loopback = c.loopback && ep.loopback()
	}
	wctx, wcancel := context.WithCancel(context.Background())
	st.cancel = wcancel
	for _, ep := range st.sentinels {
		st.wg.Add(1)
		go func() {
			defer st.wg.Done()
			st.listen(wctx, ep)
		}()
	}
	st.wg.Add(1)
	go func() {
		defer st.wg.Done()
		st.poll(wctx)
	}()
}

func (c *Client) checkSentinel(ctx context.Context) error {
	st := c.sentinel
	pctx, cancel := context.WithTimeout(ctx, 2*c.o.DialTimeout+2*time.Second)
	defer cancel()
	addr, err := st.ask(pctx)
	if err != nil {
		return err
	}
	st.switched(st.masterAddr(), addr, "the sentinels now name "+addr)
	if err := c.single.Ping(pctx).Err(); err != nil {
		err = c.base.withAddr(addr).explain(ctx, err)
		return wrapErr(fmt.Sprintf("connect %s (primary %s)", c.target, addr), err)
	}
	st.sawPrimary(addr)
	return nil
}

// sawPrimary folds a primary's address into Loopback.
func (s *sentinelState) sawPrimary(addr string) {
	c := s.c
	loopback := c.base.withAddr(addr).loopback()
	for _, ep := range c.eps {
		loopback = loopback && ep.loopback()
	}
	c.setLoopback(c.Loopback() && loopback)
}

func (s *sentinelState) close() {
	if s.cancel != nil {
		s.cancel()
		s.wg.Wait()
	}
}

func (s *sentinelState) masterAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// sentinelOptions reach a Sentinel: no data-node credentials, no db.
func (s *sentinelState) sentinelOptions(ep endpoint) *redis.Options {
	plain := ep
	plain.user, plain.pass, plain.hasPass, plain.db = "", "", false, 0
	return s.c.nodeOptions(plain, true)
}

// ask asks the Sentinels in turn for the primary's address.
func (s *sentinelState) ask(ctx context.Context) (string, error) {
	var errs []error
	for _, ep := range s.sentinels {
		sc := redis.NewSentinelClient(s.sentinelOptions(ep))
		hp, err := sc.GetMasterAddrByName(ctx, s.name).Result()
		_ = sc.Close()
		if errors.Is(err, redis.Nil) || (err == nil && len(hp) != 2) {
			errs = append(errs, &Error{Kind: ErrUsage, msg: fmt.Sprintf(
				"sentinel %s knows no master named %q (check --sentinel-master)", ep.addr, s.name)})
			continue
		}
		if err != nil {
			errs = append(errs, wrapErr("ask sentinel "+ep.addr+" for master "+s.name, err))
			continue
		}
		return net.JoinHostPort(hp[0], hp[1]), nil
	}
	// Prefer the most telling error: a wrong master name over an unreachable sentinel.
	for _, err := range errs {
		if errors.Is(err, ErrUsage) {
			return "", err
		}
	}
	return "", errs[0]
}

// resolve is how a subscription finds the primary on every (re)connect.
func (s *sentinelState) resolve(ctx context.Context) (endpoint, error) {
	addr, err := s.ask(ctx)
	if err != nil {
		return endpoint{}, err
	}
	s.switched(s.masterAddr(), addr, "the sentinels now name "+addr)
	s.sawPrimary(addr)
	return s.c.base.withAddr(addr), nil
}

// listen follows +switch-master on one Sentinel until ctx ends.
func (s *sentinelState) listen(ctx context.Context, ep endpoint) {
	for ctx.Err() == nil {
		rc := redis.NewClient(s.sentinelOptions(ep))
		ps := rc.Subscribe(ctx, "+switch-master")
		stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
		for {
			msg, err := ps.ReceiveTimeout(ctx, 0)
			if err != nil {
				break
			}
			if m, ok := msg.(*redis.Message); ok {
				// "<name> <old-ip> <old-port> <new-ip> <new-port>"
				f := strings.Fields(m.Payload)
				if len(f) == 5 && f[0] == s.name {
					s.switched(net.JoinHostPort(f[1], f[2]), net.JoinHostPort(f[3], f[4]), "+switch-master from sentinel "+ep.addr)
				}
			}
		}
		stop()
		_ = ps.Close()
		_ = rc.Close()
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// poll asks the Sentinels for the primary now and then, so a failover is
// followed even if every +switch-master announcement was missed.
func (s *sentinelState) poll(ctx context.Context) {
	t := time.NewTicker(sentinelPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		qctx, cancel := context.WithTimeout(ctx, s.c.o.DialTimeout+time.Second)
		addr, err := s.ask(qctx)
		cancel()
		if err == nil {
			s.switched(s.masterAddr(), addr, "the sentinels now name "+addr)
		}
	}
}

// switched records a new primary and, when it changed, announces the
// failover. Subscriptions are not touched from here: each holds the
// announcement channel of the moment it resolved the primary and decides
// itself whether it has to move.
func (s *sentinelState) switched(from, to, why string) {
	s.mu.Lock()
	changed := s.addr != to
	s.addr = to
	s.mu.Unlock()
	if changed {
		s.failovers.announce(failover{master: s.name, from: from, to: to, why: why})
	}
}

// failover is one change of primary.
type failover struct {
	master, from, to, why string
}

func (f failover) reason() string {
	if f.from == "" {
		return fmt.Sprintf("the sentinels name %s as the primary of %s; resubscribing there", f.to, f.master)
	}
	return fmt.Sprintf("failover of %s: primary moved from %s to %s (%s); resubscribing on the new primary", f.master, f.from, f.to, f.why)
}

// announcer broadcasts failovers. A listener takes the current channel
// (next) and selects on it; announce closes that channel and puts a fresh
// one in its place, so every listener wakes once, reads the latest
// failover and takes the new channel. A nil *announcer never fires.
type announcer struct {
	mu   sync.Mutex
	ch   chan struct{}
	last failover
}

func newAnnouncer() *announcer { return &announcer{ch: make(chan struct{})} }

// next is the latest failover and the channel that closes at the one
// after it.
func (a *announcer) next() (failover, <-chan struct{}) {
	if a == nil {
		return failover{}, nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last, a.ch
}

func (a *announcer) announce(f failover) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.last = f
	close(a.ch)
	a.ch = make(chan struct{})
}
