package tui

import (
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/charmbracelet/x/ansi"
	"github.com/fanscope/fanscope/feed"
)

// fmtDur shows a latency or duration compactly: 0.21ms, 12.3ms, 1.20s, 3m05s.
func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < 10*time.Millisecond:
		return strconv.FormatFloat(float64(d)/1e6, 'f', 2, 64) + "ms"
	case d < time.Second:
		return strconv.FormatFloat(float64(d)/1e6, 'f', 1, 64) + "ms"
	case d < time.Minute:
		return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + "s"
	case d < time.Hour:
		m := int(d / time.Minute)
		s := int((d % time.Minute) / time.Second)
		return strconv.Itoa(m) + "m" + pad2(s) + "s"
	}
	h := int(d / time.Hour)
	m := int((d % time.Hour) / time.Minute)
	return strconv.Itoa(h) + "h" + pad2(m) + "m"
}

func pad2(n int) string {
	if n < 10 {
		return "0" + strconv.Itoa(n)
	}
	return strconv.Itoa(n)
}

// fmtAgo is how long before now t was, or "never" for the zero time.
func fmtAgo(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	if d < 0 {
		d = 0
	}
	if d < time.Second {
		return "<1s"
	}
	return fmtDur(d.Truncate(100 * time.Millisecond))
}

// fmtRate shows a per-second rate: 0/s, 12.5/s, 1.2k/s.
func fmtRate(r float64) string {
	switch {
	case r <= 0:
		return "0/s"
	case r < 100:
		return strconv.FormatFloat(r, 'f', 1, 64) + "/s"
	case r < 10000:
		return strconv.FormatFloat(r, 'f', 0, 64) + "/s"
	}
	return strconv.FormatFloat(r/1000, 'f', 1, 64) + "k/s"
}

// fmtBytes shows a size: 512B, 1.5KB, 32.0MB.
func fmtBytes(n int64) string {
	const k = 1024
	switch {
	case n < k:
		return strconv.FormatInt(n, 10) + "B"
	case n < k*k:
		return strconv.FormatFloat(float64(n)/k, 'f', 1, 64) + "KB"
	case n < k*k*k:
		return strconv.FormatFloat(float64(n)/(k*k), 'f', 1, 64) + "MB"
	}
	return strconv.FormatFloat(float64(n)/(k*k*k), 'f', 1, 64) + "GB"
}

// clip makes plain (unstyled) s exactly w cells wide: cut with an
// ellipsis or padded with spaces.
func clip(s string, w int) string {
	if w <= 0 {
		return ""
	}
	sw := ansi.StringWidth(s)
	if sw > w {
		return ansi.Truncate(s, w, "…")
	}
	if sw < w {
		return s + strings.Repeat(" ", w-sw)
	}
	return s
}

// trunc cuts s (which may be styled) to at most w cells.
func trunc(s string, w int) string {
	if w <= 0 {
		return ""
	}
	if ansi.StringWidth(s) <= w {
		return s
	}
	return ansi.Truncate(s, w, "…")
}

// esc escapes control characters in s so it is safe to draw.
func esc(s string) string {
	for i := 0; i < len(s); i++ {
		if b := s[i]; b < 0x20 || b >= 0x7f {
			return string(appendEscapedPrefix(nil, s, len(s)))
		}
	}
	return s
}

// appendEscapedPrefix escapes at most the first n bytes of s (cut on a
// rune boundary), so a preview of a 10 MB payload costs what a line costs.
func appendEscapedPrefix(buf []byte, s string, n int) []byte {
	if len(s) > n {
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		s = s[:n]
	}
	return feed.AppendEscaped(buf, s)
}

// sparkBlocks are the eight heights of a sparkline cell.
var sparkBlocks = []rune("▁▂▃▄▅▆▇█")

// sparkline draws vals in at most w cells, scaled to their maximum; when
// there are more values than cells, each cell shows the largest of its
// share, so the whole window stays in view. A zero value (no data) is a
// blank.
func sparkline(vals []time.Duration, w int) string {
	if w <= 0 || len(vals) == 0 {
		return ""
	}
	if n := len(vals); n > w {
		buckets := make([]time.Duration, w)
		for i := range buckets {
			for _, v := range vals[i*n/w : (i+1)*n/w] {
				buckets[i] = maxDur(buckets[i], v)
			}
		}
		vals = buckets
	}
	var max time.Duration
	for _, v := range vals {
		max = maxDur(max, v)
	}
	var b strings.Builder
	for _, v := range vals {
		if v <= 0 || max <= 0 {
			b.WriteByte(' ')
			continue
		}
		i := int(int64(v) * int64(len(sparkBlocks)-1) / int64(max))
		b.WriteRune(sparkBlocks[i])
	}
	return b.String()
}

func maxDur(a, b time.Duration) time.Duration {
	if a > b {
		return a
	}
	return b
}

// fitLines returns exactly h lines, each cut to w cells, joined by
// newlines.
func fitLines(lines []string, w, h int) string {
	return joinLines(lines, h, func(l string) string { return trunc(l, w) })
}

// stackLines returns exactly h lines joined by newlines, for lines already
// known to fit the width (it skips fitLines' width check, which costs a
// grapheme walk per line).
func stackLines(lines []string, h int) string {
	return joinLines(lines, h, nil)
}

// joinLines joins the first h lines (padding with empty ones), passing each
// through cut when it is set.
func joinLines(lines []string, h int, cut func(string) string) string {
	if h <= 0 {
		return ""
	}
	if len(lines) > h {
		lines = lines[:h]
	}
	var b strings.Builder
	for i := 0; i < h; i++ {
		if i > 0 {
			b.WriteByte('\n')
		}
		if i < len(lines) {
			if cut != nil {
				b.WriteString(cut(lines[i]))
			} else {
				b.WriteString(lines[i])
			}
		}
	}
	return b.String()
}
