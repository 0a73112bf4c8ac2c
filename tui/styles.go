package tui

import (
	"image/color"
	"strings"

	"charm.land/bubbles/v2/help"
	"charm.land/lipgloss/v2"
)

// Styles are every colour and emphasis the TUI uses, in one place.
type Styles struct {
	Header      Style
	Production  Style // the red cue when Redis is not on loopback
	Title       Style // pane title
	TitleFocus  Style // title of the focused pane
	Rule        Style // the line after a title
	Dim         Style
	Good        Style
	Warn        Style
	Bad         Style
	Selected    Style // the selected stream row
	Time        Style
	Redis       Style   // the Redis source column
	Paths       []Style // one colour per delivery path, in turn
	Probe       Style
	State       Style
	Comment     Style
	Status      Style // the transient status line
	Error       Style
	Paused      Style
	Filter      Style
	Spark       Style
	RadarHot    Style // a client past half its soft limit
	DetailKey   Style
	PromptTitle Style
	Help        help.Styles
}

// DefaultStyles returns the styles for a dark or light terminal.
func DefaultStyles(isDark bool) Styles {
	ld := lipgloss.LightDark(isDark)
	c := func(light, dark string) color.Color { return ld(lipgloss.Color(light), lipgloss.Color(dark)) }
	fg := func(light, dark string) Style { return newStyle(lipgloss.NewStyle().Foreground(c(light, dark))) }
	paths := []Style{
		fg("#0069B4", "#5FAFFF"),
		fg("#007A3D", "#5FD787"),
		fg("#8A2BE2", "#D787FF"),
		fg("#A15C00", "#FFAF5F"),
		fg("#00797A", "#5FD7D7"),
		fg("#B0006E", "#FF87D7"),
	}
	return Styles{
		Header:      newStyle(lipgloss.NewStyle().Bold(true)),
		Production:  newStyle(lipgloss.NewStyle().Bold(true).Foreground(lipgloss.Color("#FFFFFF")).Background(lipgloss.Color("#C00000"))),
		Title:       newStyle(lipgloss.NewStyle().Foreground(c("#444444", "#BCBCBC")).Bold(true)),
		TitleFocus:  newStyle(lipgloss.NewStyle().Foreground(c("#005FAF", "#87D7FF")).Bold(true)),
		Rule:        fg("#BBBBBB", "#4E4E4E"),
		Dim:         fg("#808080", "#808080"),
		Good:        fg("#007A3D", "#5FD75F"),
		Warn:        fg("#A15C00", "#FFD75F"),
		Bad:         newStyle(lipgloss.NewStyle().Foreground(c("#C00000", "#FF5F5F")).Bold(true)),
		Selected:    newStyle(lipgloss.NewStyle().Background(c("#D7E6F5", "#303A4A"))),
		Time:        fg("#808080", "#8A8A8A"),
		Redis:       fg("#C4302B", "#FF6F61"),
		Paths:       paths,
		Probe:       fg("#8A2BE2", "#AF87FF"),
		State:       fg("#A15C00", "#FFD75F"),
		Comment:     fg("#808080", "#6C6C6C"),
		Status:      fg("#005FAF", "#87D7FF"),
		Error:       fg("#C00000", "#FF5F5F"),
		Paused:      newStyle(lipgloss.NewStyle().Bold(true).Foreground(lipgloss.Color("#000000")).Background(lipgloss.Color("#FFD75F"))),
		Filter:      fg("#005FAF", "#87D7FF"),
		Spark:       fg("#007A3D", "#87D787"),
		RadarHot:    newStyle(lipgloss.NewStyle().Foreground(c("#C00000", "#FF5F5F")).Bold(true)),
		DetailKey:   newStyle(lipgloss.NewStyle().Foreground(c("#444444", "#BCBCBC")).Bold(true)),
		PromptTitle: newStyle(lipgloss.NewStyle().Bold(true)),
		Help:        help.DefaultStyles(isDark),
	}
}

// pathStyle is the colour of the i-th delivery path.
func (s Styles) pathStyle(i int) Style {
	if len(s.Paths) == 0 {
		return Style{}
	}
	return s.Paths[i%len(s.Paths)]
}

// Style is a text style reduced to the escape sequences around the text,
// so drawing a row costs two string concatenations, not a lipgloss layout
// pass per cell. Only colours and emphasis are allowed: no width,
// padding, margins or borders.
type Style struct {
	pre, post string
}

// newStyle captures what st writes before and after a single-line text.
func newStyle(st lipgloss.Style) Style {
	r := st.Render("x")
	i := strings.IndexByte(r, 'x')
	if i < 0 {
		return Style{}
	}
	return Style{pre: r[:i], post: r[i+1:]}
}

// Render styles one line of text.
func (s Style) Render(text string) string {
	if text == "" || s.pre == "" && s.post == "" {
		return text
	}
	return s.pre + text + s.post
}
