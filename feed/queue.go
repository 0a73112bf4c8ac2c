package feed

import (
	"context"
	"sync"
	"sync/atomic"
)

// DefaultQueueLimit is how many records a Queue holds before it drops.
const DefaultQueueLimit = 1 << 19

// DefaultQueueBytes is how many payload bytes a Queue holds before it
// drops: a stdout nobody reads must not grow fanscope without bound.
const DefaultQueueBytes = 64 << 20

// maxSpare is the largest buffer Take keeps for reuse once the batches
// are small again. A burst (a GC pause, a slow frame) grows the buffers;
// keeping them would keep every burst's high-water mark in memory for the
// rest of the run. While batches stay large (a flood), they are kept.
const maxSpare = 1 << 12

// Queue joins the sources to the fan-in. Emit never waits for the
// consumer, so a socket reader is never held up by a slow terminal; past
// the limit a record is dropped and counted, never silently lost.
type Queue struct {
	mu       sync.Mutex
	pending  []Record
	bytes    int // payload bytes pending
	limit    int
	maxBytes int
	wake     chan struct{}
	dropped  atomic.Uint64
	emitted  atomic.Uint64
}

// NewQueue returns a queue holding up to limit records (DefaultQueueLimit
// when limit <= 0).
func NewQueue(limit int) *Queue {
	if limit <= 0 {
		limit = DefaultQueueLimit
	}
	return &Queue{limit: limit, maxBytes: DefaultQueueBytes, wake: make(chan struct{}, 1)}
}

// SetMaxBytes sets the payload byte bound (before use).
func (q *Queue) SetMaxBytes(n int) { q.maxBytes = n }

// Emit adds r, or counts it as dropped when the queue is full.
func (q *Queue) Emit(r Record) {
	q.mu.Lock()
	if len(q.pending) >= q.limit || (q.bytes+len(r.Data) > q.maxBytes && len(q.pending) > 0) {
		q.mu.Unlock()
		q.dropped.Add(1)
		return
	}
	first := len(q.pending) == 0
	q.pending = append(q.pending, r)
	q.bytes += len(r.Data)
	q.mu.Unlock()
	q.emitted.Add(1)
	if first {
		q.wakeTaker()
	}
}

// wakeTaker wakes a Take waiting for records. Take waits only after it
// found nothing pending, so only the records that make the queue
// non-empty need to call it.
func (q *Queue) wakeTaker() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// EmitBatch adds rs in order, dropping and counting those past the limit;
// one lock and at most one wake-up for the lot.
func (q *Queue) EmitBatch(rs []Record) {
	if len(rs) == 0 {
		return
	}
	q.mu.Lock()
	first := len(q.pending) == 0
	n := min(len(rs), max(q.limit-len(q.pending), 0))
	for i := 0; i < n; i++ {
		if q.bytes+len(rs[i].Data) > q.maxBytes && len(q.pending)+i > 0 {
			n = i
			break
		}
		q.bytes += len(rs[i].Data)
	}
	q.pending = append(q.pending, rs[:n]...)
	q.mu.Unlock()
	q.emitted.Add(uint64(n))
	if n < len(rs) {
		q.dropped.Add(uint64(len(rs) - n))
	}
	if first && n > 0 {
		q.wakeTaker()
	}
}

// Take waits until records are pending or ctx ends, then returns all of
// them, reusing spare (which the caller must no longer use) as the next
// buffer (emptied) unless a burst that has passed made it large. It returns nil only when ctx ended
// and nothing was pending.
func (q *Queue) Take(ctx context.Context, spare []Record) []Record {
	if cap(spare) > maxSpare && len(spare) < cap(spare)/4 {
		spare = nil
	}
	clear(spare) // let the old records' payloads go
	for {
		q.mu.Lock()
		if len(q.pending) > 0 {
			got := q.pending
			q.pending = spare[:0]
			q.bytes = 0
			q.mu.Unlock()
			return got
		}
		q.mu.Unlock()
		select {
		case <-q.wake:
		case <-ctx.Done():
			q.mu.Lock()
			got := q.pending
			q.pending, q.bytes = nil, 0
			q.mu.Unlock()
			if len(got) == 0 {
				return nil
			}
			return got
		}
	}
}

// Bytes is the payload bytes pending.
func (q *Queue) Bytes() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.bytes
}

// Dropped is how many records were dropped because the queue was full.
func (q *Queue) Dropped() uint64 { return q.dropped.Load() }

// Emitted is how many records were accepted.
func (q *Queue) Emitted() uint64 { return q.emitted.Load() }
