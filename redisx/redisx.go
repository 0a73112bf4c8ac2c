// Package redisx is fanscope's only door to Redis: it connects (plain,
// TLS, unix socket, Cluster, Sentinel), subscribes with exact receive
// times and a watchdog that heals and reports broken connections,
// publishes, and reads the server's view of Pub/Sub (subscriber counts,
// pub/sub clients, output buffer limits). Driver errors are turned into
// this package's sentinel errors; messages are built from fields that hold
// no password (never by searching text for it).
package redisx

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/fanscope/fanscope/internal/secrets"
)

// Options say where Redis is and how to reach it. The zero values of the
// tuning fields select the defaults.
type Options struct {
	URLs           []string // one server, Cluster seeds, or Sentinels
	Cluster        bool     // URLs are Redis Cluster seeds (implied by several URLs)
	SentinelMaster string   // URLs are Sentinels for this master
	TLSCA          string   // PEM file with the CA for rediss://
	TLSInsecure    bool     // skip TLS certificate verification

	DialTimeout time.Duration // connect + TLS handshake; default 3s
	PingIdle    time.Duration // a subscription sends PING after this long without bytes; default 1s
	PongTimeout time.Duration // no bytes this long after a PING means the server is gone; default 2s
	RTTInterval time.Duration // PING round-trip sampling interval; default 5s
	MaxBackoff  time.Duration // cap of the resubscribe backoff; default 3s
	ClientName  string        // CLIENT SETNAME for fanscope's connections; default "fanscope"
}

func (o *Options) setDefaults() {
	if o.DialTimeout <= 0 {
		o.DialTimeout = 3 * time.Second
	}
	if o.PingIdle <= 0 {
		o.PingIdle = time.Second
	}
	if o.PongTimeout <= 0 {
		o.PongTimeout = 2 * time.Second
	}
	if o.RTTInterval <= 0 {
		o.RTTInterval = 5 * time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 3 * time.Second
	}
	if o.ClientName == "" {
		o.ClientName = "fanscope"
	}
}

type mode uint8

const (
	modeSingle mode = iota
	modeCluster
	modeSentinel
)

// Client is a connection to one Redis deployment: a server, a Cluster or a
// Sentinel-managed primary. It is safe for concurrent use.
type Client struct {
	o      Options
	mode   mode
	eps    []endpoint // as given: the server, the seeds or the sentinels
	base   endpoint   // credentials, TLS and db for every data node
	target string     // endpoint.String of the address(es): no password

	cmd      redis.UniversalClient
	single   *redis.Client        // modeSingle
	cluster  *redis.ClusterClient // modeCluster
	sentinel *sentinelState       // modeSentinel

	mu       sync.Mutex
	closed   bool
	loopback bool

	unnamed atomic.Bool // the server refused CLIENT SETNAME (an ACL without +client|setname)
}

// nameConn names a new command connection. go-redis's own ClientName
// would fail the connection when the ACL forbids CLIENT SETNAME; a name
// only helps people read CLIENT LIST, so a refusal is remembered and
// shown as a warning instead.
func (c *Client) nameConn(ctx context.Context, cn *redis.Conn) error {
	if c.o.ClientName == "" {
		return nil
	}
	err := cn.ClientSetName(ctx, c.o.ClientName).Err()
	var rerr redis.Error
	if errors.As(err, &rerr) {
		c.unnamed.Store(true)
		return nil
	}
	return err
}

// Warnings are things about the connection a user should know that do not
// stop it from working.
func (c *Client) Warnings() []string {
	if c.unnamed.Load() {
		return []string{"the server refused CLIENT SETNAME, so fanscope's connections are unnamed in CLIENT LIST " +
			"(the ACL user needs +client|setname)"}
	}
	return nil
}

// failovers is the Sentinel's failover announcer; nil (never fires) for
// other deployments.
func (c *Client) failovers() *announcer {
	if c.sentinel == nil {
		return nil
	}
	return c.sentinel.failovers
}

var quietDriver sync.Once

type discardLogger struct{}

func (discardLogger) Printf(context.Context, string, ...interface{}) {}

// Open parses the options, connects and checks the connection (New, then
// Check). Errors name the target with the password masked and wrap
// ErrUsage, ErrUnreachable, ErrAuth or ErrNoPerm.
func Open(ctx context.Context, o Options) (*Client, error) {
	c, err := New(o)
	if err != nil {
		return nil, err
	}
	if err := c.Check(ctx); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// New parses the options and prepares the connections without touching
// the network, so it works while Redis is down: commands connect when
// they run, and a Subscriber from NewSubscriber keeps trying until Redis
// is there. Its only errors wrap ErrUsage. Call Check to fail fast.
func New(o Options) (*Client, error) {
	// go-redis logs to stderr, which would tear up the TUI; every failure
	// it logs also reaches us as an error.
	quietDriver.Do(func() { redis.SetLogger(discardLogger{}) })
	o.setDefaults()
	c := &Client{o: o}
	if len(o.URLs) == 0 {
		return nil, usageError("no Redis URL given (want redis://host:port)")
	}
	for _, raw := range o.URLs {
		ep, err := parseEndpoint(raw, o)
		if err != nil {
			return nil, usageError(fmt.Sprintf("redis URL %s: %v", shownURL(raw), err))
		}
		c.eps = append(c.eps, ep)
	}
	c.base = c.eps[0]
	switch {
	case o.Cluster && o.SentinelMaster != "":
		return nil, usageError("--cluster and --sentinel-master cannot be used together")
	case o.SentinelMaster != "":
		c.mode = modeSentinel
	case o.Cluster || len(c.eps) > 1:
		c.mode = modeCluster
	}
	if c.mode != modeSingle {
		for _, ep := range c.eps {
			if ep.network == "unix" {
				return nil, usageError("unix sockets cannot be used for Cluster or Sentinel: " + ep.String())
			}
		}
	}
	var err error
	switch c.mode {
	case modeSingle:
		c.newSingle()
	case modeCluster:
		err = c.newCluster()
	case modeSentinel:
		c.newSentinel()
	}
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// Check connects and checks that the deployment answers (PING; the slot
// map of a Cluster; the primary named by the Sentinels). Its errors wrap
// ErrUnreachable, ErrAuth, ErrNoPerm, or ErrUsage (not a Cluster, a
// master the Sentinels do not know).
func (c *Client) Check(ctx context.Context) error {
	switch c.mode {
	case modeCluster:
		return c.checkCluster(ctx)
	case modeSentinel:
		return c.checkSentinel(ctx)
	}
	return c.checkSingle(ctx)
}

func (c *Client) newSingle() {
	c.target = c.base.String()
	c.loopback = c.base.loopback()
	c.single = c.newNodeClient(c.base)
	c.cmd = c.single
}

func (c *Client) checkSingle(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(ctx, c.o.DialTimeout+2*time.Second)
	defer cancel()
	if err := c.single.Ping(pctx).Err(); err != nil {
		return wrapErr("connect "+c.target, c.base.explain(ctx, err))
	}
	return nil
}

// options are the go-redis settings every client fanscope makes shares:
// RESP2, its client name (set by nameConn), ep's dialer (TLS, unix sockets) and credentials,
// the dial timeout for every step, and no maintenance notifications.
// Cluster(), Failover() and Simple() turn them into each kind's options.
func (c *Client) options(ep endpoint, addrs ...string) *redis.UniversalOptions {
	return &redis.UniversalOptions{
		Addrs:                 addrs,
		Username:              ep.user,
		Password:              ep.pass,
		DB:                    ep.db,
		Protocol:              2,
		OnConnect:             c.nameConn,
		DisableIdentity:       true,
		Dialer:                ep.dialer(c.o.DialTimeout),
		DialTimeout:           c.o.DialTimeout,
		DialerRetries:         1,
		ReadTimeout:           c.o.DialTimeout,
		WriteTimeout:          c.o.DialTimeout,
		ContextTimeoutEnabled: true,
		MaxRetries:            2,
		MaintNotificationsConfig: &maintnotifications.Config{
			Mode: maintnotifications.ModeDisabled,
		},
	}
}

// newNodeClient is a go-redis client for commands to one node.
func (c *Client) newNodeClient(ep endpoint) *redis.Client {
	rc := redis.NewClient(c.nodeOptions(ep, false))
	rc.AddHook(authHook{})
	return rc
}

// nodeOptions are the go-redis options for one node. Subscription
// connections (sub, the Sentinel listeners) get their own client with no
// retries of their own: the caller decides when to reconnect.
func (c *Client) nodeOptions(ep endpoint, sub bool) *redis.Options {
	o := c.options(ep, ep.addr)
	o.MaxRetries = 1
	if sub {
		o.MaxRetries = -1
		o.PoolSize = 1
	}
	opt := o.Simple()
	opt.Network = ep.network // Simple() has no network: unix sockets need it
	return opt
}

// shownURL is raw as a usage error may show it: its password and secret
// query values masked by field (secrets.URL), even when it does not parse.
// A bare "user:pass@host" is read as redis:// would read it.
func shownURL(raw string) string {
	if hasScheme(raw) {
		return intentURL(raw)
	}
	return strings.TrimPrefix(intentURL("redis://"+raw), "redis://")
}

// intentURL masks raw as secrets.URL does, but reads an ambiguous URL
// only as its author meant it (the password runs to the last '@'), so a
// '?' or '#' in the password does not start a query whose parameter names
// (and so what is masked) come from the password.
func intentURL(raw string) string {
	if !secrets.Ambiguous(raw) {
		return secrets.URL(raw)
	}
	i := strings.Index(raw, "://") + 3
	rest := raw[i:]
	at := strings.LastIndexByte(rest, '@')
	colon := strings.IndexByte(rest[:at], ':')
	return secrets.URL(raw[:i] + rest[:colon] + ":" + secrets.Mask + rest[at:])
}

// hasScheme reports whether raw starts with a URL scheme and "://"; a
// bare "user:pass@host" has none, even when its password holds "://".
func hasScheme(raw string) bool {
	i := strings.Index(raw, "://")
	if i <= 0 {
		return false
	}
	for j, r := range raw[:i] {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case j > 0 && (r >= '0' && r <= '9' || r == '+' || r == '-' || r == '.'):
		default:
			return false
		}
	}
	return true
}

// Target is the deployment as a URL with the password shown as ***, e.g.
// "redis://app:***@10.0.0.5:6379/0".
func (c *Client) Target() string { return c.target }

// Loopback reports whether every address is a loopback address or a unix
// socket (publishing elsewhere asks for confirmation). Before a Cluster or
// a Sentinel deployment was reached (Check, or a subscription), it judges
// by the addresses given.
func (c *Client) Loopback() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.loopback
}

func (c *Client) setLoopback(v bool) {
	c.mu.Lock()
	c.loopback = v
	c.mu.Unlock()
}

// Close closes the command connections. Running Subscribers end with
// their context; Close does not wait for them.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	if c.sentinel != nil {
		c.sentinel.close()
	}
	if c.cmd != nil {
		return c.cmd.Close()
	}
	return nil
}

// Publish runs PUBLISH and returns the number of receivers. In a Cluster
// that number is what the node that took the PUBLISH counts locally (Redis
// does not add up the other nodes); use NumSub for the cluster-wide view.
func (c *Client) Publish(ctx context.Context, channel, payload string) (int64, error) {
	n, err := c.cmd.Publish(ctx, channel, payload).Result()
	if err != nil {
		return 0, wrapErr(fmt.Sprintf("publish to %s on %s", channel, c.target), err)
	}
	return n, nil
}

// SPublish runs SPUBLISH (Redis 7+); in a Cluster it goes to the node that
// owns the channel's slot.
func (c *Client) SPublish(ctx context.Context, channel, payload string) (int64, error) {
	n, err := c.cmd.SPublish(ctx, channel, payload).Result()
	if err != nil {
		return 0, wrapErr(fmt.Sprintf("spublish to %s on %s", channel, c.target), err)
	}
	return n, nil
}

// NumSub is PUBSUB NUMSUB for the channels; in a Cluster it is the sum over
// every node, because each node counts only its own subscribers.
func (c *Client) NumSub(ctx context.Context, channels ...string) (map[string]int64, error) {
	total, _, err := c.numSub(ctx, channels)
	return total, err
}

func (c *Client) numSub(ctx context.Context, channels []string) (map[string]int64, map[string]map[string]int64, error) {
	total := make(map[string]int64, len(channels))
	for _, ch := range channels {
		total[ch] = 0
	}
	if len(channels) == 0 {
		return total, nil, nil
	}
	byNode := map[string]map[string]int64{}
	var mu sync.Mutex
	err := c.forEachNode(ctx, func(ctx context.Context, node string, rc *redis.Client) error {
		m, err := rc.PubSubNumSub(ctx, channels...).Result()
		if err != nil {
			return fmt.Errorf("%s: %w", node, err)
		}
		mu.Lock()
		defer mu.Unlock()
		byNode[node] = m
		for ch, n := range m {
			total[ch] += n
		}
		return nil
	})
	if err != nil {
		return nil, nil, wrapErr("pubsub numsub on "+c.target, err)
	}
	return total, byNode, nil
}

// forEachNode runs fn on every node that can hold subscribers: the server,
// every Cluster node (primaries and replicas), or the Sentinel primary.
func (c *Client) forEachNode(ctx context.Context, fn func(ctx context.Context, node string, rc *redis.Client) error) error {
	switch c.mode {
	case modeCluster:
		return c.cluster.ForEachShard(ctx, func(ctx context.Context, rc *redis.Client) error {
			return fn(ctx, rc.Options().Addr, rc)
		})
	case modeSentinel:
		addr := c.sentinel.masterAddr()
		if addr == "" { // not found yet: the failover client finds it itself
			addr = "primary of " + c.sentinel.name
		}
		return fn(ctx, addr, c.single)
	}
	return fn(ctx, c.base.addr, c.single)
}
