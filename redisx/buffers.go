package redisx

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// BufferWatch follows successive Introspections of one deployment and
// names the Pub/Sub clients Redis disconnected at the output buffer limit
// (client-output-buffer-limit pubsub): the event the radar exists to
// catch, since such a client simply vanishes from CLIENT LIST. A client
// that vanishes while its output buffer was above the soft limit, or past
// half the hard limit, is reported; so is every increase of INFO's
// client_output_buffer_limit_disconnections (Redis 7.2+), which also
// names the vanished clients with the fullest buffers when no client was
// seen near a limit. It is not safe for concurrent use.
type BufferWatch struct {
	primed bool
	seen   map[clientKey]PubSubClient
	limit  OutputBufferLimit
	disc   int64 // INFO's counter, -1 when the server has none
}

type clientKey struct {
	node string
	id   int64
	addr string
}

func keyOf(c PubSubClient) clientKey { return clientKey{c.Node, c.ID, c.Addr} }

// BufferEvent is one disconnect at the output buffer limit.
type BufferEvent struct {
	// Client is the client as last seen (Addr empty for an event that only
	// INFO's counter reports).
	Client PubSubClient
	// Disconnections is the increase of INFO's counter for a counter
	// event, and its value before and after.
	Disconnections, Before, After int64
	Message                       string
}

// DisconnectedByLimit is the phrase every client event carries.
const DisconnectedByLimit = "disconnected by Redis (output buffer limit)"

// Observe takes the next Introspection and returns what happened since
// the previous one. The first call only takes note. Rounds in which CLIENT
// LIST or a node could not be read say nothing about vanished clients.
func (w *BufferWatch) Observe(in Introspection) []BufferEvent {
	if in.Limit.Available {
		w.limit = in.Limit
	}
	disc := int64(-1)
	if v, ok := in.Info[infoBufferDisconnections]; ok {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			disc = n
		}
	}
	listed := true
	for _, u := range in.Unavailable {
		if strings.Contains(u, "CLIENT LIST") || strings.HasPrefix(u, "node ") {
			listed = false
		}
	}
	now := make(map[clientKey]PubSubClient, len(in.Clients))
	for _, c := range in.Clients {
		now[keyOf(c)] = c
	}
	if !w.primed {
		w.primed, w.disc = true, disc
		if listed {
			w.seen = now
		}
		return nil
	}

	var events []BufferEvent
	var gone []PubSubClient
	if listed && w.seen != nil {
		for k, c := range w.seen {
			if _, ok := now[k]; !ok {
				gone = append(gone, c)
			}
		}
	}
	// Fullest buffers first: with only the counter to go by, they are
	// the likeliest to have been cut off.
	slices.SortFunc(gone, func(a, b PubSubClient) int {
		return cmp.Or(cmp.Compare(b.OMem, a.OMem), strings.Compare(a.Node, b.Node), strings.Compare(a.Addr, b.Addr))
	})
	increase := int64(0)
	if disc >= 0 && w.disc >= 0 && disc > w.disc {
		increase = disc - w.disc
		events = append(events, BufferEvent{
			Disconnections: increase, Before: w.disc, After: disc,
			Message: fmt.Sprintf("Redis disconnected %d client(s) at the output buffer limit (INFO %s %d -> %d)",
				increase, infoBufferDisconnections, w.disc, disc),
		})
	}
	attributed := int64(0)
	for _, c := range gone {
		why := w.nearLimit(c.OMem)
		if why == "" && attributed < increase {
			why = fmt.Sprintf("INFO %s rose by %d as it vanished", infoBufferDisconnections, increase)
		}
		if why == "" {
			continue // an ordinary disconnect
		}
		attributed++
		events = append(events, BufferEvent{Client: c, Message: fmt.Sprintf("pub/sub client %s %s: %s%s",
			describeClient(c), DisconnectedByLimit, why, w.limitHint())})
	}
	if listed {
		w.seen = now
	}
	if disc >= 0 {
		w.disc = disc
	}
	return events
}

// nearLimit says why a client with omem bytes buffered was at the limit,
// or "" when it was not.
func (w *BufferWatch) nearLimit(omem int64) string {
	l := w.limit
	switch {
	case !l.Available || omem <= 0:
		return ""
	case l.Soft > 0 && omem >= l.Soft:
		return fmt.Sprintf("its output buffer held %s, above the soft limit of %s", bytesText(omem), bytesText(l.Soft))
	case l.Hard > 0 && omem*2 >= l.Hard:
		return fmt.Sprintf("its output buffer held %s of the hard limit of %s", bytesText(omem), bytesText(l.Hard))
	}
	return ""
}

func (w *BufferWatch) limitHint() string {
	l := w.limit
	if !l.Available {
		return " (a subscriber that reads too slowly; see client-output-buffer-limit pubsub)"
	}
	return fmt.Sprintf(" (a subscriber that reads too slowly; client-output-buffer-limit pubsub %d %d %d)", l.Hard, l.Soft, l.SoftSeconds)
}

func describeClient(c PubSubClient) string {
	s := c.Addr
	if c.Name != "" {
		s += " (" + c.Name + ")"
	}
	if c.Node != "" {
		s += " on " + c.Node
	}
	return s
}

// bytesText is a byte count for people: 1.5 MiB, 960 KiB, 512 B.
func bytesText(n int64) string {
	switch {
	case n >= 1<<30:
		return strconv.FormatFloat(float64(n)/(1<<30), 'f', 1, 64) + " GiB"
	case n >= 1<<20:
		return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB"
	case n >= 1<<10:
		return strconv.FormatInt(n>>10, 10) + " KiB"
	}
	return strconv.FormatInt(n, 10) + " B"
}

// bufferDisconnections reads INFO's client_output_buffer_limit_disconnections
// on the node at ep; ok is false when the node does not answer or has no
// such counter (before Redis 7.2).
func (c *Client) bufferDisconnections(ctx context.Context, ep endpoint) (n int64, ok bool) {
	rc := c.newNodeClient(ep)
	defer rc.Close()
	text, err := rc.Info(ctx, "stats").Result()
	if err != nil {
		return 0, false
	}
	n, err = strconv.ParseInt(parseInfo(text)[infoBufferDisconnections], 10, 64)
	return n, err == nil
}

// behindBytes is how many bytes must have been queued for fanscope, read
// without waiting right before a live server closed the connection, for
// the close to be put down to the output buffer limit when Redis does not
// count those kills (before 7.2): at the kill, the kernel's buffers
// between Redis and fanscope were full.
const behindBytes = 32 << 10

// lossEvidence is what is known when the server closed a subscription
// connection.
type lossEvidence struct {
	up            bool // the node answered right after
	before, after int64
	counted       bool // before and after are INFO's counter (Redis 7.2+)
	limit         OutputBufferLimit
	backlog       int64 // bytes read without waiting right before the close
}

const bufferLoss = "the messages Redis still held for fanscope when it cut the subscription off are lost, and any published until it resubscribes"

// explainLoss says why a live server closed fanscope's subscription and
// which messages that cost: an output buffer kill loses what was queued
// before it, not only what the gap misses.
func explainLoss(ev lossEvidence) (reason, loss string) {
	limit := "client-output-buffer-limit pubsub"
	if ev.limit.Available {
		limit = fmt.Sprintf("client-output-buffer-limit pubsub %d %d %d", ev.limit.Hard, ev.limit.Soft, ev.limit.SoftSeconds)
	}
	switch {
	case !ev.up:
		return "connection lost: the server closed the connection", ""
	case ev.counted && ev.after > ev.before:
		return fmt.Sprintf("Redis closed fanscope's subscription at the output buffer limit: fanscope read too slowly (INFO %s %d -> %d; %s)",
			infoBufferDisconnections, ev.before, ev.after, limit), bufferLoss
	case ev.counted:
		return fmt.Sprintf("the server closed the connection and is still up: CLIENT KILL or the timeout setting (not the output buffer limit: INFO %s unchanged)",
			infoBufferDisconnections), ""
	case ev.backlog >= behindBytes:
		return fmt.Sprintf("the server closed the connection while fanscope was behind (%s were still queued to it): most likely Redis's output buffer limit (%s; Redis 7.2+ counts these in INFO %s)",
			bytesText(ev.backlog), limit, infoBufferDisconnections), bufferLoss
	}
	return fmt.Sprintf("the server closed the connection and is still up: CLIENT KILL, the timeout setting, or the output buffer limit (%s) if fanscope fell behind", limit), ""
}

// closedByServer explains a subscription connection that the server
// closed, asking the node right away whether it is up and whether it
// counted an output buffer kill.
func (l *link) closedByServer(ctx context.Context, sc *subConn) string {
	c := l.s.c
	ev := lossEvidence{backlog: sc.in.backlog, before: l.discBase.Load()}
	qctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	rc := c.newNodeClient(sc.ep)
	defer rc.Close()
	if text, err := rc.Info(qctx, "stats").Result(); err == nil {
		ev.up = true
		if n, err := strconv.ParseInt(parseInfo(text)[infoBufferDisconnections], 10, 64); err == nil && ev.before >= 0 {
			ev.after, ev.counted = n, true
		}
		ev.limit = outputBufferLimit(qctx, rc)
	}
	reason, loss := explainLoss(ev)
	sc.loss = loss
	return reason
}
