package session

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/redisx"
)

func subEmpty(sub redisx.Subscription) bool {
	return len(sub.Channels)+len(sub.Patterns)+len(sub.ShardChannels) == 0
}

// redisSource is fanscope's side of Redis as a Source: the client used
// for publishing and counts, and the subscription. Once subscribed, the
// redisx.Subscriber heals itself; until then (a server down when the
// session starts) Run retries with backoff and says why in state records.
type redisSource struct {
	opts         redisx.Options
	subscription redisx.Subscription

	cl  atomic.Pointer[redisx.Client]
	sub atomic.Pointer[redisx.Subscriber]

	connected     chan struct{}
	connectedOnce sync.Once

	mu      sync.Mutex
	state   string
	lastErr error
	attempt int
}

func newRedisSource(o redisx.Options, sub redisx.Subscription) *redisSource {
	return &redisSource{opts: o, subscription: sub, connected: make(chan struct{}), state: feed.StateConnecting}
}

func (r *redisSource) Path() string               { return feed.PathRedis }
func (r *redisSource) Connected() <-chan struct{} { return r.connected }
func (r *redisSource) client() *redisx.Client     { return r.cl.Load() }
func (r *redisSource) subscriber() *redisx.Subscriber {
	return r.sub.Load()
}

// open connects the client (PING checked) unless it is already open.
func (r *redisSource) open(ctx context.Context) error {
	if r.cl.Load() != nil {
		return nil
	}
	c, err := redisx.Open(ctx, r.opts)
	if err != nil {
		return err
	}
	r.cl.Store(c)
	return nil
}

// subscribe opens the client if needed and subscribes; the subscription
// is confirmed when it returns nil.
func (r *redisSource) subscribe(ctx context.Context, sink feed.Sink) error {
	if err := r.open(ctx); err != nil {
		return err
	}
	if subEmpty(r.subscription) {
		r.up()
		return nil
	}
	sub, err := r.client().Subscribe(ctx, r.subscription, sink)
	if err != nil {
		return err
	}
	r.sub.Store(sub)
	r.up()
	return nil
}

func (r *redisSource) up() {
	r.mu.Lock()
	r.state, r.lastErr, r.attempt = feed.StateSubscribed, nil, 0
	r.mu.Unlock()
	r.connectedOnce.Do(func() { close(r.connected) })
}

// wait returns when the subscription's goroutines have ended (after ctx).
func (r *redisSource) wait(ctx context.Context) {
	if sub := r.sub.Load(); sub != nil {
		<-sub.Done()
		return
	}
	<-ctx.Done()
}

// Retry pacing while Redis cannot be reached at start: doubling from
// redisRetryMin to redisRetryMax, with ±20% jitter so that many
// fanscopes do not knock in step.
const (
	redisRetryMin = 250 * time.Millisecond
	redisRetryMax = 5 * time.Second
)

// Run connects and subscribes, retrying until it works or ctx ends; then
// the subscriber heals itself. Only what retrying cannot fix (a wrong
// password, a missing ACL permission, a bad URL) ends it with an error.
func (r *redisSource) Run(ctx context.Context, sink feed.Sink) error {
	wait := redisRetryMin
	for attempt := 1; ; attempt++ {
		r.emit(sink, feed.StateConnecting, attempt, nil)
		err := r.subscribe(ctx, sink)
		if err == nil {
			if r.sub.Load() == nil {
				// Nothing to subscribe: the client alone is the source.
				r.emit(sink, feed.StateConnected, 0, nil)
			}
			r.wait(ctx)
			return nil
		}
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, redisx.ErrAuth) || errors.Is(err, redisx.ErrNoPerm) || errors.Is(err, redisx.ErrUsage) {
			r.emit(sink, feed.StateFailed, attempt, err)
			return err
		}
		r.emit(sink, feed.StateReconnecting, attempt, err)
		d := time.Duration(float64(wait) * (0.8 + 0.4*rand.Float64()))
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		wait = min(2*wait, redisRetryMax)
	}
}

func (r *redisSource) emit(sink feed.Sink, state string, attempt int, err error) {
	r.mu.Lock()
	r.state, r.attempt = state, attempt
	if err != nil {
		r.lastErr = err
	}
	r.mu.Unlock()
	rec := feed.Record{TS: time.Now(), Source: feed.SourceRedis, Kind: feed.KindState,
		Target: r.target(), State: state, Attempt: attempt}
	if err != nil {
		rec.Error = err.Error()
	}
	sink.Emit(rec)
}

// target is the masked Redis target, known before the client is open.
func (r *redisSource) target() string {
	if c := r.cl.Load(); c != nil {
		return c.Target()
	}
	if len(r.opts.URLs) > 0 {
		return maskURL(r.opts.URLs[0])
	}
	return ""
}

// Status is the subscription's health: the subscriber's own while it
// exists, the start-up retries' before.
func (r *redisSource) Status() feed.Status {
	st := feed.Status{Source: feed.SourceRedis, URL: r.target()}
	if sub := r.sub.Load(); sub != nil {
		ss := sub.Stats()
		st.State, st.Reconnects = ss.State, ss.Reconnects
		st.Events, st.LastEvent, st.LastKeepAlive = ss.Messages, ss.LastMessage, ss.LastPing
		st.LastByte = later(ss.LastMessage, ss.LastPing)
		if ss.PingRTT > 0 {
			st.Details = append(st.Details, "ping "+ss.PingRTT.Round(10*time.Microsecond).String())
		}
		if ss.Gaps > 0 {
			st.Details = append(st.Details, "gaps "+itoa(ss.Gaps))
		}
		return st
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	st.State, st.Attempt = r.state, r.attempt
	if r.lastErr != nil && st.State != feed.StateSubscribed {
		st.Error = r.lastErr.Error()
	}
	return st
}

func (r *redisSource) close() {
	if c := r.cl.Load(); c != nil {
		_ = c.Close()
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// maskURL shows raw with its password as ***; a URL that does not parse
// is shown as its scheme alone, since any part of it may be the password.
func maskURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		if i := len(raw); i > 0 {
			if scheme, _, ok := cutScheme(raw); ok {
				return scheme + "://***"
			}
		}
		return "***"
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "***")
		return stringsReplaceEscaped(u.String())
	}
	return u.String()
}

func cutScheme(raw string) (string, string, bool) {
	for i := 0; i+3 <= len(raw); i++ {
		if raw[i:i+3] == "://" {
			return raw[:i], raw[i+3:], true
		}
	}
	return "", "", false
}

// stringsReplaceEscaped undoes url's escaping of the mask's asterisks.
func stringsReplaceEscaped(s string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if i+3 <= len(s) && s[i:i+3] == "%2A" {
			out = append(out, '*')
			i += 2
			continue
		}
		out = append(out, s[i])
	}
	return string(out)
}

func itoa(n int) string { return strconv.Itoa(n) }
