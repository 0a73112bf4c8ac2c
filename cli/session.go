package cli

import (
	"context"
	"errors"
	"fmt"

	"sync"
	"time"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/probes"
	"github.com/fanscope/fanscope/redisx"
	"github.com/fanscope/fanscope/ssex"
)

// SessionConfig says what a Session watches.
type SessionConfig struct {
	Sources SourceFlags
	// SSEClients is how many connections to open to each SSE endpoint (≥1).
	SSEClients int
	Probe      probes.Config
	// RingSize is how many recent records the Ring keeps (0: none kept).
	RingSize int
	// ExtraChannels are subscribed as well as -c (e.g. the probe channel).
	ExtraChannels []string
	// NeedRedis opens Redis even when no subscription was asked for.
	NeedRedis bool
	// SSEStall is the SSE stall watchdog (0: the client's default).
	SSEStall time.Duration
	Getenv   func(string) string
}

// Session is one run's sources, fan-in and probe engine. Sources emit into
// Queue; one fan-in goroutine numbers each record, lets Engine annotate
// it, adds it to Ring and hands the batch to every consumer.
type Session struct {
	Redis     *redisx.Client     // nil when no Redis source
	Sub       *redisx.Subscriber // nil when nothing is subscribed
	Endpoints []*ssex.Client
	Engine    *probes.Engine
	Ring      *feed.Ring // nil when RingSize is 0
	Queue     *feed.Queue

	subscription redisx.Subscription
	consumers    []func([]feed.Record)
	errs         chan error
	wg           sync.WaitGroup
	cancel       context.CancelFunc
}

// OpenSession connects every source: Redis first (the subscription is
// confirmed before it returns), then the SSE clients are built (they
// connect on Start). Errors wrap redisx and ssex sentinels, so exitCode
// maps them.
func OpenSession(ctx context.Context, cfg SessionConfig) (*Session, error) {
	src := cfg.Sources
	if cfg.Getenv == nil {
		cfg.Getenv = func(string) string { return "" }
	}
	if cfg.SSEClients < 1 {
		cfg.SSEClients = 1
	}
	if !src.wantsRedis() && len(src.SSE) == 0 && !cfg.NeedRedis && len(cfg.ExtraChannels) == 0 {
		return nil, usageError(errors.New("nothing to watch: give -c CHANNEL, -p PATTERN, -s SHARD-CHANNEL or --sse URL"))
	}
	header, err := src.sseHeader(cfg.Getenv)
	if err != nil {
		return nil, err
	}
	if len(src.SSE) == 0 {
		// Hop times need an SSE copy of each Redis message: without an
		// endpoint, remembering Redis messages for them is wasted work.
		cfg.Probe.HopEntries = -1
	}
	s := &Session{
		Queue:  feed.NewQueue(0),
		Engine: probes.NewEngine(cfg.Probe),
		errs:   make(chan error, 1),
	}
	if cfg.RingSize > 0 {
		s.Ring = feed.NewRing(cfg.RingSize)
	}

	// Build the SSE clients first: a bad URL is a usage error, found
	// before anything connects.
	// One transport for every SSE connection: thousands of connections to
	// one host are allowed, HTTP/1.1 only so each stream is its own socket.
	transport, err := ssex.NewTransport(src.TLSCA, src.TLSInsecure)
	if err != nil {
		if exitCode(err) == exitCheckFailed {
			err = usageError(err)
		}
		return nil, err
	}
	names := map[string]bool{}
	for _, flag := range src.SSE {
		name, url, err := ssex.ParseEndpoint(flag)
		if err != nil {
			return nil, err
		}
		if names[name] {
			return nil, usageError(fmt.Errorf("--sse %s: the endpoint name %q is used twice; name them NAME=URL", flag, name))
		}
		names[name] = true
		for k := 0; k < cfg.SSEClients; k++ {
			c, err := ssex.NewClient(ssex.Config{
				Name: name, URL: url, Conn: k, Header: header,
				TLSCA: src.TLSCA, TLSInsecure: src.TLSInsecure,
				StallTimeout: cfg.SSEStall, Transport: transport,
			})
			if err != nil {
				return nil, err
			}
			s.Endpoints = append(s.Endpoints, c)
		}
		s.Engine.AddPath("sse:"+name, cfg.SSEClients)
	}

	if src.wantsRedis() || cfg.NeedRedis || len(cfg.ExtraChannels) > 0 {
		s.Redis, err = redisx.Open(ctx, redisx.Options{
			URLs: src.redisURLs(cfg.Getenv), Cluster: src.Cluster, SentinelMaster: src.SentinelMaster,
			TLSCA: src.TLSCA, TLSInsecure: src.TLSInsecure,
		})
		if err != nil {
			return nil, err
		}
		s.subscription = redisx.Subscription{
			Channels:      appendMissing(append([]string(nil), src.Channels...), cfg.ExtraChannels...),
			Patterns:      src.Patterns,
			ShardChannels: src.ShardChannels,
		}
		s.Engine.AddPath("redis", 1)
	}
	return s, nil
}

// appendMissing appends each of more not already in list.
func appendMissing(list []string, more ...string) []string {
outer:
	for _, m := range more {
		for _, l := range list {
			if l == m {
				continue outer
			}
		}
		list = append(list, m)
	}
	return list
}

// OnBatch registers a consumer; call it before Start. f runs on the fan-in
// goroutine after the engine annotated each record; it must not keep the
// slice.
func (s *Session) OnBatch(f func([]feed.Record)) { s.consumers = append(s.consumers, f) }

// Subscription is what the Redis subscriber holds.
func (s *Session) Subscription() redisx.Subscription { return s.subscription }

// Start subscribes to Redis (confirmed before it returns), starts the SSE
// clients and the fan-in. Everything stops when ctx ends or Close is called.
func (s *Session) Start(ctx context.Context) error {
	ctx, s.cancel = context.WithCancel(ctx)
	sub := s.subscription
	if s.Redis != nil && len(sub.Channels)+len(sub.Patterns)+len(sub.ShardChannels) > 0 {
		subscriber, err := s.Redis.Subscribe(ctx, sub, s.Queue)
		if err != nil {
			s.cancel()
			return err
		}
		s.Sub = subscriber
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.startSSE(ctx)
	}()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.fanIn(ctx)
	}()
	return nil
}

// Connections being opened at once. A server's listen backlog is finite
// (often 4096): 10,000 connections dialled in the same instant overflow
// it, and the refused ones wait seconds for a SYN retry.
const sseConnectsInFlight = 256

// sseConnectHold is the longest a connection that has not connected yet
// holds its slot (some servers send headers only with an event). A
// variable so that a test can lengthen it.
var sseConnectHold = 2 * time.Second

// startSSE starts every SSE client, with at most sseConnectsInFlight of
// them connecting at a time.
func (s *Session) startSSE(ctx context.Context) {
	slots := make(chan struct{}, sseConnectsInFlight)
	for _, c := range s.Endpoints {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := c.Run(ctx, s.Queue); err != nil && ctx.Err() == nil {
				select {
				case s.errs <- err:
				default:
				}
			}
		}()
		go func() {
			t := time.NewTimer(sseConnectHold)
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
		batch := s.Queue.Take(ctx, spare)
		if batch == nil {
			return
		}
		for i := range batch {
			seq++
			batch[i].Seq = seq
			s.Engine.Observe(&batch[i])
		}
		if s.Ring != nil {
			s.Ring.Add(batch)
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
	if s.cancel != nil {
		s.cancel()
	}
	if s.Sub != nil {
		<-s.Sub.Done()
	}
	s.wg.Wait()
	if s.Redis != nil {
		_ = s.Redis.Close()
	}
}

// Dropped is how many records the fan-in could not take in time.
func (s *Session) Dropped() uint64 { return s.Queue.Dropped() }
