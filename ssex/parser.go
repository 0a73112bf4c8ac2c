package ssex

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"
	"unicode/utf8"
)

// ObservationKind says what a parser observation is.
type ObservationKind uint8

const (
	// ObsEvent is an event a browser's EventSource would dispatch.
	ObsEvent ObservationKind = iota + 1
	// ObsComment is a comment line (a line starting with ':'), e.g. a keep-alive.
	ObsComment
	// ObsRetry is a retry field whose value is all ASCII digits.
	ObsRetry
	// ObsSkipped is an event that was not dispatched because a line of it,
	// or its data, passed the cap (a parser made with SkipOversized).
	// LastEventID is the last event ID in force after it.
	ObsSkipped
)

// String returns the kind's name as records show it: event, comment, retry.
func (k ObservationKind) String() string {
	switch k {
	case ObsEvent:
		return "event"
	case ObsComment:
		return "comment"
	case ObsRetry:
		return "retry"
	case ObsSkipped:
		return "skipped"
	}
	return "unknown"
}

// Observation is one thing the parser saw in the stream.
type Observation struct {
	Kind ObservationKind
	// Type is the event type of an ObsEvent, "message" when the stream set none.
	Type string
	// Data is the event data of an ObsEvent (lines joined with LF), or the text
	// of an ObsComment after the colon, with one leading space removed.
	Data string
	// LastEventID is the last event ID in force when an ObsEvent was dispatched.
	LastEventID string
	// RetryMS is the reconnection time of an ObsRetry, in milliseconds.
	RetryMS int64
	// At is the time passed to Feed with the chunk that completed the observation.
	At time.Time
}

// DefaultMaxLine is the line length cap used when NewParser gets maxLine <= 0.
const DefaultMaxLine = 16 << 20

// ErrLineTooLong is wrapped by the error Feed returns when a line, or the data
// of one event, grows past the parser's cap.
var ErrLineTooLong = errors.New("event stream line too long")

var bom = [3]byte{0xEF, 0xBB, 0xBF}

// Parser decodes an event stream as HTML §9.2.5-9.2.6 say a browser must.
// Feed it the bytes of each read in order; call Reset when a new connection
// starts. A Parser is not safe for concurrent use.
type Parser struct {
	maxLine int
	skip    bool  // skip oversized events instead of failing
	err     error // sticky until Reset

	// Skipping: the rest of an oversized line is being dropped, and the
	// event block it belongs to will not be dispatched.
	discarding bool
	oversized  bool
	at         time.Time
	emit       func(Observation)

	// Byte-level state: BOM detection and the WHATWG UTF-8 decoder.
	bomDone bool
	bomN    int // leading BOM bytes matched so far
	need    int // UTF-8 decoder: bytes needed, seen, code point, bounds
	seen    int
	cp      rune
	lower   byte
	upper   byte
	dec     []byte // decoded text of the slow path, reused

	// Line and field state.
	sawCR bool   // the last decoded character was CR: a following LF is part of that line end
	line  []byte // a line not yet terminated
	data  []byte // data buffer
	typ   []byte // event type buffer
	idBuf []byte // last event ID buffer
	id    string // last event ID string (set at each dispatch)
	both  []byte // scratch: a new id and its event's data, made into one string

	lastType string // interned event type, to avoid allocating it per event
}

// NewParser returns a parser that fails with ErrLineTooLong on a line, or the
// data of one event, longer than maxLine bytes. maxLine <= 0 means DefaultMaxLine.
func NewParser(maxLine int) *Parser {
	if maxLine <= 0 {
		maxLine = DefaultMaxLine
	}
	return &Parser{maxLine: maxLine, lower: 0x80, upper: 0xBF}
}

// SkipOversized makes the parser skip an event with a line, or data,
// longer than the cap, as one observation of kind ObsSkipped, and go on
// with the stream instead of failing. A comment line over the cap is
// dropped. Memory stays bounded by the cap either way.
func (p *Parser) SkipOversized() { p.skip = true }

// LastEventID returns the last event ID string: what a browser would send as
// Last-Event-ID when it reconnects now.
func (p *Parser) LastEventID() string { return p.id }

// Reset starts a new stream (a new connection): the BOM, decoder, line, data
// and event type state are cleared. The last event ID is kept, as a browser
// keeps it across reconnections; an id of a block that was never finished is
// dropped with the block.
func (p *Parser) Reset() {
	p.err = nil
	p.bomDone, p.bomN = false, 0
	p.need, p.seen, p.cp, p.lower, p.upper = 0, 0, 0, 0x80, 0xBF
	p.dec = p.dec[:0]
	p.sawCR = false
	p.discarding, p.oversized = false, false
	p.line = shrink(p.line)
	p.data = shrink(p.data)
	p.typ = p.typ[:0]
	p.idBuf = append(p.idBuf[:0], p.id...)
}

// idle prepares the parser for a wait: the last event ID string, which
// shares one allocation with its event's data (dispatch), is copied out
// of it, so that the data is not kept while the stream waits; idle returns
// the string it was. The line and data buffers are kept: made again for
// every event, their garbage (about 1 KB an event) would cost more peak
// memory than keeping them.
func (p *Parser) idle() (oldID string) {
	oldID = p.id
	if p.id != "" {
		p.id = strings.Clone(p.id)
	}
	return oldID
}

// Feed parses the next chunk of the stream, calling emit (if not nil) for
// every observation the chunk completes, in stream order, stamped with at.
// Feed does not keep chunk. It returns an error wrapping ErrLineTooLong when a
// line or an event's data passes the cap; the parser then refuses further
// input until Reset. emit must not call back into the parser.
func (p *Parser) Feed(chunk []byte, at time.Time, emit func(Observation)) error {
	if p.err != nil {
		return p.err
	}
	if emit == nil {
		emit = func(Observation) {}
	}
	p.at, p.emit = at, emit
	defer func() { p.emit = nil }()

	// One leading BOM is stripped, even when it arrives a byte at a time.
	for !p.bomDone && len(chunk) > 0 {
		if chunk[0] == bom[p.bomN] {
			p.bomN++
			chunk = chunk[1:]
			if p.bomN == len(bom) {
				p.bomDone = true
			}
			continue
		}
		// Not a BOM after all: the bytes held back are text.
		p.bomDone = true
		p.decode(bom[:p.bomN])
	}
	if !p.bomDone {
		return nil
	}

	// Finish a multibyte sequence left open by the previous chunk.
	for p.need > 0 && len(chunk) > 0 {
		p.decode(chunk[:1])
		chunk = chunk[1:]
	}
	if err := p.flushDecoded(); err != nil {
		return err
	}

	// Fast path: valid UTF-8 needs no decoding, only an open sequence at the end.
	tail := openTail(chunk)
	body := chunk[:len(chunk)-tail]
	if utf8.Valid(body) {
		if err := p.text(body); err != nil {
			return err
		}
	} else {
		p.decode(body)
		if err := p.flushDecoded(); err != nil {
			return err
		}
	}
	p.decode(chunk[len(chunk)-tail:])
	return p.flushDecoded()
}

func (p *Parser) flushDecoded() error {
	if len(p.dec) == 0 {
		return nil
	}
	err := p.text(p.dec)
	p.dec = p.dec[:0]
	return err
}

// openTail returns the length of a multibyte sequence that starts in the last
// three bytes of b and is not complete yet.
func openTail(b []byte) int {
	for i := len(b) - 1; i >= 0 && i >= len(b)-3; i-- {
		c := b[i]
		if c < 0x80 {
			return 0
		}
		if c >= 0xC0 {
			n := 0
			switch {
			case c >= 0xF0:
				n = 4
			case c >= 0xE0:
				n = 3
			default:
				n = 2
			}
			if len(b)-i < n {
				return len(b) - i
			}
			return 0
		}
	}
	return 0
}

// decode runs the WHATWG UTF-8 decoder over b, appending to p.dec. Invalid
// input becomes U+FFFD, one per maximal subpart, as in a browser.
func (p *Parser) decode(b []byte) {
	for i := 0; i < len(b); i++ {
		c := b[i]
		if p.need == 0 {
			switch {
			case c < 0x80:
				p.dec = append(p.dec, c)
			case c >= 0xC2 && c <= 0xDF:
				p.need, p.cp = 1, rune(c&0x1F)
			case c >= 0xE0 && c <= 0xEF:
				if c == 0xE0 {
					p.lower = 0xA0
				} else if c == 0xED {
					p.upper = 0x9F
				}
				p.need, p.cp = 2, rune(c&0x0F)
			case c >= 0xF0 && c <= 0xF4:
				if c == 0xF0 {
					p.lower = 0x90
				} else if c == 0xF4 {
					p.upper = 0x8F
				}
				p.need, p.cp = 3, rune(c&0x07)
			default:
				p.dec = utf8.AppendRune(p.dec, utf8.RuneError)
			}
			continue
		}
		if c < p.lower || c > p.upper {
			// The sequence so far is one error; c starts over.
			p.need, p.seen, p.cp, p.lower, p.upper = 0, 0, 0, 0x80, 0xBF
			p.dec = utf8.AppendRune(p.dec, utf8.RuneError)
			i--
			continue
		}
		p.lower, p.upper = 0x80, 0xBF
		p.cp = p.cp<<6 | rune(c&0x3F)
		p.seen++
		if p.seen == p.need {
			p.dec = utf8.AppendRune(p.dec, p.cp)
			p.need, p.seen, p.cp = 0, 0, 0
		}
	}
}

// text splits decoded (valid UTF-8) text into lines at CR, LF and CRLF.
func (p *Parser) text(b []byte) error {
	// nextCR/nextLF cache the positions found by IndexByte, so a stream
	// without CR is not rescanned for one at every line.
	nextCR, nextLF := -1, -1
	off := 0
	for off < len(b) {
		if p.sawCR {
			p.sawCR = false
			if b[off] == '\n' {
				off++
				continue
			}
		}
		if nextCR != len(b) && nextCR < off {
			if i := bytes.IndexByte(b[off:], '\r'); i >= 0 {
				nextCR = off + i
			} else {
				nextCR = len(b)
			}
		}
		if nextLF != len(b) && nextLF < off {
			if i := bytes.IndexByte(b[off:], '\n'); i >= 0 {
				nextLF = off + i
			} else {
				nextLF = len(b)
			}
		}
		end := min(nextCR, nextLF)
		if p.discarding {
			// The rest of an oversized line: dropped up to its end.
			if end == len(b) {
				return nil
			}
			p.discarding = false
			p.sawCR = b[end] == '\r'
			off = end + 1
			continue
		}
		if end == len(b) {
			if len(p.line)+len(b)-off > p.maxLine {
				if err := p.overflow(b[off:]); err != nil {
					return err
				}
				p.discarding = true
				return nil
			}
			p.line = append(p.line, b[off:]...)
			return nil
		}
		line := b[off:end]
		if len(p.line)+len(line) > p.maxLine {
			if err := p.overflow(line); err != nil {
				return err
			}
		} else {
			if len(p.line) > 0 {
				p.line = append(p.line, line...)
				line = p.line
			}
			if err := p.processLine(line); err != nil {
				return err
			}
		}
		if len(p.line) > 0 {
			p.line = shrink(p.line)
		}
		p.sawCR = b[end] == '\r'
		off = end + 1
	}
	return nil
}

// overflow handles a line that passed the cap, whose bytes so far are
// p.line then rest: an error, or when skipping, the line is dropped and
// its event (unless it is a comment) will be skipped.
func (p *Parser) overflow(rest []byte) error {
	if !p.skip {
		return p.fail(p.lineErr())
	}
	first := rest
	if len(p.line) > 0 {
		first = p.line
	}
	if len(first) == 0 || first[0] != ':' {
		p.oversized = true
		p.data = shrink(p.data)
	}
	p.line = shrink(p.line)
	return nil
}

func (p *Parser) lineErr() error {
	return fmt.Errorf("parse event stream: a line is longer than the %d-byte limit: %w", p.maxLine, ErrLineTooLong)
}

func (p *Parser) fail(err error) error {
	p.err = err
	return err
}

// shrink empties a buffer, dropping it when one huge line or event grew it.
func shrink(b []byte) []byte {
	if cap(b) > 1<<20 {
		return nil
	}
	return b[:0]
}

func (p *Parser) processLine(line []byte) error {
	if len(line) == 0 {
		p.dispatch()
		return nil
	}
	if line[0] == ':' {
		text := line[1:]
		if len(text) > 0 && text[0] == ' ' {
			text = text[1:]
		}
		p.emit(Observation{Kind: ObsComment, Data: string(text), At: p.at})
		return nil
	}
	var field, value []byte
	switch {
	// The usual fields are recognized without searching for the colon.
	case len(line) >= 5 && string(line[:5]) == "data:":
		field, value = line[:4], line[5:]
	case len(line) >= 3 && string(line[:3]) == "id:":
		field, value = line[:2], line[3:]
	case len(line) >= 6 && string(line[:6]) == "event:":
		field, value = line[:5], line[6:]
	default:
		field = line
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], line[i+1:]
		}
	}
	if len(value) > 0 && value[0] == ' ' {
		value = value[1:]
	}
	switch string(field) {
	case "event":
		p.typ = append(p.typ[:0], value...)
	case "data":
		if p.oversized {
			return nil
		}
		if len(p.data)+len(value)+1 > p.maxLine+1 {
			if p.skip {
				p.oversized = true
				p.data = shrink(p.data)
				return nil
			}
			return p.fail(fmt.Errorf("parse event stream: an event's data is longer than the %d-byte limit: %w", p.maxLine, ErrLineTooLong))
		}
		p.data = append(p.data, value...)
		p.data = append(p.data, '\n')
	case "id":
		if bytes.IndexByte(value, 0) < 0 {
			p.idBuf = append(p.idBuf[:0], value...)
		}
	case "retry":
		if ms, ok := parseRetry(value); ok {
			p.emit(Observation{Kind: ObsRetry, RetryMS: ms, At: p.at})
		}
	}
	return nil
}

// parseRetry accepts only ASCII digits, as the spec says; a value too large
// for an int64 is ignored like any other unusable one.
func parseRetry(v []byte) (int64, bool) {
	if len(v) == 0 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int64(c - '0')
		if n > (math.MaxInt64-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

func (p *Parser) dispatch() {
	newID := string(p.idBuf) != p.id
	if p.oversized {
		// Skipped, but its id counts, as it would have in a browser that
		// had the memory: a reconnect resumes after it, not at it.
		p.oversized = false
		if newID {
			p.id = string(p.idBuf)
		}
		p.data = shrink(p.data)
		p.typ = p.typ[:0]
		p.emit(Observation{Kind: ObsSkipped, LastEventID: p.id, At: p.at})
		return
	}
	if len(p.data) == 0 {
		if newID {
			p.id = string(p.idBuf)
		}
		p.typ = p.typ[:0]
		return
	}
	typ := "message"
	if len(p.typ) > 0 {
		if string(p.typ) != p.lastType {
			p.lastType = string(p.typ)
		}
		typ = p.lastType
	}
	data := p.data[:len(p.data)-1]
	var d string
	if newID {
		// Events usually carry a new id: one allocation holds both strings.
		p.both = append(append(p.both[:0], p.idBuf...), data...)
		s := string(p.both)
		p.id, d = s[:len(p.idBuf)], s[len(p.idBuf):]
		if cap(p.both) > 1<<20 {
			p.both = nil
		}
	} else {
		d = string(data)
	}
	p.emit(Observation{Kind: ObsEvent, Type: typ, Data: d, LastEventID: p.id, At: p.at})
	if cap(p.data) > 1<<20 {
		p.data = nil
	} else {
		p.data = p.data[:0]
	}
	p.typ = p.typ[:0]
}

// Reader yields the observations of an event stream read from an io.Reader,
// each stamped with the time the read that completed it returned. It is a
// convenience for tests, fuzzing and benchmarks; an unterminated last block
// is dropped at EOF, as a browser drops it.
type Reader struct {
	r     io.Reader
	p     *Parser
	buf   []byte
	queue []Observation
	next  int
	err   error
	push  func(Observation)
}

// NewReader returns a Reader over r with the line cap maxLine (<= 0 means
// DefaultMaxLine).
func NewReader(r io.Reader, maxLine int) *Reader {
	rd := &Reader{r: r, p: NewParser(maxLine), buf: make([]byte, 32<<10)}
	rd.push = func(o Observation) { rd.queue = append(rd.queue, o) }
	return rd
}

// Next returns the next observation, or io.EOF at the end of the stream, or
// the read or parse error that ended it.
func (r *Reader) Next() (Observation, error) {
	for {
		if r.next < len(r.queue) {
			o := r.queue[r.next]
			r.queue[r.next] = Observation{}
			r.next++
			return o, nil
		}
		if r.err != nil {
			return Observation{}, r.err
		}
		r.queue, r.next = r.queue[:0], 0
		n, err := r.r.Read(r.buf)
		if n > 0 {
			if perr := r.p.Feed(r.buf[:n], time.Now(), r.push); perr != nil {
				r.err = perr
				continue
			}
		}
		if err != nil {
			r.err = err
		}
	}
}
