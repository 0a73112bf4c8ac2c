package tui

import (
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
)

// newProductionModel is a model whose Redis is not on loopback.
func newProductionModel(b Backend, allow bool) *Model {
	m := New(Options{Backend: b, Location: time.UTC, Channel: "story:published", AllowPublish: allow})
	m.Update(tea.WindowSizeMsg{Width: 100, Height: 30})
	s := fixtureSnapshot(t0, 1, 40)
	s.Header.Production = true
	s.Header.Targets = []string{"redis://app:***@10.0.0.5:6379/0"}
	s.Latency.Interval = time.Second
	m.Update(SnapshotMsg{s})
	return m
}

// TestProductionGuard checks that x, X and P ask before sending anything
// to a production Redis, that only y sends, and that --allow-publish
// skips the question.
func TestProductionGuard(t *testing.T) {
	type counts struct{ probes, continuous, published int }
	get := func(b *fakeBackend) counts {
		b.mu.Lock()
		defer b.mu.Unlock()
		return counts{b.probes, len(b.continuous), len(b.published)}
	}
	tests := []struct {
		name     string
		keys     func(m *Model) tea.Cmd // returns the last key's command
		question string
		want     counts
	}{
		{"x", func(m *Model) tea.Cmd { _, c := m.Update(press("x")); return c }, "send a probe to redis://app:***@10.0.0.5:6379/0?", counts{probes: 1}},
		{"X", func(m *Model) tea.Cmd { _, c := m.Update(press("X")); return c }, "probe redis://app:***@10.0.0.5:6379/0 every 1.0s?", counts{continuous: 1}},
		{"P", func(m *Model) tea.Cmd {
			m.Update(press("P"))
			typeText(m, "hi")
			_, c := m.Update(press("enter"))
			return c
		}, "publish 2 bytes to story:published on redis://app:***@10.0.0.5:6379/0?", counts{published: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name+" asks", func(t *testing.T) {
			b := &fakeBackend{}
			m := newProductionModel(b, false)
			tt.keys(m)
			if m.confirm == nil || m.confirm.question != tt.question {
				t.Fatalf("got question %+v, want %q", m.confirm, tt.question)
			}
			if got := screen(m); !strings.Contains(got, "PRODUCTION  "+tt.question[:20]) || !strings.Contains(got, "y yes") {
				t.Fatalf("got no question and answers on the screen:\n%s", got)
			}
			checkFits(t, m, 100, 30)
			_, cmd := m.Update(press("n"))
			send(m, cmd)
			if got := get(b); got != (counts{}) {
				t.Fatalf("after n got %+v sent, want nothing", got)
			}
			if m.confirm != nil {
				t.Fatal("got the question still open after n")
			}
			if tt.name == "P" {
				if !m.prompt.open || !strings.Contains(screen(m), "not published") {
					t.Errorf("after n got prompt open %v, want it open saying not published:\n%s", m.prompt.open, screen(m))
				}
				m.Update(press("enter")) // ask again
			} else {
				tt.keys(m)
			}
			_, cmd = m.Update(press("y"))
			send(m, cmd)
			if got := get(b); got != tt.want {
				t.Errorf("after y got %+v, want %+v", got, tt.want)
			}
		})
		t.Run(tt.name+" with --allow-publish", func(t *testing.T) {
			b := &fakeBackend{}
			m := newProductionModel(b, true)
			send(m, tt.keys(m))
			if m.confirm != nil {
				t.Fatalf("got a question with --allow-publish:\n%s", screen(m))
			}
			if got := get(b); got != tt.want {
				t.Errorf("got %+v, want %+v at once", got, tt.want)
			}
		})
	}
	t.Run("X off does not ask", func(t *testing.T) {
		b := &fakeBackend{}
		m := newProductionModel(b, false)
		s := fixtureSnapshot(t0.Add(time.Second), 41, 1)
		s.Header.Production = true
		s.Latency.Continuous = true
		m.Update(SnapshotMsg{s})
		_, cmd := m.Update(press("X"))
		send(m, cmd)
		if m.confirm != nil || get(b).continuous != 1 {
			t.Errorf("stopping probes got question %v and %d calls, want none and 1", m.confirm != nil, get(b).continuous)
		}
	})
	t.Run("loopback does not ask", func(t *testing.T) {
		b := &fakeBackend{}
		m := newFixtureModel(80, 24, b)
		_, cmd := m.Update(press("x"))
		send(m, cmd)
		if m.confirm != nil || get(b).probes != 1 {
			t.Errorf("got question %v and %d probes, want none and 1", m.confirm != nil, get(b).probes)
		}
	})
}

// TestEmptyPublishPrompt checks that enter on an empty payload (or an
// empty channel) publishes nothing and says why.
func TestEmptyPublishPrompt(t *testing.T) {
	b := &fakeBackend{}
	m := New(Options{Backend: b, Location: time.UTC})
	m.Update(tea.WindowSizeMsg{Width: 80, Height: 24})
	m.Update(SnapshotMsg{fixtureSnapshot(t0, 1, 10)})
	m.Update(press("P"))
	_, cmd := m.Update(press("enter")) // empty channel: moves to the payload
	send(m, cmd)
	_, cmd = m.Update(press("enter")) // empty payload and channel
	send(m, cmd)
	if len(b.published) != 0 {
		t.Fatalf("got %d publishes from an empty prompt, want none", len(b.published))
	}
	if !strings.Contains(screen(m), "the channel is empty") {
		t.Errorf("got no reason on the screen:\n%s", screen(m))
	}
	typeText(m, "story:published")
	m.Update(press("enter"))
	_, cmd = m.Update(press("enter"))
	send(m, cmd)
	if len(b.published) != 0 {
		t.Fatalf("got %d publishes of an empty payload, want none", len(b.published))
	}
	if !m.prompt.open || !strings.Contains(screen(m), "the payload is empty: nothing published") {
		t.Errorf("got prompt open %v, want it open saying the payload is empty:\n%s", m.prompt.open, screen(m))
	}
	typeText(m, "x")
	_, cmd = m.Update(press("enter"))
	send(m, cmd)
	if len(b.published) != 1 || b.published[0] != (submission{"story:published", "x"}) {
		t.Errorf("got %v, want one publish of x", b.published)
	}
}
