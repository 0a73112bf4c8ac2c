package feed

import (
	"strings"
	"testing"
)

// BenchmarkAppendJSONString escapes the payloads tail sees most: JSON
// objects (quotes to escape every few bytes) and plain text.
func BenchmarkAppendJSONString(b *testing.B) {
	for _, c := range []struct{ name, s string }{
		{"json100", `{"storyId":"s0000001","author":"u00001","title":"A walk along the harbour at dawn and wh"}`},
		{"text1k", strings.Repeat("A walk along the harbour at dawn and what the fishermen said. ", 17)},
		{"utf8_1k", strings.Repeat("Überfahrt nach Åland, 海の上で — ", 30)},
	} {
		b.Run(c.name, func(b *testing.B) {
			buf := make([]byte, 0, 4*len(c.s))
			b.SetBytes(int64(len(c.s)))
			for b.Loop() {
				buf = AppendJSONString(buf[:0], c.s)
			}
		})
	}
}
