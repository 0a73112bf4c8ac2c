package tui

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"charm.land/bubbles/v2/help"
	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/fanscope/fanscope/feed"
)

// Options configure the TUI.
type Options struct {
	Backend Backend
	// Buffer is how many records the stream keeps (DefaultBuffer when 0).
	Buffer int
	// AllowPublish skips the confirmation before publishing to a Redis
	// that is not on loopback.
	AllowPublish bool
	// Channel pre-fills the publish prompt.
	Channel string
	// Location is the time zone of the time column (time.Local when nil).
	Location *time.Location
	// Interval is how often a snapshot is pulled (DefaultInterval when 0).
	Interval time.Duration
}

// DefaultInterval is the snapshot tick: 25 Hz.
const DefaultInterval = 40 * time.Millisecond

// statusTTL is how long a status line stays in the footer.
const statusTTL = 6 * time.Second

// Panes in screen order, which is also the tab order: the small panes
// (left to right, top to bottom), then the stream under them.
const (
	paneSources = iota
	paneLatency
	paneRadar
	panePublishers
	paneStream
	paneCount
)

// rect is where a pane is on the screen, for the mouse wheel.
type rect struct{ x, y, w, h int }

func (r rect) has(x, y int) bool { return x >= r.x && x < r.x+r.w && y >= r.y && y < r.y+r.h }

// confirmation is a question that waits for y before something is sent to
// a production Redis.
type confirmation struct {
	question string
	yes      func() tea.Cmd
	no       func()
}

// SnapshotMsg carries a Snapshot into Update.
type SnapshotMsg struct{ Snapshot Snapshot }

type publishedMsg struct {
	channel   string
	receivers int64
	err       error
}

type probeSentMsg struct{ err error }

type continuousMsg struct {
	on  bool
	err error
}

type savedMsg struct {
	path string
	n    int
	err  error
}

// Model is the root model: it owns the panes, pulls snapshots and routes
// keys. Use it through tea.NewProgram(New(opts)).
type Model struct {
	opts     Options
	styles   *Styles
	keys     *KeyMap
	help     help.Model
	interval time.Duration

	width, height int
	headH         int // header lines: 2 when problems are listed
	wide          bool
	now           time.Time
	lastSeq       uint64
	skipped       uint64 // records the ring dropped before the TUI read them
	snap          Snapshot
	rates         *rateMeter
	colours       palette
	losses        *lossWatch
	probs         []string // every current problem, for the header

	panes  [paneCount]pane // screen order
	rects  [paneCount]rect
	stream *streamPane
	focus  int

	details  *detailsView
	showHelp bool
	prompt   *publishPrompt
	confirm  *confirmation

	status      string
	statusBad   bool
	statusAt    time.Time
	statusFresh bool // set before the next snapshot gives it a time
}

// New returns the root model.
func New(o Options) *Model {
	st := DefaultStyles(true)
	km := DefaultKeyMap()
	loc := o.Location
	if loc == nil {
		loc = time.Local
	}
	iv := o.Interval
	if iv <= 0 {
		iv = DefaultInterval
	}
	h := help.New()
	h.Styles = st.Help
	m := &Model{
		opts:     o,
		styles:   &st,
		keys:     &km,
		help:     h,
		interval: iv,
		rates:    newRateMeter(),
		colours:  palette{},
		losses:   newLossWatch(),
		headH:    1,
	}
	m.stream = newStreamPane(m.styles, m.keys, loc, o.Buffer, m.colours, m.rates)
	m.panes = [paneCount]pane{
		paneSources:    newListPane(m.styles, m.keys, &sourcesBody{styles: m.styles, rates: m.rates, colours: m.colours}),
		paneLatency:    newListPane(m.styles, m.keys, &latencyBody{styles: m.styles}),
		paneRadar:      newListPane(m.styles, m.keys, &radarBody{styles: m.styles}),
		panePublishers: newListPane(m.styles, m.keys, &publishersBody{styles: m.styles}),
		paneStream:     m.stream,
	}
	m.setFocus(paneStream)
	m.prompt = newPublishPrompt(o.Channel)
	return m
}

// Init pulls the first snapshot and asks the terminal for its background.
func (m *Model) Init() tea.Cmd {
	return tea.Batch(m.fetch(0), tea.RequestBackgroundColor)
}

// fetch pulls the next snapshot after d. It captures the backend and the
// sequence number, not the model.
func (m *Model) fetch(d time.Duration) tea.Cmd {
	b := m.opts.Backend
	if b == nil {
		return nil
	}
	seq := m.lastSeq
	if d <= 0 {
		return func() tea.Msg { return SnapshotMsg{b.Snapshot(seq)} }
	}
	return tea.Tick(d, func(time.Time) tea.Msg { return SnapshotMsg{b.Snapshot(seq)} })
}

// Update handles one message.
func (m *Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
		m.layout()
		return m, nil
	case tea.BackgroundColorMsg:
		*m.styles = DefaultStyles(msg.IsDark())
		m.help.Styles = m.styles.Help
		return m, nil
	case SnapshotMsg:
		m.apply(msg.Snapshot)
		return m, m.fetch(m.interval)
	case publishedMsg:
		if msg.err != nil {
			m.setStatus("publish to "+esc(msg.channel)+" failed: "+esc(msg.err.Error()), true)
		} else {
			m.setStatus("published to "+esc(msg.channel)+": "+strconv.FormatInt(msg.receivers, 10)+" receiver"+plural(int(msg.receivers)), msg.receivers == 0)
		}
		return m, nil
	case probeSentMsg:
		if msg.err != nil {
			m.setStatus("probe failed: "+esc(msg.err.Error()), true)
		} else {
			m.setStatus("probe sent", false)
		}
		return m, nil
	case continuousMsg:
		if msg.err != nil {
			m.setStatus("continuous probing: "+esc(msg.err.Error()), true)
		} else if msg.on {
			m.setStatus("continuous probing on", false)
		} else {
			m.setStatus("continuous probing off", false)
		}
		return m, nil
	case savedMsg:
		if msg.err != nil {
			m.setStatus("save failed: "+esc(msg.err.Error()), true)
		} else {
			m.setStatus("saved "+strconv.Itoa(msg.n)+" records to "+esc(msg.path), false)
		}
		return m, nil
	case tea.KeyPressMsg:
		return m, m.handleKey(msg)
	case tea.MouseWheelMsg:
		m.wheel(msg)
		return m, nil
	}
	// Anything else (cursor blinks) goes to whichever input is open.
	return m, m.updateInputs(msg)
}

func (m *Model) updateInputs(msg tea.Msg) tea.Cmd {
	var cmd tea.Cmd
	switch {
	case m.prompt.open:
		cmd = m.prompt.update(msg)
	case m.stream.editing:
		_, cmd = m.stream.Update(msg)
	}
	return cmd
}

// wheel scrolls the details view, or the pane under the pointer.
func (m *Model) wheel(msg tea.MouseWheelMsg) {
	switch {
	case m.showHelp || m.confirm != nil:
	case m.details != nil:
		m.details.Update(msg, m.keys)
	default:
		for i, r := range m.rects {
			if r.has(msg.X, msg.Y) {
				m.panes[i].Update(msg)
				return
			}
		}
	}
}

// apply takes in a snapshot: records into the stream, the rest into the
// panes.
func (m *Model) apply(s Snapshot) {
	m.now = s.Now
	if recs := s.NewRecords; len(recs) > 0 {
		if first := recs[0].Seq; m.lastSeq != 0 && first > m.lastSeq+1 {
			m.skipped += first - m.lastSeq - 1
		}
		m.lastSeq = max(m.lastSeq, recs[len(recs)-1].Seq)
	}
	m.rates.add(s.NewRecords, s.Now)
	m.losses.observe(s.Latency.Probes.Paths, s.Now)
	for _, p := range m.panes {
		p.SetData(&s)
	}
	s.NewRecords = nil
	m.snap = s
	m.probs = m.problems()
	if m.statusFresh {
		m.statusAt, m.statusFresh = s.Now, false
	} else if m.status != "" && s.Now.Sub(m.statusAt) > statusTTL {
		m.status = ""
	}
	m.layout()
}

func (m *Model) setStatus(s string, bad bool) {
	m.status, m.statusBad = s, bad
	m.statusAt, m.statusFresh = m.now, m.now.IsZero()
}

// guarded reports whether sending to Redis needs a yes first: the target
// is not on loopback and --allow-publish was not given.
func (m *Model) guarded() bool { return m.snap.Header.Production && !m.opts.AllowPublish }

// target is the Redis target as the header shows it.
func (m *Model) target() string {
	if len(m.snap.Header.Targets) > 0 {
		return esc(m.snap.Header.Targets[0])
	}
	return "Redis"
}

// ask holds yes until the user answers y; any other key runs no.
func (m *Model) ask(question string, yes func() tea.Cmd, no func()) {
	m.confirm = &confirmation{question: question, yes: yes, no: no}
}

// handleKey routes a key to whatever has the keyboard.
func (m *Model) handleKey(km tea.KeyPressMsg) tea.Cmd {
	k := m.keys
	if km.String() == "ctrl+c" {
		return tea.Quit
	}
	switch {
	case m.confirm != nil:
		c := m.confirm
		m.confirm = nil
		if key.Matches(km, k.Yes) {
			return c.yes()
		}
		if c.no != nil {
			c.no()
		}
		return nil
	case m.prompt.open:
		return m.promptKey(km)
	case m.stream.editing:
		_, cmd := m.stream.Update(km)
		m.layout()
		return cmd
	case m.showHelp:
		switch {
		case key.Matches(km, k.Quit):
			return tea.Quit
		case key.Matches(km, k.Help, k.Back):
			m.showHelp = false
		}
		return nil
	case m.details != nil:
		switch {
		case key.Matches(km, k.Quit):
			return tea.Quit
		case key.Matches(km, k.Back, k.Details):
			m.details = nil
		case key.Matches(km, k.Copy):
			return m.copy(m.details.rec)
		case key.Matches(km, k.Help):
			m.showHelp = true
		default:
			m.details.Update(km, m.keys)
		}
		return nil
	}
	switch {
	case key.Matches(km, k.Quit):
		return tea.Quit
	case key.Matches(km, k.Help):
		m.showHelp = true
	case key.Matches(km, k.NextPane):
		m.cycleFocus(1)
	case key.Matches(km, k.PrevPane):
		m.cycleFocus(-1)
	case key.Matches(km, k.Filter):
		cmd := m.stream.StartFilter()
		m.layout()
		return cmd
	case key.Matches(km, k.Back):
		m.stream.SetFilter("")
	case key.Matches(km, k.Pause):
		m.stream.Pause(!m.stream.paused)
	case key.Matches(km, k.Details):
		if r, ok := m.stream.Selected(); ok {
			m.details = newDetailsView(m.styles, r, m.stream.loc)
			m.layout()
		}
	case key.Matches(km, k.Clear):
		// The stream and the probe losses the header counts: after a fix,
		// c starts a clean slate at once.
		m.stream.Clear()
		m.losses.reset()
		m.probs = m.problems()
		m.layout()
	case key.Matches(km, k.Wrap):
		m.stream.wrap = !m.stream.wrap
	case key.Matches(km, k.Publish):
		cmd := m.prompt.Open()
		m.layout()
		return cmd
	case key.Matches(km, k.Probe):
		if m.guarded() {
			m.ask("send a probe to "+m.target()+"?", m.probe, func() { m.setStatus("no probe sent", false) })
			return nil
		}
		return m.probe()
	case key.Matches(km, k.Continuous):
		if !m.snap.Latency.Continuous && m.guarded() {
			m.ask("probe "+m.target()+" every "+fmtDur(m.snap.Latency.Interval)+"?", m.toggleContinuous,
				func() { m.setStatus("continuous probing stays off", false) })
			return nil
		}
		return m.toggleContinuous()
	case key.Matches(km, k.Copy):
		if r, ok := m.stream.Selected(); ok {
			return m.copy(r)
		}
		m.setStatus("nothing selected to copy", true)
	case key.Matches(km, k.Save):
		return m.save()
	default:
		_, cmd := m.panes[m.focus].Update(km)
		return cmd
	}
	return nil
}

// shown reports whether pane i is on the screen.
func (m *Model) shown(i int) bool { return m.rects[i].h > 0 && m.rects[i].w > 0 }

// cycleFocus moves the focus to the next (dir 1) or previous (dir -1) pane
// on the screen, in screen order.
func (m *Model) cycleFocus(dir int) {
	for n := 1; n < paneCount; n++ {
		i := (m.focus + dir*n + paneCount*n) % paneCount
		if m.shown(i) {
			m.setFocus(i)
			return
		}
	}
}

func (m *Model) setFocus(f int) {
	m.focus = f
	for i, p := range m.panes {
		p.SetFocus(i == f)
	}
}

func (m *Model) copy(r feed.Record) tea.Cmd {
	m.setStatus("copied "+strconv.Itoa(len(r.Data))+" bytes (OSC 52)", false)
	return tea.SetClipboard(r.Data)
}

func (m *Model) probe() tea.Cmd {
	b := m.opts.Backend
	if b == nil {
		return nil
	}
	m.setStatus("sending a probe…", false)
	return func() tea.Msg { return probeSentMsg{b.ProbeNow()} }
}

func (m *Model) toggleContinuous() tea.Cmd {
	b := m.opts.Backend
	if b == nil {
		return nil
	}
	on := !m.snap.Latency.Continuous
	// Show the change at once; the next snapshot confirms it.
	m.snap.Latency.Continuous = on
	lat := m.snap
	lat.NewRecords = nil
	m.panes[paneLatency].SetData(&lat)
	return func() tea.Msg { return continuousMsg{on, b.SetContinuous(on)} }
}

func (m *Model) save() tea.Cmd {
	b := m.opts.Backend
	if b == nil {
		return nil
	}
	recs := m.stream.All()
	m.setStatus("saving "+strconv.Itoa(len(recs))+" records…", false)
	return func() tea.Msg {
		path, err := b.SaveNDJSON(recs)
		return savedMsg{path, len(recs), err}
	}
}

func (m *Model) promptKey(km tea.KeyPressMsg) tea.Cmd {
	p := m.prompt
	sub, cmd := p.key(km, m.keys)
	if sub == nil {
		if !p.open {
			m.layout()
		}
		return cmd
	}
	if m.guarded() {
		m.ask("publish "+strconv.Itoa(len(sub.payload))+" bytes to "+esc(sub.channel)+" on "+m.target()+"?",
			func() tea.Cmd { return tea.Batch(cmd, m.publish(*sub)) },
			func() { p.err = "not published" })
		return cmd
	}
	return tea.Batch(cmd, m.publish(*sub))
}

// publish closes the prompt and sends sub.
func (m *Model) publish(sub submission) tea.Cmd {
	m.prompt.close()
	m.layout()
	b := m.opts.Backend
	if b == nil {
		return nil
	}
	m.setStatus("publishing to "+esc(sub.channel)+"…", false)
	return func() tea.Msg {
		n, err := b.Publish(sub.channel, sub.payload)
		return publishedMsg{sub.channel, n, err}
	}
}

// layout gives each pane its size and place. Wide terminals put sources
// beside latency, radar and publishers, above the stream; narrow ones
// stack them in that order, the stream last, and fold the radar and the
// publishers into their title lines when space is short.
func (m *Model) layout() {
	w, h := m.width, m.height
	m.headH = 1
	if len(m.probs) > 0 && h >= 8 {
		m.headH = 2
	}
	body := max(h-m.headH-1, 0) // header and footer
	if m.prompt.open {
		ph := min(m.prompt.height(), max(body-2, 0))
		m.prompt.setSize(w, ph)
		body -= ph
	}
	m.help.SetWidth(w)
	if m.details != nil {
		m.details.SetSize(w, body)
	}
	m.wide = w >= 140 && body >= 16
	left := w / 2
	rx, rw := left+1, w-left-1
	// A pane's rows may depend on its width (details wrap under their
	// row): widths first, so the heights asked for are this width's.
	for i, p := range m.panes {
		pw := w
		switch {
		case !m.wide || i == paneStream:
		case i == paneSources:
			pw = left
		default:
			pw = rw
		}
		p.SetSize(pw, m.rects[i].h)
	}
	want := func(i int) int { return m.panes[i].Wanted() }
	var sz [paneCount]rect
	y := m.headH
	if m.wide {
		topH := min(max(want(paneSources), want(paneLatency)+want(paneRadar)+want(panePublishers)), body*45/100)
		sz[paneSources] = rect{0, y, left, topH}
		others := 1
		if want(panePublishers) > 0 {
			others++
		}
		latH := min(want(paneLatency), max(topH-others, 1))
		rest := topH - latH
		radH := rest
		if want(panePublishers) > 0 {
			radH = min(want(paneRadar), rest-min(want(panePublishers), rest/2))
		}
		sz[paneLatency] = rect{rx, y, rw, latH}
		sz[paneRadar] = rect{rx, y + latH, rw, radH}
		sz[panePublishers] = rect{rx, y + latH + radH, rw, rest - radH}
		sz[paneStream] = rect{0, y + topH, w, body - topH}
	} else {
		stackHeights(&sz, body, want)
		for i := range sz {
			sz[i] = rect{0, y, w, sz[i].h}
			y += sz[i].h
		}
	}
	m.rects = sz
	for i, p := range m.panes {
		p.SetSize(sz[i].w, sz[i].h)
	}
	if !m.shown(m.focus) {
		m.setFocus(paneStream)
	}
}

// stackHeights shares body lines between the stacked panes. The stream
// keeps about a third (at least 5 lines). The others get what they want
// when it all fits; else each gets a minimum (a radar or publishers pane
// shows its title line only below 30 lines), then latency (the decision
// matrix) and sources take a line in turn until they are full.
func stackHeights(sz *[paneCount]rect, body int, want func(int) int) {
	keep := max(5, body*3/10)
	rest := max(body-keep, 0)
	if body < 7 {
		rest = 0
	}
	total := 0
	for i := range paneStream {
		total += want(i)
	}
	h := [paneCount]int{}
	if total <= rest {
		for i := range paneStream {
			h[i] = want(i)
		}
	} else {
		small := 1
		if body >= 30 {
			small = 2
		}
		for _, i := range []int{paneLatency, paneSources, paneRadar, panePublishers} {
			least := 2
			if i == paneRadar || i == panePublishers {
				least = small
			}
			h[i] = min(want(i), least, rest)
			rest -= h[i]
		}
		for rest > 0 {
			gave := false
			for _, i := range []int{paneLatency, paneSources, paneRadar, panePublishers} {
				if rest > 0 && h[i] < want(i) && (small > 1 || i == paneLatency || i == paneSources) {
					h[i]++
					rest--
					gave = true
				}
			}
			if !gave {
				break
			}
		}
	}
	n := 0
	for i := range paneStream {
		n += h[i]
	}
	h[paneStream] = body - n
	for i := range h {
		sz[i].h = h[i]
	}
}

// View draws the whole screen: exactly height lines of at most width cells.
func (m *Model) View() tea.View {
	v := tea.NewView(m.render())
	v.AltScreen = true
	v.MouseMode = tea.MouseModeCellMotion // the wheel scrolls lists
	v.WindowTitle = "fanscope"
	return v
}

func (m *Model) render() string {
	w, h := m.width, m.height
	if w <= 0 || h <= 0 {
		return "fanscope: starting…"
	}
	parts := make([]string, 0, 8)
	parts = append(parts, m.header())
	body := max(h-m.headH-1, 0)
	if m.prompt.open {
		body -= m.prompt.h
	}
	switch {
	case body <= 0:
	case m.showHelp:
		parts = append(parts, m.helpView(body))
	case m.details != nil:
		parts = append(parts, m.details.View())
	default:
		parts = append(parts, m.panesView())
	}
	if m.prompt.open && m.prompt.h > 0 {
		parts = append(parts, m.prompt.View(m.styles, m.snap.Header, m.opts.AllowPublish, m.confirm != nil))
	}
	if h >= 2 {
		parts = append(parts, m.footer())
	}
	// Every part is already cut to the width.
	return stackLines(strings.Split(strings.Join(parts, "\n"), "\n"), h)
}

func (m *Model) panesView() string {
	view := func(i int) string {
		if !m.shown(i) {
			return ""
		}
		return m.panes[i].View()
	}
	if !m.wide || !m.shown(paneSources) {
		return joinNonEmpty(view(paneSources), view(paneLatency), view(paneRadar), view(panePublishers), view(paneStream))
	}
	left := strings.Split(view(paneSources), "\n")
	right := strings.Split(joinNonEmpty(view(paneLatency), view(paneRadar), view(panePublishers)), "\n")
	for i := range left {
		r := ""
		if i < len(right) {
			r = right[i]
		}
		left[i] = padTo(left[i], m.rects[paneSources].w) + " " + r
	}
	return joinNonEmpty(strings.Join(left, "\n"), view(paneStream))
}

func joinNonEmpty(parts ...string) string {
	out := parts[:0:0]
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, "\n")
}

// header is the top line (and, when something is wrong and there is
// room, a second line naming every problem).
func (m *Model) header() string {
	st := m.styles
	w := m.width
	left := st.Header.Render("fanscope")
	if m.snap.Header.Production {
		left += " " + st.Production.Render(" PRODUCTION ")
	}
	label, level := m.health(m.probs)
	hs := []func(string) string{st.Good.Render, st.Warn.Render, st.Bad.Render}[level]
	left += " " + hs("● "+label)

	right := "redis " + fmtRate(m.rates.kind(feed.SourceRedis))
	var kinds []feed.Source
	for i := range m.snap.Sources {
		if k := m.snap.Sources[i].Source; !slices.Contains(kinds, k) {
			kinds = append(kinds, k)
			right += "  " + k.String() + " " + fmtRate(m.rates.kind(k))
		}
	}
	if d := m.snap.Dropped; d > 0 {
		right += "  " + st.Bad.Render("dropped "+strconv.FormatUint(d, 10))
	}
	if m.skipped > 0 {
		// The ring moved on before the TUI read it: the counts and probes
		// saw these records, only the stream does not show them.
		right += "  " + st.Warn.Render("skipped "+strconv.FormatUint(m.skipped, 10))
	}
	var line string
	if room := w - ansi.StringWidth(left) - ansi.StringWidth(right) - 4; room < 8 {
		// Too narrow for the targets; the rates go first.
		line = trunc(left+"  "+right, w)
	} else {
		targets := make([]string, len(m.snap.Header.Targets))
		for i, t := range m.snap.Header.Targets {
			targets[i] = esc(t)
		}
		tgt := trunc(strings.Join(targets, " · "), room)
		if m.snap.Header.Production {
			tgt = st.Bad.Render(tgt)
		} else {
			tgt = st.Dim.Render(tgt)
		}
		line = left + "  " + tgt
		gap := w - ansi.StringWidth(line) - ansi.StringWidth(right)
		line = trunc(line+strings.Repeat(" ", max(gap, 1))+right, w)
	}
	if m.headH < 2 {
		return line
	}
	return line + "\n" + m.problemLine()
}

// problemLine lists the problems as far as they fit, then how many more.
func (m *Model) problemLine() string {
	st := m.styles
	w := m.width
	s := "!"
	for i, p := range m.probs {
		item := " " + esc(p)
		if i > 0 {
			item = " ·" + item
		}
		more := ""
		if rest := len(m.probs) - i - 1; rest > 0 {
			more = " (+" + strconv.Itoa(rest) + " more)"
		}
		if i > 0 && ansi.StringWidth(s+item+more) > w {
			s += " (+" + strconv.Itoa(len(m.probs)-i) + " more)"
			break
		}
		s += item
	}
	style := st.Warn
	if _, level := m.health(m.probs); level == 2 {
		style = st.Bad
	}
	return style.Render(trunc(s, w))
}

func (m *Model) footer() string {
	st := m.styles
	if c := m.confirm; c != nil {
		// The question gives way to the answers: y must stay in view.
		label := st.Production.Render(" PRODUCTION ") + " "
		hints := m.help.ShortHelpView(m.keys.ConfirmHelp())
		room := max(m.width-ansi.StringWidth(label)-ansi.StringWidth(hints)-2, 12)
		return trunc(label+st.Bad.Render(trunc(c.question, room))+"  "+hints, m.width)
	}
	if m.status != "" {
		s := st.Status
		if m.statusBad {
			s = st.Error
		}
		return trunc(s.Render(m.status), m.width)
	}
	var keys []key.Binding
	switch {
	case m.prompt.open && m.prompt.err != "":
		return st.Error.Render(trunc(m.prompt.err, m.width))
	case m.prompt.open:
		keys = m.keys.PromptHelp()
	case m.stream.editing:
		keys = m.keys.FilterHelp()
	case m.details != nil:
		keys = m.keys.DetailsHelp()
	default:
		keys = m.keys.ShortHelp()
	}
	// help.Model overflows when not even its ellipsis fits: cut it.
	return trunc(m.help.ShortHelpView(keys), m.width)
}

func (m *Model) helpView(h int) string {
	st := m.styles
	lines := []string{rule(st, paneTitle(st, "Help", true)+" "+st.Dim.Render("? or esc closes"), m.width), ""}
	groups := m.keys.FullHelp()
	if m.width < 120 {
		// Two columns at a time, so nothing is cut on narrow terminals.
		for i := 0; i < len(groups); i += 2 {
			lines = append(lines, strings.Split(m.help.FullHelpView(groups[i:min(i+2, len(groups))]), "\n")...)
			lines = append(lines, "")
		}
	} else {
		lines = append(lines, strings.Split(m.help.FullHelpView(groups), "\n")...)
	}
	lines = append(lines, "",
		st.Dim.Render(" / matches a substring in any case; ~ first makes it a regular expression."),
		st.Dim.Render(" tab goes through the panes in screen order; the wheel scrolls the one under it."),
		st.Dim.Render(" The stream keeps the newest "+strconv.Itoa(len(m.stream.buf))+" records; pausing keeps buffering."),
		st.Dim.Render(" Payloads are shown with control characters escaped (\\x1b, \\n)."))
	return fitLines(lines, m.width, h)
}
