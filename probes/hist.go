package probes

import (
	"slices"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram range and precision: microseconds from 0 to one minute, three
// significant digits (about 140 KB once the first value arrives).
const (
	histMaxUS  = int64(time.Minute / time.Microsecond)
	histDigits = 3

	// exactCap is how many samples a Histogram also keeps verbatim. Up to
	// that count percentiles are exact, so a budget equal to the measured
	// value passes (HDR reports the top of a value's bucket, 200 ms reads as
	// 200.063 ms); beyond it the HDR estimate is used.
	exactCap = 10000
)

// Histogram is a latency distribution at microsecond resolution. Values
// outside 0 µs .. 1 min are clamped into that range and counted. It is not
// safe for concurrent use; the Engine guards its histograms.
type Histogram struct {
	h       *hdr.Histogram // allocated at the first value
	exact   []int64        // nil once more than exactCap values arrived
	count   int64
	max     int64
	clamped int64
	over    bool // more than exactCap values: exact is no longer kept

	// dist caches Dist between values: the TUI asks 20–30 times a second.
	dist   Dist
	distOK bool
}

// Record adds one value in microseconds.
func (h *Histogram) Record(us int64) {
	if us < 0 {
		us = 0
		h.clamped++
	} else if us > histMaxUS {
		us = histMaxUS
		h.clamped++
	}
	if h.h == nil {
		h.h = hdr.New(1, histMaxUS, histDigits)
	}
	_ = h.h.RecordValue(us) // in range by construction
	h.count++
	h.distOK = false
	if us > h.max {
		h.max = us
	}
	if !h.over {
		if len(h.exact) < exactCap {
			h.exact = append(h.exact, us)
		} else {
			h.over = true
			h.exact = nil
		}
	}
}

// Count returns how many values were recorded.
func (h *Histogram) Count() int64 { return h.count }

// Clamped returns how many values were out of range and clamped.
func (h *Histogram) Clamped() int64 { return h.clamped }

// Max returns the largest value recorded (exact), in microseconds.
func (h *Histogram) Max() int64 { return h.max }

// Percentile returns the value at percentile p (0–100) in microseconds, 0
// when empty. Up to exactCap values it is the exact nearest-rank value.
func (h *Histogram) Percentile(p float64) int64 {
	if h.count == 0 {
		return 0
	}
	if !h.over {
		s := slices.Clone(h.exact)
		slices.Sort(s)
		return s[rank(p, int64(len(s)))-1]
	}
	v := h.h.ValueAtPercentile(p)
	if v > h.max {
		v = h.max
	}
	return v
}

// rank is the 1-based nearest rank of percentile p among n values, the
// same rule hdrhistogram-go uses.
func rank(p float64, n int64) int64 {
	if p > 100 {
		p = 100
	}
	r := p/100*float64(n) + 0.5
	if !(r >= 1) {
		return 1
	}
	if r >= float64(n) {
		return n
	}
	return int64(r)
}

// Clone returns a deep copy.
func (h *Histogram) Clone() *Histogram {
	c := *h
	if h.h != nil {
		c.h = h.h.Clone()
	}
	c.exact = slices.Clone(h.exact)
	return &c
}

// Dist returns the summary of the distribution.
func (h *Histogram) Dist() Dist {
	if !h.distOK {
		h.dist, h.distOK = h.summarise(), true
	}
	return h.dist
}

func (h *Histogram) summarise() Dist {
	d := Dist{Count: h.count, Clamped: h.clamped}
	if h.count == 0 {
		return d
	}
	us := func(p float64) time.Duration { return time.Duration(h.Percentile(p)) * time.Microsecond }
	if !h.over {
		// One sort for all percentiles.
		s := slices.Clone(h.exact)
		slices.Sort(s)
		at := func(p float64) time.Duration { return time.Duration(s[rank(p, int64(len(s)))-1]) * time.Microsecond }
		us = at
	}
	d.P50, d.P90, d.P95, d.P99 = us(50), us(90), us(95), us(99)
	d.Max = time.Duration(h.max) * time.Microsecond
	return d
}

// Dist summarises a latency distribution.
type Dist struct {
	Count   int64 // values recorded
	Clamped int64 // values outside 0..1 min, clamped into range
	P50     time.Duration
	P90     time.Duration
	P95     time.Duration
	P99     time.Duration
	Max     time.Duration
}

// WindowPoint is one second of a rolling window, for sparklines.
type WindowPoint struct {
	At    time.Time     // start of the second
	Count int64         // values in that second (0: no data)
	P50   time.Duration // median of that second (approximate past 256 values)
	Max   time.Duration
}

// windowSamples is how many values per second a window keeps for its
// median; past it, values overwrite earlier ones in turn.
const windowSamples = 256

type windowSlot struct {
	sec     int64
	n       int64
	max     int64
	samples []int64
	p50     int64
	dirty   bool
}

// window keeps per-second medians over the last len(slots) seconds.
type window struct {
	slots []windowSlot
}

func newWindow(seconds int) window {
	return window{slots: make([]windowSlot, seconds)}
}

func (w *window) record(at time.Time, us int64) {
	if len(w.slots) == 0 {
		return
	}
	sec := at.Unix()
	s := &w.slots[int(uint64(sec)%uint64(len(w.slots)))]
	if s.sec != sec || s.n == 0 {
		s.sec, s.n, s.max, s.samples, s.dirty = sec, 0, 0, s.samples[:0], true
	}
	if len(s.samples) < windowSamples {
		s.samples = append(s.samples, us)
	} else {
		s.samples[s.n%windowSamples] = us
	}
	s.n++
	if us > s.max {
		s.max = us
	}
	s.dirty = true
}

// points returns the window's seconds ending at now, oldest first.
func (w *window) points(now time.Time) []WindowPoint {
	n := len(w.slots)
	out := make([]WindowPoint, n)
	end := now.Unix()
	for i := range n {
		sec := end - int64(n-1-i)
		out[i].At = time.Unix(sec, 0)
		s := &w.slots[int(uint64(sec)%uint64(n))]
		if s.sec != sec || s.n == 0 {
			continue
		}
		if s.dirty {
			c := slices.Clone(s.samples)
			slices.Sort(c)
			s.p50 = c[rank(50, int64(len(c)))-1]
			s.dirty = false
		}
		out[i].Count = s.n
		out[i].P50 = time.Duration(s.p50) * time.Microsecond
		out[i].Max = time.Duration(s.max) * time.Microsecond
	}
	return out
}
