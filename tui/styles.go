package tui

import (
	"image/color"

	"charm.land/bubbles/v2/help"
	"charm.land/lipgloss/v2"
)

// Styles are every colour and emphasis the TUI uses, in one place.
type Styles struct {
	Header      lipgloss.Style
	Production  lipgloss.Style // the red cue when Redis is not on loopback
	Title       lipgloss.Style // pane title
	TitleFocus  lipgloss.Style // title of the focused pane
	Rule        lipgloss.Style // the line after a title
	Dim         lipgloss.Style
	Good        lipgloss.Style
	Warn        lipgloss.Style
	Bad         lipgloss.Style
	Selected    lipgloss.Style // the selected stream row
	Time        lipgloss.Style
	Redis       lipgloss.Style // the Redis source column
	SSE         []lipgloss.Style
	Probe       lipgloss.Style
	State       lipgloss.Style
	Comment     lipgloss.Style
	Status      lipgloss.Style // the transient status line
	Error       lipgloss.Style
	Paused      lipgloss.Style
	Filter      lipgloss.Style
	Spark       lipgloss.Style
	RadarHot    lipgloss.Style // a client past half its soft limit
	DetailKey   lipgloss.Style
	PromptTitle lipgloss.Style
	Help        help.Styles
}

// DefaultStyles returns the styles for a dark or light terminal.
func DefaultStyles(isDark bool) Styles {
	ld := lipgloss.LightDark(isDark)
	c := func(light, dark string) color.Color { return ld(lipgloss.Color(light), lipgloss.Color(dark)) }
	fg := func(light, dark string) lipgloss.Style { return lipgloss.NewStyle().Foreground(c(light, dark)) }
	sse := []lipgloss.Style{
		fg("#0069B4", "#5FAFFF"),
		fg("#007A3D", "#5FD787"),
		fg("#8A2BE2", "#D787FF"),
		fg("#A15C00", "#FFAF5F"),
		fg("#00797A", "#5FD7D7"),
		fg("#B0006E", "#FF87D7"),
	}
	return Styles{
		Header:      lipgloss.NewStyle().Bold(true),
		Production:  lipgloss.NewStyle().Bold(true).Foreground(lipgloss.Color("#FFFFFF")).Background(lipgloss.Color("#C00000")),
		Title:       fg("#444444", "#BCBCBC").Bold(true),
		TitleFocus:  fg("#005FAF", "#87D7FF").Bold(true).Underline(true),
		Rule:        fg("#BBBBBB", "#4E4E4E"),
		Dim:         fg("#808080", "#808080"),
		Good:        fg("#007A3D", "#5FD75F"),
		Warn:        fg("#A15C00", "#FFD75F"),
		Bad:         fg("#C00000", "#FF5F5F").Bold(true),
		Selected:    lipgloss.NewStyle().Background(c("#D7E6F5", "#303A4A")),
		Time:        fg("#808080", "#8A8A8A"),
		Redis:       fg("#C4302B", "#FF6F61"),
		SSE:         sse,
		Probe:       fg("#8A2BE2", "#AF87FF"),
		State:       fg("#A15C00", "#FFD75F"),
		Comment:     fg("#808080", "#6C6C6C"),
		Status:      fg("#005FAF", "#87D7FF"),
		Error:       fg("#C00000", "#FF5F5F"),
		Paused:      lipgloss.NewStyle().Bold(true).Foreground(lipgloss.Color("#000000")).Background(lipgloss.Color("#FFD75F")),
		Filter:      fg("#005FAF", "#87D7FF"),
		Spark:       fg("#007A3D", "#87D787"),
		RadarHot:    fg("#C00000", "#FF5F5F").Bold(true),
		DetailKey:   fg("#444444", "#BCBCBC").Bold(true),
		PromptTitle: lipgloss.NewStyle().Bold(true),
		Help:        help.DefaultStyles(isDark),
	}
}

// sseStyle is the colour of the i-th SSE endpoint.
func (s Styles) sseStyle(i int) lipgloss.Style {
	if len(s.SSE) == 0 {
		return lipgloss.NewStyle()
	}
	return s.SSE[i%len(s.SSE)]
}
