package netx

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fanscope/fanscope/feed"
)

// Health is one connection's health as a delivery client keeps it: its
// feed.Status, the Connected signal and the state records that change
// them. Its methods are safe from any goroutine.
type Health struct {
	mu sync.Mutex
	st feed.Status // guarded by mu

	connected     chan struct{}
	connectedOnce sync.Once
	running       atomic.Bool
}

// NewHealth starts a connection's health at st (Source, Name, URL masked,
// Conn); its state is disconnected.
func NewHealth(st feed.Status) *Health {
	st.State = feed.StateDisconnected
	return &Health{st: st, connected: make(chan struct{})}
}

// Start is called once by Run: it returns an error when Run is already
// going, and a sink that drops records when sink is nil.
func (h *Health) Start(sink feed.Sink) (feed.Sink, error) {
	if !h.running.CompareAndSwap(false, true) {
		return nil, fmt.Errorf("run %s: already running", feed.PathName(h.st.Source, h.st.Name))
	}
	if sink == nil {
		sink = feed.SinkFunc(func(feed.Record) {})
	}
	return sink, nil
}

// Connected is closed once the first connection was established.
func (h *Health) Connected() <-chan struct{} { return h.connected }

// EverConnected reports whether a connection was ever established.
func (h *Health) EverConnected() bool {
	select {
	case <-h.connected:
		return true
	default:
		return false
	}
}

// Emit records a state change in the Status and sends its state record:
// status is the HTTP status behind it (0: none), errText why (secrets
// masked by the caller), attempt the attempt it belongs to.
func (h *Health) Emit(sink feed.Sink, state string, status int, errText string, attempt int) {
	now := time.Now()
	if state == feed.StateConnected {
		h.connectedOnce.Do(func() { close(h.connected) })
	}
	h.mu.Lock()
	h.st.State = state
	if status != 0 {
		h.st.HTTPStatus = status
	}
	switch state {
	case feed.StateConnected:
		h.st.Error = ""
		h.st.ConnectedAt = now
	case feed.StateConnecting:
	default:
		h.st.ConnectedAt = time.Time{}
		if errText != "" {
			h.st.Error = errText
		}
	}
	h.st.Attempt = attempt
	name, conn, source := h.st.Name, h.st.Conn, h.st.Source
	h.mu.Unlock()
	sink.Emit(StateRecord(now, source, name, conn, state, status, errText, attempt))
}

// Stopped notes that Run ended because its context did: disconnected,
// with no record (nobody is reading any more).
func (h *Health) Stopped() {
	h.mu.Lock()
	h.st.State = feed.StateDisconnected
	h.st.ConnectedAt = time.Time{}
	h.mu.Unlock()
}

// Update changes the Status under the lock.
func (h *Health) Update(f func(st *feed.Status)) {
	h.mu.Lock()
	f(&h.st)
	h.mu.Unlock()
}

// Status copies the Status.
func (h *Health) Status() feed.Status {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.st
}

// StateRecord is the state record every delivery client sends.
func StateRecord(at time.Time, source feed.Source, endpoint string, conn int, state string, status int, errText string, attempt int) feed.Record {
	return feed.Record{
		TS:       at,
		Source:   source,
		Kind:     feed.KindState,
		Endpoint: endpoint,
		Conn:     conn,
		State:    state,
		Status:   status,
		Error:    errText,
		Attempt:  attempt,
	}
}
