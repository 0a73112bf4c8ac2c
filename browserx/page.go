package browserx

import (
	"context"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/fanscope/fanscope/feed"
)

// bindingPage is the page function the observer calls when the selector
// becomes visible.
const bindingPage = "__fanscopePage"

// PageConfig is one page check: --page [NAME=]URL --expect SELECTOR.
type PageConfig struct {
	Name    string // the path is "page:NAME"; default host:port
	URL     string // a page of the app, http or https
	Expect  string // CSS selector of the element an event makes visible
	Header  http.Header
	Cookies []Cookie
	// ReadyTimeout bounds loading the page until its EventSource is open;
	// default 15s.
	ReadyTimeout time.Duration
}

// Page loads a real page of the app in a tab and emits an event record
// (source page) each time the Expect selector becomes visible. It
// implements session.Source; call Reset before each probe.
type Page struct {
	tab
	cfg     PageConfig
	u       *url.URL
	shown   string
	resetCh chan chan error
	done    chan struct{} // closed when Run returns

	// Guarded by tab's mu:
	armed   bool                         // records count: the page is loaded and its EventSource open
	es      map[network.RequestID]string // the page's EventSource requests -> host:port
	held    map[network.RequestID]string // those holding an HTTP/1.1 connection
	esOpen  bool
	esReady chan struct{} // closed when an EventSource of the current load opened
}

// NewPage checks cfg and returns the page check; nothing starts before
// Run.
func NewPage(b *Browser, cfg PageConfig) (*Page, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usageErrorf("--page %q: want an http:// or https:// URL of a page of the app", maskRaw(cfg.URL))
	}
	if cfg.Name == "" {
		cfg.Name = u.Host
	}
	if strings.TrimSpace(cfg.Expect) == "" {
		return nil, usageErrorf("--page %s: --expect SELECTOR is required (the element an event makes visible, e.g. '[data-testid=\"new-story-notification\"]')", cfg.Name)
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 15 * time.Second
	}
	shown := maskURL(u)
	p := &Page{
		tab: newTab(b, fmt.Sprintf("page %s (%s)", cfg.Name, shown),
			feed.Status{Source: feed.SourcePage, Name: cfg.Name, URL: shown}),
		cfg: cfg, u: u, shown: shown,
		resetCh: make(chan chan error),
		done:    make(chan struct{}),
		es:      map[network.RequestID]string{},
		held:    map[network.RequestID]string{},
		esReady: make(chan struct{}),
	}
	return p, nil
}

// Path is "page:NAME".
func (p *Page) Path() string { return feed.PathName(feed.SourcePage, p.cfg.Name) }

// Reset readies the page for the next probe: when the selector is still
// visible, the page is reloaded and Reset returns once it is loaded and its
// EventSource is open again; otherwise it returns at once. It waits for
// Run's first load, and returns Run's error once Run has ended.
func (p *Page) Reset(ctx context.Context) error {
	select {
	case <-p.connected:
	case <-p.done:
		return p.ended()
	case <-ctx.Done():
		return ctx.Err()
	}
	reply := make(chan error, 1)
	select {
	case p.resetCh <- reply:
	case <-p.done:
		return p.ended()
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ended is Reset's answer once Run returned.
func (p *Page) ended() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failErr != nil {
		return p.failErr
	}
	return fmt.Errorf("page %s: the page check is not running", p.cfg.Name)
}

// Run loads the page and emits records until ctx ends (nil) or the page
// cannot be checked: it does not load, answers non-2xx, opens no
// EventSource within ReadyTimeout, or the selector is invalid.
func (p *Page) Run(ctx context.Context, sink feed.Sink) error {
	defer close(p.done)
	p.mu.Lock()
	p.sink = sink
	p.mu.Unlock()
	p.emitState(feed.StateConnecting, p.status(), "", 0)
	sel, _ := json.Marshal(p.cfg.Expect)
	tctx, closeTab, err := p.open(ctx, p.onEvent, tabSetup{
		bindings:  []string{bindingPage},
		header:    p.cfg.Header,
		cookies:   p.cfg.Cookies,
		cookieURL: p.u.String(),
		onNewDoc:  fmt.Sprintf(observerScript, sel, bindingPage),
	})
	if tctx == nil {
		return err
	}
	defer closeTab()
	defer p.releaseAll()
	if err := p.load(ctx, tctx, false); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	p.connOnce.Do(func() { close(p.connected) })
	detached, err := chromedp.Detached(tctx)
	if err != nil {
		return p.fail(nil, fmt.Sprintf("watch tab: %v", err))
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-p.fatalCh:
			return err
		case <-detached:
			if ctx.Err() != nil {
				return nil
			}
			return p.fail(nil, "chromium closed the tab (the browser crashed or ran out of memory)")
		case reply := <-p.resetCh:
			err := p.reset(ctx, tctx)
			reply <- err
			if err != nil && ctx.Err() == nil {
				return err
			}
		}
	}
}

// observerScript runs in every document of the tab before the page's own
// scripts: it reports each time the selector goes from hidden (or absent)
// to visible. Mutations catch most changes; transitions, animations and a
// 100 ms poll catch the ones that change no DOM.
const observerScript = `(() => {
  const sel = %s, send = %q;
  let shown = false;
  const find = () => { try { return document.querySelector(sel); } catch (e) { return null; } };
  const visible = (el) => {
    if (!el || !el.isConnected) return false;
    if (el.checkVisibility && !el.checkVisibility({checkOpacity: true, checkVisibilityCSS: true})) return false;
    const r = el.getBoundingClientRect();
    return r.width > 0 && r.height > 0;
  };
  const check = () => {
    const el = find(), v = visible(el);
    if (v && !shown) {
      shown = true;
      const text = (el.innerText || el.textContent || "").trim();
      if (typeof window[send] === "function") window[send](JSON.stringify({text, html: el.outerHTML}));
    } else if (!v) {
      shown = false;
    }
  };
  window.__fanscopePageVisible = () => visible(find());
  window.__fanscopeSelectorValid = () => { try { document.querySelector(sel); return true; } catch (e) { return false; } };
  new MutationObserver(check).observe(document, {subtree: true, childList: true, attributes: true, characterData: true});
  document.addEventListener("transitionend", check, true);
  document.addEventListener("animationend", check, true);
  setInterval(check, 100);
})()`

// load navigates (or reloads) and waits until the page's EventSource is
// open; then the page is armed: visibility reports count as records.
func (p *Page) load(ctx, tctx context.Context, reload bool) error {
	p.mu.Lock()
	p.armed, p.esOpen = false, false
	p.esReady = make(chan struct{})
	ready := p.esReady
	p.mu.Unlock()

	lctx, cancel := context.WithTimeout(tctx, p.cfg.ReadyTimeout)
	defer cancel()
	var resp *network.Response
	var err error
	if reload {
		resp, err = chromedp.RunResponse(lctx, chromedp.Reload())
	} else {
		resp, err = chromedp.Run(lctx, chromedp.NavigateResponse(p.u.String()))
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	switch {
	case err != nil && lctx.Err() != nil:
		return p.fail(nil, fmt.Sprintf("load the page: not loaded within %s", p.cfg.ReadyTimeout))
	case err != nil:
		return p.fail(nil, fmt.Sprintf("load the page: %v", err))
	case resp != nil && (resp.Status < 200 || resp.Status > 299):
		hint := ""
		if resp.Status == http.StatusUnauthorized || resp.Status == http.StatusForbidden {
			hint = " (the page wants a session: pass --browser-cookie 'name=value' or -H)"
		}
		return p.fail(nil, fmt.Sprintf("load the page: HTTP %s%s", statusLine(int(resp.Status), resp.StatusText), hint))
	}
	valid, err := chromedp.Run(lctx, chromedp.Evaluate[bool](`window.__fanscopeSelectorValid ? window.__fanscopeSelectorValid() : true`))
	if err == nil && !valid {
		return p.fail(nil, fmt.Sprintf("--expect %q is not a valid CSS selector", p.cfg.Expect))
	}
	select {
	case <-ready:
	case <-lctx.Done():
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return p.fail(nil, fmt.Sprintf("the page opened no EventSource within %s (a page check times deliveries once the page's EventSource answered 200 text/event-stream)", p.cfg.ReadyTimeout))
	}
	p.mu.Lock()
	p.armed = true
	p.mu.Unlock()
	p.emitState(feed.StateConnected, p.status(), "", 0)
	return nil
}

// reset reloads when the selector is still visible.
func (p *Page) reset(ctx, tctx context.Context) error {
	visible, err := chromedp.Run(tctx, chromedp.Evaluate[bool](`window.__fanscopePageVisible ? window.__fanscopePageVisible() : false`))
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("page %s: check the selector: %w", p.cfg.Name, err)
	}
	if !visible {
		return nil
	}
	return p.load(ctx, tctx, true)
}

// onEvent runs in the tab's message loop: fast, no commands.
func (p *Page) onEvent(ev any) {
	now := time.Now()
	switch e := ev.(type) {
	case *network.EventRequestWillBeSent:
		if e.Type != network.ResourceTypeEventSource || e.Request == nil {
			return
		}
		hp := ""
		if u, err := url.Parse(e.Request.URL); err == nil {
			hp = hostPort(u)
		}
		p.mu.Lock()
		p.es[e.RequestID] = hp
		p.mu.Unlock()
	case *network.EventResponseReceived:
		p.onResponse(e)
	case *network.EventLoadingFailed:
		reason := e.ErrorText
		if e.CorsErrorStatus != nil {
			reason = fmt.Sprintf("CORS rejected it: %s", e.CorsErrorStatus.CorsError)
		}
		p.esEnded(e.RequestID, reason, e.Canceled)
	case *network.EventLoadingFinished:
		p.esEnded(e.RequestID, "the server ended the stream", false)
	case *runtime.EventBindingCalled:
		if e.Name == bindingPage {
			p.onVisible(e.Payload, now)
		}
	}
}

func (p *Page) onResponse(e *network.EventResponseReceived) {
	p.mu.Lock()
	hp, mine := p.es[e.RequestID]
	if !mine || e.Response == nil {
		p.mu.Unlock()
		return
	}
	r := e.Response
	mediaType, _, _ := mime.ParseMediaType(r.MimeType)
	ok := r.Status == http.StatusOK && strings.EqualFold(mediaType, "text/event-stream")
	p.st.HTTPStatus = int(r.Status)
	if !ok {
		p.st.Warnings = append(p.st.Warnings[:0], fmt.Sprintf("the page's EventSource %s answered HTTP %s, %q", maskRaw(r.URL), statusLine(int(r.Status), r.StatusText), r.MimeType))
		p.mu.Unlock()
		return
	}
	p.st.Warnings = p.st.Warnings[:0]
	if r.Protocol != "" {
		p.st.Details = []string{"EventSource " + maskRaw(r.URL) + " over " + r.Protocol}
	}
	hold := strings.EqualFold(r.Protocol, "http/1.1")
	if hold {
		p.held[e.RequestID] = hp
	}
	wasOpen, armed := p.esOpen, p.armed
	p.esOpen = true
	select {
	case <-p.esReady:
	default:
		close(p.esReady)
	}
	p.mu.Unlock()
	if hold {
		p.b.connOpened(hp)
	}
	if armed && !wasOpen {
		p.emitState(feed.StateConnected, p.status(), "", 0)
	}
}

// esEnded notes that one of the page's EventSource requests ended.
func (p *Page) esEnded(id network.RequestID, reason string, canceled bool) {
	p.mu.Lock()
	if _, mine := p.es[id]; !mine {
		p.mu.Unlock()
		return
	}
	delete(p.es, id)
	hp, held := p.held[id]
	delete(p.held, id)
	report := p.armed && p.esOpen && !canceled && len(p.held) == 0
	if report {
		p.esOpen = false
	}
	p.mu.Unlock()
	if held {
		p.b.connClosed(hp)
	}
	if report {
		p.emitState(feed.StateReconnecting, p.status(), "the page's EventSource dropped: "+reason, 0)
	}
}

func (p *Page) onVisible(payload string, now time.Time) {
	var m struct {
		Text string `json:"text"`
		HTML string `json:"html"`
	}
	if json.Unmarshal([]byte(payload), &m) != nil {
		return
	}
	p.mu.Lock()
	if !p.armed {
		p.mu.Unlock()
		return
	}
	p.st.Events++
	p.st.LastEvent, p.st.LastByte = now, now
	sink := p.sink
	p.mu.Unlock()
	data := m.Text
	if data == "" {
		data = m.HTML
	}
	sink.Emit(feed.Record{
		TS: now, Source: feed.SourcePage, Kind: feed.KindEvent,
		Endpoint: p.cfg.Name, Type: "visible", Data: data,
	})
}

func (p *Page) releaseAll() {
	p.mu.Lock()
	held := p.held
	p.held = map[network.RequestID]string{}
	p.mu.Unlock()
	for _, hp := range held {
		p.b.connClosed(hp)
	}
}

// status is the HTTP status of the page's last response.
func (p *Page) status() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st.HTTPStatus
}
