package tui

import (
	"strings"

	"charm.land/bubbles/v2/key"
	"charm.land/bubbles/v2/textinput"
	tea "charm.land/bubbletea/v2"
)

// publishPrompt asks for a channel and a payload to PUBLISH. The root
// model asks for a confirmation when the Redis target is production.
type publishPrompt struct {
	open    bool
	field   int // 0 channel, 1 payload
	channel textinput.Model
	payload textinput.Model
	err     string
	w, h    int
}

// submission is a publish the user asked for.
type submission struct{ channel, payload string }

func newPublishPrompt(channel string) *publishPrompt {
	ch := textinput.New()
	ch.Prompt = " channel › "
	ch.Placeholder = "story:published"
	ch.CharLimit = 512
	ch.SetValue(channel)
	pl := textinput.New()
	pl.Prompt = " payload › "
	pl.Placeholder = `{"storyId":"s1"}`
	return &publishPrompt{channel: ch, payload: pl}
}

// height is how many lines the prompt wants.
func (p *publishPrompt) height() int { return 3 }

func (p *publishPrompt) setSize(w, h int) {
	p.w, p.h = w, h
	p.channel.SetWidth(max(w-14, 4))
	p.payload.SetWidth(max(w-14, 4))
}

// Open shows the prompt, on the payload when a channel is already set.
func (p *publishPrompt) Open() tea.Cmd {
	p.open, p.err = true, ""
	if strings.TrimSpace(p.channel.Value()) == "" {
		return p.focus(0)
	}
	return p.focus(1)
}

func (p *publishPrompt) focus(f int) tea.Cmd {
	p.field = f
	if f == 0 {
		p.payload.Blur()
		return p.channel.Focus()
	}
	p.channel.Blur()
	return p.payload.Focus()
}

func (p *publishPrompt) close() {
	p.open = false
	p.channel.Blur()
	p.payload.Blur()
}

// key handles a key; it returns a submission when the user publishes. The
// prompt stays open until the root sends the submission.
func (p *publishPrompt) key(km tea.KeyPressMsg, k *KeyMap) (*submission, tea.Cmd) {
	switch {
	case key.Matches(km, k.Back):
		p.close()
		return nil, nil
	case key.Matches(km, k.SwitchField):
		return nil, p.focus(1 - p.field)
	case key.Matches(km, k.Confirm):
		if p.field == 0 {
			return nil, p.focus(1)
		}
		if strings.TrimSpace(p.channel.Value()) == "" {
			p.err = "the channel is empty"
			return nil, p.focus(0)
		}
		if p.payload.Value() == "" {
			p.err = "the payload is empty: nothing published"
			return nil, nil
		}
		return &submission{channel: strings.TrimSpace(p.channel.Value()), payload: p.payload.Value()}, nil
	}
	p.err = ""
	return nil, p.update(km)
}

// update passes a message to the focused input.
func (p *publishPrompt) update(msg tea.Msg) tea.Cmd {
	var cmd tea.Cmd
	if p.field == 0 {
		p.channel, cmd = p.channel.Update(msg)
	} else {
		p.payload, cmd = p.payload.Update(msg)
	}
	return cmd
}

func (p *publishPrompt) View(st *Styles, h Header, allow, confirming bool) string {
	target := ""
	if len(h.Targets) > 0 {
		target = esc(h.Targets[0])
	}
	head := paneTitle(st, "Publish", true)
	if target != "" {
		ts := st.Dim
		if h.Production {
			ts = st.Bad
		}
		head += " " + ts.Render("to "+target)
	}
	title := rule(st, head, p.w)
	switch {
	case confirming:
		title = st.Production.Render(" PRODUCTION ") + st.Bad.Render(" publish to "+target+"? y/N")
	case h.Production && !allow:
		title = rule(st, head+" "+st.Warn.Render("(asks before publishing)"), p.w)
	}
	lines := []string{title, p.channel.View(), p.payload.View()}
	return fitLines(lines, p.w, p.h)
}
