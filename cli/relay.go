package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/fanscope/fanscope/redisx"
	"github.com/fanscope/fanscope/relay"
)

// relayFlags are the flags of `fanscope relay`.
type relayFlags struct {
	Redis        []string
	TLSCA        string
	TLSInsecure  bool
	Listen       string
	Channels     []string
	Patterns     []string
	Path         string
	KeepAlive    time.Duration
	Token        string
	TokenEnv     string
	History      int
	HistoryBytes int
	WriteTimeout time.Duration
	ClientQueue  int
	QueueBytes   int
	CORSOrigin   string
}

func newRelayCmd(e *env) *cobra.Command {
	f := &relayFlags{}
	cmd := &cobra.Command{
		Use:   "relay",
		Short: "Run the reference Redis→SSE relay server",
		Long: `relay subscribes to Redis and serves every message as a Server-Sent Event:
the event type is the channel name with ':' replaced by '-' (story:published →
story-published), the data is the payload (one data: line per line), and ids
increase. A client reconnecting with Last-Event-ID is sent exactly the events it
missed that are still in the history (--history events, --history-bytes bytes);
a new client gets live events only. Keep-alive comments (": ping") go out every
--keepalive. A client that stops reading is dropped once its queue is full
(--client-queue events or --client-queue-bytes bytes) or a write takes longer
than --write-timeout, so it never holds up the others.

The same events, with the same ids, are served two more ways:
  GET /ws          WebSocket: one text message per event, the JSON object
                   {"id":"7","type":"story-published","channel":"story:published","data":"..."};
                   resume with ?last_event_id=N (or a Last-Event-ID header)
  GET PATH/poll    polling (PATH is --path): {"last_event_id":N,"events":[...]}
                   with the last ?limit=N events (default 100) or those
                   ?after=ID; an ETag, and 304 Not Modified on If-None-Match
                   while nothing is new

Also served: GET /healthz (200 "ok"; 503 while the Redis subscription is
down) and GET /stats (JSON: connections, events_relayed, per_channel for up
to 1000 channels, redis_state, redis_gaps, redis_reconnects, ingest_dropped,
...). --token protects the stream, /ws, the poll endpoint and /stats.
ingest_dropped counts only messages the relay itself dropped; messages that
Redis drops (for example when it closes the subscription at its
client-output-buffer-limit) never arrive: they show as redis_gaps.

A channel given with -c that a -p pattern also matches is relayed twice, as
Redis delivers it twice.`,
		Example: `  fanscope relay --redis redis://127.0.0.1:6379 --listen 127.0.0.1:8080 -c story:published
  fanscope relay -p 'story:*' --token-env RELAY_TOKEN --history 5000`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runRelay(cmd.Context(), e, f)
		},
	}
	fs := cmd.Flags()
	fs.SortFlags = false
	fs.StringArrayVar(&f.Redis, "redis", nil, "Redis `URL` (redis://, rediss://, unix://).\nDefault: $FANSCOPE_REDIS_URL, then $REDIS_URL, then redis://127.0.0.1:6379")
	fs.StringVar(&f.Listen, "listen", "127.0.0.1:8080", "`ADDR` to serve HTTP on")
	fs.StringArrayVarP(&f.Channels, "channel", "c", nil, "SUBSCRIBE to channel `NAME` and relay it (repeatable)")
	fs.StringArrayVarP(&f.Patterns, "pattern", "p", nil, "PSUBSCRIBE to `GLOB` and relay what matches (repeatable)")
	fs.StringVar(&f.Path, "path", relay.DefaultPath, "URL `PATH` of the event stream")
	fs.DurationVar(&f.KeepAlive, "keepalive", 15*time.Second, "send a ': ping' keep-alive comment (a WebSocket ping) every `D` (0: none; at least 100ms)")
	fs.StringVar(&f.Token, "token", "", "require ?token=`T` or 'Authorization: Bearer T' on the event stream, /ws, the poll endpoint and /stats")
	fs.StringVar(&f.TokenEnv, "token-env", "", "like --token, read from environment variable `VAR` (keeps it out of argv)")
	fs.IntVar(&f.History, "history", 1000, "keep the last `N` events for Last-Event-ID replay and polling")
	fs.IntVar(&f.HistoryBytes, "history-bytes", relay.DefaultHistoryBytes, "and at most `BYTES` of them (an event larger than this is relayed but not kept)")
	fs.DurationVar(&f.WriteTimeout, "write-timeout", relay.DefaultWriteTimeout, "drop a client when one write to it takes longer than `D` (at least 10ms)")
	fs.IntVar(&f.ClientQueue, "client-queue", relay.DefaultClientQueue, "drop a client when `N` events are waiting for it (it reconnects and is replayed)")
	fs.IntVar(&f.QueueBytes, "client-queue-bytes", relay.DefaultClientQueueBytes, "or when `BYTES` of events are waiting for it")
	fs.StringVar(&f.CORSOrigin, "cors-origin", "", "send Access-Control-Allow-Origin: `ORIGIN` (\"*\" or one http(s) origin such as http://localhost:3000) so pages from there can connect")
	fs.StringVar(&f.TLSCA, "tls-ca", "", "PEM `FILE` of CA certificates trusted for rediss://")
	fs.BoolVar(&f.TLSInsecure, "tls-insecure", false, "do not verify TLS certificates (testing only)")
	return cmd
}

// relayOptions is what a running relay needs; demo builds it directly.
type relayOptions struct {
	Redis    redisx.Options
	Sub      redisx.Subscription
	Listen   string
	Relay    relay.Config
	Logger   *slog.Logger
	ReadyMsg bool // log a "relay listening" line
}

// runningRelay is a relay subscribed to Redis and listening.
type runningRelay struct {
	Relay  *relay.Relay
	Redis  *redisx.Client
	Sub    *redisx.Subscriber
	URL    string // the event stream's URL (without token)
	ln     net.Listener
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

func runRelay(ctx context.Context, e *env, f *relayFlags) error {
	if len(f.Channels)+len(f.Patterns) == 0 {
		return usageError(errors.New("relay: nothing to relay: give -c CHANNEL or -p PATTERN"))
	}
	// Zero means "the default" in relay.Config; on the command line it is
	// a mistake (0 bytes of queue would drop every client at once).
	for _, v := range []struct {
		flag string
		n    int
	}{{"--client-queue", f.ClientQueue}, {"--client-queue-bytes", f.QueueBytes}, {"--history-bytes", f.HistoryBytes}} {
		if v.n <= 0 {
			return usageError(fmt.Errorf("relay: %s %d: want a positive number", v.flag, v.n))
		}
	}
	if f.WriteTimeout <= 0 {
		return usageError(fmt.Errorf("relay: --write-timeout %s: want a positive duration (at least %s)", f.WriteTimeout, relay.MinWriteTimeout))
	}
	token := f.Token
	if f.TokenEnv != "" {
		if token != "" {
			return usageError(errors.New("relay: give --token or --token-env, not both"))
		}
		if token = e.getenv(f.TokenEnv); token == "" {
			return usageError(fmt.Errorf("relay: --token-env %s: that environment variable is empty or unset", f.TokenEnv))
		}
	}
	sf := SourceFlags{Redis: f.Redis}
	log := slog.New(slog.NewTextHandler(e.stderr, nil))
	rr, err := startRelay(ctx, relayOptions{
		Redis:  redisx.Options{URLs: sf.redisURLs(e.getenv), TLSCA: f.TLSCA, TLSInsecure: f.TLSInsecure, ClientName: "fanscope-relay"},
		Sub:    redisx.Subscription{Channels: f.Channels, Patterns: f.Patterns},
		Listen: f.Listen,
		Relay: relay.Config{
			Path: f.Path, KeepAlive: f.KeepAlive, Token: token, History: f.History, HistoryBytes: f.HistoryBytes,
			WriteTimeout: f.WriteTimeout, ClientQueue: f.ClientQueue, ClientQueueBytes: f.QueueBytes,
			AllowOrigin: f.CORSOrigin, Logger: log,
		},
		Logger:   log,
		ReadyMsg: true,
	})
	if err != nil {
		return err
	}
	return rr.Wait()
}

// startRelay opens Redis, subscribes (confirmed before it returns), listens
// and starts serving. The relay runs until ctx ends or Stop is called.
func startRelay(ctx context.Context, o relayOptions) (*runningRelay, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Relay.Logger == nil {
		o.Relay.Logger = o.Logger
	}
	if o.Relay.WriteTimeout < 0 {
		return nil, usageError(fmt.Errorf("relay: --write-timeout %s: want a positive duration", o.Relay.WriteTimeout))
	}
	if o.Relay.ClientQueue < 0 {
		return nil, usageError(fmt.Errorf("relay: --client-queue %d: want a positive number", o.Relay.ClientQueue))
	}
	r, err := relay.New(o.Relay)
	if err != nil {
		return nil, usageError(fmt.Errorf("relay: %w", err))
	}
	fdLimit := raiseFileLimit()
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return nil, usageError(fmt.Errorf("relay: listen on %s: %w", o.Listen, err))
	}
	ctx, cancel := context.WithCancel(ctx)
	rr := &runningRelay{Relay: r, ln: ln, cancel: cancel, done: make(chan struct{})}
	fail := func(err error) (*runningRelay, error) {
		cancel()
		ln.Close()
		if rr.Sub != nil {
			<-rr.Sub.Done()
		}
		if rr.Redis != nil {
			_ = rr.Redis.Close()
		}
		return nil, err
	}
	rr.Redis, err = redisx.Open(ctx, o.Redis)
	if err != nil {
		return fail(fmt.Errorf("relay: %w", err))
	}
	rr.Sub, err = rr.Redis.Subscribe(ctx, o.Sub, r)
	if err != nil {
		return fail(fmt.Errorf("relay: %w", err))
	}
	path := o.Relay.Path
	if path == "" {
		path = relay.DefaultPath
	}
	rr.URL = "http://" + displayAddr(ln.Addr()) + path
	if o.ReadyMsg {
		attrs := []any{"url", rr.URL, "redis", rr.Redis.Target()}
		if len(o.Sub.Channels) > 0 {
			attrs = append(attrs, "channels", strings.Join(o.Sub.Channels, ","))
		}
		if len(o.Sub.Patterns) > 0 {
			attrs = append(attrs, "patterns", strings.Join(o.Sub.Patterns, ","))
		}
		attrs = append(attrs, "keepalive", o.Relay.KeepAlive, "history", o.Relay.History, "token", o.Relay.Token != "",
			"ws", "http://"+displayAddr(ln.Addr())+relay.WSPath, "poll", rr.URL+relay.PollSuffix, "max_connections", fdLimit)
		o.Logger.Info("relay listening", attrs...)
	}
	go func() {
		err := r.Serve(ctx, ln)
		<-rr.Sub.Done()
		_ = rr.Redis.Close()
		rr.err = err
		close(rr.done)
	}()
	return rr, nil
}

// Wait returns when the relay has shut down.
func (rr *runningRelay) Wait() error {
	<-rr.done
	return rr.err
}

// Stop shuts the relay down and waits for it.
func (rr *runningRelay) Stop() error {
	rr.cancel()
	return rr.Wait()
}

// wsURL is the relay's WebSocket URL.
func (rr *runningRelay) wsURL() string {
	return "ws://" + displayAddr(rr.ln.Addr()) + relay.WSPath
}

// displayAddr is a listener address as a URL host: a wildcard address is
// shown as 127.0.0.1 so the URL can be opened as is.
func displayAddr(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// raiseFileLimit lifts the open-file limit as far as the process may (the
// hard limit; as root up to the kernel's nr_open, at most 1,048,576): every
// client is a descriptor. It returns the limit in force.
func raiseFileLimit() uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0
	}
	want := uint64(1 << 20)
	if b, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
		if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil {
			want = min(want, n)
		}
	}
	if lim.Max < want {
		// Only a privileged process may raise the hard limit; try.
		up := syscall.Rlimit{Cur: want, Max: want}
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &up) == nil {
			return want
		}
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	return lim.Cur
}
