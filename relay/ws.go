package relay

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// WSPath serves the same events over WebSocket: one text message per
// event, the JSON object {"id","type","channel","data"} that the poll
// endpoint lists too.
const WSPath = "/ws"

// wsClient is one WebSocket client: its own goroutine writes its own bounded
// queue, so a client that stops reading only fills its own queue (and is
// dropped past the bound) while the fan-out goes on.
type wsClient struct {
	r      *Relay
	ws     *websocket.Conn
	remote string
	since  time.Time
	wake   chan struct{}

	maxFrames, maxBytes int

	mu      sync.Mutex
	q       [][]byte
	qBytes  int
	pingDue bool
	dead    bool
	reason  string
	sent    uint64
	cancel  context.CancelFunc
}

func (c *wsClient) deliver(ev *event) bool {
	c.mu.Lock()
	if c.dead {
		c.mu.Unlock()
		return true
	}
	if len(c.q) > 0 && (len(c.q)+1 > c.maxFrames || c.qBytes+len(ev.obj) > c.maxBytes) {
		c.mu.Unlock()
		c.shut(reasonTooSlow)
		return false
	}
	c.q = append(c.q, ev.obj)
	c.qBytes += len(ev.obj)
	c.sent++
	c.mu.Unlock()
	c.poke()
	return true
}

func (c *wsClient) ping() {
	c.mu.Lock()
	c.pingDue = true
	c.mu.Unlock()
	c.poke()
}

func (c *wsClient) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *wsClient) shut(reason string) {
	c.mu.Lock()
	if c.dead {
		c.mu.Unlock()
		return
	}
	c.dead = true
	c.reason = reason
	c.q, c.qBytes = nil, 0
	c.mu.Unlock()
	c.r.noteDrop(reason)
	c.cancel()
}

// run writes the queue until the client leaves or is dropped.
func (c *wsClient) run(ctx context.Context) {
	timeout := c.r.cfg.WriteTimeout
	for {
		select {
		case <-ctx.Done():
			c.shut(reasonGone)
			return
		case <-c.wake:
		}
		for {
			c.mu.Lock()
			if c.dead {
				c.mu.Unlock()
				return
			}
			var msg []byte
			ping := false
			if len(c.q) > 0 {
				msg = c.q[0]
				c.q[0] = nil
				c.q = c.q[1:]
				c.qBytes -= len(msg)
				if len(c.q) == 0 {
					c.q = nil
				}
			} else if c.pingDue {
				c.pingDue, ping = false, true
			}
			c.mu.Unlock()
			if msg == nil && !ping {
				break
			}
			wctx, cancel := context.WithTimeout(ctx, timeout)
			var err error
			if ping {
				err = c.ws.Ping(wctx)
			} else {
				err = c.ws.Write(wctx, websocket.MessageText, msg)
			}
			timedOut := errors.Is(wctx.Err(), context.DeadlineExceeded)
			cancel()
			if err != nil {
				switch {
				case ctx.Err() != nil:
					c.shut(reasonGone)
				case timedOut:
					c.shut(reasonWriteTimeout)
				default:
					c.shut("write failed: " + err.Error())
				}
				return
			}
		}
	}
}

// serveWS upgrades an authorized request and streams events to it. A
// client resuming passes the last id it has as ?last_event_id=N (browsers
// cannot set headers on a WebSocket) or a Last-Event-ID header.
func (r *Relay) serveWS(w http.ResponseWriter, req *http.Request) {
	if !r.authorized(req) {
		r.unauthorized(w)
		return
	}
	lastID, hasLast := r.parseLastID(req, req.URL.Query().Get("last_event_id"))
	opts := &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled}
	switch o := r.cfg.AllowOrigin; {
	case o == "*":
		opts.InsecureSkipVerify = true
	case o != "":
		if u, err := url.Parse(o); err == nil {
			opts.OriginPatterns = []string{u.Host}
		}
	}
	ws, err := websocket.Accept(w, req, opts)
	if err != nil {
		return // Accept has answered (400, 403 for a foreign origin, ...)
	}
	ws.SetReadLimit(4096) // clients have nothing to say but control frames
	ctx, cancel := context.WithCancel(ws.CloseRead(req.Context()))
	defer cancel()
	c := &wsClient{r: r, ws: ws, remote: req.RemoteAddr, since: time.Now(), wake: make(chan struct{}, 1), cancel: cancel}
	a, ok := r.attach(c, lastID, hasLast, func(evs []*event) {
		for _, ev := range evs {
			c.q = append(c.q, ev.obj)
			c.qBytes += len(ev.obj)
		}
		c.maxFrames = len(evs) + r.cfg.ClientQueue
		c.maxBytes = c.qBytes + r.cfg.ClientQueueBytes
		c.sent += uint64(len(evs))
	})
	if !ok {
		ws.Close(websocket.StatusGoingAway, "relay shutting down")
		return
	}
	defer r.wg.Done()
	r.logConnect("ws client connected", c.remote, lastID, hasLast, a)
	c.poke()
	c.run(ctx)
	c.mu.Lock()
	reason, sent := c.reason, c.sent
	c.mu.Unlock()
	switch {
	case reason == reasonGone:
		ws.CloseNow()
	case strings.HasPrefix(reason, "too slow"):
		ws.Close(websocket.StatusPolicyViolation, "too slow")
	case reason == reasonShutdown:
		ws.Close(websocket.StatusGoingAway, "relay shutting down")
	default:
		ws.CloseNow()
	}
	r.detach(c, "ws", c.remote, reason, sent, c.since)
}

// parseLastID reads Last-Event-ID (or alt, the same from the query).
func (r *Relay) parseLastID(req *http.Request, alt string) (uint64, bool) {
	v := req.Header.Get("Last-Event-ID")
	if v == "" {
		v = alt
	}
	if v == "" {
		return 0, false
	}
	id, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
	if err != nil {
		r.log.Warn("client sent a Last-Event-ID this relay never issues; not replaying", "remote", req.RemoteAddr, "last_event_id", v)
		return 0, false
	}
	return id, true
}

func (c *wsClient) queued() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.qBytes
}
