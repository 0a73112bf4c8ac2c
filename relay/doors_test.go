package relay

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/fanscope/fanscope/feed"
)

// wsEvent is the WebSocket message and poll entry of one event.
type wsEvent struct {
	ID      string `json:"id"`
	Type    string `json:"type"`
	Channel string `json:"channel"`
	Data    string `json:"data"`
}

func dialWS(t *testing.T, r *testRelay, query string, header http.Header) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws://"+r.addr+WSPath+query, &websocket.DialOptions{HTTPHeader: header})
	if c != nil {
		c.SetReadLimit(8 << 20)
		t.Cleanup(func() { c.CloseNow() })
	}
	return c, resp, err
}

func readWS(t *testing.T, c *websocket.Conn) wsEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	typ, b, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read websocket message: %v", err)
	}
	if typ != websocket.MessageText {
		t.Fatalf("got a %v message, want text", typ)
	}
	var ev wsEvent
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatalf("message %q: %v", b, err)
	}
	return ev
}

// TestWebSocketGetsTheSameEvents: a WebSocket client and an SSE client
// get the same events with the same ids; a reconnect with last_event_id
// replays exactly what was missed.
func TestWebSocketGetsTheSameEvents(t *testing.T) {
	r := startRelay(t, Config{History: 100})
	ws, _, err := dialWS(t, r, "", nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	sse := mustDial(t, r.addr, DefaultPath, nil)
	waitConnections(t, r, 2)
	if st := r.Stats(); st.WSConnections != 1 || st.SSEConnections != 1 {
		t.Fatalf("stats: got %d ws and %d sse connections, want 1 and 1", st.WSConnections, st.SSEConnections)
	}
	payloads := []string{`{"storyId":"s1"}`, "two\nlines", "crlf\r\nline", strings.Repeat("x", 1<<20)}
	for i, p := range payloads {
		id := r.Publish("story:published", p)
		if id != uint64(i+1) {
			t.Fatalf("id %d, want %d", id, i+1)
		}
		got := readWS(t, ws)
		want := wsEvent{strconv.Itoa(i + 1), "story-published", "story:published", p}
		if got != want {
			t.Fatalf("websocket event %d: got %+v, want %+v", i, abbreviate(got), abbreviate(want))
		}
		o, err := sse.nextEvent(10 * time.Second)
		if err != nil || o.LastEventID != got.ID {
			t.Fatalf("sse event %d: got id %q (%v), want the websocket's %q", i, o.LastEventID, err, got.ID)
		}
	}
	ws.CloseNow()
	waitConnections(t, r, 1)
	r.Publish("c", "missed")
	ws2, _, err := dialWS(t, r, "?last_event_id=3", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"4", "5"} {
		if got := readWS(t, ws2); got.ID != want {
			t.Fatalf("replay: got id %s, want %s", got.ID, want)
		}
	}
	waitConnections(t, r, 2)
	r.Publish("c", "live")
	if got := readWS(t, ws2); got.ID != "6" || got.Data != "live" {
		t.Fatalf("after the replay: got %+v, want id 6 \"live\"", got)
	}
	waitFor(t, "the ws disconnect line", func() bool { return strings.Contains(r.logs.String(), `msg="ws client disconnected"`) })
}

func abbreviate(e wsEvent) wsEvent {
	if len(e.Data) > 40 {
		e.Data = e.Data[:40] + fmt.Sprintf("...(%d bytes)", len(e.Data))
	}
	return e
}

func TestWebSocketToken(t *testing.T) {
	r := startRelay(t, Config{Token: "s3cret"})
	if _, resp, err := dialWS(t, r, "", nil); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no token: got %v (%v), want a 401 refusal", resp, err)
	}
	if _, resp, err := dialWS(t, r, "?token=nope", nil); err == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong token: got %v, want a 401 refusal", err)
	}
	ws, _, err := dialWS(t, r, "?token=s3cret", nil)
	if err != nil {
		t.Fatalf("query token: %v", err)
	}
	ws2, _, err := dialWS(t, r, "", http.Header{"Authorization": {"Bearer s3cret"}})
	if err != nil {
		t.Fatalf("bearer token: %v", err)
	}
	waitConnections(t, r, 2)
	r.Publish("c", "x")
	for _, c := range []*websocket.Conn{ws, ws2} {
		if got := readWS(t, c); got.Data != "x" {
			t.Fatalf("got %+v", got)
		}
	}
}

// TestWebSocketCrossOrigin: a browser page from another origin is refused
// unless --cors-origin names it (or is "*").
func TestWebSocketCrossOrigin(t *testing.T) {
	origin := http.Header{"Origin": {"http://localhost:3000"}}
	for _, tt := range []struct {
		allow string
		ok    bool
	}{{"", false}, {"http://localhost:3000", true}, {"http://other:1", false}, {"*", true}} {
		t.Run(tt.allow, func(t *testing.T) {
			r := startRelay(t, Config{AllowOrigin: tt.allow})
			_, resp, err := dialWS(t, r, "", origin)
			if tt.ok && err != nil {
				t.Fatalf("got %v, want the upgrade", err)
			}
			if !tt.ok && (err == nil || resp.StatusCode != http.StatusForbidden) {
				t.Fatalf("got %v, want 403", err)
			}
		})
	}
}

// dialStuckWS upgrades a raw connection to WebSocket and never reads.
func dialStuckWS(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.(*net.TCPConn).SetReadBuffer(4096)
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", WSPath)
	return c
}

// TestStuckWebSocketDoesNotDelayOthers: a WebSocket client that stops
// reading fills only its own queue (bounded in bytes) and is dropped;
// SSE and WebSocket clients that read get every event meanwhile.
func TestStuckWebSocketDoesNotDelayOthers(t *testing.T) {
	r := startRelay(t, Config{ClientQueue: 100000, ClientQueueBytes: 256 << 10, WriteTimeout: time.Hour})
	dialStuckWS(t, r.addr)
	good := mustDial(t, r.addr, DefaultPath, nil)
	goodWS, _, err := dialWS(t, r, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	waitConnections(t, r, 3)
	payload := strings.Repeat("w", 16<<10)
	for i := 1; r.Stats().SlowClientsDropped == 0; i++ {
		if i > 4000 {
			t.Fatalf("after %d events of 16 KiB the stuck websocket is still connected", i-1)
		}
		id := r.Publish("c", payload)
		o, err := good.nextEvent(10 * time.Second)
		if err != nil || o.LastEventID != strconv.FormatUint(id, 10) {
			t.Fatalf("good sse client, event %d: %v", id, err)
		}
		if got := readWS(t, goodWS); got.ID != strconv.FormatUint(id, 10) {
			t.Fatalf("good websocket client: got id %s, want %d", got.ID, id)
		}
	}
	waitConnections(t, r, 2)
	if st := r.Stats(); st.WSConnections != 1 || st.SlowClientsDropped != 1 {
		t.Fatalf("stats: got %d ws connections, %d dropped; want 1, 1", st.WSConnections, st.SlowClientsDropped)
	}
	waitFor(t, "the drop in the log", func() bool {
		return strings.Contains(r.logs.String(), `msg="ws client disconnected"`) && strings.Contains(r.logs.String(), "too slow")
	})
}

type pollBody struct {
	LastEventID uint64    `json:"last_event_id"`
	Events      []wsEvent `json:"events"`
}

func poll(t *testing.T, r *testRelay, query string, header http.Header) (int, http.Header, pollBody) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+r.addr+DefaultPath+PollSuffix+query, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var body pollBody
	if resp.StatusCode == 200 {
		if err := json.Unmarshal(b, &body); err != nil {
			t.Fatalf("poll body %q: %v", b, err)
		}
	}
	return resp.StatusCode, resp.Header, body
}

func ids(evs []wsEvent) string {
	var s []string
	for _, e := range evs {
		s = append(s, e.ID)
	}
	return strings.Join(s, ",")
}

func TestPollETagAnd304(t *testing.T) {
	r := startRelay(t, Config{History: 5})
	code, h, body := poll(t, r, "", nil)
	if code != 200 || body.LastEventID != 0 || len(body.Events) != 0 || h.Get("ETag") == "" {
		t.Fatalf("empty relay: got %d %+v etag %q, want 200, no events, an ETag", code, body, h.Get("ETag"))
	}
	empty := h.Get("ETag")
	for i := 1; i <= 7; i++ {
		r.Publish("story:published", "m"+strconv.Itoa(i))
	}
	code, h, body = poll(t, r, "", http.Header{"If-None-Match": {empty}})
	if code != 200 || body.LastEventID != 7 || ids(body.Events) != "3,4,5,6,7" {
		t.Fatalf("after 7 events (history 5): got %d last %d ids %s, want 200 last 7 ids 3..7", code, body.LastEventID, ids(body.Events))
	}
	if e := body.Events[0]; e.Type != "story-published" || e.Channel != "story:published" || e.Data != "m3" {
		t.Errorf("first event: got %+v", e)
	}
	etag := h.Get("ETag")
	if etag == empty {
		t.Fatalf("the ETag did not change with the body: %s", etag)
	}
	if code, _, _ := poll(t, r, "", http.Header{"If-None-Match": {etag}}); code != http.StatusNotModified {
		t.Fatalf("unchanged: got %d, want 304", code)
	}
	if code, _, _ := poll(t, r, "", http.Header{"If-None-Match": {`"other", W/` + etag}}); code != http.StatusNotModified {
		t.Fatalf("unchanged, weak tag in a list: got %d, want 304", code)
	}
	r.Publish("c", "m8")
	if code, _, body = poll(t, r, "", http.Header{"If-None-Match": {etag}}); code != 200 || ids(body.Events) != "4,5,6,7,8" {
		t.Fatalf("after a new event: got %d ids %s, want 200 and 4..8", code, ids(body.Events))
	}
	if _, _, body = poll(t, r, "?limit=2", nil); ids(body.Events) != "7,8" {
		t.Errorf("limit=2: got ids %s, want 7,8", ids(body.Events))
	}
	if _, _, body = poll(t, r, "?after=6", nil); ids(body.Events) != "7,8" {
		t.Errorf("after=6: got ids %s, want 7,8", ids(body.Events))
	}
	if _, _, body = poll(t, r, "?after=8", nil); len(body.Events) != 0 || body.LastEventID != 8 {
		t.Errorf("after=8: got %+v, want no events, last 8", body)
	}
	for _, q := range []string{"?limit=0", "?limit=x", "?after=-1"} {
		if code, _, _ := poll(t, r, q, nil); code != http.StatusBadRequest {
			t.Errorf("%s: got %d, want 400", q, code)
		}
	}
	if st := r.Stats(); st.Polls < 8 || st.PollNotModified != 2 {
		t.Errorf("stats: got %d polls, %d not modified; want >= 8 and 2", st.Polls, st.PollNotModified)
	}
}

func TestPollToken(t *testing.T) {
	r := startRelay(t, Config{Token: "tok"})
	if code, h, _ := poll(t, r, "", nil); code != 401 || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("no token: got %d, want 401 with a Bearer challenge", code)
	}
	if code, _, _ := poll(t, r, "?token=tok", nil); code != 200 {
		t.Fatalf("query token: got %d", code)
	}
	if code, _, _ := poll(t, r, "", http.Header{"Authorization": {"Bearer tok"}}); code != 200 {
		t.Fatalf("bearer: got %d", code)
	}
}

// TestHistoryBoundedInBytes: the history holds at most HistoryBytes, an
// event larger than that is relayed but not kept, and a replay gives what
// is held.
func TestHistoryBoundedInBytes(t *testing.T) {
	const bound = 64 << 10
	r := startRelay(t, Config{History: 1000, HistoryBytes: bound})
	payload := strings.Repeat("h", 1000)
	for i := 1; i <= 300; i++ {
		r.Publish("c", payload)
		if st := r.Stats(); st.HistoryBytes > bound {
			t.Fatalf("after %d events: history holds %d bytes, bound %d", i, st.HistoryBytes, bound)
		}
	}
	st := r.Stats()
	if st.HistoryHeld >= 300 || st.HistoryHeld < 20 {
		t.Fatalf("history holds %d events of ~2 KB in %d bytes, want the bytes to bound it", st.HistoryHeld, bound)
	}
	held := st.HistoryHeld
	c := mustDial(t, r.addr, DefaultPath, map[string]string{"Last-Event-ID": "0"})
	first, err := c.nextEvent(10 * time.Second)
	if err != nil || first.LastEventID != strconv.Itoa(300-held+1) {
		t.Fatalf("replay from 0: first id %q (%v), want %d (the oldest held)", first.LastEventID, err, 300-held+1)
	}
	big := r.Publish("c", strings.Repeat("B", bound))
	if st := r.Stats(); st.HistorySkipped != 1 || st.HistoryHeld != held || st.LastEventID != big {
		t.Fatalf("an event over the bound: got skipped %d, held %d, last %d; want 1, %d, %d", st.HistorySkipped, st.HistoryHeld, st.LastEventID, held, big)
	}
	waitConnections(t, r, 1)
	for {
		o, err := c.nextEvent(10 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if o.LastEventID == strconv.FormatUint(big, 10) {
			if len(o.Data) != bound {
				t.Fatalf("the big event arrived with %d bytes, want %d", len(o.Data), bound)
			}
			break
		}
	}
}

// TestClientQueueBoundedInBytes: a client that stops reading is dropped
// once ClientQueueBytes wait for it, long before ClientQueue events would.
func TestClientQueueBoundedInBytes(t *testing.T) {
	r := startRelay(t, Config{ClientQueue: 1 << 20, ClientQueueBytes: 128 << 10, WriteTimeout: time.Hour})
	dialStuck(t, r.addr)
	waitConnections(t, r, 1)
	payload := strings.Repeat("q", 8<<10)
	n := 0
	for r.Stats().SlowClientsDropped == 0 {
		if n++; n > 10000 {
			t.Fatalf("after %d events of 8 KiB (%d MiB) the stuck client is still queued", n-1, (n-1)*8>>10)
		}
		r.Publish("c", payload)
		if q := r.queuedBytes(); q > 128<<10+len(payload)+64 {
			t.Fatalf("after %d events %d bytes wait for the client, bound %d", n, q, 128<<10)
		}
	}
	waitConnections(t, r, 0)
	t.Logf("dropped after %d events of 8 KiB", n)
}

// TestStatsBounded: a pattern that matches many channels does not grow
// /stats without bound.
func TestStatsBounded(t *testing.T) {
	r := startRelay(t, Config{})
	for i := range MaxStatsChannels + 50 {
		r.Publish("story:"+strconv.Itoa(i), "x")
	}
	r.Publish("story:0", "again")
	st := r.Stats()
	if len(st.PerChannel) != MaxStatsChannels || st.PerChannelOther != 50 || st.PerChannel["story:0"] != 2 {
		t.Fatalf("got %d channels, other %d, story:0 %d; want %d, 50, 2", len(st.PerChannel), st.PerChannelOther, st.PerChannel["story:0"], MaxStatsChannels)
	}
}

func TestStatsBehindToken(t *testing.T) {
	r := startRelay(t, Config{Token: "tok"})
	for _, tt := range []struct {
		url  string
		want int
	}{{"/stats", 401}, {"/stats?token=no", 401}, {"/stats?token=tok", 200}, {"/healthz", 200}} {
		resp, err := http.Get("http://" + r.addr + tt.url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s: got %d, want %d", tt.url, resp.StatusCode, tt.want)
		}
	}
}

// TestIngestBoundedInBytes: while the relay cannot keep up (here: not
// serving at all), Redis payloads wait up to IngestBytes; past that they
// are dropped and counted.
func TestIngestBoundedInBytes(t *testing.T) {
	r, err := New(Config{IngestBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("i", 100<<10)
	for range 30 {
		r.Emit(feed.Record{Kind: feed.KindMessage, Channel: "c", Data: big})
	}
	if got := r.Stats().IngestDropped; got != 20 {
		t.Fatalf("30 payloads of 100 KiB into 1 MiB: got %d dropped, want 20", got)
	}
	// One message larger than the bound is taken when nothing waits.
	r2, _ := New(Config{IngestBytes: 1 << 10})
	r2.Emit(feed.Record{Kind: feed.KindMessage, Channel: "c", Data: big})
	if got := r2.Stats().IngestDropped; got != 0 {
		t.Fatalf("one payload over the bound into an empty queue: got %d dropped, want 0", got)
	}
}

// TestEventLargerThanTheClientQueue: a client that keeps up gets an event
// larger than its queue bound (the bound is on what piles up behind).
func TestEventLargerThanTheClientQueue(t *testing.T) {
	r := startRelay(t, Config{ClientQueueBytes: 64 << 10})
	c := mustDial(t, r.addr, DefaultPath, nil)
	ws, _, err := dialWS(t, r, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	waitConnections(t, r, 2)
	big := strings.Repeat("L", 4<<20)
	r.Publish("c", big)
	o, err := c.nextEvent(20 * time.Second)
	if err != nil || len(o.Data) != len(big) {
		t.Fatalf("sse: got %d bytes (%v), want %d", len(o.Data), err, len(big))
	}
	if got := readWS(t, ws); len(got.Data) != len(big) {
		t.Fatalf("ws: got %d bytes, want %d", len(got.Data), len(big))
	}
	if st := r.Stats(); st.SlowClientsDropped != 0 {
		t.Fatalf("got %d clients dropped, want 0", st.SlowClientsDropped)
	}
}

// TestRedisStateGapsAndReconnects: /stats says how the subscription is and
// how often it went down and came back (a gap: messages published in it
// are lost to every client).
func TestRedisStateGapsAndReconnects(t *testing.T) {
	r := startRelay(t, Config{})
	if st := r.Stats(); st.RedisState != "none" {
		t.Fatalf("no redis: got redis_state %q, want none", st.RedisState)
	}
	for _, s := range []struct{ state, err string }{
		{feed.StateConnecting, ""}, {feed.StateSubscribed, ""},
		{feed.StateReconnecting, "read: connection reset by peer"}, {feed.StateConnecting, ""}, {feed.StateSubscribed, ""},
		{feed.StateReconnecting, "EOF"},
	} {
		r.Emit(feed.Record{Kind: feed.KindState, State: s.state, Error: s.err})
	}
	waitFor(t, "the last state", func() bool { return r.Stats().RedisError == "EOF" })
	st := r.Stats()
	if st.RedisGaps != 2 || st.RedisReconnects != 1 || st.RedisError != "EOF" {
		t.Fatalf("got gaps %d, reconnects %d, error %q; want 2, 1, EOF", st.RedisGaps, st.RedisReconnects, st.RedisError)
	}
	resp, err := http.Get("http://" + r.addr + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&doc)
	if doc["redis_state"] != "reconnecting" || doc["redis_gaps"] != 2.0 || doc["redis_reconnects"] != 1.0 {
		t.Fatalf("/stats: got %v", doc)
	}
}
