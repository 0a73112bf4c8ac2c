package tui

import (
	"strings"
	"testing"
)

// TestClusterBreakdownShown checks that a channel's per-node subscriber
// counts appear under the cluster-wide sum, and still fit every size.
func TestClusterBreakdownShown(t *testing.T) {
	snap := fixtureSnapshot(t0, 41, 40)
	snap.Redis.Subs[0].Subscribers = 4
	snap.Redis.Subs[0].ByNode = []NodeCount{{"10.0.0.1:7000", 1}, {"10.0.0.2:7001", 3}, {"10.0.0.3:7002", 0}}
	for _, size := range [][2]int{{80, 24}, {200, 50}, {20, 5}} {
		m := newFixtureModel(size[0], size[1], nil)
		m.Update(SnapshotMsg{snap})
		checkFits(t, m, size[0], size[1])
		if size[0] < 80 {
			continue
		}
		got := screen(m)
		if !strings.Contains(got, "story:published by node: 10.0.0.1:7000 1 10.0.0.2:7001 3 10.0.0.3:7002 0") {
			t.Errorf("per-node breakdown missing at %dx%d:\n%s", size[0], size[1], got)
		}
	}
}

// TestSourcesAllShown checks that the layout gives the sources pane the
// lines it wants when there is room: every row drawn, none cut to "more".
func TestSourcesAllShown(t *testing.T) {
	snap := fixtureSnapshot(t0, 41, 40)
	snap.Redis.Subs[0].ByNode = []NodeCount{{"a:1", 1}, {"b:2", 3}}
	for _, size := range [][2]int{{120, 40}, {200, 50}} {
		m := newFixtureModel(size[0], size[1], nil)
		m.Update(SnapshotMsg{snap})
		got := screen(m)
		for _, want := range []string{"story:published by node: a:1 1 b:2 3", "sse:app-1", "sse:app-2", "ws:app-1", "poll:app-1", "! sse:app-2: no keep-alive"} {
			if !strings.Contains(got, want) {
				t.Errorf("%dx%d: sources lack %q:\n%s", size[0], size[1], want, got)
			}
		}
		if strings.Contains(got, "↓") {
			t.Errorf("%dx%d: got a pane cut short:\n%s", size[0], size[1], got)
		}
	}
}
