package main

import (
	"testing"
	"time"

	"github.com/fanscope/fanscope/feed"
)

// appendTS writes t as feed.TimeLayout does (RFC 3339, UTC, nine fraction
// digits) with a fixed-width digit writer instead of the layout
// interpreter; BenchmarkTimestamp compares the two, sizing one of the costs
// the ingest profile shows in feed.AppendJSON.
func appendTS(buf []byte, t time.Time) []byte {
	t = t.UTC()
	y, mo, d := t.Date()
	h, mi, s := t.Clock()
	ns := t.Nanosecond()
	var b [30]byte
	put := func(i, v, w int) {
		for j := i + w - 1; j >= i; j-- {
			b[j] = byte('0' + v%10)
			v /= 10
		}
	}
	put(0, y, 4)
	b[4] = '-'
	put(5, int(mo), 2)
	b[7] = '-'
	put(8, d, 2)
	b[10] = 'T'
	put(11, h, 2)
	b[13] = ':'
	put(14, mi, 2)
	b[16] = ':'
	put(17, s, 2)
	b[19] = '.'
	put(20, ns, 9)
	b[29] = 'Z'
	return append(buf, b[:]...)
}

func TestAppendTSMatchesLayout(t *testing.T) {
	for _, ts := range []time.Time{
		time.Date(2026, 11, 27, 16, 4, 5, 123456789, time.UTC),
		time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600)),
		time.Now(),
	} {
		got := string(appendTS(nil, ts))
		want := ts.UTC().Format(feed.TimeLayout)
		if got != want {
			t.Errorf("appendTS(%v): got %s, want %s", ts, got, want)
		}
	}
}

func BenchmarkTimestamp(b *testing.B) {
	ts := time.Now()
	buf := make([]byte, 0, 64)
	b.Run("AppendFormat", func(b *testing.B) {
		for b.Loop() {
			buf = ts.UTC().AppendFormat(buf[:0], feed.TimeLayout)
		}
	})
	b.Run("fixed-width", func(b *testing.B) {
		for b.Loop() {
			buf = appendTS(buf[:0], ts)
		}
	})
}

// BenchmarkAppendJSONIngest encodes the record the ingest section produces
// (a 100-byte JSON payload on a Redis channel).
func BenchmarkAppendJSONIngest(b *testing.B) {
	r := feed.Record{TS: time.Now(), Source: feed.SourceRedis, Kind: feed.KindMessage,
		Channel: "bench:ingest:fanscope:1795797771966370482", Data: payload(1, 100)}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = feed.AppendJSON(buf[:0], &r)
	}
}
