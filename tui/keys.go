package tui

import "charm.land/bubbles/v2/key"

// KeyMap is every key the TUI answers to; the README documents them.
type KeyMap struct {
	Help        key.Binding
	Quit        key.Binding
	NextPane    key.Binding
	PrevPane    key.Binding
	Down        key.Binding
	Up          key.Binding
	Top         key.Binding
	Bottom      key.Binding
	PageUp      key.Binding
	PageDown    key.Binding
	Filter      key.Binding
	Pause       key.Binding
	Details     key.Binding
	Clear       key.Binding
	Wrap        key.Binding
	Publish     key.Binding
	Probe       key.Binding
	Continuous  key.Binding
	Copy        key.Binding
	Save        key.Binding
	Back        key.Binding // esc: close details, help, prompt; clear the filter
	Confirm     key.Binding // enter in the filter and publish prompts
	SwitchField key.Binding // tab in the publish prompt
	Yes         key.Binding // answers a production confirmation
}

// DefaultKeyMap returns the bindings users know from the README and --help.
func DefaultKeyMap() KeyMap {
	return KeyMap{
		Help:        key.NewBinding(key.WithKeys("?"), key.WithHelp("?", "help")),
		Quit:        key.NewBinding(key.WithKeys("q", "ctrl+c"), key.WithHelp("q", "quit")),
		NextPane:    key.NewBinding(key.WithKeys("tab"), key.WithHelp("tab", "next pane")),
		PrevPane:    key.NewBinding(key.WithKeys("shift+tab"), key.WithHelp("shift+tab", "previous pane")),
		Down:        key.NewBinding(key.WithKeys("j", "down"), key.WithHelp("j/↓", "down")),
		Up:          key.NewBinding(key.WithKeys("k", "up"), key.WithHelp("k/↑", "up")),
		Top:         key.NewBinding(key.WithKeys("g", "home"), key.WithHelp("g", "top")),
		Bottom:      key.NewBinding(key.WithKeys("G", "end"), key.WithHelp("G", "bottom (follow)")),
		PageUp:      key.NewBinding(key.WithKeys("pgup"), key.WithHelp("pgup", "page up")),
		PageDown:    key.NewBinding(key.WithKeys("pgdown"), key.WithHelp("pgdn", "page down")),
		Filter:      key.NewBinding(key.WithKeys("/"), key.WithHelp("/", "filter (~ regexp)")),
		Pause:       key.NewBinding(key.WithKeys("space"), key.WithHelp("space", "pause")),
		Details:     key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "details")),
		Clear:       key.NewBinding(key.WithKeys("c"), key.WithHelp("c", "clear stream, losses")),
		Wrap:        key.NewBinding(key.WithKeys("w"), key.WithHelp("w", "wrap")),
		Publish:     key.NewBinding(key.WithKeys("P"), key.WithHelp("P", "publish")),
		Probe:       key.NewBinding(key.WithKeys("x"), key.WithHelp("x", "probe now")),
		Continuous:  key.NewBinding(key.WithKeys("X"), key.WithHelp("X", "continuous probes")),
		Copy:        key.NewBinding(key.WithKeys("y"), key.WithHelp("y", "copy payload")),
		Save:        key.NewBinding(key.WithKeys("ctrl+s"), key.WithHelp("ctrl+s", "save NDJSON")),
		Back:        key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "back / clear filter")),
		Confirm:     key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "confirm")),
		SwitchField: key.NewBinding(key.WithKeys("tab", "shift+tab"), key.WithHelp("tab", "next field")),
		Yes:         key.NewBinding(key.WithKeys("y", "Y"), key.WithHelp("y", "yes")),
	}
}

// ShortHelp is the one-line help in the footer.
func (k KeyMap) ShortHelp() []key.Binding {
	return []key.Binding{k.Help, k.Quit, k.Pause, k.Filter, k.Details, k.Publish, k.Probe, k.NextPane}
}

// FullHelp is the help screen, one column per group.
func (k KeyMap) FullHelp() [][]key.Binding {
	return [][]key.Binding{
		{k.Help, k.Quit, k.NextPane, k.PrevPane, k.Back},
		{k.Down, k.Up, k.PageDown, k.PageUp, k.Top, k.Bottom, k.Details},
		{k.Filter, k.Pause, k.Clear, k.Wrap, k.Copy},
		{k.Publish, k.Probe, k.Continuous, k.Save},
	}
}

// as is b with other help text: the same keys, worded for one context.
func as(b key.Binding, desc string) key.Binding {
	return key.NewBinding(key.WithKeys(b.Keys()...), key.WithHelp(b.Help().Key, desc))
}

// FilterHelp is the footer while the filter input has the keyboard.
func (k KeyMap) FilterHelp() []key.Binding {
	return []key.Binding{as(k.Confirm, "keep filter"), as(k.Back, "clear")}
}

// PromptHelp is the footer while the publish prompt is open.
func (k KeyMap) PromptHelp() []key.Binding {
	return []key.Binding{as(k.Confirm, "publish"), as(k.SwitchField, "switch field"), as(k.Back, "cancel")}
}

// ConfirmHelp is the footer while a production confirmation waits.
func (k KeyMap) ConfirmHelp() []key.Binding {
	return []key.Binding{k.Yes, key.NewBinding(key.WithKeys("n", "N"), key.WithHelp("any other key", "no"))}
}

// DetailsHelp is the footer of the details view.
func (k KeyMap) DetailsHelp() []key.Binding {
	return []key.Binding{as(k.Down, "scroll"), k.PageDown, k.Top, k.Bottom, as(k.Copy, "copy payload"), as(k.Back, "back")}
}
