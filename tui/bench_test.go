package tui

import (
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
)

// BenchmarkUpdateView is one 40 ms tick at 20,000 records/s: 800 new
// records into a model that already buffers 10,000, then a full View.
func BenchmarkUpdateView(b *testing.B) {
	for _, bc := range []struct {
		name   string
		filter string
		w, h   int
	}{
		{"80x24", "", 80, 24},
		{"200x50", "", 200, 50},
		{"200x50_filtered", "app-1", 200, 50},
	} {
		b.Run(bc.name, func(b *testing.B) {
			m := New(Options{Location: time.UTC})
			m.Update(tea.WindowSizeMsg{Width: bc.w, Height: bc.h})
			if bc.filter != "" {
				m.stream.SetFilter(bc.filter)
			}
			m.Update(SnapshotMsg{fixtureSnapshot(t0, 1, DefaultBuffer)})
			if m.stream.Len() != DefaultBuffer {
				b.Fatalf("got %d buffered, want %d", m.stream.Len(), DefaultBuffer)
			}
			// Pre-built ticks, so the benchmark measures the TUI only.
			const perTick = 800
			ticks := make([]Snapshot, 64)
			seq := uint64(DefaultBuffer + 1)
			now := t0
			for i := range ticks {
				now = now.Add(40 * time.Millisecond)
				ticks[i] = fixtureSnapshot(now, seq, perTick)
				seq += perTick
			}
			b.ReportAllocs()
			b.ResetTimer()
			i := 0
			for b.Loop() {
				s := ticks[i%len(ticks)]
				// Keep Seq increasing across laps of the pre-built ticks.
				lap := uint64(i/len(ticks)) * uint64(len(ticks)*perTick)
				if lap > 0 {
					recs := s.NewRecords
					for j := range recs {
						recs[j].Seq += uint64(len(ticks) * perTick)
					}
				}
				m.Update(SnapshotMsg{s})
				_ = m.View()
				i++
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(perTick), "ns/record")
		})
	}
}
