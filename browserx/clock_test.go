package browserx

import (
	"testing"
	"time"
)

func TestClockExact(t *testing.T) {
	c := newClock()
	if !c.exact {
		t.Skip("no CLOCK_MONOTONIC here; the fallback is tested below")
	}
	m, _ := monotonicSeconds()
	now := time.Now()
	// An event stamped now and read 3 ms later maps to now.
	got := c.at(m, now.Add(3*time.Millisecond))
	if d := got.Sub(now); d < -time.Millisecond || d > time.Millisecond {
		t.Errorf("at(now) is %s from now, want within 1ms", d)
	}
	// Later stamps map later by the same amount, on the monotonic clock.
	if d := c.at(m+0.25, now.Add(time.Second)).Sub(got); d < 249*time.Millisecond || d > 251*time.Millisecond {
		t.Errorf("a stamp 250ms later maps %s later", d)
	}
}

func TestClockFallback(t *testing.T) {
	cases := []struct {
		name  string
		exact bool
	}{
		{"no monotonic clock", false},
		// Chromium stamps on another clock: the first event maps into
		// the future, so the clock falls back.
		{"other clock", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			base := time.Now()
			c := &clock{}
			if tc.exact {
				c = &clock{exact: true, haveBase: true, base: base, baseTS: 0}
			}
			// Stamps on an unrelated clock around 5000 s; arrivals 10, 4
			// and 7 ms after the stamp's own instant.
			t0 := base.Add(time.Hour)
			got1 := c.at(5000, t0.Add(10*time.Millisecond))
			if !got1.Equal(t0.Add(10 * time.Millisecond)) {
				t.Errorf("first event maps to %s after t0, want its arrival (10ms)", got1.Sub(t0))
			}
			got2 := c.at(5001, t0.Add(time.Second+4*time.Millisecond))
			if d := got2.Sub(t0); d != time.Second+4*time.Millisecond {
				t.Errorf("a less delayed event maps %s after t0, want 1.004s (its arrival: the new smallest offset)", d)
			}
			got3 := c.at(5002, t0.Add(2*time.Second+7*time.Millisecond))
			if d := got3.Sub(t0); d != 2*time.Second+4*time.Millisecond {
				t.Errorf("a more delayed event maps %s after t0, want 2.004s (the smallest offset kept)", d)
			}
			if c.exact {
				t.Error("clock still exact after a stamp from the future")
			}
		})
	}
}
