package feed

import (
	"strings"
	"sync"
	"testing"
)

func seqs(rs []Record) []uint64 {
	out := make([]uint64, len(rs))
	for i := range rs {
		out[i] = rs[i].Seq
	}
	return out
}

func batch(from, to uint64) []Record {
	var b []Record
	for s := from; s <= to; s++ {
		b = append(b, Record{Seq: s})
	}
	return b
}

func equalSeqs(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestRing(t *testing.T) {
	tests := []struct {
		name    string
		size    int
		batches [][]Record
		since   uint64
		max     int
		want    []uint64
		last    int
		wantL   []uint64
		wantLen int
	}{
		{name: "empty", size: 4, since: 0, want: []uint64{}, last: 2, wantL: []uint64{}, wantLen: 0},
		{name: "partial", size: 4, batches: [][]Record{batch(1, 3)}, since: 1, want: []uint64{2, 3}, last: 2, wantL: []uint64{2, 3}, wantLen: 3},
		{name: "wrapped", size: 4, batches: [][]Record{batch(1, 3), batch(4, 6)}, since: 0, want: []uint64{3, 4, 5, 6}, last: 3, wantL: []uint64{4, 5, 6}, wantLen: 4},
		{name: "wrapped since middle", size: 4, batches: [][]Record{batch(1, 3), batch(4, 6)}, since: 4, want: []uint64{5, 6}, last: 0, wantL: []uint64{3, 4, 5, 6}, wantLen: 4},
		{name: "batch larger than ring", size: 3, batches: [][]Record{batch(1, 10)}, since: 0, want: []uint64{8, 9, 10}, last: 1, wantL: []uint64{10}, wantLen: 3},
		{name: "max keeps oldest", size: 8, batches: [][]Record{batch(1, 8)}, since: 2, max: 3, want: []uint64{3, 4, 5}, last: 8, wantL: []uint64{1, 2, 3, 4, 5, 6, 7, 8}, wantLen: 8},
		{name: "since newest", size: 8, batches: [][]Record{batch(1, 5)}, since: 5, want: []uint64{}, last: 0, wantL: []uint64{1, 2, 3, 4, 5}, wantLen: 5},
		{name: "many small batches", size: 5, batches: [][]Record{batch(1, 2), batch(3, 4), batch(5, 6), batch(7, 7), batch(8, 9)}, since: 6, want: []uint64{7, 8, 9}, last: 2, wantL: []uint64{8, 9}, wantLen: 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRing(tt.size)
			for _, b := range tt.batches {
				r.Add(b)
			}
			if got := seqs(r.Since(tt.since, tt.max)); !equalSeqs(got, tt.want) {
				t.Errorf("Since(%d, %d) = %v, want %v", tt.since, tt.max, got, tt.want)
			}
			if got := seqs(r.Last(tt.last)); !equalSeqs(got, tt.wantL) {
				t.Errorf("Last(%d) = %v, want %v", tt.last, got, tt.wantL)
			}
			if got := r.Len(); got != tt.wantLen {
				t.Errorf("Len() = %d, want %d", got, tt.wantLen)
			}
		})
	}
}

func TestRingCopies(t *testing.T) {
	r := NewRing(4)
	b := []Record{{Seq: 1, Data: "a"}}
	r.Add(b)
	b[0].Data = "changed"
	got := r.Last(1)
	if got[0].Data != "a" {
		t.Fatalf("got %q after the caller changed its batch, want %q", got[0].Data, "a")
	}
	got[0].Data = "mine"
	if again := r.Last(1); again[0].Data != "a" {
		t.Fatalf("got %q after the reader changed its copy, want %q", again[0].Data, "a")
	}
}

func TestRingConcurrent(t *testing.T) {
	r := NewRing(100)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := uint64(0); i < 1000; i++ {
			r.Add(batch(i*10+1, i*10+10))
		}
	}()
	var last uint64
	for i := 0; i < 1000; i++ {
		for _, rec := range r.Since(last, 0) {
			if rec.Seq <= last {
				t.Fatalf("got seq %d after %d, want increasing", rec.Seq, last)
			}
			last = rec.Seq
		}
	}
	wg.Wait()
}

func BenchmarkRingAddSince(b *testing.B) {
	r := NewRing(10000)
	in := batch(1, 800)
	var seq uint64
	for b.Loop() {
		for i := range in {
			seq++
			in[i].Seq = seq
		}
		r.Add(in)
		_ = r.Since(seq-800, 0)
	}
}

// TestRingBoundedInBytes: a ring with room for many records but few bytes
// keeps the newest records within the byte bound, and counts the rest.
func TestRingBoundedInBytes(t *testing.T) {
	r := NewRingBytes(100000000, 1<<20) // --buffer 100000000 must not allocate it up front
	payload := strings.Repeat("p", 256<<10)
	for i := 1; i <= 10; i++ {
		r.Add([]Record{{Seq: uint64(i), Data: payload}})
	}
	if r.Bytes() > 1<<20 || r.Len() != 4 || r.Evicted() != 6 {
		t.Errorf("got %d bytes, %d records, %d evicted; want at most 1 MiB, 4 records, 6 evicted", r.Bytes(), r.Len(), r.Evicted())
	}
	if got := r.Since(0, 0); len(got) != 4 || got[0].Seq != 7 || got[3].Seq != 10 {
		t.Errorf("held records: got %d starting at %d, want seq 7..10", len(got), got[0].Seq)
	}
	if c := cap(r.buf); c > 2*initialRing {
		t.Errorf("the ring allocated %d slots for 10 records, want it to grow as it fills", c)
	}
}

// TestRingGrowsInOrder: records added across growth steps and wrap-around
// come back oldest first.
func TestRingGrowsInOrder(t *testing.T) {
	r := NewRing(3000)
	var seq uint64
	for k := 0; k < 7; k++ {
		var batch []Record
		for i := 0; i < 700; i++ {
			seq++
			batch = append(batch, Record{Seq: seq})
		}
		r.Add(batch)
	}
	got := r.Since(0, 0)
	if len(got) != 3000 || got[0].Seq != seq-2999 || got[2999].Seq != seq {
		t.Fatalf("got %d records %d..%d, want 3000 ending at %d", len(got), got[0].Seq, got[len(got)-1].Seq, seq)
	}
	for i := 1; i < len(got); i++ {
		if got[i].Seq != got[i-1].Seq+1 {
			t.Fatalf("record %d: seq %d after %d", i, got[i].Seq, got[i-1].Seq)
		}
	}
}
