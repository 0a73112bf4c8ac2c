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

// TestSourcesRowCount checks that the layout's row count (used to size the
// pane before drawing) matches what the pane draws.
func TestSourcesRowCount(t *testing.T) {
	snap := fixtureSnapshot(t0, 41, 40)
	snap.Redis.Subs[0].ByNode = []NodeCount{{"a:1", 1}, {"b:2", 3}}
	m := newFixtureModel(120, 40, nil)
	m.Update(SnapshotMsg{snap})
	if got, want := m.sources.rowCount(), len(m.sources.rows()); got != want {
		t.Errorf("rowCount() = %d, want %d (the rows drawn)", got, want)
	}
}
