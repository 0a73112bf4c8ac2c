package main

import (
	"sync"
	"testing"
)

var (
	benchStreamOnce sync.Once
	benchStream     []byte
	benchEvents     int
)

// BenchmarkParsers runs every contestant of the parser section over the
// same 8 MB stream; compare their MB/s.
func BenchmarkParsers(b *testing.B) {
	benchStreamOnce.Do(func() { benchStream, benchEvents = sseStream(8 << 20) })
	for _, p := range parsers {
		b.Run(p.name, func(b *testing.B) {
			b.SetBytes(int64(len(benchStream)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.run(benchStream); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestParsersAgree checks that ssex and go-sse dispatch the same events from
// the bench stream, so the parser section compares like with like.
func TestParsersAgree(t *testing.T) {
	stream, want := sseStream(1 << 20)
	for _, p := range parsers {
		got, err := p.run(stream)
		if err != nil {
			t.Fatalf("%s: %v", p.name, err)
		}
		switch p.name {
		case "ssex", "ssex-reader", "go-sse":
			if got.events != want {
				t.Errorf("%s dispatched %d events, want %d", p.name, got.events, want)
			}
		}
	}
}
