package browserx

import "golang.org/x/sys/unix"

// monotonicSeconds reads CLOCK_MONOTONIC, the clock of Chromium's
// TimeTicks on Linux.
func monotonicSeconds() (float64, bool) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0, false
	}
	return float64(ts.Sec) + float64(ts.Nsec)/1e9, true
}
