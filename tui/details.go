package tui

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/fanscope/fanscope/feed"
)

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

// Update scrolls with j/k/g/G, PgUp/PgDn, space and the wheel.
func (d *detailsView) Update(msg tea.Msg, k *KeyMap) {
	page := max(d.height-2, 1)
	if km, ok := msg.(tea.KeyPressMsg); ok && key.Matches(km, k.Pause) {
		d.offset += page
	} else {
		d.offset = scroll(msg, k, d.offset, page, len(d.lines))
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
	if r.Source != feed.SourceRedis {
		field("path", esc(r.Path()))
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
	if r.Client != "" {
		c := esc(r.Client)
		if r.ClientName != "" {
			c += " (" + esc(r.ClientName) + ")"
		}
		field("client", c)
	}
	if !r.ServerTS.IsZero() {
		field("server ts", r.ServerTS.In(d.loc).Format("2006-01-02 15:04:05.000000 MST"))
	}
	if r.Probe != "" {
		field("probe", esc(r.Probe)+"  latency "+fmtDur(time.Duration(r.LatencyUS)*time.Microsecond))
	}
	if r.HasHop {
		field("hop", fmtDur(time.Duration(r.HopUS)*time.Microsecond)+" (Redis → "+r.Path()+")")
	}
	if r.HasPublish {
		field("publish", fmtDur(time.Duration(r.PublishUS)*time.Microsecond)+" (PUBLISH → "+r.Path()+")")
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
