package tui

import (
	"strconv"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/fanscope/fanscope/feed"
)

// cell is one table cell: plain text and the style to draw it with.
type cell struct {
	text  string
	style *Style
	right bool
}

func txt(s string) cell              { return cell{text: s} }
func sty(s string, st Style) cell    { return cell{text: s, style: &st} }
func num(s string) cell              { return cell{text: s, right: true} }
func styNum(s string, st Style) cell { return cell{text: s, style: &st, right: true} }

// table aligns rows into columns two spaces apart. The last column is not
// padded; lines are cut to w by the caller.
func table(rows [][]cell) []string {
	var widths []int
	for _, r := range rows {
		for i, c := range r {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], ansi.StringWidth(c.text))
		}
	}
	out := make([]string, 0, len(rows))
	for _, r := range rows {
		var b strings.Builder
		for i, c := range r {
			if i > 0 {
				b.WriteString("  ")
			}
			t := c.text
			if i < len(r)-1 || c.right {
				padding := strings.Repeat(" ", widths[i]-ansi.StringWidth(t))
				if c.right {
					t = padding + t
				} else {
					t += padding
				}
			}
			if c.style != nil {
				t = c.style.Render(t)
			}
			b.WriteString(t)
		}
		out = append(out, b.String())
	}
	return out
}

// scroller is a pane whose rows scroll with j/k/g/G when it has the focus.
type scroller struct {
	keys          *KeyMap
	offset        int
	focused       bool
	width, height int
	lines         []string // the rows, drawn when the data or the size changed
}

func (s *scroller) SetSize(w, h int) { s.width, s.height = w, h }

// update scrolls over n rows.
func (s *scroller) update(msg tea.Msg, n int) {
	km, ok := msg.(tea.KeyPressMsg)
	if !ok {
		return
	}
	page := max(s.height-1, 1)
	switch {
	case key.Matches(km, s.keys.Down):
		s.offset++
	case key.Matches(km, s.keys.Up):
		s.offset--
	case key.Matches(km, s.keys.Top):
		s.offset = 0
	case key.Matches(km, s.keys.Bottom):
		s.offset = n
	}
	s.offset = min(max(s.offset, 0), max(n-page, 0))
}

// view draws the title and the rows from the scroll offset.
func (s *scroller) view(title string, rows []string) string {
	if s.height <= 0 || s.width <= 0 {
		return ""
	}
	page := max(s.height-1, 0)
	off := min(s.offset, max(len(rows)-page, 0))
	lines := make([]string, 0, s.height)
	lines = append(lines, title)
	if off < len(rows) {
		lines = append(lines, rows[off:]...)
	}
	if off+page < len(rows) && page > 0 {
		more := " ↓ " + strconv.Itoa(len(rows)-off-page) + " more"
		lines = lines[:page]
		lines = append(lines, more)
	}
	return fitLines(lines, s.width, s.height)
}

// sourcesPane lists the Redis subscription and each SSE connection.
type sourcesPane struct {
	scroller
	styles *Styles
	now    time.Time
	redis  *Redis
	sse    []Endpoint
	rates  *rateMeter
	colour map[string]int
}

func (p *sourcesPane) Update(msg tea.Msg) (*sourcesPane, tea.Cmd) {
	p.update(msg, len(p.lines))
	return p, nil
}

// refresh draws the rows again after the data or the size changed.
func (p *sourcesPane) refresh() { p.lines = p.rows() }

func (p *sourcesPane) View() string {
	title := paneTitle(p.styles, "Sources", p.focused)
	info := p.styles.Dim.Render(strconv.Itoa(len(p.sse)) + " SSE connection" + plural(len(p.sse)))
	if p.redis != nil {
		info = p.styles.Dim.Render(strconv.Itoa(len(p.redis.Subs))+" subscription"+plural(len(p.redis.Subs))+" · ") + info
	}
	return p.view(rule(p.styles, title+" "+info, p.width), p.lines)
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// stateStyle colours a connection state.
func (st *Styles) stateStyle(state string) Style {
	switch state {
	case feed.StateSubscribed, feed.StateConnected:
		return st.Good
	case feed.StateConnecting, feed.StateReconnecting, "":
		return st.Warn
	}
	return st.Bad
}

func (p *sourcesPane) rows() []string {
	st := p.styles
	var out []string
	if r := p.redis; r != nil {
		state := r.State
		if state == "" {
			state = "unknown"
		}
		conn := []cell{sty("redis", st.Redis), sty(state, st.stateStyle(r.State)),
			txt("ping " + fmtDur(r.PingRTT)), txt("reconn " + strconv.Itoa(r.Reconnects)),
			txt("gaps " + strconv.Itoa(r.Gaps)), txt(fmtRate(p.rates.rate(feed.SourceRedis, "")))}
		if r.Error != "" {
			conn = append(conn, sty(esc(r.Error), st.Bad))
		}
		if r.IntrospectError != "" {
			conn = append(conn, sty("counts: "+esc(r.IntrospectError), st.Warn))
		}
		out = append(out, table([][]cell{conn})...)
		var subs [][]cell
		for _, s := range r.Subs {
			count := "subs " + countStr(s.Subscribers)
			if s.Kind == SubPattern {
				count = "numpat " + countStr(r.NumPat)
			}
			countStyle := st.Good
			if s.Subscribers == 0 && s.Kind != SubPattern {
				countStyle = st.Warn
			}
			subs = append(subs, []cell{txt("  " + esc(s.Name)), sty(s.Kind.String(), st.Dim),
				styNum(count, countStyle), num(fmtRate(p.rates.rate(feed.SourceRedis, s.Name)))})
		}
		out = append(out, table(subs)...)
		for _, s := range r.Subs {
			if len(s.ByNode) < 2 {
				continue
			}
			var b strings.Builder
			b.WriteString("    " + esc(s.Name) + " by node:")
			for _, n := range s.ByNode {
				b.WriteString(" " + esc(n.Node) + " " + countStr(n.Subscribers))
			}
			out = append(out, st.Dim.Render(b.String()))
		}
	}
	var eps [][]cell
	var warn []string
	for _, e := range p.sse {
		name := esc(e.Name)
		if e.Conn > 0 {
			name += "#" + strconv.Itoa(e.Conn)
		}
		state := e.State
		if state == "" {
			state = "unknown"
		}
		if e.Status != 0 {
			state += " " + strconv.Itoa(e.Status)
		}
		row := []cell{sty(name, st.sseStyle(p.colour[e.Name])), sty(state, st.stateStyle(e.State)),
			txt("reconn " + strconv.Itoa(e.Reconnects)), txt("ev " + fmtAgo(p.now, e.LastEvent)),
			txt("ka " + fmtAgo(p.now, e.LastComment)), txt("ttfb " + fmtDur(e.TTFB)),
			num(fmtRate(p.rates.rate(feed.SourceSSE, e.Name)))}
		if e.Error != "" {
			row = append(row, sty(esc(e.Error), st.Bad))
		}
		eps = append(eps, row)
		for _, w := range e.Warnings {
			warn = append(warn, st.Warn.Render("  ! "+name+": "+esc(w)))
		}
	}
	out = append(out, table(eps)...)
	out = append(out, warn...)
	if len(out) == 0 {
		out = append(out, st.Dim.Render(" no sources"))
	}
	return out
}

func countStr(n int64) string {
	if n < 0 {
		return "?"
	}
	return strconv.FormatInt(n, 10)
}

// latencyPane shows probe latency per path.
type latencyPane struct {
	scroller
	styles *Styles
	lat    Latency
}

func (p *latencyPane) Update(msg tea.Msg) (*latencyPane, tea.Cmd) {
	p.update(msg, len(p.lines))
	return p, nil
}

// refresh draws the rows again after the data or the size changed.
func (p *latencyPane) refresh() { p.lines = p.rows() }

func (p *latencyPane) View() string {
	st := p.styles
	info := "sent " + strconv.FormatUint(p.lat.Sent, 10)
	if p.lat.Channel != "" {
		info += " on " + esc(p.lat.Channel)
	}
	if p.lat.Continuous {
		info += " · every " + fmtDur(p.lat.Interval)
	}
	head := paneTitle(st, "Latency", p.focused) + " " + st.Dim.Render(info)
	if p.lat.Continuous {
		head += " " + st.Good.Render("probing")
	}
	if p.lat.Error != "" {
		head += " " + st.Error.Render(esc(p.lat.Error))
	}
	return p.view(rule(st, head, p.width), p.lines)
}

func (p *latencyPane) rows() []string {
	st := p.styles
	if len(p.lat.Paths) == 0 {
		return []string{st.Dim.Render(" no probes yet: x sends one, X probes continuously")}
	}
	rows := [][]cell{{sty("path", st.Dim), styNum("dlv", st.Dim), styNum("lost", st.Dim),
		styNum("p50", st.Dim), styNum("p95", st.Dim), styNum("p99", st.Dim), sty("hop p50/p99", st.Dim)}}
	for _, path := range p.lat.Paths {
		lost := styNum(strconv.FormatUint(path.Lost, 10), st.Good)
		if path.Lost > 0 {
			lost = styNum(strconv.FormatUint(path.Lost, 10), st.Bad)
		}
		hop := "-"
		if path.Hop != nil && path.Hop.Count > 0 {
			hop = fmtDur(path.Hop.P50) + "/" + fmtDur(path.Hop.P99) + " n=" + strconv.FormatUint(path.Hop.Count, 10)
		}
		extra := ""
		if path.Duplicates > 0 {
			extra += " dup " + strconv.FormatUint(path.Duplicates, 10)
		}
		if path.Reorder > 0 {
			extra += " reord " + strconv.FormatUint(path.Reorder, 10)
		}
		rows = append(rows, []cell{txt(esc(path.Name)), num(strconv.FormatUint(path.Delivered, 10)), lost,
			num(fmtDur(path.P50)), num(fmtDur(path.P95)), num(fmtDur(path.P99)), txt(hop + extra)})
	}
	lines := table(rows)
	// The sparkline takes what is left of the line.
	used := 0
	for _, l := range lines {
		used = max(used, ansi.StringWidth(l))
	}
	sw := min(p.width-used-3, 60)
	if sw >= 4 {
		for i := range lines {
			if i == 0 {
				lines[i] = padTo(lines[i], used) + "  " + st.Dim.Render("trend")
				continue
			}
			lines[i] = padTo(lines[i], used) + "  " + st.Spark.Render(sparkline(p.lat.Paths[i-1].Spark, sw))
		}
	}
	return lines
}

// padTo pads s (which may be styled) with spaces to w cells.
func padTo(s string, w int) string {
	if d := w - ansi.StringWidth(s); d > 0 {
		return s + strings.Repeat(" ", d)
	}
	return s
}

// radarPane is the slow-subscriber radar: each Pub/Sub client's output
// buffer against the pubsub soft limit.
type radarPane struct {
	scroller
	styles *Styles
	radar  Radar // Clients sorted by OMem, largest first
}

func (p *radarPane) Update(msg tea.Msg) (*radarPane, tea.Cmd) {
	p.update(msg, len(p.lines))
	return p, nil
}

// refresh draws the rows again after the data or the size changed.
func (p *radarPane) refresh() { p.lines = p.rows() }

// limit is what omem is measured against: the soft limit, else the hard.
func (r *Radar) limit() int64 {
	if r.Soft > 0 {
		return r.Soft
	}
	return r.Hard
}

// hot reports whether c is past half of the soft limit.
func (r *Radar) hot(c Client) bool {
	l := r.limit()
	return l > 0 && c.OMem*2 >= l
}

func (p *radarPane) summary() string {
	r := &p.radar
	if !r.Available {
		if r.Reason == "" {
			return "waiting for CLIENT LIST"
		}
		return "unavailable: " + esc(r.Reason)
	}
	s := strconv.Itoa(len(r.Clients)) + " pubsub client" + plural(len(r.Clients))
	switch {
	case r.Soft > 0:
		s += " · soft " + fmtBytes(r.Soft) + "/" + strconv.Itoa(r.SoftSeconds) + "s"
	case r.Hard == 0:
		s += " · no output-buffer limit"
	}
	if r.Hard > 0 {
		s += " · hard " + fmtBytes(r.Hard)
	}
	if len(r.Clients) > 0 {
		s += " · max omem " + fmtBytes(r.Clients[0].OMem)
		if l := r.limit(); l > 0 {
			s += " (" + strconv.FormatInt(r.Clients[0].OMem*100/l, 10) + "%)"
		}
	}
	return s
}

func (p *radarPane) View() string {
	st := p.styles
	sum := p.summary()
	sumStyle := st.Dim
	if len(p.radar.Clients) > 0 && p.radar.hot(p.radar.Clients[0]) {
		sumStyle = st.RadarHot
	}
	head := paneTitle(st, "Radar", p.focused) + " " + sumStyle.Render(sum)
	return p.view(rule(st, head, p.width), p.lines)
}

func (p *radarPane) rows() []string {
	st := p.styles
	r := &p.radar
	if len(r.Clients) == 0 {
		return nil
	}
	l := r.limit()
	rows := [][]cell{{sty("client", st.Dim), sty("name", st.Dim), styNum("subs", st.Dim), styNum("omem", st.Dim), styNum("of soft", st.Dim), sty("", st.Dim)}}
	for _, c := range r.Clients {
		share, bar := "-", ""
		if l > 0 {
			pct := c.OMem * 100 / l
			share = strconv.FormatInt(pct, 10) + "%"
			n := int(min(pct, 100) / 10)
			bar = strings.Repeat("█", n) + strings.Repeat("·", 10-n)
		}
		row := []cell{txt(esc(c.Addr)), txt(esc(c.Name)), num(strconv.Itoa(c.Subs)), num(fmtBytes(c.OMem)), num(share), txt(bar)}
		if r.hot(c) {
			for i := range row {
				row[i].style = &st.RadarHot
			}
		}
		rows = append(rows, row)
	}
	return table(rows)
}

// rowCount is how many rows rows() returns, without drawing them.
func (p *sourcesPane) rowCount() int {
	n := 0
	if p.redis != nil {
		n += 1 + len(p.redis.Subs)
		for _, s := range p.redis.Subs {
			if len(s.ByNode) > 1 {
				n++ // the per-node breakdown
			}
		}
	}
	for _, e := range p.sse {
		n += 1 + len(e.Warnings)
	}
	return max(n, 1)
}

func (p *latencyPane) rowCount() int {
	if len(p.lat.Paths) == 0 {
		return 1
	}
	return 1 + len(p.lat.Paths)
}

func (p *radarPane) rowCount() int {
	if len(p.radar.Clients) == 0 {
		return 0
	}
	return 1 + len(p.radar.Clients)
}
