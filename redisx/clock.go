package redisx

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// clockSamples is how many TIME round trips a measurement takes.
const clockSamples = 7

// ClockOffset is how far a server's clock is ahead of the local one,
// measured with TIME: the server read its clock at some instant within
// the round trip, taken to be its midpoint, so the error is at most RTT/2.
// Of several samples the one with the smallest round trip is kept.
type ClockOffset struct {
	Offset  time.Duration // server clock minus local clock
	RTT     time.Duration // round trip of the kept sample
	Samples int           // round trips measured (0: no measurement)
	At      time.Time     // when the kept sample was taken (local clock)
}

// Local turns a server timestamp into local time.
func (o ClockOffset) Local(server time.Time) time.Time { return server.Add(-o.Offset) }

// ClockSample is one TIME round trip: the local clock just before the
// command was sent and just after the reply arrived, and the server's
// answer.
type ClockSample struct {
	Sent, Received time.Time
	Server         time.Time
}

// BestOffset picks the sample with the smallest round trip and gives the
// offset at its midpoint. It ignores samples whose reply came before the
// request (a clock step).
func BestOffset(samples []ClockSample) (ClockOffset, error) {
	var best ClockOffset
	for _, s := range samples {
		rtt := s.Received.Sub(s.Sent)
		if rtt < 0 {
			continue
		}
		if best.Samples == 0 || rtt < best.RTT {
			mid := s.Sent.Add(rtt / 2)
			best.Offset = s.Server.Sub(mid)
			best.RTT = rtt
			best.At = mid
		}
		best.Samples++
	}
	if best.Samples == 0 {
		return ClockOffset{}, errors.New("no usable TIME sample")
	}
	return best, nil
}

// ClockOffset measures the clock offset of the server (in a Cluster, of
// the node that serves the command connection; in Sentinel mode, the
// primary's) with samples TIME round trips (at least 1).
func (c *Client) ClockOffset(ctx context.Context, samples int) (ClockOffset, error) {
	var off ClockOffset
	err := c.forEachNode(ctx, func(ctx context.Context, node string, rc *redis.Client) error {
		if off.Samples > 0 {
			return nil
		}
		o, err := measureClock(ctx, rc, samples)
		if err != nil {
			return fmt.Errorf("%s: %w", node, err)
		}
		off = o
		return nil
	})
	if c.mode == modeCluster && err == nil && off.Samples == 0 {
		err = errors.New("no node answered")
	}
	if err != nil {
		return ClockOffset{}, wrapErr("measure the clock of "+c.target+" with TIME", err)
	}
	return off, nil
}

// measureClock runs TIME samples times on rc and keeps the best sample.
func measureClock(ctx context.Context, rc *redis.Client, samples int) (ClockOffset, error) {
	samples = max(samples, 1)
	got := make([]ClockSample, 0, samples)
	for i := 0; i < samples; i++ {
		sent := time.Now()
		v, err := rc.Do(ctx, "time").StringSlice()
		recv := time.Now()
		if err != nil {
			return ClockOffset{}, err
		}
		server, err := parseTimeReply(v)
		if err != nil {
			return ClockOffset{}, err
		}
		got = append(got, ClockSample{Sent: sent, Received: recv, Server: server})
	}
	return BestOffset(got)
}

// parseTimeReply reads TIME's [seconds, microseconds].
func parseTimeReply(v []string) (time.Time, error) {
	if len(v) != 2 {
		return time.Time{}, fmt.Errorf("TIME replied %d values, want 2", len(v))
	}
	s, err1 := strconv.ParseInt(v[0], 10, 64)
	us, err2 := strconv.ParseInt(v[1], 10, 64)
	if err1 != nil || err2 != nil || us < 0 || us >= 1e6 {
		return time.Time{}, fmt.Errorf("TIME replied %q, want seconds and microseconds", v)
	}
	return time.Unix(s, us*1000), nil
}
