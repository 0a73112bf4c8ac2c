package wsx

import (
	"testing"
	"time"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/internal/feedtest"
)

// FuzzSocketIOMessage feeds arbitrary Socket.IO packets (and binary
// attachments) to the parser: it must not panic, and every event it
// reports must come from an event packet.
func FuzzSocketIOMessage(f *testing.F) {
	for _, s := range []string{
		`0{"sid":"x"}`, `2["hello","world"]`, `2/ns,17["a",{"b":1}]`, `4{"message":"no"}`,
		`51-["bin",{"_placeholder":true,"num":0}]`, `52-/ns,["x",{"_placeholder":true,"num":9}]`,
		`5-1-[]`, `2[1]`, `2`, `1`, `3/ns,5[]`, `2/ns`, `2/ns,`, `5x-`,
	} {
		f.Add([]byte(s), []byte("att"))
	}
	f.Fuzz(func(t *testing.T, p, att []byte) {
		s, err := NewSocketIO(Config{URL: "http://127.0.0.1:1/ns"})
		if err != nil {
			t.Fatal(err)
		}
		sink := feedtest.NewSink()
		sc := &sioConn{s: s, sink: sink, lv: newLiveness(0, time.Hour, time.Second), connectTimer: time.NewTimer(time.Hour)}
		defer sc.connectTimer.Stop()
		now := time.Now()
		sc.message(p, now)
		sc.attachment(att, now)
		for _, r := range sink.All() {
			if r.Kind == feed.KindEvent && (len(p) == 0 || (p[0] != '2' && p[0] != '5')) {
				t.Errorf("event %q from packet %q", r.Type, p)
			}
		}
	})
}
