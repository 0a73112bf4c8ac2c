package feed

import "sync"

// Ring holds the most recent records for the TUI: the fan-in adds whole
// batches, the TUI adapter copies out what it has not seen yet. It is
// bounded, so a reader that falls behind loses the oldest records, never
// memory.
type Ring struct {
	mu   sync.Mutex
	buf  []Record
	next int // index the next record goes to
	n    int // records held, <= len(buf)
}

// NewRing returns a ring holding up to n records (at least 1).
func NewRing(n int) *Ring {
	if n < 1 {
		n = 1
	}
	return &Ring{buf: make([]Record, n)}
}

// Add appends batch, overwriting the oldest records when full. Records are
// copied; the caller may reuse batch.
func (r *Ring) Add(batch []Record) {
	if len(batch) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	size := len(r.buf)
	if len(batch) > size {
		batch = batch[len(batch)-size:]
	}
	for len(batch) > 0 {
		k := copy(r.buf[r.next:], batch)
		batch = batch[k:]
		r.next = (r.next + k) % size
		r.n = min(r.n+k, size)
	}
}

// Len is how many records the ring holds.
func (r *Ring) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// Since returns copies of the held records whose Seq is greater than seq,
// oldest first, at most max of them (the oldest ones when more are held;
// all of them when max <= 0). Records are expected to be added in
// increasing Seq order, as the fan-in assigns it.
func (r *Ring) Since(seq uint64, max int) []Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	// Binary search over the logical order (oldest..newest) for the first
	// record with Seq > seq.
	lo, hi := 0, r.n
	for lo < hi {
		mid := (lo + hi) / 2
		if r.at(mid).Seq > seq {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	count := r.n - lo
	if max > 0 && count > max {
		count = max
	}
	return r.copyRange(lo, count)
}

// Last returns copies of the newest max records (all when max <= 0),
// oldest first.
func (r *Ring) Last(max int) []Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	count := r.n
	if max > 0 && count > max {
		count = max
	}
	return r.copyRange(r.n-count, count)
}

// at returns the i-th held record, 0 being the oldest. r.mu must be held.
func (r *Ring) at(i int) *Record {
	size := len(r.buf)
	return &r.buf[(r.next-r.n+i+size)%size]
}

// copyRange copies count records starting at logical index from. r.mu must
// be held.
func (r *Ring) copyRange(from, count int) []Record {
	if count <= 0 {
		return nil
	}
	out := make([]Record, count)
	size := len(r.buf)
	start := (r.next - r.n + from + size) % size
	k := copy(out, r.buf[start:min(start+count, size)])
	copy(out[k:], r.buf[:count-k])
	return out
}
