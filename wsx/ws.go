package wsx

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/fanscope/fanscope/feed"
)

// Client holds one WebSocket connection and reopens it with backoff,
// reporting every text or binary message as an event record (type
// "message"; binary data as bytes, which the encoders turn into data_b64
// when it is not UTF-8).
//
// Close codes decide what comes next: 1000 and 1001 reconnect after the
// backoff floor, 1008 (policy violation) is fatal, anything else (1011
// included) reconnects with a growing backoff. A handshake answered 401,
// 403 or 404 is fatal. Messages over Config.MaxMessage are read to their
// end, counted (Status.Warnings) and skipped; the connection stays.
type Client struct {
	*loop
}

// NewClient checks cfg and returns a client ready to Run. Errors wrap ErrUsage.
func NewClient(cfg Config) (*Client, error) {
	c, err := check(cfg, "ws endpoint")
	if err != nil {
		return nil, err
	}
	cl := &Client{loop: newLoop(c, feed.SourceWS, "ws endpoint")}
	cl.attempt = cl.connect
	return cl, nil
}

// Run connects and keeps the connection open until ctx ends (then it
// returns nil) or the endpoint refuses for good (then it returns an error
// wrapping ErrFatal). Run may be called once.
func (c *Client) Run(ctx context.Context, sink feed.Sink) error { return c.run(ctx, sink) }

// connect makes one attempt and reads messages until the connection ends.
func (c *Client) connect(ctx context.Context, sink feed.Sink, lv *liveness, attempt int) *ending {
	start := time.Now()
	conn, cctx, cancel, e := c.open(ctx, c.cfg.URL, lv)
	if e != nil {
		return e
	}
	defer conn.CloseNow()
	defer cancel(nil)
	c.noteConnected(sink, http.StatusSwitchingProtocols, attempt, start)

	var wg sync.WaitGroup
	if c.cfg.PingInterval > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.ping(cctx, conn)
		}()
	}
	defer wg.Wait()
	defer cancel(nil)
	for {
		_, r, err := conn.Reader(cctx)
		if err != nil {
			return c.readEnded(ctx, cctx, lv, err)
		}
		data, over, err := c.readMessage(r, lv)
		at := time.Now()
		if err != nil {
			return c.readEnded(ctx, cctx, lv, err)
		}
		if over {
			c.mu.Lock()
			c.tr.skipped++
			c.mu.Unlock()
			continue
		}
		c.event(sink, at, "message", string(data))
	}
}

// ping keeps a keep-alive clock: a ping every PingInterval, whose pong
// counts as bytes for the stall watchdog, and its round trip for Status.
func (c *Client) ping(ctx context.Context, conn *websocket.Conn) {
	t := time.NewTicker(c.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, c.cfg.PingInterval)
		start := time.Now()
		err := conn.Ping(pctx)
		rtt := time.Since(start)
		cancel()
		if err == nil {
			c.mu.Lock()
			c.tr.rtt = rtt
			c.mu.Unlock()
		}
	}
}
