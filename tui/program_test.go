package tui

import (
	"io"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
)

// TestProgramKeys runs the model in a real Bubble Tea program, typing
// bytes as a terminal would, and checks the final model: tab moves the
// focus, x probes, / filters, q quits.
func TestProgramKeys(t *testing.T) {
	b := &fakeBackend{snaps: []Snapshot{fixtureSnapshot(t0, 1, 40)}}
	m := New(Options{Backend: b, Location: time.UTC, Interval: 10 * time.Millisecond})
	in, w := io.Pipe()
	p := tea.NewProgram(m, tea.WithInput(in), tea.WithOutput(io.Discard), tea.WithWindowSize(100, 30))
	done := make(chan tea.Model, 1)
	errc := make(chan error, 1)
	go func() {
		fm, err := p.Run()
		errc <- err
		done <- fm
	}()
	// Wait for the first snapshot, so the keys act on a screen with data.
	deadline := time.Now().Add(10 * time.Second)
	for {
		b.mu.Lock()
		n := len(b.sinceSeqs)
		b.mu.Unlock()
		if n >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	keys := []string{"\t", "x", "/", "app-2", "\r", "q"}
	for _, k := range keys {
		if _, err := io.WriteString(w, k); err != nil {
			t.Fatal(err)
		}
		// One key per read: a terminal sends them apart too.
		time.Sleep(20 * time.Millisecond)
	}
	var fm tea.Model
	select {
	case fm = <-done:
	case <-time.After(20 * time.Second):
		p.Kill()
		t.Fatal("the program did not quit after q")
	}
	w.Close()
	if err := <-errc; err != nil {
		t.Fatalf("program: %v", err)
	}
	got := fm.(*Model)
	if got.focus != paneSources {
		t.Errorf("got focus %d, want the sources pane (%d) after one tab", got.focus, paneSources)
	}
	if got.stream.filter != "app-2" || got.stream.editing {
		t.Errorf("got filter %q editing %v, want app-2 kept", got.stream.filter, got.stream.editing)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.probes != 1 {
		t.Errorf("got %d probes, want 1", b.probes)
	}
	if !strings.Contains(screen(got), "/app-2") {
		t.Errorf("got no filter in the final view")
	}
}
