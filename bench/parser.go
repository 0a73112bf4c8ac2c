package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"time"

	r3 "github.com/r3labs/sse/v2"
	gosse "github.com/tmaxmax/go-sse"

	"github.com/fanscope/fanscope/ssex"
)

// chunkSize is how much every parser gets per Read: what one read of a
// busy socket typically returns.
const chunkSize = 32 << 10

// sseStream builds about size bytes of a realistic event stream: the relay's
// story-published events with ids, JSON data of varied length, some
// multi-line data, a keep-alive comment every 20 events, a retry field at the
// start. It returns the stream and the number of events a browser would
// dispatch.
func sseStream(size int) ([]byte, int) {
	var b bytes.Buffer
	b.Grow(size + 4096)
	b.WriteString("retry: 3000\n\n")
	n := 0
	for b.Len() < size {
		n++
		if n%20 == 0 {
			b.WriteString(": ping\n\n")
		}
		b.WriteString("id: ")
		b.WriteString(strconv.Itoa(n))
		b.WriteString("\nevent: story-published\n")
		data := payload(n, 80+(n*37)%320)
		if n%9 == 0 {
			// A pretty-printed payload: one data line per JSON line.
			data = strings.Replace(data, `","`, "\",\ndata: \"", 2)
		}
		b.WriteString("data: ")
		b.WriteString(data)
		b.WriteString("\n\n")
	}
	return b.Bytes(), n
}

// chunkReader hands out at most chunkSize bytes per Read.
type chunkReader struct{ b []byte }

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), chunkSize, len(r.b))
	copy(p, r.b[:n])
	r.b = r.b[n:]
	return n, nil
}

// parseResult is what one parser made of the stream.
type parseResult struct {
	events    int
	dataBytes int
}

// parsers are the contestants, each consuming the same stream through a
// chunkReader and touching every event's data.
var parsers = []struct {
	name string
	desc string
	run  func(stream []byte) (parseResult, error)
}{
	{"ssex", "ssex.Parser.Feed, 32 KiB reads", parseSSEX},
	{"ssex-reader", "ssex.NewReader(...).Next", parseSSEXReader},
	{"go-sse", "tmaxmax/go-sse v0.12.0 sse.Read", parseGoSSE},
	{"r3labs", "r3labs/sse/v2 v2.10.0 Client.SubscribeRaw, body in memory", parseR3Client},
	{"r3labs-framing", "r3labs/sse/v2 EventStreamReader.ReadEvent (framing only, no field parsing)", parseR3Framing},
}

func parseSSEX(stream []byte) (parseResult, error) {
	var res parseResult
	p := ssex.NewParser(0)
	r := &chunkReader{b: stream}
	buf := make([]byte, chunkSize)
	at := time.Now()
	emit := func(o ssex.Observation) {
		if o.Kind == ssex.ObsEvent {
			res.events++
			res.dataBytes += len(o.Data)
		}
	}
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if ferr := p.Feed(buf[:n], at, emit); ferr != nil {
				return res, ferr
			}
		}
		if err == io.EOF {
			return res, nil
		}
	}
}

func parseSSEXReader(stream []byte) (parseResult, error) {
	var res parseResult
	rd := ssex.NewReader(&chunkReader{b: stream}, 0)
	for {
		o, err := rd.Next()
		if err == io.EOF {
			return res, nil
		}
		if err != nil {
			return res, err
		}
		if o.Kind == ssex.ObsEvent {
			res.events++
			res.dataBytes += len(o.Data)
		}
	}
}

func parseGoSSE(stream []byte) (parseResult, error) {
	var res parseResult
	for ev, err := range gosse.Read(&chunkReader{b: stream}, nil) {
		if err != nil {
			return res, err
		}
		res.events++
		res.dataBytes += len(ev.Data)
	}
	return res, nil
}

// memTransport answers every request with the stream as a 200
// text/event-stream body, so r3labs' client parses without a network.
type memTransport struct{ stream []byte }

func (t memTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode: 200,
		Status:     "200 OK",
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     http.Header{"Content-Type": {"text/event-stream"}},
		Body:       io.NopCloser(&chunkReader{b: t.stream}),
		Request:    req,
	}, nil
}

func parseR3Client(stream []byte) (parseResult, error) {
	var res parseResult
	c := r3.NewClient("http://bench.invalid/events")
	c.Connection = &http.Client{Transport: memTransport{stream: stream}}
	// At the end of the body the client returns nil (a clean close).
	err := c.SubscribeRawWithContext(context.Background(), func(ev *r3.Event) {
		res.events++
		res.dataBytes += len(ev.Data)
	})
	return res, err
}

func parseR3Framing(stream []byte) (parseResult, error) {
	var res parseResult
	rd := r3.NewEventStreamReader(&chunkReader{b: stream}, 1<<16)
	for {
		ev, err := rd.ReadEvent()
		if err == io.EOF {
			return res, nil
		}
		if err != nil {
			return res, err
		}
		res.events++
		res.dataBytes += len(ev)
	}
}

// timeParser runs parse over stream reps times and returns the best MB/s.
func timeParser(parse func([]byte) (parseResult, error), stream []byte, reps int) (float64, parseResult, error) {
	best := 0.0
	var res parseResult
	for range reps {
		runtime.GC()
		t0 := time.Now()
		r, err := parse(stream)
		d := time.Since(t0)
		if err != nil {
			return 0, r, err
		}
		res = r
		best = max(best, float64(len(stream))/1e6/d.Seconds())
	}
	return best, res, nil
}

func runParser(ctx context.Context, e *env) ([]row, error) {
	size := pick(e, 100<<20, 16<<20)
	reps := pick(e, 3, 2)
	stream, want := sseStream(size)
	e.logf("parser: %.0f MB stream, %d events, best of %d", float64(len(stream))/1e6, want, reps)
	speed := map[string]float64{}
	var rows []row
	for _, p := range parsers {
		if ctx.Err() != nil {
			return rows, ctx.Err()
		}
		mbs, res, err := timeParser(p.run, stream, reps)
		if err != nil {
			return rows, fmt.Errorf("parser %s: %w", p.name, err)
		}
		speed[p.name] = mbs
		e.logf("   %-15s %8.1f MB/s  %d events", p.name, mbs, res.events)
		// ssex and go-sse dispatch exactly the events a browser would;
		// r3labs also dispatches comment-only blocks, so it is not checked.
		if (p.name == "ssex" || p.name == "ssex-reader" || p.name == "go-sse") && res.events != want {
			return rows, fmt.Errorf("parser %s dispatched %d events, want %d", p.name, res.events, want)
		}
	}
	mb := fmt.Sprintf("%.0f MB", float64(len(stream))/1e6)
	s := speed["ssex"]
	rows = append(rows,
		row{"parser", "MB/s, " + mb + " stream, vs r3labs/sse/v2 client", fmt.Sprintf("%.0f MB/s", s),
			fmt.Sprintf("%.0f MB/s", speed["r3labs"]), ratio(s, speed["r3labs"]), "> 1.00x", verdict(s > speed["r3labs"])},
		row{"parser", "MB/s, " + mb + " stream, vs tmaxmax/go-sse", fmt.Sprintf("%.0f MB/s", s),
			fmt.Sprintf("%.0f MB/s", speed["go-sse"]), ratio(s, speed["go-sse"]), "> 1.00x", verdict(s > speed["go-sse"])},
		row{"parser", "ssex.Reader (io.Reader API) vs r3labs framing only", fmt.Sprintf("%.0f MB/s", speed["ssex-reader"]),
			fmt.Sprintf("%.0f MB/s", speed["r3labs-framing"]), ratio(speed["ssex-reader"], speed["r3labs-framing"]), "-", info},
	)
	return rows, nil
}
