package session

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/probes"
	"github.com/fanscope/fanscope/redisx"
)

// Timing of a probe run that is not configurable.
const (
	// ProbeSettle is the pause between "every connection is up" and the
	// first probe: a response can reach fanscope a moment before the relay
	// registered the connection for fan-out.
	ProbeSettle = 250 * time.Millisecond
	// probeLinger is how long a run keeps listening after the last
	// delivery, so that a duplicate right behind it is still counted.
	probeLinger = 100 * time.Millisecond
	// commandTimeout bounds one Redis command issued for the user.
	commandTimeout = 5 * time.Second
)

// ErrNoProbeTarget: the session has no Redis or no probe channel.
var ErrNoProbeTarget = errors.New("no probe channel: give -c CHANNEL, -s SHARD-CHANNEL or --probe-channel NAME")

// ProbeTarget is where probes are published ("" when nowhere) and
// whether with SPUBLISH.
func (s *Session) ProbeTarget() (channel string, shard bool) {
	return s.cfg.ProbeChannel, s.cfg.ProbeShard
}

// SendProbe publishes one probe. A failed PUBLISH takes the probe out of
// the accounting (a publish error, not a loss on every path) and returns
// the error, whole.
func (s *Session) SendProbe(ctx context.Context) (receivers int64, err error) {
	receivers, err = s.sendProbe(ctx)
	s.mu.Lock()
	s.probeErr = ""
	if err != nil {
		s.probeErr = err.Error()
	}
	s.mu.Unlock()
	return receivers, err
}

func (s *Session) sendProbe(ctx context.Context) (int64, error) {
	if s.cfg.ProbeChannel == "" {
		return 0, ErrNoProbeTarget
	}
	c := s.Redis()
	if c == nil {
		return 0, s.redisDown("send probe")
	}
	for _, pg := range s.pages {
		// A notification still shown from the last probe would hide this
		// one: the page is reloaded first when its element is visible.
		if err := pg.Reset(ctx); err != nil {
			return 0, fmt.Errorf("reset %s before the probe: %w", pg.Path(), err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	p := s.engine.Next(time.Now())
	s.engine.MarkSent(p.Seq, time.Now()) // after rendering, just before PUBLISH
	n, err := s.publish(ctx, c, s.cfg.ProbeChannel, s.cfg.ProbeShard, p.Payload)
	if err != nil {
		s.engine.PublishFailed(p.Seq)
		return 0, fmt.Errorf("publish probe %d to %s: %w", p.Seq, s.cfg.ProbeChannel, err)
	}
	return n, nil
}

// redisDown says why there is no Redis client to act on.
func (s *Session) redisDown(what string) error {
	if s.redis == nil {
		return fmt.Errorf("%s: no Redis connection (start fanscope with --redis or -c)", what)
	}
	st := s.redis.Status()
	if st.Error != "" {
		return fmt.Errorf("%s: Redis is not connected yet (%s: %s)", what, st.State, st.Error)
	}
	return fmt.Errorf("%s: Redis is not connected yet", what)
}

func (s *Session) publish(ctx context.Context, c *redisx.Client, channel string, shard bool, payload string) (int64, error) {
	if shard {
		return c.SPublish(ctx, channel, payload)
	}
	return c.Publish(ctx, channel, payload)
}

// Publish publishes payload to channel (SPUBLISH for a -s channel) and
// returns the receiver count.
func (s *Session) Publish(ctx context.Context, channel, payload string) (int64, error) {
	c := s.Redis()
	if c == nil {
		return 0, s.redisDown("publish")
	}
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	return s.publish(ctx, c, channel, slices.Contains(s.cfg.Subscription.ShardChannels, channel), payload)
}

// SetProbing starts or stops sending a probe every ProbeInterval. Starting
// says at once why probing cannot work (no Redis, no probe channel).
func (s *Session) SetProbing(on bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !on {
		if s.probing != nil {
			s.probing()
			s.probing = nil
		}
		return nil
	}
	if s.cfg.ProbeChannel == "" {
		return ErrNoProbeTarget
	}
	if s.probing != nil || s.ctx == nil {
		return nil
	}
	ctx, cancel := context.WithCancel(s.ctx)
	s.probing = cancel
	go s.probeLoop(ctx)
	return nil
}

// Probing reports whether continuous probing is on.
func (s *Session) Probing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.probing != nil
}

func (s *Session) probeLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.ProbeInterval)
	defer t.Stop()
	for {
		_, _ = s.SendProbe(ctx) // the error shows in the snapshot
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.engine.Expire(time.Now())
		}
	}
}

// ProbeRun says what one probe run does (the probe command, the demo).
type ProbeRun struct {
	Count    int
	Interval time.Duration
	Timeout  time.Duration // per probe, as in probes.Config
	// ConnectWait is how long the endpoint connections may go without
	// another one connecting before the run gives up (exit 3).
	ConnectWait time.Duration
	Budgets     probes.Budgets
	// OnSent is told after each probe (nil: nothing); err is a failed
	// PUBLISH, which the run counts and goes on from.
	OnSent func(i int, receivers int64, err error)
	// OnSilent is told of each connection still waiting for its response
	// headers when ConnectWait ends; the run probes anyway.
	OnSilent func(Source)
}

// ConnectError is a source that did not connect in time (exit 3).
type ConnectError struct {
	Status feed.Status
	What   string
}

func (e *ConnectError) Error() string {
	d := e.Status
	why := d.State
	if d.Error != "" {
		why += ": " + d.Error
	}
	return fmt.Sprintf("%s endpoint %s (%s) connection %d %s (%s)", d.Source, d.Name, d.URL, d.Conn, e.What, why)
}

// RunProbes runs the probes on a started session and returns the report:
// wait for every endpoint connection, NUMSUB before, send the probes, wait
// for their deliveries (or the timeout), NUMSUB after. When a source fails
// or never connects, the report so far is returned with the error; the
// caller marks it failed and still writes it.
func (s *Session) RunProbes(ctx context.Context, run ProbeRun) (probes.Report, error) {
	started := time.Now()
	in := probes.ReportInput{Channel: s.cfg.ProbeChannel}
	report := func() probes.Report {
		in.Duration = time.Since(started)
		return s.engine.Report(time.Now(), in, run.Budgets)
	}
	if s.cfg.ProbeChannel == "" {
		return report(), ErrNoProbeTarget
	}
	silent, err := s.AwaitConnected(ctx, run.ConnectWait)
	if err != nil {
		return report(), err
	}
	for _, c := range silent {
		if run.OnSilent != nil {
			run.OnSilent(c)
		}
	}
	if len(s.sources) > 0 {
		if err := sleepOr(ctx, ProbeSettle, s.errs); err != nil {
			return report(), err
		}
	}
	in.Subscribers, in.SubscribersByNode, err = s.ProbeSubscribers(ctx)
	if err != nil {
		return report(), err
	}
	next := time.Now()
	first := true
	for i := 0; i < run.Count; i++ {
		if i > 0 {
			next = next.Add(run.Interval)
			if err := sleepOr(ctx, time.Until(next), s.errs); err != nil {
				return report(), err
			}
		}
		n, err := s.SendProbe(ctx)
		if err == nil {
			in.Receivers.Observe(n, first)
			first = false
		} else if ctx.Err() != nil {
			return report(), ctx.Err()
		}
		if run.OnSent != nil {
			run.OnSent(i, n, err)
		}
	}

	// Wait until every path has every probe, or the last one timed out.
	deadline := time.Now().Add(run.Timeout + time.Millisecond)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) && s.engine.Pending(time.Now()) > 0 {
		select {
		case <-ctx.Done():
			return report(), ctx.Err()
		case err := <-s.errs:
			return report(), err
		case <-tick.C:
		}
	}
	if err := sleepOr(ctx, min(probeLinger, time.Until(deadline)), nil); err != nil {
		return report(), err
	}
	in.SubscribersAfter, _, _ = s.ProbeSubscribers(ctx) // a failure here is not the run's
	rep := report()
	for _, c := range silent {
		if !isConnected(c) {
			return rep, &ConnectError{Status: c.Status(), What: "never connected during the probe"}
		}
	}
	return rep, nil
}

// AwaitConnected waits until every endpoint connection connected once. A
// connection that fails, or whose attempts go on without success, for
// wait after the last progress is a *ConnectError; a refusal (401, 404,
// wrong Content-Type) is the source's own error. Connections whose first
// request is still waiting for response headers when wait ends are
// returned rather than failed: some servers send the headers only with
// the first event, which only a probe will cause. The wait restarts
// whenever a connection connects.
func (s *Session) AwaitConnected(ctx context.Context, wait time.Duration) (silent []Source, err error) {
	pending := slices.Clone(s.sources)
	timer := time.NewTimer(wait)
	defer timer.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		before := len(pending)
		if pending = slices.DeleteFunc(pending, isConnected); len(pending) == 0 {
			return nil, nil
		}
		if len(pending) < before {
			timer.Reset(wait)
		}
		select {
		case <-pending[0].Connected():
		case <-tick.C:
		case err := <-s.errs:
			return nil, err
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timer.C:
			for _, c := range pending {
				if isConnected(c) {
					continue
				}
				if st := c.Status(); st.State != feed.StateConnecting || st.Attempt > 1 {
					return nil, &ConnectError{Status: st, What: fmt.Sprintf("did not connect within %v", wait)}
				}
				silent = append(silent, c)
			}
			return silent, nil
		}
	}
}

// WaitConnected is AwaitConnected with silent connections failed too.
func (s *Session) WaitConnected(ctx context.Context, wait time.Duration) error {
	silent, err := s.AwaitConnected(ctx, wait)
	if err != nil {
		return err
	}
	if len(silent) > 0 {
		return &ConnectError{Status: silent[0].Status(), What: fmt.Sprintf("did not connect within %v", wait)}
	}
	return nil
}

func isConnected(c Source) bool {
	select {
	case <-c.Connected():
		return true
	default:
		return false
	}
}

// ProbeSubscribers is PUBSUB NUMSUB (or SHARDNUMSUB) of the probe channel,
// with the per-node counts in a Cluster.
func (s *Session) ProbeSubscribers(ctx context.Context) (map[string]int64, map[string]map[string]int64, error) {
	channel, shard := s.cfg.ProbeChannel, s.cfg.ProbeShard
	c := s.Redis()
	if c == nil {
		return nil, nil, s.redisDown("count subscribers of " + channel)
	}
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	if !shard {
		in, err := c.Introspect(ctx, redisx.Subscription{Channels: []string{channel}})
		if err != nil {
			return nil, nil, fmt.Errorf("count subscribers of %s: %w", channel, err)
		}
		var byNode map[string]map[string]int64
		if len(in.ByNode) > 1 {
			byNode = in.ByNode
		}
		return map[string]int64{channel: in.NumSub[channel]}, byNode, nil
	}
	in, err := c.Introspect(ctx, redisx.Subscription{ShardChannels: []string{channel}})
	if err != nil {
		return nil, nil, fmt.Errorf("count shard subscribers of %s: %w", channel, err)
	}
	return map[string]int64{channel: in.ShardNumSub[channel]}, nil, nil
}

// Sleep waits d, or less when ctx ends first (then it returns ctx's error).
func Sleep(ctx context.Context, d time.Duration) error { return sleepOr(ctx, d, nil) }

// sleepOr waits d, returning early when ctx ends or an error arrives on
// errs (nil: none can).
func sleepOr(ctx context.Context, d time.Duration, errs <-chan error) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case err := <-errs:
		return err
	case <-t.C:
		return nil
	}
}
