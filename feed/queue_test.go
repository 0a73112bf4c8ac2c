package feed

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestQueueKeepsOrderAndCountsDrops(t *testing.T) {
	q := NewQueue(3)
	for i := 0; i < 5; i++ {
		q.Emit(Record{Seq: uint64(i)})
	}
	got := q.Take(context.Background(), nil)
	if len(got) != 3 || got[0].Seq != 0 || got[2].Seq != 2 {
		t.Fatalf("got %v, want seqs 0..2", got)
	}
	if q.Dropped() != 2 || q.Emitted() != 3 {
		t.Fatalf("got dropped %d emitted %d, want 2 and 3", q.Dropped(), q.Emitted())
	}
}

func TestQueueEmitBatchKeepsOrderAndCountsDrops(t *testing.T) {
	q := NewQueue(5)
	q.Emit(Record{Seq: 0})
	q.EmitBatch(nil)
	q.EmitBatch([]Record{{Seq: 1}, {Seq: 2}})
	q.EmitBatch([]Record{{Seq: 3}, {Seq: 4}, {Seq: 5}, {Seq: 6}})
	got := q.Take(context.Background(), nil)
	if len(got) != 5 || got[0].Seq != 0 || got[4].Seq != 4 {
		t.Fatalf("got %v, want seqs 0..4", got)
	}
	if q.Dropped() != 2 || q.Emitted() != 5 {
		t.Fatalf("got dropped %d emitted %d, want 2 and 5", q.Dropped(), q.Emitted())
	}
	q.EmitBatch([]Record{{Seq: 7}})
	if got := q.Take(context.Background(), nil); len(got) != 1 || got[0].Seq != 7 {
		t.Fatalf("after draining: got %v, want seq 7", got)
	}
}

func TestQueueConcurrentProducersLoseNothing(t *testing.T) {
	q := NewQueue(0)
	const producers, each = 4, 20000
	var wg sync.WaitGroup
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if p%2 == 0 {
				for i := 0; i < each; i++ {
					q.Emit(Record{Conn: p, Seq: uint64(i)})
				}
				return
			}
			// The others hand over batches of 1 to 37 records.
			var batch []Record
			for i := 0; i < each; i++ {
				batch = append(batch, Record{Conn: p, Seq: uint64(i)})
				if len(batch) == 1+i%37 || i == each-1 {
					q.EmitBatch(batch)
					batch = batch[:0]
				}
			}
		}()
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { wg.Wait(); cancel() }()
	last := make([]int64, producers)
	for i := range last {
		last[i] = -1
	}
	total := 0
	var spare []Record
	for {
		batch := q.Take(ctx, spare)
		if batch == nil {
			break
		}
		for _, r := range batch {
			if int64(r.Seq) != last[r.Conn]+1 {
				t.Fatalf("producer %d: got seq %d after %d", r.Conn, r.Seq, last[r.Conn])
			}
			last[r.Conn] = int64(r.Seq)
			total++
		}
		spare = batch
	}
	if total != producers*each || q.Dropped() != 0 {
		t.Fatalf("got %d records, %d dropped; want %d, 0", total, q.Dropped(), producers*each)
	}
}

func TestQueueTakeReturnsOnCancel(t *testing.T) {
	q := NewQueue(0)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if got := q.Take(ctx, nil); got != nil {
		t.Fatalf("got %v, want nil", got)
	}
}

// TestQueueSpare: Take reuses spare buffers, emptied so they keep no
// payload alive, also large ones while batches stay large (a flood), and
// lets the large ones go once batches are small again.
func TestQueueSpare(t *testing.T) {
	q := NewQueue(0)
	ctx := context.Background()
	r := Record{Kind: KindMessage, Data: "payload"}
	flood := func(n int) {
		for i := 0; i < n; i++ {
			q.Emit(r)
		}
	}
	flood(3 * maxSpare)
	a := q.Take(ctx, nil)
	flood(3 * maxSpare)
	b := q.Take(ctx, a)
	flood(3 * maxSpare)
	if got := q.Take(ctx, b); &got[0] != &a[0] {
		t.Errorf("during a flood the large buffer was not reused")
	}
	// The flood is over: within two small batches both large buffers go.
	batch := a
	for i := 0; i < 3; i++ {
		flood(3)
		batch = q.Take(ctx, batch)
	}
	if cap(batch) > maxSpare {
		t.Errorf("after a burst of %d the queue still buffers into a slice of cap %d (want <= %d)", 3*maxSpare, cap(batch), maxSpare)
	}
	// A small buffer is reused for the next records, emptied first.
	small := batch
	flood(1)
	q.Take(ctx, small)
	q.Emit(Record{Kind: KindMessage, Data: "next"})
	if got := q.Take(ctx, nil); &got[0] != &small[0] || got[0].Data != "next" {
		t.Fatalf("the spare buffer was not reused")
	}
	if small = small[:3]; small[1].Data != "" || small[2].Data != "" {
		t.Errorf("the reused buffer still holds old payloads: %q %q", small[1].Data, small[2].Data)
	}
}

func BenchmarkQueue(b *testing.B) {
	q := NewQueue(0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() {
		n := 0
		var spare []Record
		for {
			batch := q.Take(ctx, spare)
			if batch == nil {
				done <- n
				return
			}
			n += len(batch)
			spare = batch
		}
	}()
	r := Record{Source: SourceRedis, Kind: KindMessage, Channel: "c", Data: "x"}
	for b.Loop() {
		q.Emit(r)
	}
	cancel()
	<-done
}

// TestQueueBoundedInBytes: a consumer that does not take (a stdout nobody
// reads) holds the queue at its byte bound; later records are dropped and
// counted, and one record larger than the bound still passes when the
// queue is empty.
func TestQueueBoundedInBytes(t *testing.T) {
	q := NewQueue(0)
	q.SetMaxBytes(1 << 20)
	payload := strings.Repeat("x", 100<<10)
	for i := 0; i < 50; i++ {
		q.Emit(Record{Data: payload})
	}
	q.EmitBatch([]Record{{Data: payload}, {Data: payload}})
	if got := q.Bytes(); got > 1<<20 {
		t.Errorf("pending bytes: got %d, want at most %d", got, 1<<20)
	}
	if got, want := q.Dropped(), uint64(52-10); got != want {
		t.Errorf("dropped: got %d, want %d", got, want)
	}
	if got := q.Take(context.Background(), nil); len(got) != 10 {
		t.Errorf("took %d records, want 10", len(got))
	}
	big := strings.Repeat("y", 2<<20)
	q.Emit(Record{Data: big})
	if got := q.Take(context.Background(), nil); len(got) != 1 || q.Bytes() != 0 {
		t.Errorf("an oversized record into an empty queue: got %d records, want 1", len(got))
	}
}
