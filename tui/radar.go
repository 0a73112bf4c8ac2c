package tui

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// radarBody is the slow-subscriber radar: each Pub/Sub client's output
// buffer against the pubsub soft limit, and the clients Redis dropped.
type radarBody struct {
	styles *Styles
	radar  Radar // Clients sorted by OMem, largest first
}

func (b *radarBody) setData(s *Snapshot) {
	b.radar = s.Radar
	b.radar.Clients = slices.Clone(s.Radar.Clients)
	slices.SortStableFunc(b.radar.Clients, func(x, y Client) int { return cmp.Compare(y.OMem, x.OMem) })
}

func (b *radarBody) hidden() bool { return false }

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

// summary is the title's text: the client count, what Redis dropped
// (the event the radar exists for, so before the limits), the limits and
// the fullest buffer. It is all a narrow layout shows of the radar.
func (b *radarBody) summary() (count, drops, limits string) {
	r := &b.radar
	if !r.Available {
		if r.Reason == "" {
			return "waiting for CLIENT LIST", "", ""
		}
		return "unavailable: " + esc(r.Reason), "", ""
	}
	count = strconv.Itoa(len(r.Clients)) + " pubsub client" + plural(len(r.Clients))
	if n := r.OutputBufferDisconnections; n >= 0 {
		drops = " · " + strconv.FormatInt(n, 10) + " dropped at the limit"
	}
	switch {
	case r.Soft > 0:
		limits += " · soft " + fmtBytes(r.Soft) + "/" + strconv.Itoa(r.SoftSeconds) + "s"
	case r.Hard == 0:
		limits += " · no output-buffer limit"
	}
	if r.Hard > 0 {
		limits += " · hard " + fmtBytes(r.Hard)
	}
	if len(r.Clients) > 0 {
		limits += " · max omem " + fmtBytes(r.Clients[0].OMem)
		if l := r.limit(); l > 0 {
			limits += " (" + strconv.FormatInt(r.Clients[0].OMem*100/l, 10) + "%)"
		}
	}
	return count, drops, limits
}

func (b *radarBody) head(focused bool) string {
	st := b.styles
	r := &b.radar
	limitStyle := st.Dim
	if len(r.Clients) > 0 && r.hot(r.Clients[0]) {
		limitStyle = st.RadarHot
	}
	dropStyle := st.Dim
	if r.OutputBufferDisconnections > 0 {
		dropStyle = st.RadarHot
	}
	count, drops, limits := b.summary()
	return paneTitle(st, "Radar", focused) + " " + st.Dim.Render(count) + dropStyle.Render(drops) + limitStyle.Render(limits)
}

func (b *radarBody) rows(int) []string {
	st := b.styles
	r := &b.radar
	var out []string
	if len(r.Clients) > 0 {
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
		out = table(rows)
	}
	// Newest first: the event the radar exists to catch.
	for i := len(r.Disconnects) - 1; i >= 0; i-- {
		out = append(out, st.Bad.Render(" ! "+esc(r.Disconnects[i])))
	}
	return out
}

// publishersBody is who publishes (MONITOR): address, name, channels,
// count, rate and last publish, the most recent first.
type publishersBody struct {
	styles *Styles
	now    time.Time
	pubs   []Publisher
	shown  bool
}

func (b *publishersBody) setData(s *Snapshot) {
	b.now, b.shown = s.Now, s.Publishers != nil
	b.pubs = slices.Clone(s.Publishers)
	slices.SortStableFunc(b.pubs, func(x, y Publisher) int { return y.Last.Compare(x.Last) })
}

func (b *publishersBody) hidden() bool { return !b.shown }

func (b *publishersBody) head(focused bool) string {
	st := b.styles
	var n uint64
	for _, p := range b.pubs {
		n += p.Count
	}
	info := strconv.Itoa(len(b.pubs)) + " publisher" + plural(len(b.pubs)) + " · " + strconv.FormatUint(n, 10) + " PUBLISH seen by MONITOR"
	return paneTitle(st, "Publishers", focused) + " " + st.Dim.Render(info)
}

func (b *publishersBody) rows(int) []string {
	st := b.styles
	if len(b.pubs) == 0 {
		return []string{st.Dim.Render(" no PUBLISH seen yet")}
	}
	rows := [][]cell{{sty("client", st.Dim), sty("name", st.Dim), styNum("count", st.Dim), styNum("rate", st.Dim), styNum("last", st.Dim), sty("channels", st.Dim)}}
	for _, p := range b.pubs {
		chans := make([]string, len(p.Channels))
		for i, c := range p.Channels {
			chans[i] = esc(c)
		}
		name := esc(p.Name)
		if name == "" {
			name = "-"
		}
		rows = append(rows, []cell{txt(esc(p.Addr)), txt(name), num(strconv.FormatUint(p.Count, 10)),
			num(fmtRate(p.Rate)), num(fmtAgo(b.now, p.Last)), txt(strings.Join(chans, " "))})
	}
	return table(rows)
}
