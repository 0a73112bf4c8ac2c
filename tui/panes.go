package tui

import (
	"strconv"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"
)

// pane is one box of the main screen. The root model keeps its panes in
// screen order (top to bottom, left to right), which is also the tab
// order. Only the root handles tea.WindowSizeMsg: it gives each pane its
// share with SetSize.
type pane interface {
	// Update handles a key sent while the pane has the focus, or a mouse
	// wheel turned over it.
	Update(msg tea.Msg) (pane, tea.Cmd)
	// View draws exactly the size last set, title line included.
	View() string
	SetSize(w, h int)
	SetFocus(on bool)
	// SetData takes the pane's part of a new snapshot.
	SetData(s *Snapshot)
	// Wanted is how many lines the pane would use, its title included;
	// 0 hides the pane (and takes it out of the tab order).
	Wanted() int
}

// wheelStep is how many rows one notch of the mouse wheel moves.
const wheelStep = 3

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
	widths := colWidths(rows)
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

// colWidths is the widest cell of each column.
func colWidths(rows [][]cell) []int {
	var widths []int
	for _, r := range rows {
		for i, c := range r {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], ansi.StringWidth(c.text))
		}
	}
	return widths
}

// column is one column of a table that gives up columns when narrow.
type column struct {
	// keep orders the columns given up when the table is too wide: the
	// lowest goes first; 0 is never given up.
	keep  int
	cells []cell // header first
}

// fitTable drops the least important columns until the rows fit w cells,
// then draws them.
func fitTable(cols []column, w int) []string {
	cols = append([]column(nil), cols...)
	for {
		width, drop := -2, -1
		for i, c := range cols {
			cw := 0
			for _, x := range c.cells {
				cw = max(cw, ansi.StringWidth(x.text))
			}
			width += cw + 2
			if c.keep > 0 && (drop < 0 || c.keep < cols[drop].keep) {
				drop = i
			}
		}
		if width <= w || drop < 0 {
			break
		}
		cols = append(cols[:drop], cols[drop+1:]...)
	}
	if len(cols) == 0 {
		return nil
	}
	rows := make([][]cell, len(cols[0].cells))
	for i := range rows {
		rows[i] = make([]cell, len(cols))
		for j, c := range cols {
			rows[i][j] = c.cells[i]
		}
	}
	return table(rows)
}

// listBody is what a listPane shows: a title and rows drawn from the
// latest snapshot.
type listBody interface {
	setData(s *Snapshot)
	// head is the title line before its rule.
	head(focused bool) string
	// rows draws the rows for width w.
	rows(w int) []string
	// hidden reports that the pane has nothing to show at all.
	hidden() bool
}

// listPane is a pane of rows that scroll when it has the focus: sources,
// latency, radar, publishers.
type listPane struct {
	keys          *KeyMap
	styles        *Styles
	body          listBody
	offset        int
	focused       bool
	width, height int
	lines         []string // the rows, drawn when the data or the width changed
}

func newListPane(st *Styles, km *KeyMap, body listBody) *listPane {
	return &listPane{keys: km, styles: st, body: body}
}

func (p *listPane) SetSize(w, h int) {
	if w != p.width {
		p.width = w
		p.lines = p.body.rows(w)
	}
	p.height = h
	p.clamp()
}

func (p *listPane) SetFocus(on bool) { p.focused = on }

func (p *listPane) SetData(s *Snapshot) {
	p.body.setData(s)
	p.lines = p.body.rows(p.width)
	p.clamp()
}

func (p *listPane) Wanted() int {
	if p.body.hidden() {
		return 0
	}
	return 1 + len(p.lines)
}

// page is how many rows show under the title.
func (p *listPane) page() int { return max(p.height-1, 1) }

func (p *listPane) clamp() {
	p.offset = min(max(p.offset, 0), max(len(p.lines)-p.page(), 0))
}

// Update scrolls with j/k/g/G, PgUp/PgDn and the wheel.
func (p *listPane) Update(msg tea.Msg) (pane, tea.Cmd) {
	p.offset = scroll(msg, p.keys, p.offset, p.page(), len(p.lines))
	p.clamp()
	return p, nil
}

// scroll is the offset after msg in a view of total lines that shows page
// of them: j/k, PgUp/PgDn, g/G and the wheel. The caller clamps it.
func scroll(msg tea.Msg, k *KeyMap, offset, page, total int) int {
	switch msg := msg.(type) {
	case tea.KeyPressMsg:
		switch {
		case key.Matches(msg, k.Down):
			return offset + 1
		case key.Matches(msg, k.Up):
			return offset - 1
		case key.Matches(msg, k.PageDown):
			return offset + page
		case key.Matches(msg, k.PageUp):
			return offset - page
		case key.Matches(msg, k.Top):
			return 0
		case key.Matches(msg, k.Bottom):
			return total
		}
	case tea.MouseWheelMsg:
		switch msg.Button {
		case tea.MouseWheelDown:
			return offset + wheelStep
		case tea.MouseWheelUp:
			return offset - wheelStep
		}
	}
	return offset
}

// View draws the title and the rows from the scroll offset.
func (p *listPane) View() string {
	if p.height <= 0 || p.width <= 0 {
		return ""
	}
	rows := p.lines
	page := max(p.height-1, 0)
	off := min(p.offset, max(len(rows)-page, 0))
	lines := make([]string, 0, p.height)
	lines = append(lines, rule(p.styles, p.body.head(p.focused), p.width))
	if off < len(rows) {
		lines = append(lines, rows[off:]...)
	}
	if off+page < len(rows) && page > 0 {
		more := " ↓ " + strconv.Itoa(len(rows)-off-page) + " more"
		lines = lines[:page]
		lines = append(lines, p.styles.Dim.Render(more))
	}
	return fitLines(lines, p.width, p.height)
}

// paneTitle is a pane's name, highlighted when it has the focus.
func paneTitle(st *Styles, name string, focused bool) string {
	if focused {
		return st.TitleFocus.Render("▸ " + name)
	}
	return st.Title.Render("  " + name)
}

// rule cuts head to w cells and fills the rest of the line with a rule.
func rule(st *Styles, head string, w int) string {
	head = trunc(head, w)
	if fill := w - ansi.StringWidth(head) - 1; fill > 0 {
		head += " " + st.Rule.Render(strings.Repeat("─", fill))
	}
	return head
}

// padTo pads s (which may be styled) with spaces to w cells.
func padTo(s string, w int) string {
	if d := w - ansi.StringWidth(s); d > 0 {
		return s + strings.Repeat(" ", d)
	}
	return s
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func countStr(n int64) string {
	if n < 0 {
		return "?"
	}
	return strconv.FormatInt(n, 10)
}
