package tui

import (
	"strconv"
	"strings"
	"time"

	"github.com/charmbracelet/x/ansi"

	"github.com/fanscope/fanscope/feed"
)

// pathKey names a path by its parts (feed.PathName(src, name)).
type pathKey struct {
	src  feed.Source
	name string
}

// palette gives each path a colour index, in order of first sight, so a
// path keeps its colour in the stream and the sources pane.
type palette map[pathKey]int

func (p palette) index(src feed.Source, name string) int {
	k := pathKey{src, name}
	i, ok := p[k]
	if !ok {
		i = len(p)
		p[k] = i
	}
	return i
}

// pathLabel is how a path is named on screen: its path name, and the
// connection when several go to one endpoint.
func pathLabel(src feed.Source, name string, conn int) string {
	l := src.String()
	if name != "" {
		l += ":" + esc(name)
	}
	if conn > 0 {
		l += "#" + strconv.Itoa(conn)
	}
	return l
}

// sourcesBody lists the Redis subscription and every connection of every
// other path.
type sourcesBody struct {
	styles  *Styles
	rates   *rateMeter
	colours palette
	now     time.Time
	redis   *Redis
	sources []feed.Status
}

func (b *sourcesBody) setData(s *Snapshot) {
	b.now, b.redis, b.sources = s.Now, s.Redis, s.Sources
	for i := range s.Sources {
		b.colours.index(s.Sources[i].Source, s.Sources[i].Name)
	}
}

func (b *sourcesBody) hidden() bool { return false }

func (b *sourcesBody) head(focused bool) string {
	var info []string
	if b.redis != nil {
		info = append(info, strconv.Itoa(len(b.redis.Subs))+" subscription"+plural(len(b.redis.Subs)))
	}
	info = append(info, strconv.Itoa(len(b.sources))+" connection"+plural(len(b.sources)))
	return paneTitle(b.styles, "Sources", focused) + " " + b.styles.Dim.Render(strings.Join(info, " · "))
}

// stateStyle colours a connection state: stalled is amber, like the
// states on the way back to healthy.
func (st *Styles) stateStyle(state string) Style {
	switch state {
	case feed.StateSubscribed, feed.StateConnected:
		return st.Good
	case feed.StateConnecting, feed.StateReconnecting, feed.StateStalled, "":
		return st.Warn
	}
	return st.Bad
}

func (b *sourcesBody) rows(w int) []string {
	st := b.styles
	var out []string
	if r := b.redis; r != nil {
		out = append(out, b.redisRows(r)...)
	}
	var conns [][]cell
	var details []string
	errCol := false // some connection has an error: give errors a column
	for i := range b.sources {
		errCol = errCol || b.sources[i].Error != ""
	}
	for i := range b.sources {
		s := &b.sources[i]
		conns = append(conns, b.connRow(s, pathLabel(s.Source, s.Name, s.Conn), errCol))
		details = append(details, connDetails(s))
	}
	// What only a transport has goes in a last column when it fits, else
	// on a line of its own under its connection.
	lines := table(conns)
	used, need := 0, 0
	for i, l := range lines {
		used = max(used, ansi.StringWidth(l))
		need = max(need, ansi.StringWidth(details[i]))
	}
	inline := used+2+need <= w
	for i, l := range lines {
		d := details[i]
		switch {
		case d == "":
			out = append(out, l)
		case inline:
			out = append(out, padTo(l, used)+"  "+st.Dim.Render(d))
		default:
			out = append(out, l, st.Dim.Render("    "+d))
		}
	}
	for i := range b.sources {
		s := &b.sources[i]
		for _, w := range s.Warnings {
			out = append(out, st.Warn.Render("  ! "+pathLabel(s.Source, s.Name, s.Conn)+": "+esc(w)))
		}
	}
	if len(out) == 0 {
		out = append(out, st.Dim.Render(" no sources"))
	}
	return out
}

func (b *sourcesBody) redisRows(r *Redis) []string {
	st := b.styles
	state := r.State
	if state == "" {
		state = "unknown"
	}
	conn := []cell{sty("redis", st.Redis), sty(state, st.stateStyle(r.State)),
		txt("ping " + fmtDur(r.PingRTT)), txt("reconn " + strconv.Itoa(r.Reconnects)),
		txt("gaps " + strconv.Itoa(r.Gaps)), txt(fmtRate(b.rates.kind(feed.SourceRedis)))}
	if r.Error != "" {
		conn = append(conn, sty(esc(r.Error), st.Bad))
	}
	if r.IntrospectError != "" {
		conn = append(conn, sty("counts: "+esc(r.IntrospectError), st.Warn))
	}
	out := table([][]cell{conn})
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
			styNum(count, countStyle), num(fmtRate(b.rates.channel(s.Name)))})
	}
	out = append(out, table(subs)...)
	for _, s := range r.Subs {
		if len(s.ByNode) < 2 {
			continue
		}
		var sb strings.Builder
		sb.WriteString("    " + esc(s.Name) + " by node:")
		for _, n := range s.ByNode {
			sb.WriteString(" " + esc(n.Node) + " " + countStr(n.Subscribers))
		}
		out = append(out, st.Dim.Render(sb.String()))
	}
	return out
}

// connRow is one connection: path, state (stalled for how long), HTTP
// status, reconnects, last event and keep-alive, rate and error.
func (b *sourcesBody) connRow(s *feed.Status, name string, errCol bool) []cell {
	st := b.styles
	state := s.State
	if state == "" {
		state = "unknown"
	}
	if s.State == feed.StateStalled && !s.LastByte.IsZero() {
		state += " " + fmtAgo(b.now, s.LastByte)
	}
	status := ""
	if s.HTTPStatus != 0 {
		status = strconv.Itoa(s.HTTPStatus)
	}
	ka := "ka -"
	if keepsAlive(s.Source) {
		ka = "ka " + fmtAgo(b.now, s.LastKeepAlive)
	}
	row := []cell{sty(name, st.pathStyle(b.colours.index(s.Source, s.Name))), sty(state, st.stateStyle(s.State)),
		sty(status, st.statusStyle(s.HTTPStatus)), txt("reconn " + strconv.Itoa(s.Reconnects)),
		txt("ev " + fmtAgo(b.now, s.LastEvent)), txt(ka),
		num(fmtRate(b.rates.conn(s.Source, s.Name, s.Conn)))}
	if errCol {
		row = append(row, sty(esc(s.Error), st.Bad))
	}
	return row
}

// connDetails is what only the connection's transport has, and its
// memory, in words.
func connDetails(s *feed.Status) string {
	var extra []string
	for _, d := range s.Details {
		extra = append(extra, esc(d))
	}
	if s.RSS > 0 {
		extra = append(extra, "rss "+fmtBytes(s.RSS))
	}
	return strings.Join(extra, " · ")
}

// keepsAlive reports whether a source kind has keep-alives to show.
func keepsAlive(src feed.Source) bool {
	switch src {
	case feed.SourceSSE, feed.SourceWS, feed.SourceSocketIO, feed.SourceBrowser:
		return true
	}
	return false
}

// statusStyle colours an HTTP status: 2xx and 304 are fine.
func (st *Styles) statusStyle(code int) Style {
	switch {
	case code == 0, code >= 200 && code < 300, code == 304, code == 101:
		return Style{}
	case code == 429 || code >= 500:
		return st.Warn
	}
	return st.Bad
}
