package ssex

import (
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/fanscope/fanscope/feed"
)

// streamState is what a stream carries from one step to the next: its
// read loop's bookkeeping and its body.
type streamState struct {
	rs   *readState
	r    bodyReader
	emit func(Observation) // rs.observe
}

// stream reads an event stream until it ends, or, on a connection read
// without blocking, until it has no bytes to read: then it returns parked,
// and Run calls it again once bytes come. Its buffer is let go of while
// parked.
func (a *attempt) stream() (out *outcome, parked bool) {
	c, wd := a.c, a.wd
	if a.ss == nil {
		a.ss = &streamState{rs: a.noteConnected(), r: bodyReader{body: a.body}}
		if b, ok := a.body.(*connBody); ok {
			a.ss.r.direct = b
		}
		a.ss.emit = a.ss.rs.observe
	}
	rs, r := a.ss.rs, &a.ss.r
	if a.raw != nil {
		r.direct.unpark()
	}
	emit := a.ss.emit
	n := 0           // bytes of the current read fed so far
	var at time.Time // when the current read returned
	for {
		chunk, err := r.next()
		if err == errWouldBlock {
			// A read's count is flushed before the next read (!r.more()),
			// but for a chunk size line whose data is still to come.
			if n > 0 {
				rs.afterRead(n, at)
			}
			rs.idle()
			r.direct.park()
			return nil, true
		}
		var perr error
		if len(chunk) > 0 {
			if n == 0 {
				at = time.Now()
				wd.touch(at)
				rs.events, rs.comments = 0, 0
			}
			n += len(chunk)
			perr = c.parser.Feed(chunk, at, emit)
		}
		// Counters and burst detection go by read: the chunks one read
		// brought in count as one, as net/http's chunked reader returns them.
		if n > 0 && (err != nil || perr != nil || !r.more()) {
			rs.afterRead(n, at)
			n = 0
		}
		if perr != nil {
			return rs.ended(&outcome{connected: true, status: http.StatusOK, reason: "parse stream: " + perr.Error()}), false
		}
		if err != nil {
			return rs.ended(a.streamEnded(err)), false
		}
	}
}

// noteConnected records a new connection and returns the read loop's state.
func (a *attempt) noteConnected() *readState {
	c := a.c
	now := time.Now()
	c.parser.Reset()
	c.mu.Lock()
	d := &c.diag
	d.Connects++
	d.ConnectedAt = now
	d.TimeToFirstEvent = 0
	d.StallAfter = c.initialStall()
	if a.lastID != "" {
		d.LastEventIDSent = a.lastID
		d.LastEventIDHonoured = "unknown"
		d.ResumeDetail = "no event with a new id since the reconnect"
	}
	c.mu.Unlock()
	c.connectedOnce.Do(func() { close(c.connected) })
	c.emitState(a.sink, feed.StateConnected, http.StatusOK, "", a.n)

	rs := &readState{c: c, sink: a.sink, wd: a.wd, start: a.start, connectedAt: now, prevRead: now}
	if a.lastID != "" {
		rs.resume.start(a.lastID)
	}
	return rs
}

// streamEnded says why a stream's read failed.
func (a *attempt) streamEnded(err error) *outcome {
	out := &outcome{connected: true, status: http.StatusOK}
	switch {
	case errors.Is(err, io.EOF):
		out.reason = "server closed the stream"
	case a.ctx.Err() != nil:
		out.reason = "stopped"
	case a.wd.stalled():
		out.reason = a.c.stallReason(true, time.Duration(a.wd.threshold.Load()))
	default:
		out.reason = "read stream: " + err.Error()
	}
	return out
}

// ended adds what the read loop counted to how the stream ended.
func (rs *readState) ended(out *outcome) *outcome {
	out.events = rs.total
	out.lasted = time.Since(rs.connectedAt)
	return out
}

// bodyReader reads an event stream's body: in place from a direct
// connection's buffer, or through the client's read buffer.
type bodyReader struct {
	direct *connBody
	body   io.Reader
	buf    []byte // the read buffer of a body not read in place (proxies, gzip)
}

// more reports whether next has bytes without reading from the connection.
func (r *bodyReader) more() bool { return r.direct != nil && r.direct.more() }

func (r *bodyReader) next() ([]byte, error) {
	if r.direct != nil {
		return r.direct.next()
	}
	if r.buf == nil {
		r.buf = make([]byte, readBufSize)
	}
	n, err := r.body.Read(r.buf)
	return r.buf[:n], err
}

// readState is the per-connection bookkeeping of the read loop; only the
// Run goroutine touches it.
type readState struct {
	c    *Client
	sink feed.Sink
	wd   *watchdog
	// The stall threshold is learned from these (stallThreshold).
	keepAlives  int64
	maxGap      time.Duration
	start       time.Time // request sent
	connectedAt time.Time
	prevRead    time.Time
	events      int   // completed by the current read
	total       int64 // events on this connection
	comments    int
	lastID      string
	gotEvent    bool
	resume      resumeCheck
}

// observe turns one parser observation into a record.
func (rs *readState) observe(o Observation) {
	c := rs.c
	r := feed.Record{
		TS:       o.At,
		Source:   feed.SourceSSE,
		Endpoint: c.cfg.Name,
		Conn:     c.cfg.Conn,
	}
	switch o.Kind {
	case ObsEvent:
		r.Kind, r.Type, r.ID, r.Data = feed.KindEvent, o.Type, o.LastEventID, o.Data
		rs.events++
		rs.total++
		rs.lastID = o.LastEventID
		if !rs.gotEvent {
			rs.gotEvent = true
			c.mu.Lock()
			c.diag.TimeToFirstEvent = o.At.Sub(rs.start)
			c.mu.Unlock()
		}
		if rs.resume.active() && rs.resume.see(o.LastEventID) {
			c.mu.Lock()
			c.diag.LastEventIDHonoured, c.diag.ResumeDetail = rs.resume.verdict, rs.resume.detail
			c.mu.Unlock()
		}
	case ObsComment:
		r.Kind, r.Data = feed.KindComment, o.Data
		rs.comments++
	case ObsRetry:
		r.Kind, r.RetryMS = feed.KindRetry, o.RetryMS
		c.mu.Lock()
		c.diag.RetryMS = o.RetryMS
		c.diag.RetryFromServer = true
		c.mu.Unlock()
	case ObsSkipped:
		// Counted, not recorded: a browser would have dispatched it, but
		// holding it would take more than the cap.
		c.mu.Lock()
		c.diag.Skipped++
		c.diag.LastSkippedID = o.LastEventID
		c.mu.Unlock()
		return
	default:
		return
	}
	rs.sink.Emit(r)
}

// idle lets go of what a parked stream does not need: the last event's
// data, which the last event ID string shares an allocation with
// (Parser.idle); the copies of that string here and in the diagnostics
// are replaced by the parser's own copy.
func (rs *readState) idle() {
	c := rs.c
	old := c.parser.idle()
	if old == "" {
		return
	}
	id := c.parser.LastEventID()
	if rs.lastID == old {
		rs.lastID = id
	}
	c.mu.Lock()
	if c.diag.LastEventID == old {
		c.diag.LastEventID = id
	}
	c.mu.Unlock()
}

// afterRead updates the counters once per read rather than once per event.
func (rs *readState) afterRead(n int, at time.Time) {
	c := rs.c
	quiet := at.Sub(rs.prevRead)
	rs.prevRead = at
	// A stall is not the server's cadence: gaps past the threshold do not
	// teach it, or one freeze would make the next one go unnoticed.
	thr := time.Duration(rs.wd.threshold.Load())
	if thr == 0 || quiet < thr {
		rs.maxGap = max(rs.maxGap, quiet)
	}
	rs.keepAlives += int64(rs.comments)
	if thr > 0 {
		thr = stallThreshold(c.cfg.StallTimeout, rs.keepAlives, rs.maxGap)
		rs.wd.setThreshold(thr)
	}
	c.mu.Lock()
	d := &c.diag
	d.Bytes += int64(n)
	d.LastByte = at
	d.StallAfter = thr
	if rs.events > 0 {
		d.Events += int64(rs.events)
		d.LastEvent = at
		d.LastEventID = rs.lastID
		if rs.events >= c.burstMin && quiet >= c.burstQuiet {
			d.Bursts++
			d.lastBurst = rs.events
		}
	}
	if rs.comments > 0 {
		d.Comments += int64(rs.comments)
		d.LastComment = at
	}
	c.mu.Unlock()
}
