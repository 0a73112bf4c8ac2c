package tui

import (
	"bytes"
	"encoding/json"
	"sort"
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

// Panes in focus order.
const (
	paneStream = iota
	paneSources
	paneLatency
	paneRadar
	paneCount
)

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
	now           time.Time
	lastSeq       uint64
	skipped       uint64 // records the ring dropped before the TUI read them
	snap          Snapshot
	rates         *rateMeter

	stream  *streamPane
	sources *sourcesPane
	latency *latencyPane
	radar   *radarPane
	focus   int

	details  *detailsView
	showHelp bool
	prompt   *publishPrompt

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
	}
	m.stream = newStreamPane(m.styles, m.keys, loc, o.Buffer)
	m.stream.focused = true
	m.sources = &sourcesPane{scroller: scroller{keys: m.keys}, styles: m.styles, rates: m.rates, colour: m.stream.sseColor}
	m.latency = &latencyPane{scroller: scroller{keys: m.keys}, styles: m.styles}
	m.radar = &radarPane{scroller: scroller{keys: m.keys}, styles: m.styles}
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

// apply takes in a snapshot: records into the stream, the rest into the
// panes.
func (m *Model) apply(s Snapshot) {
	m.now = s.Now
	recs := s.NewRecords
	if len(recs) > 0 {
		if first := recs[0].Seq; m.lastSeq != 0 && first > m.lastSeq+1 {
			m.skipped += first - m.lastSeq - 1
		}
		m.lastSeq = max(m.lastSeq, recs[len(recs)-1].Seq)
		m.stream.Append(recs)
	}
	m.rates.add(recs, s.Now)
	m.stream.rate = m.rates.rate(feed.SourceRedis, "") + m.rates.rate(feed.SourceSSE, "")
	s.NewRecords = nil
	m.snap = s
	for _, e := range s.SSE {
		m.stream.addColour(e.Name)
	}
	m.sources.now, m.sources.redis, m.sources.sse = s.Now, s.Redis, s.SSE
	m.latency.lat = s.Latency
	m.radar.radar = s.Radar
	m.radar.radar.Clients = append([]Client(nil), s.Radar.Clients...)
	sort.SliceStable(m.radar.radar.Clients, func(i, j int) bool {
		return m.radar.radar.Clients[i].OMem > m.radar.radar.Clients[j].OMem
	})
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

// handleKey routes a key to whatever has the keyboard.
func (m *Model) handleKey(km tea.KeyPressMsg) tea.Cmd {
	k := m.keys
	if km.String() == "ctrl+c" {
		return tea.Quit
	}
	switch {
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
		m.setFocus((m.focus + 1) % paneCount)
	case key.Matches(km, k.PrevPane):
		m.setFocus((m.focus + paneCount - 1) % paneCount)
	case key.Matches(km, k.Filter):
		return m.stream.StartFilter()
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
		m.stream.Clear()
	case key.Matches(km, k.Wrap):
		m.stream.wrap = !m.stream.wrap
	case key.Matches(km, k.Publish):
		cmd := m.prompt.Open()
		m.layout()
		return cmd
	case key.Matches(km, k.Probe):
		return m.probe()
	case key.Matches(km, k.Continuous):
		return m.toggleContinuous()
	case key.Matches(km, k.Copy):
		if r, ok := m.stream.Selected(); ok {
			return m.copy(r)
		}
		m.setStatus("nothing selected to copy", true)
	case key.Matches(km, k.Save):
		return m.save()
	default:
		var cmd tea.Cmd
		switch m.focus {
		case paneStream:
			_, cmd = m.stream.Update(km)
		case paneSources:
			_, cmd = m.sources.Update(km)
		case paneLatency:
			_, cmd = m.latency.Update(km)
		case paneRadar:
			_, cmd = m.radar.Update(km)
		}
		return cmd
	}
	return nil
}

func (m *Model) setFocus(f int) {
	m.focus = f
	m.stream.focused = f == paneStream
	m.sources.focused = f == paneSources
	m.latency.focused = f == paneLatency
	m.radar.focused = f == paneRadar
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
	m.latency.lat.Continuous = on
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
	sub, cmd := p.key(km, m.keys, m.snap.Header.Production && !m.opts.AllowPublish)
	if !p.open {
		m.layout()
	}
	if sub == nil {
		return cmd
	}
	b := m.opts.Backend
	if b == nil {
		return cmd
	}
	ch, payload := sub.channel, sub.payload
	m.setStatus("publishing to "+esc(ch)+"…", false)
	m.layout()
	return tea.Batch(cmd, func() tea.Msg {
		n, err := b.Publish(ch, payload)
		return publishedMsg{ch, n, err}
	})
}

// layout gives each pane its size. Narrow terminals stack the panes and
// fold the radar into its title line; wide ones put sources beside
// latency and radar above the stream.
func (m *Model) layout() {
	w, h := m.width, m.height
	body := max(h-2, 0) // header and footer
	if m.prompt.open {
		ph := min(m.prompt.height(), max(body-2, 0))
		m.prompt.setSize(w, ph)
		body -= ph
	}
	m.help.SetWidth(w)
	if m.details != nil {
		m.details.SetSize(w, body)
	}
	defer m.refresh()
	srcNeed := 1 + m.sources.rowCount()
	latNeed := 1 + m.latency.rowCount()
	radNeed := 1 + m.radar.rowCount()
	const streamMin = 5

	if w >= 140 && body >= 16 {
		topH := min(max(srcNeed, latNeed+radNeed), body*45/100)
		left := w / 2
		latH := min(latNeed, max(topH-1, 1))
		radH := topH - latH
		m.sources.SetSize(left, topH)
		m.latency.SetSize(w-left-1, latH)
		m.radar.SetSize(w-left-1, radH)
		m.stream.SetSize(w, body-topH)
		return
	}
	// Stacked: the stream keeps streamMin lines; the others share the rest
	// in order of importance.
	rest := max(body-streamMin, 0)
	if body < streamMin+2 {
		rest = 0
	}
	srcH := min(srcNeed, max(body/3, 2), rest)
	rest -= srcH
	latH := min(latNeed, max(body/4, 2), rest)
	rest -= latH
	radH := 0
	switch {
	case rest >= 4 && body >= 30:
		radH = min(radNeed, max(body/6, 2), rest)
	case rest >= 1:
		radH = 1
	}
	m.sources.SetSize(w, srcH)
	m.latency.SetSize(w, latH)
	m.radar.SetSize(w, radH)
	m.stream.SetSize(w, body-srcH-latH-radH)
}

// refresh redraws the rows of the small panes at their new sizes.
func (m *Model) refresh() {
	m.sources.refresh()
	m.latency.refresh()
	m.radar.refresh()
}

// View draws the whole screen: exactly height lines of at most width cells.
func (m *Model) View() tea.View {
	v := tea.NewView(m.render())
	v.AltScreen = true
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
	body := max(h-2, 0)
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
		parts = append(parts, m.panes())
	}
	if m.prompt.open && m.prompt.h > 0 {
		parts = append(parts, m.prompt.View(m.styles, m.snap.Header, m.opts.AllowPublish))
	}
	if h >= 2 {
		parts = append(parts, m.footer())
	}
	// Every part is already cut to the width.
	return stackLines(strings.Split(strings.Join(parts, "\n"), "\n"), h)
}

func (m *Model) panes() string {
	var parts []string
	if m.width >= 140 && m.stream.height < max(m.height-2, 0) && m.sources.height > 0 && m.sources.width < m.width {
		right := joinNonEmpty(m.latency.View(), m.radar.View())
		left := strings.Split(m.sources.View(), "\n")
		rl := strings.Split(right, "\n")
		for i := range left {
			r := ""
			if i < len(rl) {
				r = rl[i]
			}
			left[i] = padTo(left[i], m.sources.width) + " " + r
		}
		parts = append(parts, strings.Join(left, "\n"))
		parts = append(parts, m.stream.View())
	} else {
		parts = append(parts, m.sources.View(), m.stream.View(), m.latency.View(), m.radar.View())
	}
	return joinNonEmpty(parts...)
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

// health is the worst state over every source and path.
func (m *Model) health() (label string, level int) {
	level = 0 // 0 healthy, 1 degraded, 2 down
	up := 0
	total := 0
	note := func(state string, warn bool) {
		total++
		switch state {
		case feed.StateSubscribed, feed.StateConnected:
			up++
			if warn {
				level = max(level, 1)
			}
		case feed.StateConnecting, feed.StateReconnecting, "":
			level = max(level, 1)
		default:
			level = max(level, 1)
		}
	}
	if r := m.snap.Redis; r != nil {
		note(r.State, r.Error != "")
	}
	for _, e := range m.snap.SSE {
		note(e.State, len(e.Warnings) > 0 || e.Error != "")
	}
	for _, p := range m.snap.Latency.Paths {
		if p.Lost > 0 {
			level = max(level, 1)
		}
	}
	for _, c := range m.snap.Radar.Clients {
		if m.snap.Radar.hot(c) {
			level = max(level, 1) // a subscriber Redis may soon drop
		}
	}
	switch {
	case total == 0:
		return "no sources", 1
	case up == 0:
		return "down", 2
	case level == 1:
		return "degraded", 1
	}
	return "healthy", 0
}

func (m *Model) header() string {
	st := m.styles
	w := m.width
	left := st.Header.Render("fanscope")
	if m.snap.Header.Production {
		left += " " + st.Production.Render(" PRODUCTION ")
	}
	label, level := m.health()
	hs := []func(string) string{st.Good.Render, st.Warn.Render, st.Bad.Render}[level]
	left += " " + hs("● "+label)

	right := "redis " + fmtRate(m.rates.rate(feed.SourceRedis, "")) + "  sse " + fmtRate(m.rates.rate(feed.SourceSSE, ""))
	if d := m.snap.Dropped; d > 0 {
		right += "  " + st.Bad.Render("dropped "+strconv.FormatUint(d, 10))
	}
	if m.skipped > 0 {
		// The ring moved on before the TUI read it: the counts and probes
		// saw these records, only the stream does not show them.
		right += "  " + st.Warn.Render("skipped "+strconv.FormatUint(m.skipped, 10))
	}
	targets := make([]string, len(m.snap.Header.Targets))
	for i, t := range m.snap.Header.Targets {
		targets[i] = esc(t)
	}
	room := w - ansi.StringWidth(left) - ansi.StringWidth(right) - 4
	if room < 8 {
		// Too narrow for the targets; the rates go first.
		return trunc(left+"  "+right, w)
	}
	tgt := trunc(strings.Join(targets, " · "), room)
	if m.snap.Header.Production {
		tgt = st.Bad.Render(tgt)
	} else {
		tgt = st.Dim.Render(tgt)
	}
	line := left + "  " + tgt
	gap := w - ansi.StringWidth(line) - ansi.StringWidth(right)
	return trunc(line+strings.Repeat(" ", max(gap, 1))+right, w)
}

func (m *Model) footer() string {
	if m.status != "" {
		s := m.styles.Status
		if m.statusBad {
			s = m.styles.Error
		}
		return trunc(s.Render(m.status), m.width)
	}
	switch {
	case m.prompt.open && m.prompt.confirm:
		return m.styles.Bad.Render(trunc("y publishes to production · any other key goes back", m.width))
	case m.prompt.open && m.prompt.err != "":
		return m.styles.Error.Render(trunc(m.prompt.err, m.width))
	case m.prompt.open:
		return m.styles.Dim.Render(trunc("enter publishes · tab switches field · esc cancels", m.width))
	case m.stream.editing:
		return m.styles.Dim.Render(trunc("type to filter · enter keeps it · esc clears", m.width))
	case m.details != nil:
		return m.styles.Dim.Render(trunc("j/k scroll · g/G top/bottom · y copy payload · esc back", m.width))
	}
	// help.Model overflows when not even its ellipsis fits: cut it.
	return trunc(m.help.ShortHelpView(m.keys.ShortHelp()), m.width)
}

func (m *Model) helpView(h int) string {
	lines := []string{rule(m.styles, paneTitle(m.styles, "Help", true)+" "+m.styles.Dim.Render("? or esc closes"), m.width), ""}
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
		m.styles.Dim.Render(" The stream keeps the newest "+strconv.Itoa(len(m.stream.buf))+" records; pausing keeps buffering."),
		m.styles.Dim.Render(" Payloads are shown with control characters escaped (\\x1b, \\n)."))
	return fitLines(lines, m.width, h)
}

// detailsView shows one record in full: its fields, pretty JSON and the
// raw payload, escaped.
type detailsView struct {
	styles        *Styles
	rec           feed.Record
	loc           *time.Location
	lines         []string
	offset        int
	width, height int
}

// detailsMaxPayload bounds how much of a payload the details view draws.
const detailsMaxPayload = 256 << 10

func newDetailsView(st *Styles, r feed.Record, loc *time.Location) *detailsView {
	return &detailsView{styles: st, rec: r, loc: loc}
}

func (d *detailsView) SetSize(w, h int) {
	if w != d.width || d.lines == nil {
		d.width = w
		d.lines = d.build()
	}
	d.height = h
	d.clamp()
}

func (d *detailsView) clamp() {
	d.offset = min(max(d.offset, 0), max(len(d.lines)-(d.height-1), 0))
}

func (d *detailsView) Update(km tea.KeyPressMsg, k *KeyMap) {
	switch {
	case key.Matches(km, k.Down):
		d.offset++
	case key.Matches(km, k.Up):
		d.offset--
	case key.Matches(km, k.Top):
		d.offset = 0
	case key.Matches(km, k.Bottom):
		d.offset = len(d.lines)
	case key.Matches(km, k.Pause):
		d.offset += max(d.height-2, 1)
	}
	d.clamp()
}

func (d *detailsView) build() []string {
	st := d.styles
	r := &d.rec
	w := max(d.width, 10)
	var lines []string
	field := func(k, v string) {
		if v == "" {
			return
		}
		const keyW = 12
		for i, l := range wrapIndent(v, max(w-keyW+1, 2)) {
			l = l[1:] // wrapIndent's indent; the key column is the indent here
			if i == 0 {
				lines = append(lines, st.DetailKey.Render(clip(" "+k, keyW))+l)
			} else {
				lines = append(lines, strings.Repeat(" ", keyW)+l)
			}
		}
	}
	field("time", r.TS.In(d.loc).Format("2006-01-02 15:04:05.000000000 MST"))
	field("seq", strconv.FormatUint(r.Seq, 10))
	field("source", r.Source.String())
	field("kind", r.Kind.String())
	field("channel", esc(r.Channel))
	field("pattern", esc(r.Pattern))
	if r.Shard {
		field("shard", "yes")
	}
	if r.Endpoint != "" {
		ep := esc(r.Endpoint)
		if r.Conn > 0 {
			ep += " (connection " + strconv.Itoa(r.Conn) + ")"
		}
		field("endpoint", ep)
	}
	field("type", esc(r.Type))
	field("id", esc(r.ID))
	if r.Kind == feed.KindRetry {
		field("retry", strconv.FormatInt(r.RetryMS, 10)+"ms")
	}
	field("target", esc(r.Target))
	field("state", esc(r.State))
	if r.Status != 0 {
		field("status", strconv.Itoa(r.Status))
	}
	if r.Attempt != 0 {
		field("attempt", strconv.Itoa(r.Attempt))
	}
	field("error", esc(r.Error))
	if r.Probe != "" {
		field("probe", esc(r.Probe)+"  latency "+fmtDur(time.Duration(r.LatencyUS)*time.Microsecond))
	}
	if r.HasHop {
		field("hop", fmtDur(time.Duration(r.HopUS)*time.Microsecond)+" (Redis → SSE)")
	}
	field("size", strconv.Itoa(len(r.Data))+" bytes")

	if r.Data != "" && len(r.Data) <= detailsMaxPayload && json.Valid([]byte(r.Data)) {
		var buf bytes.Buffer
		if json.Indent(&buf, []byte(r.Data), "", "  ") == nil {
			lines = append(lines, "", rule(st, st.Title.Render(" JSON"), w))
			for _, l := range strings.Split(buf.String(), "\n") {
				lines = append(lines, wrapIndent(esc(l), w)...)
			}
		}
	}
	if r.Data != "" {
		lines = append(lines, "", rule(st, st.Title.Render(" Raw payload")+" "+st.Dim.Render("(control characters escaped)"), w))
		raw := string(appendEscapedPrefix(nil, r.Data, detailsMaxPayload))
		lines = append(lines, wrapIndent(raw, w)...)
		if len(r.Data) > detailsMaxPayload {
			lines = append(lines, st.Warn.Render("… "+strconv.Itoa(len(r.Data)-detailsMaxPayload)+" more bytes; ctrl+s saves every record whole"))
		}
	}
	return lines
}

// wrapIndent hard-wraps plain s to fit w cells after a one-space indent.
func wrapIndent(s string, w int) []string {
	w = max(w-1, 1)
	var lines []string
	if ansi.StringWidth(s) <= w {
		lines = []string{s}
	} else {
		lines = strings.Split(ansi.Hardwrap(s, w, true), "\n")
	}
	for i := range lines {
		lines[i] = " " + lines[i]
	}
	return lines
}

func (d *detailsView) View() string {
	st := d.styles
	title := paneTitle(st, "Record details", true) + " " + st.Dim.Render("esc closes · y copies the payload")
	if n := len(d.lines); n > d.height-1 {
		title += st.Dim.Render(" · line " + strconv.Itoa(d.offset+1) + "/" + strconv.Itoa(n))
	}
	lines := []string{rule(st, title, d.width)}
	if d.offset < len(d.lines) {
		lines = append(lines, d.lines[d.offset:min(len(d.lines), d.offset+d.height)]...)
	}
	return fitLines(lines, d.width, d.height)
}
