//go:build !linux

package browserx

// monotonicSeconds: Chromium's TimeTicks is not CLOCK_MONOTONIC here, so
// the clock calibrates from event arrivals.
func monotonicSeconds() (float64, bool) { return 0, false }
