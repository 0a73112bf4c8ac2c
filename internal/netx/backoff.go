package netx

import (
	"context"
	"time"
)

// Backoff is the wait before the next attempt: base (never below floor)
// after a connection that worked (failures 0), then doubling per
// consecutive failure up to maxWait (or base when that is longer), with
// jitter in the upper half so many clients do not reconnect in step, and
// never below floor. jitter(n) returns a value in [0, n).
func Backoff(base, maxWait, floor time.Duration, failures int, jitter func(int64) int64) time.Duration {
	base = max(base, floor)
	if failures <= 0 {
		return base
	}
	limit := max(maxWait, base)
	d := base
	for i := 0; i < failures && d < limit; i++ {
		d *= 2
	}
	d = min(d, limit)
	half := d / 2
	return max(half+time.Duration(jitter(int64(d-half)+1)), floor)
}

// Sleep waits for d or until ctx ends; it reports whether d passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
