package tui

import (
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
)

func TestPageKeys(t *testing.T) {
	t.Run("stream", func(t *testing.T) {
		m := newFixtureModel(80, 40, nil)
		page := uint64(m.stream.rows())
		m.Update(press("pgup"))
		if got, want := selectedSeq(t, m), 80-page; got != want || m.stream.follow {
			t.Errorf("after pgup got seq %d follow %v, want %d false", got, m.stream.follow, want)
		}
		m.Update(press("pgup"))
		m.Update(press("pgdown"))
		if got, want := selectedSeq(t, m), 80-page; got != want {
			t.Errorf("after pgup pgup pgdn got seq %d, want %d", got, want)
		}
		m.Update(press("pgdown"))
		if got := selectedSeq(t, m); got != 80 || !m.stream.follow {
			t.Errorf("back at the bottom got seq %d follow %v, want 80 and following", got, m.stream.follow)
		}
		for range 10 {
			m.Update(press("pgup"))
		}
		if got := selectedSeq(t, m); got != 1 {
			t.Errorf("after many pgup got seq %d, want 1", got)
		}
	})
	t.Run("list pane", func(t *testing.T) {
		m := newDoorsModel(80, 24, nil)
		m.Update(press("tab")) // sources
		lp := m.panes[paneSources].(*listPane)
		if lp.page() >= len(lp.lines) {
			t.Fatalf("the sources pane shows all %d rows in %d lines; the test needs it to scroll", len(lp.lines), lp.page())
		}
		m.Update(press("pgdown"))
		if lp.offset != min(lp.page(), len(lp.lines)-lp.page()) {
			t.Errorf("after pgdn got offset %d, want %d", lp.offset, lp.page())
		}
		m.Update(press("pgup"))
		if lp.offset != 0 {
			t.Errorf("after pgdn pgup got offset %d, want 0", lp.offset)
		}
	})
	t.Run("details", func(t *testing.T) {
		m := newFixtureModel(80, 12, nil)
		m.Update(press("enter"))
		m.Update(press("pgdown"))
		if m.details.offset == 0 {
			t.Errorf("pgdn in details did not scroll")
		}
		m.Update(press("pgup"))
		if m.details.offset != 0 {
			t.Errorf("got offset %d after pgdn pgup, want 0", m.details.offset)
		}
	})
}

func wheel(x, y int, down bool) tea.MouseWheelMsg {
	b := tea.MouseWheelUp
	if down {
		b = tea.MouseWheelDown
	}
	return tea.MouseWheelMsg{X: x, Y: y, Button: b}
}

// TestMouseWheel checks the wheel scrolls the pane under the pointer,
// whichever has the focus.
func TestMouseWheel(t *testing.T) {
	m := newDoorsModel(80, 24, nil)
	if v := m.View(); v.MouseMode != tea.MouseModeCellMotion {
		t.Errorf("got mouse mode %v, want cell motion (wheel events)", v.MouseMode)
	}
	src := m.rects[paneSources]
	lp := m.panes[paneSources].(*listPane)
	m.Update(wheel(src.x+2, src.y+1, true))
	if lp.offset != wheelStep {
		t.Errorf("wheel down over the sources got offset %d, want %d", lp.offset, wheelStep)
	}
	if m.focus != paneStream {
		t.Errorf("the wheel moved the focus to %d", m.focus)
	}
	m.Update(wheel(src.x+2, src.y+1, false))
	if lp.offset != 0 {
		t.Errorf("wheel up over the sources got offset %d, want 0", lp.offset)
	}
	st := m.rects[paneStream]
	m.Update(wheel(st.x+2, st.y+2, false))
	if got := selectedSeq(t, m); got != 80-wheelStep {
		t.Errorf("wheel up over the stream got seq %d, want %d", got, 80-wheelStep)
	}
	// Outside every pane (the header): nothing moves.
	m.Update(wheel(0, 0, true))
	if got := selectedSeq(t, m); got != 80-wheelStep || lp.offset != 0 {
		t.Errorf("wheel over the header moved seq to %d, offset to %d", got, lp.offset)
	}
	m.Update(tea.WindowSizeMsg{Width: 80, Height: 12})
	m.Update(press("enter"))
	m.Update(wheel(5, 10, true))
	if m.details.offset != wheelStep {
		t.Errorf("wheel in details got offset %d, want %d", m.details.offset, wheelStep)
	}
}

func TestFilterKinds(t *testing.T) {
	tests := []struct {
		filter string
		want   int
		bad    bool
	}{
		{"APP-2", 20, false},           // any case
		{"app-2", 20, false},           //
		{"StOrY-PuBlIsHeD", 30, false}, // the type of app-1 and app-2 events
		{"~^app-[12]$", 50, false},     // endpoint field: every SSE record
		{"~S7[0-9]\"", 4, false},       // a regexp in any case: s72, s75, s76, s79 ("s73" is an id)
		{"~(?-i)S7", 0, false},         // unless it says otherwise
		{"~(", 0, true},                // a bad regexp matches nothing and says why
		{"~", 80, false},               // the empty regexp matches every record with a field
	}
	for _, tt := range tests {
		t.Run(tt.filter, func(t *testing.T) {
			m := newFixtureModel(100, 30, nil)
			m.Update(press("/"))
			typeText(m, tt.filter)
			m.Update(press("enter"))
			if got := m.stream.count(); got != tt.want {
				t.Errorf("filter %q got %d records, want %d", tt.filter, got, tt.want)
			}
			if got := strings.Contains(screen(m), "bad regexp: missing closing )"); got != tt.bad {
				t.Errorf("filter %q: got bad regexp shown %v, want %v:\n%s", tt.filter, got, tt.bad, screen(m))
			}
			checkFits(t, m, 100, 30)
		})
	}
	t.Run("help says so", func(t *testing.T) {
		m := newFixtureModel(80, 24, nil)
		m.Update(press("?"))
		if got := screen(m); !strings.Contains(got, "~ first makes it a regular expression") || !strings.Contains(got, "filter (~ regexp)") {
			t.Errorf("help does not explain the filter:\n%s", got)
		}
	})
}

// TestFilterSlashEdits checks / on an active filter opens it for editing
// (the text kept, the cursor at its end), and that / inside the input is
// just a character.
func TestFilterSlashEdits(t *testing.T) {
	m := newFixtureModel(80, 24, nil)
	m.Update(press("/"))
	typeText(m, "app")
	m.Update(press("enter"))
	m.Update(press("/"))
	if !m.stream.editing || m.stream.input.Value() != "app" {
		t.Fatalf("second / got editing %v with %q, want the current filter to edit", m.stream.editing, m.stream.input.Value())
	}
	m.Update(tea.KeyPressMsg{Code: tea.KeyBackspace})
	typeText(m, "p-2")
	m.Update(press("enter"))
	if m.stream.filter != "app-2" {
		t.Errorf("got filter %q, want app-2 (edited, not appended to)", m.stream.filter)
	}
	m.Update(press("/"))
	typeText(m, "/")
	if m.stream.filter != "app-2/" {
		t.Errorf("/ inside the input got filter %q, want app-2/", m.stream.filter)
	}
}

// TestLossesWindowedAndCleared checks a probe loss keeps the header
// degraded for a minute only, and c clears it at once.
func TestLossesWindowedAndCleared(t *testing.T) {
	snap := func(at time.Time, lost int64) Snapshot {
		s := fixtureSnapshot(at, 1, 0)
		s.NewRecords = nil
		s.Header.Problems = nil
		s.Radar.Clients = nil
		s.Sources = s.Sources[:1]
		for i := range s.Latency.Probes.Paths {
			s.Latency.Probes.Paths[i].Lost = 0
		}
		s.Latency.Probes.Paths[1].Lost = lost
		return s
	}
	m := New(Options{Location: time.UTC})
	m.Update(tea.WindowSizeMsg{Width: 100, Height: 30})
	m.Update(SnapshotMsg{snap(t0, 0)})
	if got := screen(m); !strings.Contains(got, "● healthy") {
		t.Fatalf("got no healthy header:\n%s", got)
	}
	m.Update(SnapshotMsg{snap(t0.Add(time.Second), 1)})
	if got := screen(m); !strings.Contains(got, "● degraded") || !strings.Contains(got, "sse:app-1: 1 probe lost in the last minute") {
		t.Fatalf("got no degraded header naming the loss:\n%s", got)
	}
	m.Update(SnapshotMsg{snap(t0.Add(50*time.Second), 1)})
	if got := screen(m); !strings.Contains(got, "● degraded") {
		t.Errorf("50 s after a loss got no degraded header:\n%s", got)
	}
	m.Update(SnapshotMsg{snap(t0.Add(62*time.Second), 1)})
	if got := screen(m); !strings.Contains(got, "● healthy") {
		t.Errorf("a minute after the last loss got no healthy header:\n%s", got)
	}
	m.Update(SnapshotMsg{snap(t0.Add(63*time.Second), 3)})
	if got := screen(m); !strings.Contains(got, "2 probes lost") {
		t.Errorf("got no new loss of 2:\n%s", got)
	}
	m.Update(press("c"))
	if got := screen(m); !strings.Contains(got, "● healthy") {
		t.Errorf("after c got no healthy header:\n%s", got)
	}
	// The Backend's own problems stay: c does not hide a live fault.
	s := snap(t0.Add(64*time.Second), 3)
	s.Header.Problems = []string{"redis: reconnecting: connection refused"}
	m.Update(SnapshotMsg{s})
	if got := screen(m); !strings.Contains(got, "● degraded") || !strings.Contains(got, "! redis: reconnecting: connection refused") {
		t.Errorf("got no problem from the Backend:\n%s", got)
	}
	m.Update(press("c"))
	if got := screen(m); !strings.Contains(got, "● degraded") {
		t.Errorf("c hid the Backend's problem:\n%s", got)
	}
}

// TestHealthDown checks the header says down when no source is up, and
// names the reasons.
func TestHealthDown(t *testing.T) {
	s := fixtureSnapshot(t0, 1, 0)
	s.Redis.State = "reconnecting"
	for i := range s.Sources {
		s.Sources[i].State = "reconnecting"
	}
	s.Header.Problems = []string{"redis: reconnecting: connection refused"}
	m := New(Options{Location: time.UTC})
	m.Update(tea.WindowSizeMsg{Width: 100, Height: 30})
	m.Update(SnapshotMsg{s})
	if got := screen(m); !strings.Contains(got, "● down") || !strings.Contains(got, "redis: reconnecting: connection refused") {
		t.Errorf("got no down header with its reason:\n%s", got)
	}
}
