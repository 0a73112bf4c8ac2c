package trafficgen

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func seeded() *rand.Rand { return rand.New(rand.NewPCG(1, 2)) }

func TestNextPayloadsAreValidAndComplete(t *testing.T) {
	now := time.Date(2026, 11, 27, 15, 4, 5, 123e6, time.UTC)
	g := New(Config{Rand: seeded(), Now: func() time.Time { return now }, OtherShare: 0.3})
	counts := map[string]int{}
	for i := 0; i < 2000; i++ {
		ch, p := g.Next()
		counts[ch]++
		var m map[string]any
		if err := json.Unmarshal([]byte(p), &m); err != nil {
			t.Fatalf("message %d on %s is not JSON: %q: %v", i, ch, p, err)
		}
		var want []string
		switch ch {
		case ChannelPublished:
			want = []string{"storyId", "title", "author", "genre", "publishedAt"}
			if m["publishedAt"] != "2026-11-27T15:04:05.123Z" {
				t.Fatalf("publishedAt: got %v, want 2026-11-27T15:04:05.123Z", m["publishedAt"])
			}
		case ChannelLiked:
			want = []string{"storyId", "userId", "likes", "likedAt"}
		case ChannelCommented:
			want = []string{"storyId", "commentId", "author", "excerpt", "postedAt"}
		default:
			t.Fatalf("message %d: unexpected channel %q", i, ch)
		}
		for _, k := range want {
			if v, ok := m[k]; !ok || v == "" {
				t.Fatalf("message %d on %s: field %s missing or empty in %s", i, ch, k, p)
			}
		}
		if id, _ := m["storyId"].(string); !strings.HasPrefix(id, "st_") || len(id) != 11 {
			t.Fatalf("message %d: storyId %q, want st_ and 8 characters", i, id)
		}
	}
	if counts[ChannelPublished] < 1200 || counts[ChannelLiked] == 0 || counts[ChannelCommented] == 0 {
		t.Errorf("channel mix: got %v, want mostly story:published and some of each other", counts)
	}
}

func TestFirstMessageIsAStory(t *testing.T) {
	// Likes and comments refer to stories already published.
	g := New(Config{Rand: seeded(), OtherShare: 1})
	if ch, _ := g.Next(); ch != ChannelPublished {
		t.Fatalf("first message: got %s, want %s", ch, ChannelPublished)
	}
}

func TestNoOtherChannelsWhenShareNegative(t *testing.T) {
	g := New(Config{Rand: seeded(), OtherShare: -1})
	for i := 0; i < 500; i++ {
		if ch, _ := g.Next(); ch != ChannelPublished {
			t.Fatalf("message %d: got %s, want only %s", i, ch, ChannelPublished)
		}
	}
}

func TestIntervalRange(t *testing.T) {
	tests := []struct {
		name     string
		cfg      Config
		min, max time.Duration
	}{
		{"default 0.5-2s", Config{}, 500 * time.Millisecond, 2 * time.Second},
		{"custom", Config{MinInterval: 10 * time.Millisecond, MaxInterval: 20 * time.Millisecond}, 10 * time.Millisecond, 20 * time.Millisecond},
		{"fixed", Config{MinInterval: time.Second, MaxInterval: time.Second}, time.Second, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Rand = seeded()
			g := New(tt.cfg)
			lo, hi := time.Hour, time.Duration(0)
			for i := 0; i < 5000; i++ {
				d := g.Interval()
				lo, hi = min(lo, d), max(hi, d)
			}
			if lo < tt.min || hi > tt.max {
				t.Fatalf("got intervals %v..%v, want within %v..%v", lo, hi, tt.min, tt.max)
			}
			if tt.min != tt.max && hi-lo < (tt.max-tt.min)*9/10 {
				t.Errorf("got intervals %v..%v, want them spread over %v..%v", lo, hi, tt.min, tt.max)
			}
		})
	}
}

func TestRunPublishesUntilContextEnds(t *testing.T) {
	g := New(Config{Rand: seeded(), MinInterval: time.Millisecond, MaxInterval: 2 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	err := Run(ctx, g, func(_ context.Context, ch, p string) error {
		if n++; n == 10 {
			cancel()
		}
		return nil
	})
	if err != nil || n != 10 {
		t.Fatalf("got %d publishes and %v, want 10 and nil", n, err)
	}
}

func TestRunReturnsPublishError(t *testing.T) {
	g := New(Config{Rand: seeded(), MinInterval: time.Millisecond, MaxInterval: time.Millisecond})
	boom := errors.New("boom")
	err := Run(context.Background(), g, func(context.Context, string, string) error { return boom })
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "story:published") {
		t.Fatalf("got %v, want an error wrapping boom that names the channel", err)
	}
}
