package session

import (
	"context"
	"slices"
	"strconv"
	"time"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/probes"
	"github.com/fanscope/fanscope/redisx"
)

// Snapshot is everything watch and serve show, copied at one instant.
// Times are absolute; readers subtract them from Now.
type Snapshot struct {
	Now        time.Time
	Targets    []string // the Redis target and each endpoint's URL, secrets masked
	Production bool     // the Redis target is not on loopback

	// Statuses are every source connection's health, Redis first.
	Statuses []feed.Status
	// Redis is fanscope's own subscription; nil when there is none.
	Redis *RedisView

	Probes        probes.Snapshot
	ProbeChannel  string
	ProbeShard    bool
	Probing       bool // continuous probing is on
	ProbeInterval time.Duration
	ProbeError    string // why the last probe could not be sent

	Introspection   redisx.Introspection
	IntrospectError error
	Introspected    bool // at least one introspection finished
	// BufferEvents are the recent disconnects at the Pub/Sub output buffer
	// limit ("15:04:05 client 10.0.0.7:5123 (app-2) disconnected by Redis
	// (output buffer limit) …"), oldest first; BufferDisconnections is
	// INFO's client_output_buffer_limit_disconnections, -1 when the server
	// has no such counter (before Redis 7.2).
	BufferEvents         []string
	BufferDisconnections int64

	// Problems names the reason of every non-healthy state (a source not
	// up, stalled or silent, probes that cannot be sent); empty when
	// healthy. Losses names the paths that lost probes in the last minute.
	Problems []string
	Losses   []string
	// Publishers are the clients MONITOR saw publishing, most recent first;
	// nil without Config.Monitor. PublishLatency is each path's organic
	// publish→delivery time.
	Publishers     []Publisher
	PublishLatency map[string]probes.Dist
	// PollIntervals is each poll path's interval: its probe latency is
	// bounded by it.
	PollIntervals map[string]time.Duration
	// Dropped counts records the fan-in could not take in time.
	Dropped uint64
}

// RedisView is fanscope's own subscription.
type RedisView struct {
	Target       string
	Subscription redisx.Subscription
	Stats        redisx.SubscriberStats // zero until subscribed
}

type introState struct {
	in     redisx.Introspection
	err    error
	done   bool
	watch  redisx.BufferWatch // introspectLoop only
	events []string
}

// maxBufferEvents is how many output-buffer disconnects the snapshot keeps.
const maxBufferEvents = 20

// Snapshot copies the session's state at now.
func (s *Session) Snapshot(now time.Time) Snapshot {
	snap := Snapshot{
		Now:           now,
		Statuses:      s.Statuses(),
		Probes:        s.engine.Snapshot(now),
		ProbeChannel:  s.cfg.ProbeChannel,
		ProbeShard:    s.cfg.ProbeShard,
		Probing:       s.Probing(),
		ProbeInterval: s.cfg.ProbeInterval,
		Production:    s.Production(),
		Dropped:       s.queue.Dropped(),
	}
	s.mu.Lock()
	snap.ProbeError = s.probeErr
	snap.Introspection, snap.IntrospectError, snap.Introspected = s.intro.in, s.intro.err, s.intro.done
	snap.BufferEvents = slices.Clone(s.intro.events)
	s.mu.Unlock()
	snap.BufferDisconnections = -1
	if v, err := strconv.ParseInt(snap.Introspection.Info["client_output_buffer_limit_disconnections"], 10, 64); err == nil {
		snap.BufferDisconnections = v
	}
	if s.redis != nil {
		snap.Targets = append(snap.Targets, s.redis.target())
		if !subEmpty(s.cfg.Subscription) {
			v := &RedisView{Target: s.redis.target(), Subscription: s.cfg.Subscription}
			if sub := s.Subscriber(); sub != nil {
				v.Stats = sub.Stats()
			}
			snap.Redis = v
		}
	}
	for _, st := range snap.Statuses {
		if st.Source != feed.SourceRedis && st.Conn == 0 {
			snap.Targets = append(snap.Targets, st.Path()+"="+st.URL)
		}
	}
	if s.pubs != nil {
		snap.Publishers, snap.PublishLatency = s.pubs.snapshot(now)
	}
	s.health.noteProbes(now, snap.Probes)
	snap.Problems, snap.Losses = s.health.problems(now, snap.Statuses, snap.ProbeError)
	for _, src := range s.sources {
		if p, ok := src.(interface{ Interval() time.Duration }); ok {
			if snap.PollIntervals == nil {
				snap.PollIntervals = map[string]time.Duration{}
			}
			snap.PollIntervals[src.Path()] = p.Interval()
		}
	}
	return snap
}

// ResetHealth forgets the probe losses seen so far: the header turns
// healthy again unless something is still wrong.
func (s *Session) ResetHealth() { s.health.reset(time.Now()) }

// introspectLoop asks Redis for subscriber counts and the client list
// every Introspect interval until ctx ends.
func (s *Session) introspectLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.Introspect)
	defer t.Stop()
	for {
		if c := s.Redis(); c != nil {
			ictx, cancel := context.WithTimeout(ctx, commandTimeout)
			in, err := c.Introspect(ictx, s.cfg.Subscription)
			cancel()
			var events []redisx.BufferEvent
			if err == nil {
				events = s.intro.watch.Observe(in)
			}
			s.mu.Lock()
			if err == nil {
				s.intro.in = in
			}
			s.intro.err, s.intro.done = err, true
			for _, ev := range events {
				s.intro.events = append(s.intro.events, time.Now().Format("15:04:05")+" "+ev.Message)
			}
			if n := len(s.intro.events); n > maxBufferEvents {
				s.intro.events = slices.Clone(s.intro.events[n-maxBufferEvents:])
			}
			s.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
