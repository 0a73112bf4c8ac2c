package cli

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/session"
	"github.com/fanscope/fanscope/tui"
)

// watchBackend is the TUI's Backend: it turns session snapshots into the
// TUI's and passes commands on to the session.
type watchBackend struct {
	ctx context.Context
	s   *session.Session

	mu    sync.Mutex
	fatal string
}

func (b *watchBackend) setFatal(err error) {
	b.mu.Lock()
	b.fatal = err.Error()
	b.mu.Unlock()
}

// Snapshot copies everything the TUI shows.
func (b *watchBackend) Snapshot(sinceSeq uint64) tui.Snapshot {
	ss := b.s.Snapshot(time.Now())
	b.mu.Lock()
	fatal := b.fatal
	b.mu.Unlock()
	snap := tui.Snapshot{
		Now:        ss.Now,
		NewRecords: b.s.Records(sinceSeq),
		Dropped:    ss.Dropped,
		// Probe losses are the TUI's own to show (c clears them there).
		Header: tui.Header{Targets: ss.Targets, Production: ss.Production, Problems: ss.Problems},
		Latency: tui.Latency{
			Probes: ss.Probes, Channel: ss.ProbeChannel, Continuous: ss.Probing, Interval: ss.ProbeInterval,
			Error: ss.ProbeError, PollIntervals: ss.PollIntervals, Publish: ss.PublishLatency,
		},
		Radar: radarView(ss),
	}
	for _, st := range ss.Statuses {
		if st.Source == feed.SourceRedis {
			continue
		}
		if st.State == feed.StateFailed && st.Error == "" {
			st.Error = fatal // a fatal error ends one client's Run; say so on its row
		}
		snap.Sources = append(snap.Sources, st)
	}
	if ss.Redis != nil {
		snap.Redis = redisView(ss)
	}
	if ss.Publishers != nil {
		snap.Publishers = make([]tui.Publisher, len(ss.Publishers))
		for i, p := range ss.Publishers {
			snap.Publishers[i] = tui.Publisher(p)
		}
	}
	return snap
}

func redisView(ss session.Snapshot) *tui.Redis {
	v, st := ss.Redis, ss.Statuses[0]
	r := &tui.Redis{
		Target: v.Target, State: st.State, Error: st.Error, PingRTT: v.Stats.PingRTT, Messages: v.Stats.Messages,
		Reconnects: v.Stats.Reconnects, Gaps: v.Stats.Gaps, NumPat: -1,
	}
	in := ss.Introspection
	have := in.NumSub != nil
	if have {
		r.NumPat = in.NumPat
	}
	if ss.IntrospectError != nil {
		r.IntrospectError = ss.IntrospectError.Error()
	}
	count := func(m map[string]int64, name string) int64 {
		if n, ok := m[name]; ok && have {
			return n
		}
		return -1
	}
	for _, ch := range v.Subscription.Channels {
		r.Subs = append(r.Subs, tui.Subscription{Kind: tui.SubChannel, Name: ch, Subscribers: count(in.NumSub, ch), ByNode: byNode(in.ByNode, ch)})
	}
	for _, p := range v.Subscription.Patterns {
		r.Subs = append(r.Subs, tui.Subscription{Kind: tui.SubPattern, Name: p, Subscribers: -1})
	}
	for _, ch := range v.Subscription.ShardChannels {
		r.Subs = append(r.Subs, tui.Subscription{Kind: tui.SubShard, Name: ch, Subscribers: count(in.ShardNumSub, ch)})
	}
	return r
}

// byNode is channel's subscriber count on each cluster node, by node name.
func byNode(counts map[string]map[string]int64, channel string) []tui.NodeCount {
	if len(counts) < 2 {
		return nil
	}
	var out []tui.NodeCount
	for node, m := range counts {
		out = append(out, tui.NodeCount{Node: node, Subscribers: m[channel]})
	}
	slices.SortFunc(out, func(a, b tui.NodeCount) int { return strings.Compare(a.Node, b.Node) })
	return out
}

func radarView(ss session.Snapshot) tui.Radar {
	in := ss.Introspection
	r := tui.Radar{
		Available: ss.Introspected && ss.IntrospectError == nil,
		Soft:      in.Limit.Soft, Hard: in.Limit.Hard, SoftSeconds: in.Limit.SoftSeconds,
		OutputBufferDisconnections: ss.BufferDisconnections,
		Disconnects:                ss.BufferEvents,
	}
	switch {
	case !ss.Introspected:
	case ss.IntrospectError != nil:
		r.Reason = ss.IntrospectError.Error()
	case !in.Limit.Available && len(in.Clients) == 0:
		r.Available = false
		r.Reason = radarReason(in.Unavailable)
	}
	for _, c := range in.Clients {
		name := c.Name
		if c.Node != "" {
			name = c.Node + " " + name
		}
		r.Clients = append(r.Clients, tui.Client{Addr: c.Addr, Name: name, Subs: c.Sub + c.PSub + c.SSub, OMem: c.OMem, Age: c.Age, Idle: c.Idle})
	}
	return r
}

// radarReason says why the radar is empty, naming only what the radar
// needs (CLIENT LIST, CONFIG GET) when those are among the failures.
func radarReason(unavailable []string) string {
	var needed []string
	for _, u := range unavailable {
		if strings.Contains(u, "CLIENT LIST") || strings.Contains(u, "CONFIG") {
			needed = append(needed, u)
		}
	}
	if len(needed) == 0 {
		needed = unavailable
	}
	return "this server did not answer: " + strings.Join(needed, "; ")
}

// Publish publishes payload to channel (SPUBLISH for a -s channel).
func (b *watchBackend) Publish(channel, payload string) (int64, error) {
	return b.s.Publish(b.ctx, channel, payload)
}

// ProbeNow publishes one probe to the probe channel.
func (b *watchBackend) ProbeNow() error {
	_, err := b.s.SendProbe(b.ctx)
	return err
}

// SetContinuous starts or stops probing every --probe-interval.
func (b *watchBackend) SetContinuous(on bool) error { return b.s.SetProbing(on) }

// SaveNDJSON writes records to fanscope-<time>.ndjson in the working
// directory (the temporary directory when that is not writable).
func (b *watchBackend) SaveNDJSON(records []feed.Record) (string, error) {
	name := "fanscope-" + time.Now().Format("20060102-150405.000") + ".ndjson"
	path, err := writeNDJSON(name, records)
	if err != nil {
		var err2 error
		if path, err2 = writeNDJSON(filepath.Join(os.TempDir(), name), records); err2 != nil {
			return "", err
		}
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	return path, nil
}

func writeNDJSON(path string, records []feed.Record) (string, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("save records: %w", err)
	}
	w := bufio.NewWriterSize(f, 256<<10)
	var buf []byte
	for i := range records {
		buf = feed.AppendJSON(buf[:0], &records[i])
		if _, err := w.Write(buf); err != nil {
			f.Close()
			return "", fmt.Errorf("save records to %s: %w", path, err)
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return "", fmt.Errorf("save records to %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("save records to %s: %w", path, err)
	}
	return path, nil
}
