package tui

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/charmbracelet/x/ansi"

	"github.com/fanscope/fanscope/feed"
)

func TestDoorsGolden(t *testing.T) {
	for _, sz := range [][2]int{{80, 24}, {200, 50}, {120, 40}} {
		name := "doors_" + itoa(sz[0]) + "x" + itoa(sz[1])
		t.Run(name, func(t *testing.T) {
			m := newDoorsModel(sz[0], sz[1], nil)
			checkFits(t, m, sz[0], sz[1])
			golden(t, name, screen(m))
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestDoorsShown checks every kind of door and its transport health on a
// screen with room for all of it.
func TestDoorsShown(t *testing.T) {
	m := newDoorsModel(200, 60, nil)
	got := screen(m)
	for _, want := range []string{
		"ws:app-1", "stalled 12.0s", "last close 1001 going away", // stalled, with how long
		"socketio:app-1", "ping 25s, timeout 20s", // Socket.IO's ping interval
		"poll:app-1", "304 on 9 of 12 polls", // poll 304 share
		"browser:app-1", "rss 180.0MB", // a browser's memory
		"monitor", // MONITOR is a source too
		"! ws:app-1: stalled 12s",
		"publish→ p50/p99", "1.30ms/3.20ms", // organic publish→path
		"dup/reord", "2/0",
		"2 dropped at the limit", "! client 127.0.0.1:51270 (slow-2) disconnected by Redis (output buffer limit)",
		"Publishers", "10.0.0.7:40112", "story-api", "story:published story:updated", "42.0s",
		"[by 10.0.0.7:40112 story-api]", "[publish 1.30ms]",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("got no %q on the screen:\n%s", want, got)
		}
	}
	// The poll path's interval is on its latency row.
	for _, l := range strings.Split(got, "\n") {
		if strings.Contains(l, "poll:app-1   10") && !strings.Contains(l, "5.0s") {
			t.Errorf("got the poll path's latency row without its interval: %q", l)
		}
	}
	// The newest disconnect comes first.
	if i, j := strings.Index(got, "slow-2"), strings.Index(got, "slow-1"); i < 0 || j < i {
		t.Errorf("got slow-2 at %d and slow-1 at %d, want the newest (slow-2) first", i, j)
	}
}

// TestRatesPerPath checks that records are counted per path and per
// connection, not per source kind only.
func TestRatesPerPath(t *testing.T) {
	m := newDoorsModel(200, 60, nil)
	// Per 8 records: seq%8 == 1 is sse:app-1, 4 is ws:app-1, 2 is sse:app-2.
	if got := m.rates.conn(feed.SourceWS, "app-1", 0); got != 5 {
		t.Errorf("got ws:app-1 at %v/s, want 5/s", got)
	}
	if got := m.rates.conn(feed.SourceSSE, "app-1", 0); got != 5 {
		t.Errorf("got sse:app-1 at %v/s, want 5/s", got)
	}
	if got := m.rates.kind(feed.SourceMonitor); got != 5 {
		t.Errorf("got monitor at %v/s, want 5/s", got)
	}
	if got := screen(m); !strings.Contains(got, "ws 5.0/s") {
		t.Errorf("got no ws rate in the header:\n%s", got)
	}
}

// TestPublishersPaneOnlyWithMonitor checks the publishers pane is hidden
// without --monitor and out of the tab order then.
func TestPublishersPaneOnlyWithMonitor(t *testing.T) {
	m := newFixtureModel(200, 50, nil)
	if strings.Contains(screen(m), "Publishers") {
		t.Errorf("got a publishers pane without --monitor:\n%s", screen(m))
	}
	for range paneCount + 1 {
		m.Update(press("tab"))
		if m.focus == panePublishers {
			t.Fatal("got the focus on the hidden publishers pane")
		}
	}
	s := fixtureSnapshot(t0.Add(time.Second), 81, 1)
	s.Publishers = []Publisher{}
	m.Update(SnapshotMsg{s})
	if got := screen(m); !strings.Contains(got, "no PUBLISH seen yet") {
		t.Errorf("got no empty publishers pane with --monitor on:\n%s", got)
	}
}

// TestTabFollowsScreenOrder checks that tab visits the panes top to bottom,
// left to right, on a wide and on a narrow screen.
func TestTabFollowsScreenOrder(t *testing.T) {
	for _, sz := range [][2]int{{200, 60}, {80, 40}} {
		m := newDoorsModel(sz[0], sz[1], nil)
		var order []int
		for range paneCount {
			m.Update(press("tab"))
			order = append(order, m.focus)
		}
		if order[len(order)-1] != paneStream {
			t.Errorf("%dx%d: got focus %v, want back on the stream after %d tabs", sz[0], sz[1], order, paneCount)
		}
		// Where each pane's title is on the screen.
		lines := strings.Split(screen(m), "\n")
		pos := func(i int) [2]int {
			r := m.rects[i]
			return [2]int{r.y, r.x}
		}
		sorted := slices.Clone(order)
		slices.SortStableFunc(sorted, func(a, b int) int {
			pa, pb := pos(a), pos(b)
			if pa[0] != pb[0] {
				return pa[0] - pb[0]
			}
			return pa[1] - pb[1]
		})
		if !slices.Equal(order, sorted) {
			t.Errorf("%dx%d: got tab order %v, want the screen order %v", sz[0], sz[1], order, sorted)
		}
		// And the rects are where the titles are drawn.
		names := [paneCount]string{"Sources", "Latency", "Radar", "Publishers", "Stream"}
		for _, i := range order {
			r := m.rects[i]
			if title := ansi.Cut(lines[r.y], r.x, r.x+r.w); !strings.Contains(title, names[i]) {
				t.Errorf("%dx%d: got no %s title at line %d, column %d: %q", sz[0], sz[1], names[i], r.y, r.x, title)
			}
		}
	}
}

// TestFooterFromKeyMap checks the footers are drawn from the key map: a
// rebound key shows in every footer that offers it.
func TestFooterFromKeyMap(t *testing.T) {
	m := newFixtureModel(120, 30, nil)
	m.keys.Publish.SetHelp("F9", "send one")
	m.keys.Confirm.SetHelp("⏎", "ok")
	m.keys.Back.SetHelp("ctrl+g", "abort")
	last := func() string {
		lines := strings.Split(screen(m), "\n")
		return lines[len(lines)-1]
	}
	if got := last(); !strings.Contains(got, "F9 send one") {
		t.Errorf("main footer %q lacks the rebound publish key", got)
	}
	m.Update(press("/"))
	if got := last(); !strings.Contains(got, "⏎ keep filter") || !strings.Contains(got, "ctrl+g clear") {
		t.Errorf("filter footer %q lacks the key map's keys", got)
	}
	m.Update(press("enter"))
	m.Update(press("P"))
	if got := last(); !strings.Contains(got, "⏎ publish") || !strings.Contains(got, "ctrl+g cancel") {
		t.Errorf("prompt footer %q lacks the key map's keys", got)
	}
	m.Update(press("esc"))
	m.Update(press("enter"))
	if got := last(); !strings.Contains(got, "ctrl+g back") {
		t.Errorf("details footer %q lacks the key map's keys", got)
	}
}

// TestStalledInAmber checks a stalled connection is drawn in the warning
// colour (amber), not as healthy or failed, with how long it has been
// silent.
func TestStalledInAmber(t *testing.T) {
	m := newDoorsModel(200, 60, nil)
	raw := m.View().Content
	if want := m.styles.Warn.pre + "stalled 12.0s"; !strings.Contains(raw, want) {
		t.Errorf("got no amber %q in the view", "stalled 12.0s")
	}
	if strings.Contains(raw, m.styles.Bad.pre+"stalled") || strings.Contains(raw, m.styles.Good.pre+"stalled") {
		t.Errorf("got stalled drawn as failed or healthy")
	}
}
