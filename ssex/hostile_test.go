package ssex

import (
	"net/http"
	"regexp"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fanscope/fanscope/feed"
)

var waitRE = regexp.MustCompile(`retry in ([0-9a-zµ.]+)\)$`)

// announcedWaits are the waits the reconnecting records announce.
func announcedWaits(recs []feed.Record) []time.Duration {
	var out []time.Duration
	for _, r := range recs {
		if r.Kind != feed.KindState || r.State != feed.StateReconnecting {
			continue
		}
		m := waitRE.FindStringSubmatch(r.Error)
		if m == nil {
			out = append(out, -1)
			continue
		}
		d, err := time.ParseDuration(m[1])
		if err != nil {
			d = -1
		}
		out = append(out, d)
	}
	return out
}

// TestRetryZeroNoStorm: hostile servers that ask for `retry: 0` and close
// at once, with or without an event, get attempts no faster than the
// floor allows, and each wait is announced as it is.
func TestRetryZeroNoStorm(t *testing.T) {
	for _, tc := range []struct{ name, body string }{
		{"no event", "retry: 0\n\n"},
		{"an event", "retry: 0\ndata: x\n\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int32
			srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n.Add(1)
				streamHeaders(w)
				write(w, tc.body)
			}))
			rn := startClient(t, Config{URL: srv.URL}, func(c *Client) { c.floor = MinRetry })
			recs := rn.sink.waitFor(t, "three reconnects", func(recs []feed.Record) bool {
				return len(announcedWaits(recs)) >= 3
			})
			for i, w := range announcedWaits(recs)[:3] {
				if w < MinRetry || w > 30*time.Second {
					t.Errorf("wait %d: got %s, want at least %s", i, w, MinRetry)
				}
			}
			// Waits of at least MinRetry between attempts: far fewer
			// requests than a storm, however fast the machine.
			start, before := time.Now(), n.Load()
			time.Sleep(2 * time.Second)
			elapsed := time.Since(start)
			if got, most := n.Load()-before, int32(elapsed/MinRetry)+1; got > most {
				t.Errorf("requests in %s: got %d, want at most %d", elapsed.Round(time.Millisecond), got, most)
			}
			if tc.name == "no event" {
				// Connections that deliver nothing back off like failures.
				waits := announcedWaits(rn.sink.all())
				if last := waits[len(waits)-1]; len(waits) >= 4 && last < 2*MinRetry {
					t.Errorf("after %d empty connections the wait is %s, want it to grow", len(waits), last)
				}
			}
		})
	}
}

// TestRetryOverflowClamped: a `retry:` too large for a Duration is clamped
// to MaxRetry, not turned negative (which reconnected at once).
func TestRetryOverflowClamped(t *testing.T) {
	var n atomic.Int32
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		streamHeaders(w)
		write(w, "retry: "+strconv.FormatInt(1<<63-1, 10)+"\ndata: x\n\n")
	}))
	rn := startClient(t, Config{URL: srv.URL}, nil)
	recs := rn.sink.waitFor(t, "a reconnecting record", func(recs []feed.Record) bool { return len(announcedWaits(recs)) >= 1 })
	if w := announcedWaits(recs)[0]; w < MaxRetry {
		t.Errorf("wait after retry: max int64: got %s, want at least %s", w, MaxRetry)
	}
	if got := n.Load(); got != 1 {
		t.Errorf("requests: got %d, want 1", got)
	}
}
