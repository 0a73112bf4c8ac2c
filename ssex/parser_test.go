package ssex

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestObservationKindString(t *testing.T) {
	for _, c := range []struct {
		k    ObservationKind
		want string
	}{{ObsEvent, "event"}, {ObsComment, "comment"}, {ObsRetry, "retry"}, {0, "unknown"}} {
		if got := c.k.String(); got != c.want {
			t.Errorf("ObservationKind(%d).String(): got %q, want %q", c.k, got, c.want)
		}
	}
}

// TestParserRandomChunks feeds every conformance stream in many random
// chunkings; the result must not depend on where reads end.
func TestParserRandomChunks(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, c := range conformanceCases {
		in := []byte(c.in)
		for range 50 {
			var chunks [][]byte
			for rest := in; len(rest) > 0; {
				n := 1 + rng.IntN(min(len(rest), 8))
				chunks = append(chunks, rest[:n:n])
				rest = rest[n:]
			}
			got, last, err := feedAll(t, 0, chunks...)
			checkRun(t, fmt.Sprintf("%s in %d chunks", c.name, len(chunks)), c, got, last, err)
		}
	}
}

// TestParserReset covers a reconnection: everything but the last event ID
// string starts over, as when a browser opens a new stream.
func TestParserReset(t *testing.T) {
	cases := []struct {
		name   string
		first  string // the stream of the first connection
		second string // the stream after Reset
		want   []obs  // observations of the second stream
		last   string
	}{
		{"last id persists", "id: 7\ndata: a\n\n", "data: b\n\n", []obs{msg("b", "7")}, "7"},
		{"id-only block persists", "id: 8\n\n", "data: b\n\n", []obs{msg("b", "8")}, "8"},
		{"id of unfinished block dropped", "id: 7\ndata: a\n\nid: 9\ndata: x\n", "data: b\n\n", []obs{msg("b", "7")}, "7"},
		{"partial line dropped", "id: 1\n\ndata: par", "tial\n\n", []obs{}, "1"},
		{"data buffer dropped", "data: a\n", "data: b\n\n", []obs{msg("b", "")}, ""},
		{"event type dropped", "event: t\n", "data: b\n\n", []obs{msg("b", "")}, ""},
		{"bom stripped again", "\xEF\xBB\xBFdata: a\n\n", "\xEF\xBB\xBFdata: b\n\n", []obs{msg("b", "")}, ""},
		{"partial bom dropped", "\xEF\xBB", "\xBFdata: b\n\ndata: c\n\n", []obs{msg("c", "")}, ""},
		{"pending utf-8 dropped", "data: \xE2\x82", "\xACdata: b\n\ndata: c\n\n", []obs{msg("c", "")}, ""},
		{"cr does not join the next stream's lf", "data: a\n\ndata: b\r", "\ndata: c\n\n", []obs{msg("c", "")}, ""},
		{"empty id resets across reset", "id: 3\n\n", "id\ndata: b\n\n", []obs{msg("b", "")}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := NewParser(0)
			if err := p.Feed([]byte(c.first), time.Time{}, func(Observation) {}); err != nil {
				t.Fatalf("first stream: got error %v, want none", err)
			}
			p.Reset()
			got := []obs{}
			if err := p.Feed([]byte(c.second), time.Time{}, func(o Observation) { got = append(got, toObs(o)) }); err != nil {
				t.Fatalf("second stream: got error %v, want none", err)
			}
			if !slices.Equal(got, c.want) {
				t.Fatalf("got%s\nwant%s", describe(got), describe(c.want))
			}
			if p.LastEventID() != c.last {
				t.Fatalf("got LastEventID() %q, want %q", p.LastEventID(), c.last)
			}
		})
	}
}

// TestParserAt checks that each observation carries the time of the chunk
// that completed it, not of the chunk where it started.
func TestParserAt(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Second) }
	chunks := []string{
		"data: a\n",       // 0
		"\n: ping",        // 1: completes event a
		"\rretry: 5",      // 2: completes the comment (CR)
		"0\r",             // 3: completes retry 50
		"\ndata: b\n\r",   // 4: the LF belongs to the CRLF; b completed by the CR
		"\ndata: c\r\n\r", // 5: the LF ends the CRLF; c dispatched at the last CR
		"\n",              // 6: the LF of the final CRLF completes nothing
	}
	type stamp struct {
		o  obs
		at int
	}
	want := []stamp{{msg("a", ""), 1}, {cm("ping"), 2}, {rt(50), 3}, {msg("b", ""), 4}, {msg("c", ""), 5}}
	p := NewParser(0)
	var got []stamp
	for i, c := range chunks {
		err := p.Feed([]byte(c), at(i), func(o Observation) {
			got = append(got, stamp{toObs(o), int(o.At.Sub(t0) / time.Second)})
		})
		if err != nil {
			t.Fatalf("chunk %d: got error %v, want none", i, err)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestParserLimits(t *testing.T) {
	const max = 16
	line16 := strings.Repeat("x", 16)
	cases := []struct {
		name    string
		in      string
		want    []obs // observations before the error, or all of them
		wantErr bool
	}{
		{"line at the cap", "data:" + line16[5:] + "\n\n", []obs{msg(line16[5:], "")}, false},
		{"comment at the cap", ":" + line16[1:] + "\n", []obs{cm(line16[1:])}, false},
		{"line over the cap", "data: ok\n\ndata:" + line16[4:] + "\n\n", []obs{msg("ok", "")}, true},
		{"unterminated line over the cap", ": a\n" + line16 + "x", []obs{cm("a")}, true},
		{"comment over the cap", ":" + line16 + "\n", nil, true},
		{"decoded line over the cap", "data:" + strings.Repeat("\xFF", 4) + "\n", nil, true}, // 5 + 4*3 bytes once decoded
		{"data at the cap", "data:12345678\ndata:1234567\n\n", []obs{msg("12345678\n1234567", "")}, false},
		{"data over the cap", "data:12345678\ndata:12345678\n\n", nil, true},
		{"data cap is per event", "data:12345678\n\ndata:12345678\n\n", []obs{msg("12345678", ""), msg("12345678", "")}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := []byte(c.in)
			for k := 0; k <= len(in); k++ {
				got, _, err := feedAll(t, max, in[:k:k], in[k:])
				if c.wantErr {
					if !errors.Is(err, ErrLineTooLong) {
						t.Fatalf("split at %d: got error %v, want ErrLineTooLong", k, err)
					}
					if !strings.Contains(err.Error(), "16-byte limit") {
						t.Fatalf("split at %d: got error %q, want it to name the 16-byte limit", k, err)
					}
				} else if err != nil {
					t.Fatalf("split at %d: got error %v, want none", k, err)
				}
				if !slices.Equal(got, c.want) {
					t.Fatalf("split at %d: got%s\nwant%s", k, describe(got), describe(c.want))
				}
			}
		})
	}
}

func TestParserErrorIsStickyUntilReset(t *testing.T) {
	p := NewParser(8)
	nop := func(Observation) {}
	if err := p.Feed([]byte("data: 123456789\n"), time.Time{}, nop); !errors.Is(err, ErrLineTooLong) {
		t.Fatalf("got error %v, want ErrLineTooLong", err)
	}
	if err := p.Feed([]byte("data: a\n\n"), time.Time{}, nop); !errors.Is(err, ErrLineTooLong) {
		t.Fatalf("after the error: got %v, want ErrLineTooLong again", err)
	}
	p.Reset()
	var got []obs
	if err := p.Feed([]byte("data: a\n\n"), time.Time{}, func(o Observation) { got = append(got, toObs(o)) }); err != nil {
		t.Fatalf("after Reset: got error %v, want none", err)
	}
	if want := []obs{msg("a", "")}; !slices.Equal(got, want) {
		t.Fatalf("after Reset: got%s\nwant%s", describe(got), describe(want))
	}
}

func TestNewParserDefaultCap(t *testing.T) {
	for _, n := range []int{0, -1} {
		if got := NewParser(n).maxLine; got != DefaultMaxLine {
			t.Errorf("NewParser(%d) cap: got %d, want %d", n, got, DefaultMaxLine)
		}
	}
	if DefaultMaxLine != 16<<20 {
		t.Errorf("DefaultMaxLine: got %d, want %d", DefaultMaxLine, 16<<20)
	}
}

// chunkReader returns at most n bytes per Read, like a network connection.
type chunkReader struct {
	r io.Reader
	n int
}

func (c chunkReader) Read(p []byte) (int, error) { return c.r.Read(p[:min(len(p), c.n)]) }

func TestReaderLargeEvent(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 5<<20/16) // 5 MiB
	stream := ": ping\nevent: big\ndata: " + big + "\ndata: " + big[:100] + "\n\ndata: after\n\n"
	r := NewReader(chunkReader{strings.NewReader(stream), 4096}, 0)
	want := []obs{cm("ping"), ev("big", big+"\n"+big[:100], ""), msg("after", "")}
	for i, w := range want {
		o, err := r.Next()
		if err != nil {
			t.Fatalf("observation %d: got error %v, want none", i, err)
		}
		if got := toObs(o); got != w {
			t.Fatalf("observation %d: got kind %s type %q and %d bytes of data, want kind %s type %q and %d bytes",
				i, got.Kind, got.Type, len(got.Data), w.Kind, w.Type, len(w.Data))
		}
	}
	if _, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("at the end: got %v, want io.EOF", err)
	}
}

func TestReaderLineOverDefaultCap(t *testing.T) {
	stream := io.MultiReader(strings.NewReader("data: ok\n\ndata: "), io.LimitReader(zeros{}, DefaultMaxLine))
	r := NewReader(stream, 0)
	if o, err := r.Next(); err != nil || o.Data != "ok" {
		t.Fatalf("first: got %q, %v, want \"ok\", nil", o.Data, err)
	}
	_, err := r.Next()
	if !errors.Is(err, ErrLineTooLong) {
		t.Fatalf("got error %v, want ErrLineTooLong", err)
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("%d-byte limit", DefaultMaxLine)) {
		t.Fatalf("got error %q, want it to name the %d-byte limit", err, DefaultMaxLine)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	return len(p), nil
}

type failingReader struct {
	data []byte
	err  error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if len(f.data) == 0 {
		return 0, f.err
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	return n, nil
}

func TestReaderReturnsReadError(t *testing.T) {
	boom := errors.New("connection reset")
	r := NewReader(&failingReader{data: []byte("data: a\n\ndata: b\n"), err: boom}, 0)
	o, err := r.Next()
	if err != nil || o.Data != "a" {
		t.Fatalf("first: got %q, %v, want \"a\", nil", o.Data, err)
	}
	if o.At.IsZero() {
		t.Fatalf("first: got a zero At, want the read time")
	}
	for range 2 {
		if _, err := r.Next(); !errors.Is(err, boom) {
			t.Fatalf("then: got %v, want %v", err, boom)
		}
	}
}

// TestParserAllocs pins the cost of the hot path: one allocation per event
// (its data string, which also holds a new id), none for the interned type.
func TestParserAllocs(t *testing.T) {
	var stream bytes.Buffer
	for i := range 50 {
		fmt.Fprintf(&stream, "event: story-published\nid: fixed\ndata: {\"n\":%d}\n\n", i)
		fmt.Fprintf(&stream, "event: story-published\nid: %d\ndata: {\"n\":%d}\n\n", i, i)
	}
	in := stream.Bytes()
	p := NewParser(0)
	n := 0
	emit := func(Observation) { n++ }
	if err := p.Feed(in, time.Time{}, emit); err != nil { // warm the buffers and interned strings
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(20, func() {
		p.Reset()
		if err := p.Feed(in, time.Time{}, emit); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 101 {
		t.Fatalf("got %.0f allocations for 100 events, want at most 101", allocs)
	}
}

// benchStream is what fanscope mostly reads: ~100-byte JSON events with a
// type and an increasing id, and a keep-alive comment every tenth event.
func benchStream(events int, payload func(i int) string) []byte {
	var b bytes.Buffer
	for i := range events {
		if i%10 == 0 {
			b.WriteString(": ping\n\n")
		}
		fmt.Fprintf(&b, "event: story-published\nid: %d\ndata: %s\n\n", i, payload(i))
	}
	return b.Bytes()
}

func BenchmarkParser(b *testing.B) {
	ascii := func(i int) string {
		return fmt.Sprintf(`{"storyId":"s-%06d","title":"A story about the sea","author":"u-1234","ts":"2026-11-27T15:37:38Z"}`, i)
	}
	utf := func(i int) string {
		return fmt.Sprintf(`{"storyId":"s-%06d","title":"Café – über die Straße 海の物語 😀","author":"u-1234"}`, i)
	}
	for _, c := range []struct {
		name   string
		stream []byte
		chunk  int
	}{
		{"json-32KiB-reads", benchStream(2000, ascii), 32 << 10},
		{"json-1KiB-reads", benchStream(2000, ascii), 1 << 10},
		{"utf8-32KiB-reads", benchStream(2000, utf), 32 << 10},
		{"utf8-61B-reads", benchStream(2000, utf), 61}, // splits multibyte characters often
	} {
		b.Run(c.name, func(b *testing.B) {
			p := NewParser(0)
			events := 0
			emit := func(o Observation) {
				if o.Kind == ObsEvent {
					events++
				}
			}
			at := time.Now()
			b.SetBytes(int64(len(c.stream)))
			b.ReportAllocs()
			for b.Loop() {
				p.Reset()
				for rest := c.stream; len(rest) > 0; {
					n := min(len(rest), c.chunk)
					if err := p.Feed(rest[:n], at, emit); err != nil {
						b.Fatal(err)
					}
					rest = rest[n:]
				}
			}
			if events == 0 {
				b.Fatal("got no events, want some")
			}
		})
	}
}

func TestParserNilEmit(t *testing.T) {
	p := NewParser(0)
	if err := p.Feed([]byte("id: 4\ndata: a\n\n: c\nretry: 1\n"), time.Time{}, nil); err != nil {
		t.Fatalf("got error %v, want none", err)
	}
	if got := p.LastEventID(); got != "4" {
		t.Fatalf("got LastEventID() %q, want %q", got, "4")
	}
}

func TestParserSkipOversized(t *testing.T) {
	long := strings.Repeat("x", 40)
	tests := []struct {
		name, in string
		want     []string // kind:data:id
		last     string
	}{
		{"long data line", "id: 1\ndata: " + long + "\n\ndata: next\n\n", []string{"skipped::1", "event:next:1"}, "1"},
		{"long data in pieces", "data: " + long[:20] + "\ndata: " + long[:20] + "\nid: 2\n\ndata: b\n\n", []string{"skipped::2", "event:b:2"}, "2"},
		{"long comment dropped", ": " + long + "\ndata: a\n\n", []string{"event:a:"}, ""},
		{"long id line", "id: " + long + "\ndata: a\n\ndata: b\n\n", []string{"skipped::", "event:b:"}, ""},
		{"CRLF after long line", "data: " + long + "\r\n\r\ndata: c\r\n\r\n", []string{"skipped::", "event:c:"}, ""},
		{"unterminated long line", "data: ok\n\ndata: " + long, []string{"event:ok:"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, size := range []int{1, 7, len(tt.in)} {
				p := NewParser(24)
				p.SkipOversized()
				var got []string
				for i := 0; i < len(tt.in); i += size {
					chunk := tt.in[i:min(i+size, len(tt.in))]
					if err := p.Feed([]byte(chunk), time.Time{}, func(o Observation) {
						got = append(got, o.Kind.String()+":"+o.Data+":"+o.LastEventID)
					}); err != nil {
						t.Fatalf("chunks of %d: Feed: %v", size, err)
					}
				}
				if strings.Join(got, " ") != strings.Join(tt.want, " ") || p.LastEventID() != tt.last {
					t.Errorf("chunks of %d: got %q last id %q, want %q last id %q", size, got, p.LastEventID(), tt.want, tt.last)
				}
			}
		})
	}
}
