package feed

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var ts = time.Date(2026, 11, 27, 15, 4, 5, 123456000, time.UTC)

func TestAppendJSON(t *testing.T) {
	tests := []struct {
		name string
		rec  Record
		want string
	}{
		{"redis message", Record{TS: ts, Source: SourceRedis, Kind: KindMessage, Channel: "story:published", Data: `{"storyId":"s1"}`},
			`{"ts":"2026-11-27T15:04:05.123456000Z","source":"redis","kind":"message","channel":"story:published","data":"{\"storyId\":\"s1\"}"}`},
		{"pattern and shard", Record{TS: ts, Source: SourceRedis, Kind: KindMessage, Channel: "story:x", Pattern: "story:*", Shard: true, Data: "x"},
			`{"ts":"2026-11-27T15:04:05.123456000Z","source":"redis","kind":"message","channel":"story:x","pattern":"story:*","shard":true,"data":"x"}`},
		{"binary payload", Record{TS: ts, Source: SourceRedis, Kind: KindMessage, Channel: "c", Data: "\xff\x00a"},
			`{"ts":"2026-11-27T15:04:05.123456000Z","source":"redis","kind":"message","channel":"c","data_b64":"/wBh"}`},
		{"sse event", Record{TS: ts, Source: SourceSSE, Kind: KindEvent, Endpoint: "app-1", Type: "story-published", ID: "42", Data: "a\nb"},
			`{"ts":"2026-11-27T15:04:05.123456000Z","source":"sse","kind":"event","endpoint":"app-1","type":"story-published","id":"42","data":"a\nb"}`},
		{"comment", Record{TS: ts, Source: SourceSSE, Kind: KindComment, Endpoint: "app-1", Data: "ping"},
			`{"ts":"2026-11-27T15:04:05.123456000Z","source":"sse","kind":"comment","endpoint":"app-1","data":"ping"}`},
		{"retry", Record{TS: ts, Source: SourceSSE, Kind: KindRetry, Endpoint: "app-1", RetryMS: 3000},
			`{"ts":"2026-11-27T15:04:05.123456000Z","source":"sse","kind":"retry","endpoint":"app-1","retry_ms":3000}`},
		{"redis state", Record{TS: ts, Source: SourceRedis, Kind: KindState, Target: "redis://u:***@h:1", State: StateReconnecting, Error: "EOF", Attempt: 2},
			`{"ts":"2026-11-27T15:04:05.123456000Z","source":"redis","kind":"state","target":"redis://u:***@h:1","state":"reconnecting","error":"EOF","attempt":2}`},
		{"sse state", Record{TS: ts, Source: SourceSSE, Kind: KindState, Endpoint: "e", State: StateFailed, Status: 401},
			`{"ts":"2026-11-27T15:04:05.123456000Z","source":"sse","kind":"state","endpoint":"e","state":"failed","status":401}`},
		{"probe and hop", Record{TS: ts, Source: SourceSSE, Kind: KindEvent, Endpoint: "e", Type: "message", Data: "d", Probe: "fsp-a1b2c3d4-1", LatencyUS: 1500, HopUS: 7, HasHop: true},
			`{"ts":"2026-11-27T15:04:05.123456000Z","source":"sse","kind":"event","endpoint":"e","type":"message","id":"","data":"d","probe":"fsp-a1b2c3d4-1","latency_us":1500,"hop_us":7}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(AppendJSON(nil, &tt.rec))
			if got != tt.want+"\n" {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(got), &m); err != nil {
				t.Fatalf("not valid JSON: %v", err)
			}
		})
	}
}

// TestAppendJSONStringMatchesEncodingJSON checks the hand-written string
// escaper against encoding/json on awkward inputs.
func TestAppendJSONStringMatchesEncodingJSON(t *testing.T) {
	inputs := []string{"", "plain", `q"b\s`, "\x00\x01\x1f\x7f", "\x1b[31mred\x1b[0m", "<a&b>", "é漢字😀",
		"\u2028\u2029", "bad\xffutf8\xc3", "tab\tcr\rlf\n"}
	for _, in := range inputs {
		var enc bytes.Buffer
		e := json.NewEncoder(&enc)
		e.SetEscapeHTML(false)
		_ = e.Encode(in)
		want := escapeTerminal(bytes.TrimSuffix(enc.Bytes(), []byte("\n")))
		got := AppendJSONString(nil, in)
		if !bytes.Equal(got, want) {
			t.Errorf("AppendJSONString(%q) = %s, want %s", in, got, want)
		}
	}
}

// TestAppendJSONStringEveryOffset puts each byte or sequence the escaper
// must notice at every offset of a plain string, so it falls in every
// position of the 8-byte words the fast path skips, and checks the result
// against encoding/json (and appendData's choice of data or data_b64).
func TestAppendJSONStringEveryOffset(t *testing.T) {
	plain := "abcdefghijklmnopqrstuvwxyz0123"
	specials := []string{"\x00", "\x1f", " ", "~", "\x7f", `"`, `\`, "\n", "\u2028", "é", "😀", "\xff", "\xc3", "\xe2\x80", "\u009b", "\u202e", "\u2066"}
	for _, sp := range specials {
		for i := 0; i <= len(plain); i++ {
			in := plain[:i] + sp + plain[i:]
			var enc bytes.Buffer
			e := json.NewEncoder(&enc)
			e.SetEscapeHTML(false)
			_ = e.Encode(in)
			want := escapeTerminal(bytes.TrimSuffix(enc.Bytes(), []byte("\n")))
			if got := AppendJSONString(nil, in); !bytes.Equal(got, want) {
				t.Errorf("AppendJSONString(%q) = %s, want %s", in, got, want)
			}
			got := string(appendData([]byte("x"), in))
			wantData := `x,"data":` + string(want)
			if !utf8.ValidString(in) {
				wantData = `x,"data_b64":"` + base64.StdEncoding.EncodeToString([]byte(in)) + `"`
			}
			if got != wantData {
				t.Errorf("appendData(%q) = %s, want %s", in, got, wantData)
			}
		}
	}
}

// escapeTerminal is what AppendJSONString adds to encoding/json's output:
// DEL, C1 controls and bidi overrides written as \uXXXX.
func escapeTerminal(js []byte) []byte {
	var out []byte
	for _, r := range string(js) {
		if r == 0x7f || (r >= 0x80 && r <= 0x9f) || isBidiControl(r) {
			out = fmt.Appendf(out, "\\u%04x", r)
			continue
		}
		out = utf8.AppendRune(out, r)
	}
	return out
}

func FuzzAppendJSON(f *testing.F) {
	f.Add("story:published", `{"a":1}`)
	f.Add("c", "\xff\x1b[2J")
	f.Fuzz(func(t *testing.T, channel, data string) {
		r := Record{TS: ts, Source: SourceRedis, Kind: KindMessage, Channel: channel, Data: data}
		var m map[string]any
		if err := json.Unmarshal(AppendJSON(nil, &r), &m); err != nil {
			t.Fatalf("invalid JSON for %q/%q: %v", channel, data, err)
		}
		if s, ok := m["data"].(string); ok && s != data {
			t.Fatalf("data round trip: got %q, want %q", s, data)
		}
		if line := AppendJSON(nil, &r); bytes.ContainsAny(line[:len(line)-1], "\x00\x1b\x7f\n\r\u009b\u202e") {
			t.Fatalf("raw control character in the NDJSON line %q", line)
		}
		if s, ok := m["data_b64"].(string); ok {
			b, _ := base64.StdEncoding.DecodeString(s)
			if string(b) != data {
				t.Fatalf("data_b64 round trip: got %q, want %q", b, data)
			}
		}
	})
}

func TestAppendText(t *testing.T) {
	local := ts.Local().Format(TextTimeLayout)
	tests := []struct {
		name string
		rec  Record
		want string
	}{
		{"redis", Record{TS: ts, Source: SourceRedis, Kind: KindMessage, Channel: "story:published", Data: `{"storyId":"s1"}`},
			local + ` redis  story:published  {"storyId":"s1"}`},
		{"sse", Record{TS: ts, Source: SourceSSE, Kind: KindEvent, Endpoint: "app-1", Type: "story-published", ID: "42", Data: `{"storyId":"s1"}`},
			local + ` sse[app-1]  story-published #42  {"storyId":"s1"}`},
		{"escapes", Record{TS: ts, Source: SourceRedis, Kind: KindMessage, Channel: "c", Data: "\x1b]52;c;aGk=\x07\x1b[2J\nnext\r\xff\u202e\u009b"},
			local + ` redis  c  \x1b]52;c;aGk=\x07\x1b[2J\nnext\r\xff\u202e\u009b`},
		{"state", Record{TS: ts, Source: SourceSSE, Kind: KindState, Endpoint: "e", State: StateFailed, Status: 401, Error: "unauthorized"},
			local + ` sse[e]  state failed  HTTP 401  unauthorized`},
		{"probe", Record{TS: ts, Source: SourceRedis, Kind: KindMessage, Channel: "c", Data: "x", Probe: "fsp-1-1", LatencyUS: 1234},
			local + ` redis  c  x  [probe fsp-1-1 1.234ms]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(AppendText(nil, &tt.rec))
			if got != tt.want+"\n" {
				t.Errorf("got  %q\nwant %q", got, tt.want+"\n")
			}
			if strings.ContainsAny(strings.TrimSuffix(got, "\n"), "\x1b\x07\r\n\u009b\u202e") {
				t.Errorf("raw control character written: %q", got)
			}
		})
	}
}

func TestAppendTimestampMatchesLayout(t *testing.T) {
	for _, ts := range []time.Time{
		ts, time.Unix(0, 0), time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(2026, 3, 29, 1, 30, 0, 7, time.FixedZone("x", 5*3600+1800)), time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-5, 1, 1, 0, 0, 0, 0, time.UTC), time.Now(),
	} {
		want := ts.UTC().Format(TimeLayout)
		if got := string(AppendTimestamp(nil, ts)); got != want {
			t.Errorf("AppendTimestamp(%v) = %s, want %s", ts, got, want)
		}
	}
}

func BenchmarkAppendJSON(b *testing.B) {
	r := Record{TS: ts, Source: SourceRedis, Kind: KindMessage, Channel: "story:published",
		Data: `{"storyId":"s-81723","title":"The lighthouse keeper","author":"m.ortega","genre":"mystery"}`}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendJSON(buf[:0], &r)
	}
	b.SetBytes(int64(len(buf)))
}
