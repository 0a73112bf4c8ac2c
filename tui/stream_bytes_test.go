package tui

import (
	"strings"
	"testing"
	"time"

	"github.com/fanscope/fanscope/feed"
)

// TestStreamBoundedInBytes: large payloads are held only up to the byte
// bound; the newest records stay, the oldest go, and a clear lets go of
// every payload.
func TestStreamBoundedInBytes(t *testing.T) {
	st := DefaultStyles(true)
	km := DefaultKeyMap()
	s := newStreamPane(&st, &km, time.UTC, 10000, palette{}, newRateMeter())
	s.maxBytes = 4 << 20
	big := strings.Repeat("x", 1<<20)
	for i := 1; i <= 10; i++ {
		s.Append([]feed.Record{{Seq: uint64(i), Kind: feed.KindMessage, Source: feed.SourceRedis, Data: big}})
	}
	if s.bytes > s.maxBytes || s.Len() != 4 || s.rec(s.start).Seq != 7 {
		t.Errorf("got %d bytes in %d records from seq %d, want at most %d bytes: seq 7..10", s.bytes, s.Len(), s.rec(s.start).Seq, s.maxBytes)
	}
	s.Clear()
	if s.bytes != 0 || s.Len() != 0 {
		t.Errorf("after clear: %d bytes, %d records", s.bytes, s.Len())
	}
}
