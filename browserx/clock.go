package browserx

import (
	"sync"
	"time"
)

// clock maps Chromium's protocol timestamps (cdp.MonotonicTime: seconds on
// Chromium's monotonic TimeTicks) onto Go's clock, so a delivery timed by
// Chromium can be compared with fanscope's own records.
//
// On Linux TimeTicks is CLOCK_MONOTONIC, which fanscope reads too: the
// offset is taken once, bracketed between two time.Now calls. The first
// mapped timestamp is checked against the time its event arrived (it cannot
// be later, nor much earlier); when the check fails, or elsewhere, the
// clock falls back to the smallest arrival-minus-timestamp seen, which
// leans late by the protocol's transport delay.
type clock struct {
	mu       sync.Mutex
	exact    bool      // base/baseTS come from CLOCK_MONOTONIC
	checked  bool      // the first event was checked
	base     time.Time // Go time at Chromium time baseTS
	baseTS   float64
	haveBase bool
}

// Mapped times may be later than arrival by at most this (scheduling of the
// two clock reads), and earlier by at most maxQueue (events wait in the
// protocol pipe while the tab's loop is busy).
const (
	clockSlack = 5 * time.Millisecond
	maxQueue   = 30 * time.Second
)

func newClock() *clock {
	c := &clock{}
	best := time.Duration(-1)
	for range 5 {
		t0 := time.Now()
		m, ok := monotonicSeconds()
		t1 := time.Now()
		if !ok {
			return c
		}
		if d := t1.Sub(t0); best < 0 || d < best {
			best = d
			c.base, c.baseTS = t0.Add(d/2), m
		}
	}
	c.exact, c.haveBase = true, true
	return c
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// at is Chromium timestamp ts on Go's clock; arrival is when its event was
// read. The result keeps Go's monotonic reading.
func (c *clock) at(ts float64, arrival time.Time) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ts <= 0 {
		return arrival
	}
	if c.exact && !c.checked {
		c.checked = true
		t := c.base.Add(seconds(ts - c.baseTS))
		if t.After(arrival.Add(clockSlack)) || t.Before(arrival.Add(-maxQueue)) {
			c.exact, c.haveBase = false, false
		}
	}
	if !c.exact {
		// Fallback: keep the smallest offset seen (the least delayed
		// event), never mapping an event later than its arrival.
		if !c.haveBase || arrival.Sub(c.base.Add(seconds(ts-c.baseTS))) < 0 {
			c.base, c.baseTS, c.haveBase = arrival, ts, true
		}
	}
	return c.base.Add(seconds(ts - c.baseTS))
}
