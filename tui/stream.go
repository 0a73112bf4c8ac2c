package tui

import (
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	"charm.land/bubbles/v2/textinput"
	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/fanscope/fanscope/feed"
)

// DefaultBuffer is how many records the stream keeps (--buffer).
const DefaultBuffer = 10000

// MaxBuffer is the largest --buffer: the stream's slots are allocated up
// front.
const MaxBuffer = 1000000

// maxStreamBytes bounds the payload bytes the stream holds: 2,500 payloads
// of 1 MiB must not take the TUI to gigabytes. The oldest records go first.
const maxStreamBytes = 128 << 20

// streamPane is the merged live stream: a bounded ring of records, an
// incrementally maintained filter, and a window of rows to draw. Drawing
// touches only the rows on screen, so its cost does not grow with the
// number of records buffered.
type streamPane struct {
	styles *Styles
	keys   *KeyMap
	loc    *time.Location

	buf        []feed.Record
	start, end uint64 // absolute indices of the records held: [start, end)
	bytes      int    // payload bytes held
	maxBytes   int

	filter  string         // as typed
	needle  string         // the substring filter, lower case ("" for a regexp)
	re      *regexp.Regexp // the filter when it starts with ~
	reErr   string         // why the ~ filter is not a valid regexp
	matches []uint64       // absolute indices of held records matching filter, ascending
	input   textinput.Model
	editing bool // the filter input has the keyboard

	follow bool   // the selection sticks to the newest record
	sel    uint64 // absolute index of the selected record when not following
	top    uint64 // absolute index of the top row when not following

	paused   bool
	anchor   uint64 // end at the moment of pausing: newer records are "new"
	newCount int    // records (matching the filter) that arrived while paused

	wrap          bool
	focused       bool
	width, height int
	rate          float64 // records per second, set by the root

	colours palette // path → colour index, shared with the sources pane
	rates   *rateMeter
}

func newStreamPane(st *Styles, km *KeyMap, loc *time.Location, size int, colours palette, rates *rateMeter) *streamPane {
	if size <= 0 {
		size = DefaultBuffer
	}
	in := textinput.New()
	in.Prompt = "/"
	in.Placeholder = "substring, any case; ~ for a regexp"
	in.CharLimit = 256
	return &streamPane{
		styles:   st,
		keys:     km,
		loc:      loc,
		buf:      make([]feed.Record, min(size, MaxBuffer)),
		maxBytes: maxStreamBytes,
		input:    in,
		follow:   true,
		colours:  colours,
		rates:    rates,
	}
}

func (s *streamPane) SetFocus(on bool) { s.focused = on }

// SetData appends the snapshot's new records.
func (s *streamPane) SetData(snap *Snapshot) {
	s.Append(snap.NewRecords)
	s.rate = s.rates.total()
}

// Wanted is everything: the stream takes the lines the others leave.
func (s *streamPane) Wanted() int { return max(s.height, 1) }

// SetSize sets the pane's size, title line included.
func (s *streamPane) SetSize(w, h int) {
	s.width, s.height = w, h
	s.input.SetWidth(max(w-40, 8))
}

// Len is how many records are held.
func (s *streamPane) Len() int { return int(s.end - s.start) }

func (s *streamPane) rec(abs uint64) *feed.Record { return &s.buf[abs%uint64(len(s.buf))] }

// Append copies records into the ring, evicting the oldest.
func (s *streamPane) Append(recs []feed.Record) {
	size := uint64(len(s.buf))
	if uint64(len(recs)) > size {
		skip := uint64(len(recs)) - size
		if s.paused {
			s.newCount += s.countMatching(recs[:skip])
		}
		s.end += skip
		s.start = s.end
		s.bytes = 0
		recs = recs[skip:]
	}
	for i := range recs {
		r := &recs[i]
		idx := s.end
		if s.end-s.start == size { // full: the slot taken is the oldest record's
			s.bytes -= len(s.buf[idx%size].Data)
		}
		s.buf[idx%size] = *r
		s.bytes += len(r.Data)
		s.end++
		if s.end-s.start > size {
			s.start = s.end - size
		}
		for s.bytes > s.maxBytes && s.end-s.start > 1 {
			old := s.rec(s.start)
			s.bytes -= len(old.Data)
			*old = feed.Record{}
			s.start++
		}
		if s.filter == "" {
			if s.paused {
				s.newCount++
			}
			continue
		}
		if s.match(r) {
			s.matches = append(s.matches, idx)
			if s.paused {
				s.newCount++
			}
		}
	}
	s.trimMatches()
}

func (s *streamPane) countMatching(recs []feed.Record) int {
	if s.filter == "" {
		return len(recs)
	}
	n := 0
	for i := range recs {
		if s.match(&recs[i]) {
			n++
		}
	}
	return n
}

// trimMatches drops matches that fell out of the ring.
func (s *streamPane) trimMatches() {
	k := 0
	for k < len(s.matches) && s.matches[k] < s.start {
		k++
	}
	if k > 0 {
		s.matches = s.matches[k:]
	}
}

// Clear forgets every record held.
func (s *streamPane) Clear() {
	for abs := s.start; abs < s.end; abs++ {
		*s.rec(abs) = feed.Record{} // let the payloads go
	}
	s.start, s.bytes = s.end, 0
	s.matches = s.matches[:0]
	s.follow = true
	s.anchor = s.end
	s.newCount = 0
}

// SetFilter sets the filter and rescans the buffer once. A filter is a
// substring matched in any case; one that starts with ~ is a regular
// expression (also in any case unless it says (?-i)). A regexp that does
// not compile matches nothing and says why in the title.
func (s *streamPane) SetFilter(f string) {
	if f == s.filter {
		return
	}
	s.filter = f
	s.needle, s.re, s.reErr = "", nil, ""
	if expr, ok := strings.CutPrefix(f, "~"); ok {
		re, err := regexp.Compile("(?i)" + expr)
		if err != nil {
			s.reErr = strings.TrimPrefix(err.Error(), "error parsing regexp: ")
		}
		s.re = re
	} else {
		s.needle = strings.ToLower(f)
	}
	s.matches = s.matches[:0]
	if f != "" {
		for abs := s.start; abs < s.end; abs++ {
			if s.match(s.rec(abs)) {
				s.matches = append(s.matches, abs)
			}
		}
	}
	s.follow = true
}

// match reports whether any text field of r contains the filter.
func (s *streamPane) match(r *feed.Record) bool {
	return s.contains(r.Data) || s.contains(r.Channel) || s.contains(r.Endpoint) ||
		s.contains(r.Type) || s.contains(r.ID) || s.contains(r.Pattern) ||
		s.contains(r.Client) || s.contains(r.ClientName) ||
		(r.Kind == feed.KindState && (s.contains(r.State) || s.contains(r.Error) || s.contains(r.Target)))
}

func (s *streamPane) contains(field string) bool {
	switch {
	case field == "":
		return false
	case s.re != nil:
		return s.re.MatchString(field)
	case s.reErr != "":
		return false
	}
	return containsFold(field, s.needle)
}

// containsFold reports whether lower-case needle occurs in s, ignoring
// ASCII case, without allocating.
func containsFold(s, needle string) bool {
	n := len(needle)
	if n == 0 {
		return true
	}
	first := needle[0]
	for i := 0; i+n <= len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != first {
			continue
		}
		j := 1
		for ; j < n; j++ {
			c := s[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != needle[j] {
				break
			}
		}
		if j == n {
			return true
		}
	}
	return false
}

// Pause freezes the view; records keep arriving and are counted as new.
func (s *streamPane) Pause(on bool) {
	s.paused = on
	s.newCount = 0
	s.anchor = s.end
	if !on {
		s.follow = true
	}
}

// limit is one past the newest record the view may show.
func (s *streamPane) limit() uint64 {
	if s.paused {
		return s.anchor
	}
	return s.end
}

// count is how many records the view may show.
func (s *streamPane) count() int {
	lim := s.limit()
	if s.filter == "" {
		if lim <= s.start {
			return 0
		}
		return int(lim - s.start)
	}
	return sort.Search(len(s.matches), func(i int) bool { return s.matches[i] >= lim })
}

// at is the absolute index of the i-th record the view may show.
func (s *streamPane) at(i int) uint64 {
	if s.filter == "" {
		return s.start + uint64(i)
	}
	return s.matches[i]
}

// pos is the position of the first shown record at or after abs, clamped
// to [0, n-1].
func (s *streamPane) pos(abs uint64, n int) int {
	var p int
	if s.filter == "" {
		if abs > s.start {
			p = int(abs - s.start)
		}
	} else {
		p = sort.Search(n, func(i int) bool { return s.matches[i] >= abs })
	}
	return min(max(p, 0), max(n-1, 0))
}

// Selected returns the selected record, if any.
func (s *streamPane) Selected() (feed.Record, bool) {
	n := s.count()
	if n == 0 {
		return feed.Record{}, false
	}
	return *s.rec(s.at(s.selPos(n))), true
}

func (s *streamPane) selPos(n int) int {
	if s.follow {
		return n - 1
	}
	return s.pos(s.sel, n)
}

// Update moves the selection (j/k/g/G, PgUp/PgDn, the wheel) and edits
// the filter.
func (s *streamPane) Update(msg tea.Msg) (pane, tea.Cmd) {
	if s.editing {
		return s.updateInput(msg)
	}
	n := s.count()
	if n == 0 {
		return s, nil
	}
	p := s.selPos(n)
	page := max(s.rows(), 1)
	switch msg := msg.(type) {
	case tea.KeyPressMsg:
		switch {
		case key.Matches(msg, s.keys.Up):
			p--
		case key.Matches(msg, s.keys.Down):
			p++
		case key.Matches(msg, s.keys.PageUp):
			p -= page
		case key.Matches(msg, s.keys.PageDown):
			p += page
		case key.Matches(msg, s.keys.Top):
			p = 0
		case key.Matches(msg, s.keys.Bottom):
			p = n - 1
		default:
			return s, nil
		}
	case tea.MouseWheelMsg:
		switch msg.Button {
		case tea.MouseWheelUp:
			p -= wheelStep
		case tea.MouseWheelDown:
			p += wheelStep
		default:
			return s, nil
		}
	default:
		return s, nil
	}
	p = min(max(p, 0), n-1)
	// Reaching the newest record follows again, as G does.
	s.follow = p == n-1
	s.sel = s.at(p)
	if !s.follow {
		top, _ := s.window(s.rows())
		s.top = s.at(top)
	}
	return s, nil
}

// StartFilter gives the keyboard to the filter input.
func (s *streamPane) StartFilter() tea.Cmd {
	s.editing = true
	s.input.SetValue(s.filter)
	s.input.CursorEnd()
	return s.input.Focus()
}

func (s *streamPane) updateInput(msg tea.Msg) (pane, tea.Cmd) {
	if km, ok := msg.(tea.KeyPressMsg); ok {
		switch {
		case key.Matches(km, s.keys.Back):
			s.editing = false
			s.input.Blur()
			s.input.SetValue("")
			s.SetFilter("")
			return s, nil
		case key.Matches(km, s.keys.Confirm):
			s.editing = false
			s.input.Blur()
			return s, nil
		}
	}
	var cmd tea.Cmd
	s.input, cmd = s.input.Update(msg)
	s.SetFilter(s.input.Value())
	return s, cmd
}

// rows is how many record lines fit under the title.
func (s *streamPane) rows() int { return max(s.height-1, 0) }

// window returns the position of the top row and of the selection.
func (s *streamPane) window(rows int) (top, sel int) {
	n := s.count()
	if n == 0 || rows <= 0 {
		return 0, -1
	}
	sel = s.selPos(n)
	if s.follow {
		return s.back(n-1, rows), sel
	}
	top = s.pos(s.top, n)
	if s.top < s.start {
		top = 0
	}
	switch {
	case sel < top:
		top = sel
	case !s.fits(top, sel, rows):
		top = s.back(sel, rows)
	}
	return top, sel
}

// back is the top position that shows record p on the last row.
func (s *streamPane) back(p, rows int) int {
	if !s.wrap {
		return max(p-rows+1, 0)
	}
	w := s.width
	used := s.lineCount(s.rec(s.at(p)), w)
	t := p
	for t > 0 {
		l := s.lineCount(s.rec(s.at(t-1)), w)
		if used+l > rows {
			break
		}
		used += l
		t--
	}
	return t
}

// fits reports whether records top..p fit in rows lines.
func (s *streamPane) fits(top, p, rows int) bool {
	if !s.wrap {
		return p-top < rows
	}
	used := 0
	for i := top; i <= p; i++ {
		used += s.lineCount(s.rec(s.at(i)), s.width)
		if used > rows {
			return false
		}
	}
	return true
}

// View draws the title and the visible rows: exactly height lines.
func (s *streamPane) View() string {
	if s.height <= 0 || s.width <= 0 {
		return ""
	}
	lines := make([]string, 0, s.height)
	lines = append(lines, s.title())
	rows := s.rows()
	top, sel := s.window(rows)
	n := s.count()
	for p := top; p < n && len(lines) < s.height; p++ {
		for _, l := range s.renderRecord(s.rec(s.at(p)), p == sel && (s.focused || !s.follow)) {
			if len(lines) == s.height {
				break
			}
			lines = append(lines, l)
		}
	}
	if n == 0 && rows > 0 {
		msg := "waiting for records…"
		switch {
		case s.filter != "":
			msg = "no record matches the filter"
		case s.paused:
			msg = "paused"
		}
		lines = append(lines, s.styles.Dim.Render(trunc(" "+msg, s.width)))
	}
	if s.width < 40 {
		// The fixed columns alone may not fit: cut every line.
		return fitLines(lines, s.width, s.height)
	}
	// The title is cut by rule and every row is drawn to the width.
	return stackLines(lines, s.height)
}

func (s *streamPane) title() string {
	st := s.styles
	var info []string
	info = append(info, strconv.Itoa(s.Len())+" buffered", fmtRate(s.rate))
	if s.wrap {
		info = append(info, "wrap")
	}
	head := paneTitle(st, "Stream", s.focused) + " " + st.Dim.Render(strings.Join(info, " · "))
	if s.paused {
		head += " " + st.Paused.Render(" PAUSED "+strconv.Itoa(s.newCount)+" new ")
	} else if !s.follow {
		head += " " + st.Warn.Render("scrolled (G follows)")
	}
	switch {
	case s.editing:
		head += "  " + s.input.View()
	case s.reErr != "":
		head += "  " + st.Filter.Render("/"+esc(s.filter)) + " " + st.Error.Render("bad regexp: "+esc(s.reErr))
	case s.filter != "":
		head += "  " + st.Filter.Render("/"+esc(s.filter)) + st.Dim.Render(" ("+strconv.Itoa(len(s.matches))+" match, esc clears)")
	}
	return rule(st, head, s.width)
}

// columns returns the widths of the time, source and name columns.
func (s *streamPane) columns() (timeW, srcW, nameW int) {
	switch w := s.width; {
	case w < 56:
		return 0, 9, 9
	case w < 100:
		return 12, 10, 15
	case w < 160:
		return 12, 14, 20
	default:
		return 12, 18, 28
	}
}

// recordText splits r into its source, name and payload text, escaped.
// limit bounds how many payload bytes are escaped.
func (s *streamPane) recordText(r *feed.Record, limit int) (src, name string, tag string, payload string) {
	if r.Source == feed.SourceRedis {
		src = "redis"
	} else {
		src = pathLabel(r.Source, r.Endpoint, r.Conn)
	}
	var b []byte
	switch r.Kind {
	case feed.KindMessage:
		name = esc(r.Channel)
		b = appendEscapedPrefix(b, r.Data, limit)
	case feed.KindPublish:
		name = esc(r.Channel)
		tag = "[by " + esc(r.Client)
		if r.ClientName != "" {
			tag += " " + esc(r.ClientName)
		}
		tag += "] "
		b = appendEscapedPrefix(b, r.Data, limit)
	case feed.KindEvent:
		name = esc(r.Type)
		if r.ID != "" {
			b = append(b, '#')
			b = appendEscapedPrefix(b, r.ID, 64)
			b = append(b, ' ')
		}
		b = appendEscapedPrefix(b, r.Data, limit)
	case feed.KindComment:
		name = ":"
		b = appendEscapedPrefix(b, r.Data, limit)
	case feed.KindRetry:
		name = "retry"
		b = strconv.AppendInt(b, r.RetryMS, 10)
		b = append(b, "ms"...)
	case feed.KindState:
		name = "state"
		b = append(b, esc(r.State)...)
		if r.Status != 0 {
			b = append(b, " HTTP "...)
			b = strconv.AppendInt(b, int64(r.Status), 10)
		}
		if r.Attempt != 0 {
			b = append(b, " attempt "...)
			b = strconv.AppendInt(b, int64(r.Attempt), 10)
		}
		if r.Error != "" {
			b = append(b, ' ')
			b = appendEscapedPrefix(b, r.Error, limit)
		}
		if r.Target != "" {
			b = append(b, ' ')
			b = appendEscapedPrefix(b, r.Target, 256)
		}
	}
	if r.Probe != "" {
		tag += "[probe " + fmtDur(time.Duration(r.LatencyUS)*time.Microsecond) + "] "
	}
	if r.HasPublish {
		tag += "[publish " + fmtDur(time.Duration(r.PublishUS)*time.Microsecond) + "] "
	}
	if r.HasHop {
		tag += "[hop " + fmtDur(time.Duration(r.HopUS)*time.Microsecond) + "] "
	}
	return src, name, tag, string(b)
}

// lineCount is how many lines r takes at width w.
func (s *streamPane) lineCount(r *feed.Record, w int) int {
	if !s.wrap {
		return 1
	}
	return len(s.renderRecord(r, false))
}

// renderRecord draws r as one line, or several when wrapping.
func (s *streamPane) renderRecord(r *feed.Record, selected bool) []string {
	st := s.styles
	w := s.width
	timeW, srcW, nameW := s.columns()
	prefixW := 1 + srcW + 1 + nameW + 1
	if timeW > 0 {
		prefixW += timeW + 1
	}
	payW := max(w-prefixW, 1)
	limit := payW*4 + 16
	if s.wrap {
		limit = payW * max(s.rows(), 1) * 4
	}
	src, name, tag, payload := s.recordText(r, limit)
	text := tag + payload

	var chunks []string
	if s.wrap && ansi.StringWidth(text) > payW {
		chunks = strings.Split(ansi.Hardwrap(text, payW, true), "\n")
		if max(s.rows(), 1) < len(chunks) {
			chunks = chunks[:max(s.rows(), 1)]
		}
	} else {
		chunks = []string{clip(text, payW)}
	}

	marker := " "
	if selected {
		marker = ">"
	}
	var tm string
	if timeW > 0 {
		tm = r.TS.In(s.loc).Format("15:04:05.000") + " "
	}
	srcCol, nameCol := clip(src, srcW)+" ", clip(name, nameW)+" "
	out := make([]string, 0, len(chunks))
	if selected {
		pad := strings.Repeat(" ", prefixW)
		for i, c := range chunks {
			line := marker + tm + srcCol + nameCol + c
			if i > 0 {
				line = pad + c
			}
			out = append(out, st.Selected.Render(clip(line, w)))
		}
		return out
	}
	srcStyle := st.Redis
	if r.Source != feed.SourceRedis {
		srcStyle = st.pathStyle(s.colours.index(r.Source, r.Endpoint))
	}
	var body Style
	switch r.Kind {
	case feed.KindComment, feed.KindRetry:
		body = st.Comment
	case feed.KindState:
		body = st.State
	}
	first := marker + st.Time.Render(tm) + srcStyle.Render(srcCol) + nameCol
	for i, c := range chunks {
		if i == 0 && tag != "" && strings.HasPrefix(c, tag) {
			c = st.Probe.Render(tag) + body.Render(c[len(tag):])
		} else {
			c = body.Render(c)
		}
		if i == 0 {
			out = append(out, first+c)
		} else {
			out = append(out, strings.Repeat(" ", prefixW)+c)
		}
	}
	return out
}

// All returns a copy of every record held, oldest first.
func (s *streamPane) All() []feed.Record {
	out := make([]feed.Record, 0, s.Len())
	for abs := s.start; abs < s.end; abs++ {
		out = append(out, *s.rec(abs))
	}
	return out
}
