package browserx

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/fanscope/fanscope/feed"
)

// tab is what a browser path and a page check share: the browser, the
// health they report, the sink their state records go to, and how they
// fail for good. Its fields are promoted into Path and Page, whose own
// state is guarded by the same mu.
type tab struct {
	b         *Browser
	what      string // "browser endpoint NAME (URL)", "page NAME (URL)": how errors name it
	connected chan struct{}
	connOnce  sync.Once
	fatalCh   chan error

	mu      sync.Mutex
	sink    feed.Sink
	st      feed.Status
	failed  bool
	failErr error
}

func newTab(b *Browser, what string, st feed.Status) tab {
	st.State = feed.StateConnecting
	return tab{b: b, what: what, st: st, connected: make(chan struct{}), fatalCh: make(chan error, 1)}
}

// Connected is closed once the tab first connected.
func (t *tab) Connected() <-chan struct{} { return t.connected }

// Status copies the tab's health; RSS is the whole browser's.
func (t *tab) Status() feed.Status {
	t.mu.Lock()
	st := t.st
	st.Details = append([]string(nil), t.st.Details...)
	st.Warnings = append([]string(nil), t.st.Warnings...)
	t.mu.Unlock()
	st.RSS = t.b.RSS()
	return st
}

// emitState records a state change and emits it as a state record. An
// empty errText keeps the last error, except on connecting successfully.
func (t *tab) emitState(state string, status int, errText string, attempt int) {
	now := time.Now()
	t.mu.Lock()
	t.st.State = state
	if errText != "" || state == feed.StateConnected {
		t.st.Error = errText
	}
	if state == feed.StateConnected {
		t.st.ConnectedAt = now
	}
	sink := t.sink
	t.mu.Unlock()
	if sink == nil {
		return
	}
	sink.Emit(feed.Record{
		TS: now, Source: t.st.Source, Kind: feed.KindState, Endpoint: t.st.Name, Conn: t.st.Conn,
		State: state, Status: status, Error: errText, Attempt: attempt,
	})
}

// fail ends the tab for good with reason (kind classifies it, nil for none
// of the named kinds): the first failure is the one returned every time.
func (t *tab) fail(kind error, reason string) error {
	err := fatalError(kind, fmt.Errorf("%s: %s", t.what, reason))
	t.mu.Lock()
	if t.failed {
		first := t.failErr
		t.mu.Unlock()
		return first
	}
	t.failed, t.failErr = true, err
	t.st.State, t.st.Error = feed.StateFailed, reason
	attempt, status := t.st.Attempt, t.st.HTTPStatus
	t.mu.Unlock()
	t.emitState(feed.StateFailed, status, reason, attempt)
	select {
	case t.fatalCh <- err:
	default:
	}
	return err
}

// failUnless is fail, or nil when ctx ended (the failure is then only the
// run ending).
func (t *tab) failUnless(ctx context.Context, kind error, reason string) error {
	if ctx.Err() != nil {
		return nil
	}
	return t.fail(kind, reason)
}

// open starts the browser (one process for every tab) and opens this tab
// with setup. A nil context with a nil error means ctx ended first.
func (t *tab) open(ctx context.Context, onEvent func(any), setup tabSetup) (context.Context, func(), error) {
	if err := t.b.Start(ctx); err != nil {
		return nil, nil, t.failUnless(ctx, nil, fmt.Sprintf("start browser: %v", err))
	}
	tctx, closeTab, err := openTab(ctx, t.b, onEvent, setup)
	if err != nil {
		return nil, nil, t.failUnless(ctx, nil, err.Error())
	}
	return tctx, closeTab, nil
}
