package netx

import "time"

// The stall rule every delivery client follows: a connection that sends
// nothing (no message, no keep-alive) for longer than its threshold is
// stalled. Until it has sent two keep-alives the threshold is StallBefore;
// then 3× the longest gap seen between reads, at least StallFloor; a
// threshold the user fixed (--stall) replaces both.
const (
	StallBefore = 45 * time.Second
	StallFloor  = 5 * time.Second
)

// StallThreshold is the threshold in force: fixed when set (> 0; < 0
// turns detection off and gives 0), else before until two keep-alives
// came, then 3× maxGap, at least floor. Clients pass StallBefore and
// StallFloor; tests shorten them.
func StallThreshold(fixed time.Duration, keepAlives int64, maxGap, before, floor time.Duration) time.Duration {
	switch {
	case fixed != 0:
		return max(fixed, 0)
	case keepAlives < 2:
		return before
	}
	return max(3*maxGap, floor)
}
