package netx

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"ws://h/x", "ws://h/x"},
		{"ws://u:pw@h/x", "ws://u:***@h/x"},
		{"ws://h/x?token=abc&room=1&Sig=zz&apikey=", "ws://h/x?token=***&room=1&Sig=***&apikey=***"},
		{"https://h/?access_token=a%20b&key=k&password=p&secret=s&signature=g&auth=q", "https://h/?access_token=***&key=***&password=***&secret=***&signature=***&auth=***"},
		{"https://h/?keys=1&tokens=2", "https://h/?keys=1&tokens=2"},
	}
	for _, tc := range tests {
		u, err := url.Parse(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		if got := RedactURL(u); got != tc.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestScrubber(t *testing.T) {
	u, _ := url.Parse("ws://u:pa%20ss@h/x?token=t0k&room=lobby")
	s := NewScrubber(u, http.Header{"Authorization": {"Bearer b3arer"}, "X-Other": {"visible"}})
	in := `Get "ws://u:pa%20ss@h/x?token=t0k&room=lobby": Bearer b3arer, b3arer, pa ss, visible`
	got := s.Scrub(in)
	for _, secret := range []string{"t0k", "b3arer", "pa ss", "pa%20ss"} {
		if strings.Contains(got, secret) {
			t.Errorf("Scrub left %q in %q", secret, got)
		}
	}
	if !strings.Contains(got, "lobby") || !strings.Contains(got, "visible") {
		t.Errorf("Scrub removed too much: %q", got)
	}
}

func TestBackoff(t *testing.T) {
	top := func(n int64) int64 { return n - 1 }
	bottom := func(int64) int64 { return 0 }
	tests := []struct {
		failures int
		jitter   func(int64) int64
		want     time.Duration
	}{
		{0, top, time.Second},
		{1, top, 2 * time.Second},
		{1, bottom, time.Second},
		{3, top, 8 * time.Second},
		{10, top, 30 * time.Second},
		{10, bottom, 15 * time.Second},
	}
	for _, tc := range tests {
		if got := Backoff(time.Second, 30*time.Second, tc.failures, tc.jitter); got != tc.want {
			t.Errorf("Backoff(1s, 30s, %d) = %s, want %s", tc.failures, got, tc.want)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0}, {"7", 7 * time.Second}, {"-1", 0}, {"soon", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
	}
	for _, tc := range tests {
		if got := ParseRetryAfter(tc.in, now); got != tc.want {
			t.Errorf("ParseRetryAfter(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}
