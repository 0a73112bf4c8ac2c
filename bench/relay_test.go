package main

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestFanClientScanSplitReads: a probe counts once per connection however
// the stream is cut into reads (the relay section's client reads raw
// bytes, chunked framing included).
func TestFanClientScanSplitReads(t *testing.T) {
	var stream strings.Builder
	for i := range 3 {
		p := probePayload("abc", i, time.Unix(0, 0))
		// As a chunked Node response would carry it.
		stream.WriteString("9a\r\nid: 1\nevent: bench-relay\ndata: " + p + "\n\n\r\n: ping\n\n")
	}
	s := stream.String()
	for cut1 := 1; cut1 < len(s); cut1 += 7 {
		for cut2 := cut1; cut2 < len(s); cut2 += 13 {
			fc := &fanClient{carry: make([][]byte, 1), got: make([]atomic.Int64, 3), last: make([]atomic.Int64, 3)}
			fc.scan(0, []byte(s[:cut1]), 1)
			fc.scan(0, []byte(s[cut1:cut2]), 2)
			fc.scan(0, []byte(s[cut2:]), 3)
			for i := range 3 {
				if got := fc.got[i].Load(); got != 1 {
					t.Fatalf("cuts at %d and %d: probe %d counted %d times, want 1", cut1, cut2, i, got)
				}
			}
		}
	}
}
