package tui

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/fanscope/fanscope/feed"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// screen is what the model draws, without colours.
func screen(m *Model) string { return ansi.Strip(m.View().Content) }

// checkFits fails unless the view is exactly h lines of at most w cells.
func checkFits(t *testing.T, m *Model, w, h int) {
	t.Helper()
	lines := strings.Split(m.View().Content, "\n")
	if len(lines) != h {
		t.Errorf("got %d lines at %dx%d, want %d", len(lines), w, h, h)
	}
	for i, l := range lines {
		if got := ansi.StringWidth(l); got > w {
			t.Errorf("line %d is %d cells wide at %dx%d, want at most %d: %q", i, got, w, h, w, ansi.Strip(l))
		}
	}
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run go test ./tui -update to create it): %v", err)
	}
	if got != string(want) {
		t.Errorf("view %s differs from %s (go test ./tui -update rewrites it)\ngot:\n%s\nwant:\n%s", name, path, got, want)
	}
}

// press builds the key message a terminal would send for s.
func press(s string) tea.KeyPressMsg {
	switch s {
	case "enter":
		return tea.KeyPressMsg{Code: tea.KeyEnter}
	case "esc":
		return tea.KeyPressMsg{Code: tea.KeyEscape}
	case "tab":
		return tea.KeyPressMsg{Code: tea.KeyTab}
	case "shift+tab":
		return tea.KeyPressMsg{Code: tea.KeyTab, Mod: tea.ModShift}
	case "space":
		return tea.KeyPressMsg{Code: tea.KeySpace, Text: " "}
	case "down":
		return tea.KeyPressMsg{Code: tea.KeyDown}
	}
	if c, ok := strings.CutPrefix(s, "ctrl+"); ok {
		return tea.KeyPressMsg{Code: rune(c[0]), Mod: tea.ModCtrl}
	}
	r := []rune(s)[0]
	return tea.KeyPressMsg{Code: r, Text: s}
}

func typeText(m *Model, s string) {
	for _, r := range s {
		m.Update(tea.KeyPressMsg{Code: r, Text: string(r)})
	}
}

// run executes cmd (and batches) and returns the messages that come back
// within a second; longer timers are left out.
func run(cmd tea.Cmd) []tea.Msg {
	if cmd == nil {
		return nil
	}
	ch := make(chan tea.Msg, 1)
	go func() { ch <- cmd() }()
	var msg tea.Msg
	select {
	case msg = <-ch:
	case <-time.After(time.Second): // generous: the machine may be busy; a cursor blink takes 0.5 s
		return nil
	}
	if b, ok := msg.(tea.BatchMsg); ok {
		var out []tea.Msg
		for _, c := range b {
			out = append(out, run(c)...)
		}
		return out
	}
	return []tea.Msg{msg}
}

// send runs cmd and feeds its messages back into m, except snapshots.
func send(m *Model, cmd tea.Cmd) []tea.Msg {
	msgs := run(cmd)
	for _, msg := range msgs {
		if _, ok := msg.(SnapshotMsg); ok {
			continue
		}
		m.Update(msg)
	}
	return msgs
}

func TestPressStrings(t *testing.T) {
	for _, s := range []string{"enter", "esc", "tab", "shift+tab", "space", "ctrl+c", "ctrl+s", "?", "G", "/", "P", "X"} {
		if got := press(s).String(); got != s {
			t.Errorf("press(%q).String() = %q, want %q", s, got, s)
		}
	}
}

func TestGoldenViews(t *testing.T) {
	tests := []struct {
		name string
		w, h int
		keys []string
	}{
		{"main_80x24", 80, 24, nil},
		{"main_160x48", 160, 48, nil},
		{"main_200x50", 200, 50, nil},
		{"main_120x40", 120, 40, nil},
		{"help_80x24", 80, 24, []string{"?"}},
		{"details_80x24", 80, 24, []string{"k", "k", "k", "k", "k", "k", "k", "k", "enter"}},
		{"details_160x48", 160, 48, []string{"enter"}},
		{"paused_filtered_80x24", 80, 24, []string{"/", "a", "p", "p", "-", "2", "enter", "space"}},
		{"publish_80x24", 80, 24, []string{"P"}},
		{"wrap_80x24", 80, 24, []string{"w"}},
		{"focus_latency_80x24", 80, 24, []string{"tab", "tab"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newFixtureModel(tt.w, tt.h, nil)
			for _, k := range tt.keys {
				m.Update(press(k))
			}
			checkFits(t, m, tt.w, tt.h)
			golden(t, tt.name, screen(m))
		})
	}
}

func TestEmptyModelViews(t *testing.T) {
	for _, sz := range [][2]int{{80, 24}, {20, 5}, {1, 1}, {200, 50}} {
		m := New(Options{Location: time.UTC})
		if got := screen(m); !strings.Contains(got, "starting") {
			t.Errorf("before a size: got %q, want a starting line", got)
		}
		m.Update(tea.WindowSizeMsg{Width: sz[0], Height: sz[1]})
		checkFits(t, m, sz[0], sz[1])
		m.Update(SnapshotMsg{Snapshot{Now: t0}})
		checkFits(t, m, sz[0], sz[1])
	}
}

func TestResizeNeverPanics(t *testing.T) {
	states := map[string][]string{
		"main":      nil,
		"help":      {"?"},
		"details":   {"enter"},
		"publish":   {"P"},
		"filtering": {"/", "s"},
		"wrap":      {"w", "k", "k"},
		"paused":    {"space", "g"},
		"radar":     {"shift+tab", "G"},
	}
	sizes := [][2]int{{80, 24}, {20, 5}, {80, 24}, {1, 1}, {0, 0}, {3, 2}, {200, 50}, {20, 5}, {140, 16}, {139, 60}, {80, 24}}
	for name, keys := range states {
		t.Run(name, func(t *testing.T) {
			m := newFixtureModel(80, 24, nil)
			for _, k := range keys {
				m.Update(press(k))
			}
			for i, sz := range sizes {
				m.Update(tea.WindowSizeMsg{Width: sz[0], Height: sz[1]})
				m.Update(SnapshotMsg{fixtureSnapshot(t0.Add(time.Duration(i+1)*time.Second), uint64(81+40*i), 40)})
				if sz[0] > 0 && sz[1] > 0 {
					checkFits(t, m, sz[0], sz[1])
				} else {
					_ = m.View()
				}
			}
		})
	}
}

func TestPayloadEscaped(t *testing.T) {
	m := newFixtureModel(160, 48, nil)
	raw := m.View().Content
	if strings.Contains(raw, "\x1b[31mred") || strings.Contains(raw, "\x07") {
		t.Fatalf("the view holds the payload's raw escape sequence")
	}
	if got := screen(m); !strings.Contains(got, `evil \x1b[31mred\x1b[0m\x07 and a\nnewline`) {
		t.Errorf("got no escaped payload in the stream:\n%s", got)
	}
	// Details of the evil record show it escaped too.
	m.Update(press("/"))
	typeText(m, "evil")
	m.Update(press("enter"))
	m.Update(press("enter"))
	if m.details == nil {
		t.Fatal("got no details view after enter, want one")
	}
	raw = m.View().Content
	if strings.Contains(raw, "\x1b[31mred") || strings.Contains(raw, "\x07") {
		t.Fatalf("the details view holds the payload's raw escape sequence")
	}
	if got := screen(m); !strings.Contains(got, `evil \x1b[31mred\x1b[0m\x07 and a\nnewline`) {
		t.Errorf("got no escaped payload in the details:\n%s", got)
	}
}

func selectedSeq(t *testing.T, m *Model) uint64 {
	t.Helper()
	r, ok := m.stream.Selected()
	if !ok {
		t.Fatal("got no selected record, want one")
	}
	return r.Seq
}

func TestKeys(t *testing.T) {
	t.Run("? toggles help", func(t *testing.T) {
		m := newFixtureModel(80, 24, nil)
		m.Update(press("?"))
		if !m.showHelp || !strings.Contains(screen(m), "toggle wrap") && !strings.Contains(screen(m), "wrap") {
			t.Fatalf("got showHelp=%v, want the help screen", m.showHelp)
		}
		m.Update(press("esc"))
		if m.showHelp {
			t.Errorf("got help still shown after esc, want it closed")
		}
		m.Update(press("?"))
		m.Update(press("?"))
		if m.showHelp {
			t.Errorf("got help still shown after ? ?, want it closed")
		}
	})
	for _, k := range []string{"q", "ctrl+c"} {
		t.Run(k+" quits", func(t *testing.T) {
			m := newFixtureModel(80, 24, nil)
			_, cmd := m.Update(press(k))
			msgs := run(cmd)
			if len(msgs) != 1 {
				t.Fatalf("got %v, want a quit message", msgs)
			}
			if _, ok := msgs[0].(tea.QuitMsg); !ok {
				t.Errorf("got %T, want tea.QuitMsg", msgs[0])
			}
		})
	}
	t.Run("ctrl+c quits from the publish prompt", func(t *testing.T) {
		m := newFixtureModel(80, 24, nil)
		m.Update(press("P"))
		_, cmd := m.Update(press("ctrl+c"))
		if msgs := run(cmd); len(msgs) != 1 {
			t.Fatalf("got %v, want a quit message", msgs)
		}
	})
	t.Run("q types into the filter", func(t *testing.T) {
		m := newFixtureModel(80, 24, nil)
		m.Update(press("/"))
		_, cmd := m.Update(press("q"))
		for _, msg := range run(cmd) {
			if _, ok := msg.(tea.QuitMsg); ok {
				t.Fatal("got quit while typing a filter, want q typed")
			}
		}
		if m.stream.filter != "q" {
			t.Errorf("got filter %q, want %q", m.stream.filter, "q")
		}
	})
	t.Run("tab and shift+tab move the focus", func(t *testing.T) {
		m := newFixtureModel(80, 24, nil)
		want := []int{paneSources, paneLatency, paneRadar, paneStream}
		for i, w := range want {
			m.Update(press("tab"))
			if m.focus != w {
				t.Errorf("after %d tabs got focus %d, want %d", i+1, m.focus, w)
			}
		}
		m.Update(press("shift+tab"))
		if m.focus != paneRadar {
			t.Errorf("after shift+tab got focus %d, want %d", m.focus, paneRadar)
		}
		if !strings.Contains(screen(m), "▸ Radar") {
			t.Errorf("got no focus mark on the radar title:\n%s", screen(m))
		}
	})
	t.Run("j k g G move in the stream", func(t *testing.T) {
		m := newFixtureModel(80, 24, nil)
		steps := []struct {
			key    string
			want   uint64
			follow bool
		}{
			{"k", 79, false}, {"k", 78, false}, {"j", 79, false}, {"j", 80, true},
			{"g", 1, false}, {"j", 2, false}, {"G", 80, true}, {"down", 80, true},
		}
		for _, s := range steps {
			m.Update(press(s.key))
			if got := selectedSeq(t, m); got != s.want || m.stream.follow != s.follow {
				t.Errorf("after %s got seq %d follow %v, want %d %v", s.key, got, m.stream.follow, s.want, s.follow)
			}
		}
		// While scrolled back, new records do not move the selection.
		m.Update(press("g"))
		m.Update(SnapshotMsg{fixtureSnapshot(t0.Add(time.Second), 81, 40)})
		if got := selectedSeq(t, m); got != 1 {
			t.Errorf("after new records got seq %d, want 1 (scrolled back)", got)
		}
		if !strings.Contains(screen(m), "15:04:03.025") {
			t.Errorf("got the view moved away from the top:\n%s", screen(m))
		}
	})
	t.Run("j k scroll the focused pane", func(t *testing.T) {
		m := newFixtureModel(80, 24, nil)
		m.Update(press("tab")) // sources
		before := selectedSeq(t, m)
		m.Update(press("j"))
		if got := selectedSeq(t, m); got != before {
			t.Errorf("j on the sources pane moved the stream to %d, want %d", got, before)
		}
	})
	t.Run("/ filters and esc clears", func(t *testing.T) {
		m := newFixtureModel(80, 24, nil)
		m.Update(press("/"))
		typeText(m, "S72")
		if got, want := m.stream.count(), 1; got != want {
			t.Errorf("filter S72 (any case) got %d records, want %d", got, want)
		}
		for range 3 {
			m.Update(tea.KeyPressMsg{Code: tea.KeyBackspace})
		}
		typeText(m, "s72")
		if got, want := m.stream.count(), 1; got != want {
			t.Errorf("filter s72 got %d records, want %d", got, want)
		}
		m.Update(press("esc"))
		if m.stream.filter != "" || m.stream.editing {
			t.Errorf("after esc got filter %q editing %v, want none", m.stream.filter, m.stream.editing)
		}
		m.Update(press("/"))
		typeText(m, "app-2")
		m.Update(press("enter"))
		if m.stream.editing || m.stream.filter != "app-2" {
			t.Fatalf("after enter got filter %q editing %v, want app-2 kept", m.stream.filter, m.stream.editing)
		}
		if got, want := m.stream.count(), 20; got != want {
			t.Errorf("filter app-2 got %d records, want %d", got, want)
		}
		// New records are filtered as they come.
		m.Update(SnapshotMsg{fixtureSnapshot(t0.Add(time.Second), 81, 40)})
		if got, want := m.stream.count(), 30; got != want {
			t.Errorf("after 40 more got %d records, want %d", got, want)
		}
		m.Update(press("esc"))
		if m.stream.filter != "" {
			t.Errorf("esc got filter %q, want it cleared", m.stream.filter)
		}
	})
	t.Run("space pauses and counts new records", func(t *testing.T) {
		m := newFixtureModel(80, 24, nil)
		m.Update(press("space"))
		before := screen(m)
		m.Update(SnapshotMsg{fixtureSnapshot(t0.Add(time.Second), 81, 40)})
		if got := m.stream.Len(); got != 120 {
			t.Errorf("paused got %d buffered, want 120 (buffering goes on)", got)
		}
		after := screen(m)
		if !strings.Contains(after, "PAUSED 40 new") {
			t.Errorf("got no PAUSED 40 new in:\n%s", after)
		}
		if streamRows(before) != streamRows(after) {
			t.Errorf("the paused stream changed:\n%s\nto\n%s", streamRows(before), streamRows(after))
		}
		m.Update(press("space"))
		if got := selectedSeq(t, m); got != 120 {
			t.Errorf("after unpausing got seq %d, want 120", got)
		}
	})
	t.Run("enter shows details", func(t *testing.T) {
		m := newFixtureModel(80, 24, nil)
		m.Update(press("enter"))
		got := screen(m)
		for _, want := range []string{"Record details", `"storyId": "s80"`, "Raw payload", "story:published"} {
			if !strings.Contains(got, want) {
				t.Errorf("details lack %q:\n%s", want, got)
			}
		}
		m.Update(press("esc"))
		if m.details != nil {
			t.Errorf("got details still open after esc")
		}
	})
	t.Run("c clears the stream", func(t *testing.T) {
		m := newFixtureModel(80, 24, nil)
		m.Update(press("c"))
		if got := m.stream.Len(); got != 0 {
			t.Errorf("got %d records after c, want 0", got)
		}
		m.Update(SnapshotMsg{fixtureSnapshot(t0.Add(time.Second), 81, 3)})
		if got := m.stream.Len(); got != 3 {
			t.Errorf("got %d records after c and 3 new, want 3", got)
		}
	})
	t.Run("w wraps", func(t *testing.T) {
		m := newFixtureModel(80, 24, nil)
		m.Update(press("w"))
		if !m.stream.wrap {
			t.Fatal("got no wrap after w")
		}
		if got := screen(m); !strings.Contains(got, `"author":"ana"}`) {
			t.Errorf("wrapped stream lacks the payload's end:\n%s", got)
		}
		m.Update(press("w"))
		if m.stream.wrap {
			t.Errorf("got wrap after w w, want off")
		}
	})
	t.Run("P publishes and shows receivers", func(t *testing.T) {
		b := &fakeBackend{}
		m := newFixtureModel(80, 24, b)
		m.Update(press("P"))
		typeText(m, `{"storyId":"t1"}`)
		_, cmd := m.Update(press("enter"))
		send(m, cmd)
		if len(b.published) != 1 || b.published[0] != (submission{"story:published", `{"storyId":"t1"}`}) {
			t.Fatalf("got publishes %v, want one to story:published", b.published)
		}
		if got := screen(m); !strings.Contains(got, "published to story:published: 3 receivers") {
			t.Errorf("got no receiver count in:\n%s", got)
		}
	})
	t.Run("P asks before publishing to production", func(t *testing.T) {
		for _, allow := range []bool{false, true} {
			b := &fakeBackend{}
			m := New(Options{Backend: b, Location: time.UTC, Channel: "story:published", AllowPublish: allow})
			m.Update(tea.WindowSizeMsg{Width: 80, Height: 24})
			s := fixtureSnapshot(t0, 1, 40)
			s.Header.Production = true
			s.Header.Targets = []string{"redis://app:***@10.0.0.5:6379/0"}
			m.Update(SnapshotMsg{s})
			if !strings.Contains(screen(m), "PRODUCTION") {
				t.Errorf("got no production cue in the header:\n%s", screen(m))
			}
			m.Update(press("P"))
			typeText(m, "x")
			_, cmd := m.Update(press("enter"))
			send(m, cmd)
			if allow {
				if len(b.published) != 1 {
					t.Errorf("--allow-publish: got %d publishes, want 1", len(b.published))
				}
				continue
			}
			if len(b.published) != 0 || !strings.Contains(screen(m), "y/N") {
				t.Fatalf("got %d publishes and no confirmation, want a y/N question:\n%s", len(b.published), screen(m))
			}
			_, cmd = m.Update(press("n"))
			send(m, cmd)
			if len(b.published) != 0 {
				t.Fatalf("got a publish after n, want none")
			}
			_, cmd = m.Update(press("enter"))
			send(m, cmd)
			_, cmd = m.Update(press("y"))
			send(m, cmd)
			if len(b.published) != 1 {
				t.Errorf("got %d publishes after y, want 1", len(b.published))
			}
		}
	})
	t.Run("P esc cancels", func(t *testing.T) {
		b := &fakeBackend{}
		m := newFixtureModel(80, 24, b)
		m.Update(press("P"))
		m.Update(press("esc"))
		if m.prompt.open {
			t.Errorf("got the prompt open after esc")
		}
		checkFits(t, m, 80, 24)
	})
	t.Run("x probes once", func(t *testing.T) {
		b := &fakeBackend{}
		m := newFixtureModel(80, 24, b)
		_, cmd := m.Update(press("x"))
		send(m, cmd)
		if b.probes != 1 {
			t.Errorf("got %d probes, want 1", b.probes)
		}
		if !strings.Contains(screen(m), "probe sent") {
			t.Errorf("got no status after x:\n%s", screen(m))
		}
	})
	t.Run("X toggles continuous probing", func(t *testing.T) {
		b := &fakeBackend{}
		m := newFixtureModel(80, 24, b)
		_, cmd := m.Update(press("X"))
		send(m, cmd)
		_, cmd = m.Update(press("X"))
		send(m, cmd)
		if fmt.Sprint(b.continuous) != "[true false]" {
			t.Errorf("got %v, want [true false]", b.continuous)
		}
	})
	t.Run("y copies the selected payload", func(t *testing.T) {
		m := newFixtureModel(80, 24, nil)
		for range 6 {
			m.Update(press("k"))
		}
		_, cmd := m.Update(press("y"))
		msgs := run(cmd)
		if len(msgs) != 1 || fmt.Sprint(msgs[0]) != "evil \x1b[31mred\x1b[0m\x07 and a\nnewline" {
			t.Fatalf("got %q, want the raw payload of seq 74 for OSC 52", msgs)
		}
	})
	t.Run("ctrl+s saves the buffer", func(t *testing.T) {
		b := &fakeBackend{}
		m := newFixtureModel(80, 24, b)
		_, cmd := m.Update(press("ctrl+s"))
		send(m, cmd)
		if len(b.saved) != 1 || len(b.saved[0]) != 80 || b.saved[0][0].Seq != 1 || b.saved[0][79].Seq != 80 {
			t.Fatalf("got saves %d, want one of seq 1..80", len(b.saved))
		}
		if !strings.Contains(screen(m), "saved 80 records to /tmp/fanscope-test.ndjson") {
			t.Errorf("got no saved status:\n%s", screen(m))
		}
	})
}

// streamRows is the part of a screen after the stream title, without the
// footer.
func streamRows(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if strings.Contains(l, "Stream") {
			return strings.Join(lines[i+1:len(lines)-1], "\n")
		}
	}
	return ""
}

func TestBufferBounded(t *testing.T) {
	m := New(Options{Location: time.UTC, Buffer: 100})
	m.Update(tea.WindowSizeMsg{Width: 80, Height: 24})
	m.Update(press("/"))
	typeText(m, "app-1")
	m.Update(press("enter"))
	seq := uint64(1)
	for i := 0; i < 10; i++ {
		m.Update(SnapshotMsg{fixtureSnapshot(t0.Add(time.Duration(i)*time.Second), seq, 75)})
		seq += 75
	}
	if got := m.stream.Len(); got != 100 {
		t.Errorf("got %d buffered, want 100", got)
	}
	for _, abs := range m.stream.matches {
		if abs < m.stream.start {
			t.Fatalf("got a match at %d before the oldest record %d", abs, m.stream.start)
		}
	}
	// A snapshot larger than the buffer keeps its newest records.
	m.Update(SnapshotMsg{fixtureSnapshot(t0.Add(time.Minute), seq, 500)})
	if r, _ := m.stream.Selected(); r.Seq != seq+499 && r.Endpoint != "app-1" {
		t.Errorf("got selected seq %d, want the newest app-1 record", r.Seq)
	}
	if got := m.stream.Len(); got != 100 {
		t.Errorf("got %d buffered, want 100", got)
	}
}

func TestSeqGapsCounted(t *testing.T) {
	m := newFixtureModel(80, 24, nil)
	m.Update(SnapshotMsg{fixtureSnapshot(t0.Add(time.Second), 91, 10)})
	if m.skipped != 10 {
		t.Errorf("got %d skipped, want 10", m.skipped)
	}
	if !strings.Contains(screen(m), "skipped 10") {
		t.Errorf("got no skipped count in the header:\n%s", screen(m))
	}
	m.Update(SnapshotMsg{Snapshot{Now: t0.Add(2 * time.Second), Dropped: 7}})
	if !strings.Contains(screen(m), "dropped 7") {
		t.Errorf("got no dropped count in the header:\n%s", screen(m))
	}
}

func TestTickPullsSnapshots(t *testing.T) {
	b := &fakeBackend{snaps: []Snapshot{fixtureSnapshot(t0, 1, 5), fixtureSnapshot(t0.Add(time.Second), 6, 5)}}
	m := New(Options{Backend: b, Location: time.UTC, Interval: time.Millisecond})
	m.Update(tea.WindowSizeMsg{Width: 80, Height: 24})
	cmd := m.Init()
	for i := 0; i < 2; i++ {
		var snap *SnapshotMsg
		for _, msg := range run(cmd) {
			if s, ok := msg.(SnapshotMsg); ok {
				snap = &s
			}
		}
		if snap == nil {
			t.Fatalf("tick %d: got no snapshot", i)
		}
		_, cmd = m.Update(*snap)
	}
	if got := fmt.Sprint(b.sinceSeqs); got != "[0 5]" {
		t.Errorf("got Snapshot(since) calls %s, want [0 5]", got)
	}
	if m.stream.Len() != 10 {
		t.Errorf("got %d records, want 10", m.stream.Len())
	}
}

func TestContainsFold(t *testing.T) {
	tests := []struct {
		s, needle string
		want      bool
	}{
		{"Story:Published", "story:pub", true},
		{"abc", "abcd", false},
		{"", "a", false},
		{"xABCx", "abc", true},
		{"ab", "", true},
	}
	for _, tt := range tests {
		if got := containsFold(tt.s, tt.needle); got != tt.want {
			t.Errorf("containsFold(%q, %q) = %v, want %v", tt.s, tt.needle, got, tt.want)
		}
	}
}

func TestFormat(t *testing.T) {
	tests := []struct{ got, want string }{
		{fmtDur(90 * time.Microsecond), "0.09ms"},
		{fmtDur(12300 * time.Microsecond), "12.3ms"},
		{fmtDur(1500 * time.Millisecond), "1.5s"},
		{fmtDur(65 * time.Second), "1m05s"},
		{fmtDur(0), "-"},
		{fmtRate(0), "0/s"},
		{fmtRate(12.34), "12.3/s"},
		{fmtRate(20000), "20.0k/s"},
		{fmtBytes(512), "512B"},
		{fmtBytes(8 << 20), "8.0MB"},
		{sparkline([]time.Duration{0, 1, 2, 4, 8}, 5), " ▁▂▄█"},
		{sparkline([]time.Duration{0, 1, 2, 4, 8, 0}, 3), "▁▄█"},
		{sparkline([]time.Duration{0, 8}, 10), " █"},
		{esc("a\x1bb"), `a\x1bb`},
		{string(appendEscapedPrefix(nil, "héllo", 2)), "h"},
	}
	for i, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("case %d: got %q, want %q", i, tt.got, tt.want)
		}
	}
}

var _ = feed.Record{}

func TestWideAndHugePayloadsFit(t *testing.T) {
	huge := strings.Repeat("x\x1b", 1<<20) // 2 MiB with an escape every other byte
	recs := []feed.Record{
		{Seq: 1, TS: t0, Source: feed.SourceRedis, Kind: feed.KindMessage, Channel: "故事:发布", Data: `{"title":"日本語のタイトル 🎉🎉🎉","x":"` + strings.Repeat("é", 300) + `"}`},
		{Seq: 2, TS: t0, Source: feed.SourceSSE, Kind: feed.KindEvent, Endpoint: strings.Repeat("very-long-endpoint-name-", 5), Type: strings.Repeat("t", 200), ID: strings.Repeat("9", 100), Data: "👩‍👩‍👧‍👦 family \u202e reversed"},
		{Seq: 3, TS: t0, Source: feed.SourceRedis, Kind: feed.KindMessage, Channel: "big", Data: huge},
		{Seq: 4, TS: t0, Source: feed.SourceRedis, Kind: feed.KindMessage, Channel: "bin", Data: "\xff\xfe\x00binary"},
	}
	for _, wrap := range []bool{false, true} {
		for _, sz := range [][2]int{{80, 24}, {41, 12}, {200, 50}, {20, 5}} {
			m := New(Options{Location: time.UTC})
			m.Update(tea.WindowSizeMsg{Width: sz[0], Height: sz[1]})
			m.Update(SnapshotMsg{Snapshot{Now: t0, NewRecords: recs}})
			if wrap {
				m.Update(press("w"))
			}
			for _, k := range []string{"", "k", "k", "k"} {
				if k != "" {
					m.Update(press(k))
				}
				checkFits(t, m, sz[0], sz[1])
			}
			if strings.Contains(m.View().Content, "\u202e") {
				t.Fatalf("a bidi override reached the view")
			}
			// Details of the huge record: bounded, with a note.
			m.Update(press("j"))
			m.Update(press("j"))
			m.Update(press("enter"))
			checkFits(t, m, sz[0], sz[1])
			if m.details == nil {
				t.Fatal("got no details view")
			}
			m.Update(press("G"))
			if got := screen(m); sz[1] > 5 && !strings.Contains(got, "more bytes") {
				t.Errorf("%dx%d: got no truncation note at the end of a 2 MiB payload:\n%s", sz[0], sz[1], got)
			}
		}
	}
}

func TestEveryWidthFits(t *testing.T) {
	for w := 1; w <= 130; w += 3 {
		for _, h := range []int{1, 2, 5, 9, 24} {
			m := newFixtureModel(w, h, nil)
			checkFits(t, m, w, h)
			m.Update(press("w"))
			checkFits(t, m, w, h)
			m.Update(press("P"))
			checkFits(t, m, w, h)
		}
	}
	// A production confirmation, and the doors fixture.
	for w := 1; w <= 130; w += 3 {
		for _, h := range []int{1, 2, 5, 9, 24} {
			m := newProductionModel(nil, false)
			m.Update(tea.WindowSizeMsg{Width: w, Height: h})
			m.Update(press("x"))
			checkFits(t, m, w, h)
			if got := screen(m); w >= 40 && h >= 2 && !strings.Contains(got, "y yes") {
				t.Errorf("%dx%d: got no y answer in view:\n%s", w, h, got)
			}
			m = newDoorsModel(w, h, nil)
			checkFits(t, m, w, h)
		}
	}
}
