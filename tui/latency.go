package tui

import (
	"strconv"
	"strings"
	"time"

	"github.com/charmbracelet/x/ansi"

	"github.com/fanscope/fanscope/probes"
)

// latencyBody lists every path side by side (redis, sse:…, ws:…, poll:…):
// the same probes measured over every door.
type latencyBody struct {
	styles *Styles
	lat    Latency
}

func (b *latencyBody) setData(s *Snapshot) { b.lat = s.Latency }

func (b *latencyBody) hidden() bool { return false }

func (b *latencyBody) head(focused bool) string {
	st := b.styles
	l := &b.lat
	info := "sent " + strconv.Itoa(l.Probes.Sent)
	if l.Channel != "" {
		info += " on " + esc(l.Channel)
	}
	if l.Continuous {
		info += " · every " + fmtDur(l.Interval)
	}
	h := paneTitle(st, "Latency", focused) + " " + st.Dim.Render(info)
	if l.Continuous {
		h += " " + st.Good.Render("probing")
	}
	if l.Error != "" {
		h += " " + st.Error.Render(esc(l.Error))
	}
	return h
}

// distCell is "p50/p99" of a distribution, "-" when empty.
func distCell(d probes.Dist) string {
	if d.Count == 0 {
		return "-"
	}
	return fmtDur(d.P50) + "/" + fmtDur(d.P99)
}

// Column priorities: the lowest is given up first on a narrow terminal.
const (
	keepP95 = iota + 1
	keepPublish
	keepHop
	keepOdd
	keepInterval
)

func (b *latencyBody) rows(w int) []string {
	st := b.styles
	l := &b.lat
	paths := l.Probes.Paths
	if len(paths) == 0 {
		return []string{st.Dim.Render(" no paths yet: x sends a probe, X probes continuously")}
	}
	var hasHop, hasOdd, hasPoll bool
	for i := range paths {
		p := &paths[i]
		hasHop = hasHop || p.Hop.Count > 0
		hasOdd = hasOdd || p.Duplicates > 0 || p.Reordered > 0
		_, poll := l.PollIntervals[p.Path]
		hasPoll = hasPoll || poll
	}
	head := func(s string, right bool) cell {
		if right {
			return styNum(s, st.Dim)
		}
		return sty(s, st.Dim)
	}
	cols := []column{
		{0, []cell{head("path", false)}},
		{0, []cell{head("dlv", true)}},
		{0, []cell{head("lost", true)}},
		{0, []cell{head("p50", true)}},
		{keepP95, []cell{head("p95", true)}},
		{0, []cell{head("p99", true)}},
	}
	const colPath, colDlv, colLost, colP50, colP95, colP99 = 0, 1, 2, 3, 4, 5
	opt := func(keep int, title string, right bool) int {
		cols = append(cols, column{keep, []cell{head(title, right)}})
		return len(cols) - 1
	}
	colInterval, colHop, colPublish, colOdd := -1, -1, -1, -1
	if hasPoll {
		colInterval = opt(keepInterval, "poll", true)
	}
	if hasHop {
		colHop = opt(keepHop, "hop p50/p99", false)
	}
	if l.Publish != nil {
		colPublish = opt(keepPublish, "publish→ p50/p99", false)
	}
	if hasOdd {
		colOdd = opt(keepOdd, "dup/reord", false)
	}
	add := func(col int, c cell) {
		if col >= 0 {
			cols[col].cells = append(cols[col].cells, c)
		}
	}
	for i := range paths {
		p := &paths[i]
		lost := styNum(strconv.FormatInt(p.Lost, 10), st.Good)
		if p.Lost > 0 {
			lost = styNum(strconv.FormatInt(p.Lost, 10), st.Bad)
		}
		add(colPath, txt(esc(p.Path)))
		add(colDlv, num(strconv.FormatInt(p.Delivered, 10)))
		add(colLost, lost)
		add(colP50, num(fmtDur(p.Latency.P50)))
		add(colP95, num(fmtDur(p.Latency.P95)))
		add(colP99, num(fmtDur(p.Latency.P99)))
		if iv, ok := l.PollIntervals[p.Path]; ok {
			add(colInterval, num(fmtDur(iv)))
		} else {
			add(colInterval, num(""))
		}
		add(colHop, txt(distCell(p.Hop)))
		add(colPublish, txt(distCell(l.Publish[p.Path])))
		odd := ""
		if p.Duplicates > 0 || p.Reordered > 0 {
			odd = strconv.FormatInt(p.Duplicates, 10) + "/" + strconv.FormatInt(p.Reordered, 10)
		}
		add(colOdd, sty(odd, st.Warn))
	}
	lines := fitTable(cols, w)
	// The sparkline of per-second medians takes what is left of the line.
	used := 0
	for _, line := range lines {
		used = max(used, ansi.StringWidth(line))
	}
	if sw := min(w-used-3, 60); sw >= 8 {
		for i := range lines {
			if i == 0 {
				lines[i] = padTo(lines[i], used) + "  " + st.Dim.Render("trend")
				continue
			}
			lines[i] = padTo(lines[i], used) + "  " + st.Spark.Render(sparkline(spark(paths[i-1].LatencyWindow), sw))
		}
	}
	if l.Probes.Sent == 0 {
		lines = append(lines, st.Dim.Render(" no probes yet: x sends one, X probes continuously"))
	}
	return trimRight(lines)
}

// spark is a window's medians, 0 for seconds without a delivery.
func spark(win []probes.WindowPoint) []time.Duration {
	out := make([]time.Duration, len(win))
	for i, p := range win {
		if p.Count > 0 {
			out[i] = max(p.P50, time.Microsecond)
		}
	}
	return out
}

// trimRight drops the trailing spaces of padded rows.
func trimRight(lines []string) []string {
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	return lines
}
