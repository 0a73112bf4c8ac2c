package session

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/fanscope/fanscope/browserx"
	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/probes"
	"github.com/fanscope/fanscope/redisx"
)

// ErrNothingToWatch is returned by Open for a Config with no Redis
// subscription and no endpoint; it wraps the usage kind of the caller's
// choosing through errors.Is(err, ErrUsage).
var ErrUsage = errors.New("invalid session configuration")

func usageErrorf(format string, args ...any) error {
	return fmt.Errorf("%w", &usageError{fmt.Errorf(format, args...)})
}

type usageError struct{ err error }

func (e *usageError) Error() string   { return e.err.Error() }
func (e *usageError) Unwrap() []error { return []error{ErrUsage, e.err} }

// Session is one run's sources, fan-in and probe engine. Sources emit into
// the queue; one fan-in goroutine numbers each record, lets the engine
// annotate it, adds it to the ring and hands the batch to every consumer.
type Session struct {
	cfg     Config
	engine  *probes.Engine
	queue   *feed.Queue
	ring    *feed.Ring // nil when RingSize is 0
	redis   *redisSource
	sources []Source          // the endpoints' connections, in the order given
	pages   []*browserx.Page  // page checks, reset before each probe
	browser *browserx.Browser // nil without browser paths or pages
	monitor *monitorSource    // nil without Config.Monitor
	pubs    *publishTracker   // nil without Config.Monitor

	consumers []func([]feed.Record)
	errs      chan error
	wg        sync.WaitGroup
	cancel    context.CancelFunc
	ctx       context.Context // the run's context, set by Start

	mu       sync.Mutex
	probing  context.CancelFunc // continuous probing, nil when off
	probeErr string
	intro    introState
	health   healthState
}

// Open builds every source. Without KeepRetrying it connects to Redis
// before it returns, so an unreachable or refusing server is an error here
// (wrapping redisx's kinds); endpoints connect on Start. Bad endpoint URLs
// are errors here too, before anything connects.
func Open(ctx context.Context, cfg Config) (*Session, error) {
	if cfg.Conns < 1 {
		cfg.Conns = 1
	}
	if cfg.ProbeInterval <= 0 {
		cfg.ProbeInterval = time.Second
	}
	cfg.Subscription = withProbeChannel(cfg.Subscription, cfg.ProbeChannel, cfg.ProbeShard)
	wantsRedis := cfg.Redis != nil
	if !wantsRedis && len(cfg.Endpoints) == 0 && len(cfg.Sources) == 0 && len(cfg.Pages) == 0 {
		return nil, usageErrorf("nothing to watch: give -c CHANNEL, -p PATTERN, -s SHARD-CHANNEL or an endpoint (--sse, --ws, --socketio, --poll, --browser)")
	}
	if !hasDeliveries(cfg.Endpoints) && len(cfg.Sources) == 0 && len(cfg.Pages) == 0 {
		// Hop times need a delivered copy of each Redis message: without
		// an endpoint, remembering Redis messages for them is wasted work.
		cfg.Probe.HopEntries = -1
	}
	s := &Session{
		cfg:    cfg,
		queue:  feed.NewQueue(0),
		engine: probes.NewEngine(cfg.Probe),
		errs:   make(chan error, 1),
	}
	if cfg.RingSize > 0 {
		s.ring = feed.NewRing(cfg.RingSize)
	}
	var err error
	if s.sources, s.pages, s.browser, err = buildSources(cfg); err != nil {
		return nil, err
	}
	s.sources = append(s.sources, cfg.Sources...)
	conns := map[string]int{}
	var paths []string
	for _, src := range s.sources {
		p := src.Path()
		if conns[p] == 0 {
			paths = append(paths, p)
		}
		conns[p]++
	}
	for _, p := range paths {
		s.engine.AddPath(p, conns[p])
	}
	if wantsRedis {
		s.redis = newRedisSource(*cfg.Redis, cfg.Subscription)
		if err := s.redis.open(ctx, !cfg.KeepRetrying); err != nil {
			return nil, err
		}
		if !subEmpty(s.redis.subscription) {
			s.engine.AddPath(feed.PathRedis, 1)
		}
		if cfg.Monitor {
			sub := cfg.Subscription
			s.monitor = &monitorSource{s: s, connected: make(chan struct{}),
				filter: redisx.MonitorFilter{Channels: append(slices.Clone(sub.Channels), sub.ShardChannels...), Patterns: sub.Patterns}}
			s.pubs = newPublishTracker(cfg.Probe.MatchKey, s.monitor)
		}
	} else if cfg.Monitor {
		return nil, usageErrorf("--monitor needs Redis: give --redis or -c")
	}
	return s, nil
}

func hasDeliveries(eps []Endpoint) bool {
	for _, e := range eps {
		if e.Kind.Delivers() {
			return true
		}
	}
	return false
}

// OnBatch registers a consumer; call it before Start. f runs on the fan-in
// goroutine after the engine annotated each record; it must not keep the
// slice.
func (s *Session) OnBatch(f func([]feed.Record)) { s.consumers = append(s.consumers, f) }

// Start subscribes to Redis (confirmed before it returns, unless
// KeepRetrying), starts the endpoints and the fan-in. Everything stops
// when ctx ends or Close is called.
func (s *Session) Start(ctx context.Context) error {
	ctx, s.cancel = context.WithCancel(ctx)
	s.ctx = ctx
	if r := s.redis; r != nil && r.subscriber() != nil {
		if s.cfg.KeepRetrying {
			s.run(ctx, r)
		} else if err := s.subscribeNow(ctx, r); err != nil {
			s.cancel()
			return err
		}
	}
	if s.monitor != nil {
		s.run(ctx, s.monitor)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.startEndpoints(ctx)
	}()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.fanIn(ctx)
	}()
	if s.cfg.Introspect > 0 && s.redis != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.introspectLoop(ctx)
		}()
	}
	return nil
}

// subscribeNow runs the subscription and waits for its confirmation: a
// refusal or an unreachable server is Start's error (tail, probe).
func (s *Session) subscribeNow(ctx context.Context, r *redisSource) error {
	failed := make(chan error, 1)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		err := r.Run(ctx, s.queue)
		failed <- err
		if err != nil && ctx.Err() == nil {
			select {
			case s.errs <- err:
			default:
			}
		}
	}()
	select {
	case <-r.Connected():
		return nil
	case err := <-failed:
		if err == nil {
			err = ctx.Err()
		}
		return err
	}
}

// run runs src until ctx ends, passing a fatal error to Err.
func (s *Session) run(ctx context.Context, src Source) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := src.Run(ctx, s.queue); err != nil && ctx.Err() == nil {
			select {
			case s.errs <- err:
			default:
			}
		}
	}()
}

// Connections being opened at once. A server's listen backlog is finite
// (often 4096): 10,000 connections dialled in the same instant overflow
// it, and the refused ones wait seconds for a SYN retry.
const connectsInFlight = 256

// connectHold is the longest a connection that has not connected yet
// holds its slot (some servers send headers only with an event). A
// variable so that a test can lengthen it.
var connectHold = 2 * time.Second

// startEndpoints starts every endpoint connection, with at most
// connectsInFlight of them connecting at a time.
func (s *Session) startEndpoints(ctx context.Context) {
	slots := make(chan struct{}, connectsInFlight)
	for _, c := range s.sources {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		s.run(ctx, c)
		go func() {
			t := time.NewTimer(connectHold)
			defer t.Stop()
			select {
			case <-c.Connected():
			case <-t.C:
			case <-ctx.Done():
			}
			<-slots
		}()
	}
}

func (s *Session) fanIn(ctx context.Context) {
	var seq uint64
	var spare []feed.Record
	for {
		batch := s.queue.Take(ctx, spare)
		if batch == nil {
			return
		}
		for i := range batch {
			seq++
			batch[i].Seq = seq
			s.engine.Observe(&batch[i])
			if s.pubs != nil {
				s.pubs.observe(&batch[i])
			}
		}
		s.health.observe(batch)
		if s.ring != nil {
			s.ring.Add(batch)
		}
		for _, f := range s.consumers {
			f(batch)
		}
		clear(batch) // drop payload references before reuse
		spare = batch
	}
}

// Err delivers the first fatal source error after Start (an SSE endpoint
// answering 401, say).
func (s *Session) Err() <-chan error { return s.errs }

// Close stops every source and the fan-in, waits for them, and closes the
// Redis client. Consumers have seen every record by the time it returns.
func (s *Session) Close() {
	s.SetProbing(false)
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	if s.redis != nil {
		s.redis.close()
	}
	if s.browser != nil {
		_ = s.browser.Close()
	}
}

// Dropped is how many records the fan-in could not take in time.
func (s *Session) Dropped() uint64 { return s.queue.Dropped() }

// Engine is the probe engine (for reports built outside RunProbes).
func (s *Session) Engine() *probes.Engine { return s.engine }

// Records returns the ring's records after seq, oldest first (nil when the
// session keeps no ring).
func (s *Session) Records(afterSeq uint64) []feed.Record {
	if s.ring == nil {
		return nil
	}
	return s.ring.Since(afterSeq, 0)
}

// Subscription is what fanscope's own subscription holds, the probe
// channel included.
func (s *Session) Subscription() redisx.Subscription { return s.cfg.Subscription }

// Sources are the endpoint connections (not Redis), in the order given.
func (s *Session) Sources() []Source { return s.sources }

// Statuses copies every source's health: Redis first (when the session
// has Redis), then each endpoint connection.
func (s *Session) Statuses() []feed.Status {
	out := make([]feed.Status, 0, len(s.sources)+1)
	if s.redis != nil {
		out = append(out, s.redis.Status())
	}
	for _, c := range s.sources {
		out = append(out, c.Status())
	}
	if s.monitor != nil {
		out = append(out, s.monitor.Status())
	}
	return out
}

// Redis is the Redis client, nil when the session has no Redis. It exists
// while the server is down too: commands then fail, saying why.
func (s *Session) Redis() *redisx.Client {
	if s.redis == nil {
		return nil
	}
	return s.redis.client()
}

// Subscriber is fanscope's own subscription, nil until subscribed.
func (s *Session) Subscriber() *redisx.Subscriber {
	if s.redis == nil {
		return nil
	}
	return s.redis.subscriber()
}

// Production reports whether the Redis target is not on loopback
// (publishing there asks first).
func (s *Session) Production() bool {
	c := s.Redis()
	return c != nil && !c.Loopback()
}
