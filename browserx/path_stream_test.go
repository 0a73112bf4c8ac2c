package browserx

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fanscope/fanscope/feed"
)

// TestPathEveryEvent: the path records exactly what Chromium dispatched, in
// order, with no loss and no duplicate: a server that drops every 4th of 40
// events leaves exactly those 10 missing.
func TestPathEveryEvent(t *testing.T) {
	b := newBrowser(t)
	s := newStream()
	srv := newServer(t, false, s)
	p, err := NewPath(b, PathConfig{Name: "burst", URL: srv.URL + "/events"})
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{}
	runPath(t, p, c)
	waitConnected(t, p, c)
	var want []string
	var burst strings.Builder
	for i := 1; i <= 40; i++ {
		if i%4 == 0 {
			continue
		}
		fmt.Fprintf(&burst, "id: %d\ndata: ev-%d\n\n", i, i)
		want = append(want, fmt.Sprintf("ev-%d", i))
	}
	s.events <- burst.String()
	c.waitFor(t, "with the last event", 10*time.Second, func(r feed.Record) bool { return r.Data == "ev-39" })
	time.Sleep(200 * time.Millisecond) // nothing more may come
	var got []string
	for _, r := range c.all() {
		if r.Kind == feed.KindEvent {
			got = append(got, r.Data)
		}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("events\ngot  %v\nwant %v", got, want)
	}
	if st := p.Status(); st.Events != uint64(len(want)) {
		t.Errorf("status events %d, want %d", st.Events, len(want))
	}
}

// TestPathReconnects: a stream the server ends is reconnected by Chromium
// after its fixed 3 s, with Last-Event-ID; the path says reconnecting, then
// connected.
func TestPathReconnects(t *testing.T) {
	b := newBrowser(t)
	var mu sync.Mutex
	var lastIDs []string
	first := true
	srv := newServer(t, false, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		lastIDs = append(lastIDs, r.Header.Get("Last-Event-ID"))
		end := first
		first = false
		mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		if end {
			fmt.Fprint(w, "id: 41\ndata: before\n\n")
			return // the stream ends
		}
		fmt.Fprint(w, "data: after\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	p, err := NewPath(b, PathConfig{Name: "re", URL: srv.URL + "/events"})
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{}
	runPath(t, p, c)
	c.waitFor(t, "reconnecting after the stream ended", 10*time.Second, func(r feed.Record) bool {
		return r.Kind == feed.KindState && r.State == feed.StateReconnecting && strings.Contains(r.Error, "the server ended the stream; Chromium reconnects in 3s")
	})
	c.waitFor(t, "after the reconnect", 10*time.Second, func(r feed.Record) bool { return r.Kind == feed.KindEvent && r.Data == "after" })
	mu.Lock()
	ids := append([]string(nil), lastIDs...)
	mu.Unlock()
	if len(ids) < 2 || ids[1] != "41" {
		t.Errorf("Last-Event-ID per request %q, want the second to be 41", ids)
	}
	st := p.Status()
	if st.State != feed.StateConnected || st.Reconnects != 1 {
		t.Errorf("status %q reconnects %d, want connected 1", st.State, st.Reconnects)
	}
	var states []string
	for _, r := range c.all() {
		if r.Kind == feed.KindState {
			states = append(states, r.State)
		}
	}
	if got := strings.Join(states, ","); got != "connecting,connected,reconnecting,connected" {
		t.Errorf("states %s, want connecting,connected,reconnecting,connected", got)
	}
}

// TestPathServerDownAtStart: a refused connection is no failure; Chromium
// retries every 3 s and the path connects once the server is up.
func TestPathServerDownAtStart(t *testing.T) {
	b := newBrowser(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p, err := NewPath(b, PathConfig{Name: "late", URL: "http://" + addr + "/events"})
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{}
	runPath(t, p, c)
	c.waitFor(t, "reconnecting with the refusal named", 10*time.Second, func(r feed.Record) bool {
		return r.Kind == feed.KindState && r.State == feed.StateReconnecting && strings.Contains(r.Error, "ERR_CONNECTION_REFUSED")
	})
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s taken meanwhile: %v", addr, err)
	}
	s := newStream()
	srv := &http.Server{Handler: s}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	waitConnected(t, p, c)
	s.events <- "data: up\n\n"
	c.waitFor(t, "delivered once up", 10*time.Second, func(r feed.Record) bool { return r.Kind == feed.KindEvent && r.Data == "up" })
}
