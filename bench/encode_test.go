package main

import (
	"testing"
	"time"

	"github.com/fanscope/fanscope/feed"
)

// BenchmarkTimestamp compares the layout interpreter with
// feed.AppendTimestamp, the fixed-width writer feed.AppendJSON uses (the
// feed package tests that the two agree).
func BenchmarkTimestamp(b *testing.B) {
	ts := time.Now()
	buf := make([]byte, 0, 64)
	b.Run("AppendFormat", func(b *testing.B) {
		for b.Loop() {
			buf = ts.UTC().AppendFormat(buf[:0], feed.TimeLayout)
		}
	})
	b.Run("feed.AppendTimestamp", func(b *testing.B) {
		for b.Loop() {
			buf = feed.AppendTimestamp(buf[:0], ts)
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
