package session

import (
	"context"
	"sync"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/internal/secrets"
	"github.com/fanscope/fanscope/redisx"
)

func subEmpty(sub redisx.Subscription) bool {
	return len(sub.Channels)+len(sub.Patterns)+len(sub.ShardChannels) == 0
}

// redisSource is fanscope's side of Redis: the client used for publishing
// and counts, and the subscription as a Source. The redisx.Subscriber
// retries and heals itself, and says why in its state records; when the
// session must fail fast (tail, probe), the subscription is confirmed
// before Start returns instead.
type redisSource struct {
	opts         redisx.Options
	subscription redisx.Subscription

	mu  sync.Mutex
	cl  *redisx.Client
	sub *redisx.Subscriber
}

func newRedisSource(o redisx.Options, sub redisx.Subscription) *redisSource {
	return &redisSource{opts: o, subscription: sub}
}

// open makes the client. With check, the server must answer now (PING, the
// slot map, the Sentinels' primary); without, nothing touches the network
// and a server that is down is retried by whoever uses the client.
func (r *redisSource) open(ctx context.Context, check bool) error {
	var c *redisx.Client
	var err error
	if check {
		c, err = redisx.Open(ctx, r.opts)
	} else {
		c, err = redisx.New(r.opts)
	}
	if err != nil {
		return err
	}
	var sub *redisx.Subscriber
	if !subEmpty(r.subscription) {
		if sub, err = c.NewSubscriber(r.subscription); err != nil {
			_ = c.Close()
			return err
		}
		if check {
			sub.FailFast()
		}
	}
	r.mu.Lock()
	r.cl, r.sub = c, sub
	r.mu.Unlock()
	return nil
}

func (r *redisSource) client() *redisx.Client {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cl
}

func (r *redisSource) subscriber() *redisx.Subscriber {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sub
}

func (r *redisSource) Path() string { return feed.PathRedis }

// Connected is closed once every subscription connection subscribed.
func (r *redisSource) Connected() <-chan struct{} {
	if sub := r.subscriber(); sub != nil {
		return sub.Connected()
	}
	closed := make(chan struct{})
	close(closed)
	return closed
}

// Run runs the subscription until ctx ends; only what retrying cannot fix
// (a wrong password, a missing ACL permission) ends it with an error.
func (r *redisSource) Run(ctx context.Context, sink feed.Sink) error {
	sub := r.subscriber()
	if sub == nil {
		<-ctx.Done()
		return nil
	}
	return sub.Run(ctx, sink)
}

// target is the masked Redis target.
func (r *redisSource) target() string {
	if c := r.client(); c != nil {
		return c.Target()
	}
	if len(r.opts.URLs) > 0 {
		return secrets.URL(r.opts.URLs[0])
	}
	return ""
}

// Status is the subscription's health (the worst of its connections).
func (r *redisSource) Status() feed.Status {
	if sub := r.subscriber(); sub != nil {
		return sub.Status()
	}
	st := feed.Status{Source: feed.SourceRedis, URL: r.target(), State: feed.StateConnected}
	if c := r.client(); c != nil {
		st.Warnings = c.Warnings()
	}
	return st
}

func (r *redisSource) close() {
	if c := r.client(); c != nil {
		_ = c.Close()
	}
}
