package feed

import "sync"

// DefaultRingBytes bounds the payload bytes a Ring holds: 2,500 payloads
// of 1 MiB must not take a TUI to gigabytes.
const DefaultRingBytes = 64 << 20

// initialRing is the ring's first allocation; it grows as it fills, so a
// large --buffer costs memory only once records fill it.
const initialRing = 1024

// Ring holds the most recent records for the TUI: the fan-in adds whole
// batches, the TUI adapter copies out what it has not seen yet. It is
// bounded in records and in payload bytes, so a reader that falls behind
// loses the oldest records, never memory.
type Ring struct {
	mu       sync.Mutex
	buf      []Record
	max      int // records held at most
	next     int // index the next record goes to
	n        int // records held, <= len(buf)
	bytes    int // payload bytes held
	maxBytes int
	evicted  uint64 // records dropped early to stay within maxBytes
}

// NewRing returns a ring holding up to n records (at least 1) and
// DefaultRingBytes of payload.
func NewRing(n int) *Ring { return NewRingBytes(n, DefaultRingBytes) }

// NewRingBytes returns a ring holding up to n records and maxBytes of
// payload (at least the newest record is always held).
func NewRingBytes(n, maxBytes int) *Ring {
	n = max(n, 1)
	return &Ring{buf: make([]Record, min(n, initialRing)), max: n, maxBytes: maxBytes}
}

// Add appends batch, overwriting the oldest records when full. Records are
// copied; the caller may reuse batch.
func (r *Ring) Add(batch []Record) {
	if len(batch) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(batch) > r.max {
		batch = batch[len(batch)-r.max:]
	}
	for r.n+len(batch) > len(r.buf) && len(r.buf) < r.max {
		r.grow()
	}
	size := len(r.buf)
	for len(batch) > 0 {
		if r.n == size { // full: the slot taken next is the oldest
			r.bytes -= len(r.buf[r.next].Data)
		}
		k := copy(r.buf[r.next:], batch[:1])
		r.bytes += len(batch[0].Data)
		batch = batch[k:]
		r.next = (r.next + k) % size
		r.n = min(r.n+k, size)
	}
	for r.bytes > r.maxBytes && r.n > 1 {
		old := r.at(0)
		r.bytes -= len(old.Data)
		*old = Record{}
		r.n--
		r.evicted++
	}
}

// grow doubles the buffer (up to max), laying the records out oldest first.
func (r *Ring) grow() {
	held := r.copyRange(0, r.n)
	buf := make([]Record, min(2*len(r.buf), r.max))
	copy(buf, held)
	r.buf, r.next = buf, r.n%len(buf)
}

// Evicted is how many records were dropped before their turn to stay
// within the byte bound.
func (r *Ring) Evicted() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.evicted
}

// Bytes is the payload bytes the ring holds.
func (r *Ring) Bytes() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bytes
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
