package ssex

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var updateSSE = flag.Bool("update-sse", false, "rewrite testdata/sse from the conformance table")

// sseDir holds the conformance streams (NAME.sse, exact bytes) and what a
// browser makes of them (NAME.json), shared with client and end-to-end tests.
const sseDir = "../testdata/sse"

// obs is the part of an Observation the conformance table pins down.
type obs struct {
	Kind  string `json:"kind"`
	Type  string `json:"type,omitempty"`
	Data  string `json:"data"`
	ID    string `json:"id"`
	Retry int64  `json:"retry_ms,omitempty"`
}

func ev(typ, data, id string) obs { return obs{Kind: "event", Type: typ, Data: data, ID: id} }
func msg(data, id string) obs     { return ev("message", data, id) }
func cm(text string) obs          { return obs{Kind: "comment", Data: text} }
func rt(ms int64) obs             { return obs{Kind: "retry", Retry: ms} }

func toObs(o Observation) obs {
	switch o.Kind {
	case ObsEvent:
		return obs{Kind: "event", Type: o.Type, Data: o.Data, ID: o.LastEventID}
	case ObsComment:
		return obs{Kind: "comment", Data: o.Data}
	case ObsRetry:
		return obs{Kind: "retry", Retry: o.RetryMS}
	}
	return obs{Kind: o.Kind.String()}
}

type conformanceCase struct {
	name string
	ref  string // the spec step or web-platform-tests file the case comes from
	in   string // exact bytes of the stream
	want []obs
	last string // LastEventID() after the whole stream
}

// wpt appends what the web-platform-tests resources/message.py server
// appends to its message parameter: "\n\n\n", or "\n" with newline=none.
func wpt(message string, newlineNone bool) string {
	if newlineNone {
		return message + "\n"
	}
	return message + "\n\n\n"
}

var long2k = strings.Repeat("x", 2048)

const (
	spec925 = "HTML 9.2.5 Parsing an event stream"
	spec926 = "HTML 9.2.6 Interpreting an event stream"
	utf8dec = "Encoding: UTF-8 decode (BOM, U+FFFD per maximal subpart)"
)

var conformanceCases = []conformanceCase{
	// web-platform-tests eventsource/format-*, with message.py's suffix.
	{name: "wpt-format-bom", ref: "WPT format-bom.any.js", in: wpt("\xEF\xBB\xBFdata:1\n\n\xEF\xBB\xBFdata:2\n\ndata:3", false),
		want: []obs{msg("1", ""), msg("3", "")}},
	{name: "wpt-format-bom-2", ref: "WPT format-bom-2.any.js", in: wpt("\xEF\xBB\xBF\xEF\xBB\xBFdata:1\n\ndata:2\n\ndata:3", false),
		want: []obs{msg("2", ""), msg("3", "")}},
	{name: "wpt-format-comments", ref: "WPT format-comments.any.js",
		in:   wpt("data:1\r:\x00\n:\r\ndata:2\n:"+long2k+"\rdata:3\n:data:fail\r:"+long2k+"\ndata:4\n", true),
		want: []obs{cm("\x00"), cm(""), cm(long2k), cm("data:fail"), cm(long2k), msg("1\n2\n3\n4", "")}},
	{name: "wpt-format-data-before-final-empty-line", ref: "WPT format-data-before-final-empty-line.any.js",
		in:   wpt("retry:1000\ndata:test1\n\nid:test\ndata:test2", true),
		want: []obs{rt(1000), msg("test1", "")}, last: ""},
	{name: "wpt-format-field-data", ref: "WPT format-field-data.any.js", in: wpt("data:\n\ndata\ndata\n\ndata:test", false),
		want: []obs{msg("", ""), msg("\n", ""), msg("test", "")}},
	{name: "wpt-format-field-event", ref: "WPT format-field-event.any.js", in: wpt("event:test\ndata:x\n\ndata:x", false),
		want: []obs{ev("test", "x", ""), msg("x", "")}},
	{name: "wpt-format-field-event-empty", ref: "WPT format-field-event-empty.any.js", in: wpt("event: \ndata:data", false),
		want: []obs{msg("data", "")}},
	{name: "wpt-format-field-id", ref: "WPT format-field-id.any.js (non-ASCII id)", in: "id: \u2026\nretry: 1000\ndata: hello\n\n",
		want: []obs{rt(1000), msg("hello", "\u2026")}, last: "\u2026"},
	{name: "wpt-format-field-id-3-persists", ref: "WPT format-field-id-3.window.js + last-event-id2.py type 1",
		in: "id: 1\ndata: 1\n\ndata:2\n\n", want: []obs{msg("1", "1"), msg("2", "1")}, last: "1"},
	{name: "wpt-format-field-id-3-changes-and-persists", ref: "WPT last-event-id2.py type 2",
		in:   "id: 1\ndata: 1\n\nid: 2\ndata:2\n\ndata:3\n\n",
		want: []obs{msg("1", "1"), msg("2", "2"), msg("3", "2")}, last: "2"},
	{name: "wpt-format-field-id-3-resets", ref: "WPT format-field-id-3.window.js (lastEventId resets)",
		in:   "id: 1\ndata: 1\n\nid:\ndata:2\n\ndata:3\n\n",
		want: []obs{msg("1", "1"), msg("2", ""), msg("3", "")}, last: ""},
	{name: "wpt-format-field-id-3-resets-no-colon", ref: "WPT format-field-id-3.window.js (id without colon)",
		in:   "id: 1\ndata: 1\n\nid\ndata:2\n\ndata:3\n\n",
		want: []obs{msg("1", "1"), msg("2", ""), msg("3", "")}, last: ""},
	{name: "wpt-format-field-id-null-x0", ref: "WPT format-field-id-null.window.js (x\\0)",
		in: "id: x\x00\ndata: hello\n\n", want: []obs{msg("hello", "")}},
	{name: "wpt-format-field-id-null-keeps-previous", ref: "WPT format-field-id-null + 9.2.6 id step",
		in:   "id: 1\ndata: a\n\nid: \x00\x00\ndata: b\n\nid: \x00x\ndata: c\n\nid: x\x00x\ndata: d\n\nid:  \x00\ndata: e\n\n",
		want: []obs{msg("a", "1"), msg("b", "1"), msg("c", "1"), msg("d", "1"), msg("e", "1")}, last: "1"},
	{name: "wpt-format-field-parsing", ref: "WPT format-field-parsing.any.js",
		in:   wpt("data:\x00\ndata:  2\rData:1\ndata\x00:2\ndata:1\r\x00data:4\nda-ta:3\rdata_5\ndata:3\rdata:\r\n data:32\ndata:4\n", true),
		want: []obs{msg("\x00\n 2\n1\n3\n\n4", "")}},
	{name: "wpt-format-field-retry", ref: "WPT format-field-retry.any.js (03000 is decimal)", in: wpt("retry:03000\ndata:x", false),
		want: []obs{rt(3000), msg("x", "")}},
	{name: "wpt-format-field-retry-bogus", ref: "WPT format-field-retry-bogus.any.js", in: wpt("retry:3000\nretry:1000x\ndata:x", false),
		want: []obs{rt(3000), msg("x", "")}},
	{name: "wpt-format-field-retry-empty", ref: "WPT format-field-retry-empty.any.js", in: wpt("retry\ndata:test", false),
		want: []obs{msg("test", "")}},
	{name: "wpt-format-field-unknown", ref: "WPT format-field-unknown.any.js",
		in:   wpt("data:test\n data\ndata\nfoobar:xxx\njustsometext\n:thisisacommentyay\ndata:test", false),
		want: []obs{cm("thisisacommentyay"), msg("test\n\ntest", "")}},
	{name: "wpt-format-leading-space", ref: "WPT format-leading-space.any.js", in: wpt("data:\ttest\rdata: \ndata:test", false),
		want: []obs{msg("\ttest\n\ntest", "")}},
	{name: "wpt-format-newlines", ref: "WPT format-newlines.any.js", in: wpt("data:test\r\ndata\ndata:test\r\n\r", true),
		want: []obs{msg("test\n\ntest", "")}},
	{name: "wpt-format-null-character", ref: "WPT format-null-character.any.js", in: wpt("data:\x00\n\n", false),
		want: []obs{msg("\x00", "")}},
	{name: "wpt-format-utf-8", ref: "WPT format-utf-8.any.js (always UTF-8)", in: wpt("data:ok\xE2\x80\xA6", false),
		want: []obs{msg("ok\u2026", "")}},

	{name: "wpt-event-data", ref: "WPT event-data.any.js + resources/message2.py",
		in:   "data:msg\ndata: msg\n\n:\nfalsefield:msg\n\nfalsefield:msg\nData:data\n\ndata\n\ndata:end\n\n",
		want: []obs{msg("msg\nmsg", ""), cm(""), msg("", ""), msg("end", "")}},

	// Line endings (9.2.5: CRLF, LF or CR end a line).
	{name: "eol-lf", ref: spec925, in: "data: a\n\n", want: []obs{msg("a", "")}},
	{name: "eol-cr", ref: spec925, in: "data: a\r\rdata: b\r\r", want: []obs{msg("a", ""), msg("b", "")}},
	{name: "eol-crlf", ref: spec925, in: "data: a\r\n\r\ndata: b\r\n\r\n", want: []obs{msg("a", ""), msg("b", "")}},
	{name: "eol-mixed", ref: spec925, in: "data:a\rdata:b\ndata:c\r\n\r\n", want: []obs{msg("a\nb\nc", "")}},
	{name: "eol-lf-cr-is-two-ends", ref: spec925, in: "data: a\n\rdata: b\n\n", want: []obs{msg("a", ""), msg("b", "")}},
	{name: "eol-cr-crlf", ref: spec925, in: "data: a\r\r\ndata: b\r\n\n", want: []obs{msg("a", ""), msg("b", "")}},
	{name: "eol-crcrlf-lf", ref: spec925, in: "data: a\r\r\n\n", want: []obs{msg("a", "")}},
	{name: "eol-blank-lines-only", ref: spec926 + " (empty line with empty buffers)", in: "\n\n\r\n\r\rdata: x\n\n\n\n",
		want: []obs{msg("x", "")}},

	// BOM (UTF-8 decode strips exactly one).
	{name: "bom-then-crlf", ref: utf8dec, in: "\xEF\xBB\xBF\r\ndata: x\r\n\r\n", want: []obs{msg("x", "")}},
	{name: "bom-then-comment", ref: utf8dec, in: "\xEF\xBB\xBF: hi\n", want: []obs{cm("hi")}},
	{name: "bom-only", ref: utf8dec, in: "\xEF\xBB\xBF", want: nil},
	{name: "bom-in-data-kept", ref: utf8dec, in: "data: \xEF\xBB\xBFx\n\n", want: []obs{msg("\uFEFFx", "")}},
	{name: "bom-partial-is-invalid", ref: utf8dec, in: "\xEF\xBBdata: x\n\ndata: y\n\n", want: []obs{msg("y", "")}},
	{name: "bom-partial-then-lf", ref: utf8dec, in: "\xEF\ndata: y\n\n", want: []obs{msg("y", "")}},

	// UTF-8 decoding: U+FFFD per maximal subpart, across the whole stream.
	{name: "utf8-valid-multibyte", ref: utf8dec, in: "data: \xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80\n\n", want: []obs{msg("é € 😀", "")}},
	{name: "utf8-lone-continuation", ref: utf8dec, in: "data: \x80\xBF\n\n", want: []obs{msg("\uFFFD\uFFFD", "")}},
	{name: "utf8-truncated-3byte", ref: utf8dec, in: "data: \xE2\x82A\n\n", want: []obs{msg("\uFFFDA", "")}},
	{name: "utf8-truncated-4byte", ref: utf8dec, in: "data: \xF0\x9F\x98\n\n", want: []obs{msg("\uFFFD", "")}},
	{name: "utf8-truncated-by-lf", ref: utf8dec, in: "data: \xE2\ndata: \xF0\x9F\r\n\n", want: []obs{msg("\uFFFD\n\uFFFD", "")}},
	{name: "utf8-surrogate", ref: utf8dec, in: "data: \xED\xA0\x80\n\n", want: []obs{msg("\uFFFD\uFFFD\uFFFD", "")}},
	{name: "utf8-overlong", ref: utf8dec, in: "data: \xC0\xAF\xE0\x80\xAF\n\n", want: []obs{msg("\uFFFD\uFFFD\uFFFD\uFFFD\uFFFD", "")}},
	{name: "utf8-above-max", ref: utf8dec, in: "data: \xF4\x90\x80\x80\xF5\xFF\n\n", want: []obs{msg("\uFFFD\uFFFD\uFFFD\uFFFD\uFFFD\uFFFD", "")}},
	{name: "utf8-in-field-name", ref: utf8dec + " + 9.2.6 unknown field", in: "\xFFdata: x\ndata: y\n\n", want: []obs{msg("y", "")}},
	{name: "utf8-in-id-type-comment", ref: utf8dec, in: ": \xFE\nid: \xE2\x82\nevent: t\xC3\ndata: d\n\n",
		want: []obs{cm("\uFFFD"), ev("t\uFFFD", "d", "\uFFFD")}, last: "\uFFFD"},

	// Interpreting lines (9.2.6).
	{name: "comment-one-space-removed", ref: spec926 + " (comment)", in: ":  two\n:\n: ping\n:no-space\n",
		want: []obs{cm(" two"), cm(""), cm("ping"), cm("no-space")}},
	{name: "keepalive-only", ref: spec926 + " (comment, no dispatch)", in: ": ping\n\n: ping\n\n", want: []obs{cm("ping"), cm("ping")}},
	{name: "value-one-space-removed", ref: spec926, in: "data:  x\ndata: \ndata:\tx\n\n", want: []obs{msg(" x\n\n\tx", "")}},
	{name: "value-colons", ref: spec926, in: "data: a:b: c\n\n", want: []obs{msg("a:b: c", "")}},
	{name: "field-case-sensitive", ref: spec926, in: "Data: x\nDATA: y\nEvent: e\nID: 9\nRetry: 5\ndata: z\n\n", want: []obs{msg("z", "")}},
	{name: "field-space-line-is-not-blank", ref: spec926, in: "data: a\n \n\n", want: []obs{msg("a", "")}},
	{name: "unknown-fields-ignored", ref: spec926, in: "foo: bar\nids: 3\ndatas: x\n: c\ndata: y\n\n", want: []obs{cm("c"), msg("y", "")}},
	{name: "event-type-reset-after-dispatch", ref: spec926 + " (dispatch)", in: "event: a\ndata: 1\n\ndata: 2\n\n",
		want: []obs{ev("a", "1", ""), msg("2", "")}},
	{name: "event-type-reset-without-dispatch", ref: spec926 + " (dispatch, empty data)", in: "event: a\n\ndata: 2\n\n",
		want: []obs{msg("2", "")}},
	{name: "event-type-last-wins", ref: spec926, in: "event: a\nevent: b\ndata: 1\n\n", want: []obs{ev("b", "1", "")}},
	{name: "event-type-spaces", ref: spec926, in: "event:  sp\ndata: 1\n\nevent\ndata: 2\n\n", want: []obs{ev(" sp", "1", ""), msg("2", "")}},
	{name: "event-type-message-explicit", ref: spec926, in: "event: message\ndata: 1\n\n", want: []obs{msg("1", "")}},
	{name: "id-only-block-sets-last-id", ref: spec926 + " (dispatch step 1 before step 2)", in: "id: 7\n\ndata: x\n\n",
		want: []obs{msg("x", "7")}, last: "7"},
	{name: "id-after-data-in-block", ref: spec926, in: "data: x\nid: 3\n\n", want: []obs{msg("x", "3")}, last: "3"},
	{name: "id-last-wins", ref: spec926, in: "id: 1\nid: 2\ndata: x\n\n", want: []obs{msg("x", "2")}, last: "2"},
	{name: "id-in-unterminated-block-not-in-force", ref: spec926 + " (end of file)", in: "id: 1\ndata: a\n\nid: 2\n",
		want: []obs{msg("a", "1")}, last: "1"},
	{name: "id-only-final-block", ref: spec926, in: "data: a\n\nid: 5\n\n", want: []obs{msg("a", "")}, last: "5"},
	{name: "retry-values", ref: spec926 + " (retry)",
		in:   "retry: 0\nretry: 1000\nretry:  1000\nretry: -1\nretry: 1.5\nretry: +5\nretry: 1 \nretry: 99999999999999999999\nretry: 9223372036854775807\n",
		want: []obs{rt(0), rt(1000), rt(9223372036854775807)}},
	{name: "retry-does-not-dispatch", ref: spec926, in: "retry: 10\n\n", want: []obs{rt(10)}},
	{name: "unterminated-last-block", ref: spec926 + " (end of file)", in: "data: a\n\ndata: b\n", want: []obs{msg("a", "")}},
	{name: "unterminated-last-line", ref: spec926 + " (end of file)", in: "data: a\n\ndata: b", want: []obs{msg("a", "")}},
	{name: "data-nul-and-controls", ref: spec926, in: "data: \x00\x01\x1b[31m\x7f\n\n", want: []obs{msg("\x00\x01\x1b[31m\x7f", "")}},
	{name: "data-crlf-empty-values", ref: spec926, in: "data\r\ndata:\r\n\r\n", want: []obs{msg("\n", "")}},
	{name: "story-published", ref: "SPEC.md pipeline shape", in: ": ping\n\nevent: story-published\nid: 42\ndata: {\"storyId\":\"s1\",\"title\":\"Caf\xC3\xA9\"}\n\n",
		want: []obs{cm("ping"), ev("story-published", "{\"storyId\":\"s1\",\"title\":\"Café\"}", "42")}, last: "42"},
	{name: "empty-stream", ref: spec925, in: "", want: nil},
}

// feedAll runs a fresh parser over the chunks and returns what it emitted.
func feedAll(t testing.TB, maxLine int, chunks ...[]byte) ([]obs, string, error) {
	t.Helper()
	p := NewParser(maxLine)
	var got []obs
	emit := func(o Observation) {
		got = append(got, toObs(o))
	}
	for _, c := range chunks {
		if err := p.Feed(c, time.Time{}, emit); err != nil {
			return got, p.LastEventID(), err
		}
	}
	return got, p.LastEventID(), nil
}

func describe(os []obs) string {
	var b strings.Builder
	for _, o := range os {
		fmt.Fprintf(&b, "\n\t%+q", fmt.Sprintf("%+v", o))
	}
	if b.Len() == 0 {
		return " (none)"
	}
	return b.String()
}

func checkRun(t *testing.T, how string, c conformanceCase, got []obs, last string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: got error %v, want none", how, err)
	}
	if !slices.Equal(got, c.want) {
		t.Fatalf("%s: got%s\nwant%s", how, describe(got), describe(c.want))
	}
	if last != c.last {
		t.Fatalf("%s: got LastEventID() %q, want %q", how, last, c.last)
	}
}

func TestConformance(t *testing.T) {
	if len(conformanceCases) < 40 {
		t.Fatalf("got %d conformance cases, want at least 40", len(conformanceCases))
	}
	seen := map[string]bool{}
	for _, c := range conformanceCases {
		if seen[c.name] {
			t.Fatalf("duplicate case name %q", c.name)
		}
		seen[c.name] = true
		t.Run(c.name, func(t *testing.T) {
			in := []byte(c.in)
			got, last, err := feedAll(t, 0, in)
			checkRun(t, "whole", c, got, last, err)

			for k := 0; k <= len(in); k++ {
				got, last, err := feedAll(t, 0, in[:k:k], in[k:])
				checkRun(t, fmt.Sprintf("split at %d", k), c, got, last, err)
			}

			chunks := make([][]byte, len(in))
			for i := range in {
				chunks[i] = in[i : i+1 : i+1]
			}
			got, last, err = feedAll(t, 0, chunks...)
			checkRun(t, "byte by byte", c, got, last, err)
		})
	}
}

// TestConformanceReader runs the table through Reader, which must drop the
// unterminated last block at EOF just like the parser on its own.
func TestConformanceReader(t *testing.T) {
	for _, c := range conformanceCases {
		t.Run(c.name, func(t *testing.T) {
			r := NewReader(strings.NewReader(c.in), 0)
			var got []obs
			for {
				o, err := r.Next()
				if err != nil {
					if !errors.Is(err, io.EOF) {
						t.Fatalf("got error %v, want io.EOF", err)
					}
					break
				}
				got = append(got, toObs(o))
			}
			if !slices.Equal(got, c.want) {
				t.Fatalf("got%s\nwant%s", describe(got), describe(c.want))
			}
		})
	}
}

type sseExpect struct {
	Name         string `json:"name"`
	Ref          string `json:"ref"`
	Observations []obs  `json:"observations"`
	LastEventID  string `json:"last_event_id"`
}

func expectJSON(c conformanceCase) []byte {
	e := sseExpect{Name: c.name, Ref: c.ref, Observations: c.want, LastEventID: c.last}
	if e.Observations == nil {
		e.Observations = []obs{}
	}
	b, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		panic(err)
	}
	return append(b, '\n')
}

// TestConformanceTestdata keeps testdata/sse in step with the table: every
// case has NAME.sse (its exact bytes) and NAME.json (what a browser
// dispatches), and every file there belongs to a case. -update-sse rewrites them.
func TestConformanceTestdata(t *testing.T) {
	if *updateSSE {
		if err := os.MkdirAll(sseDir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, c := range conformanceCases {
			if err := os.WriteFile(filepath.Join(sseDir, c.name+".sse"), []byte(c.in), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(sseDir, c.name+".json"), expectJSON(c), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	names := map[string]bool{}
	for _, c := range conformanceCases {
		names[c.name+".sse"] = true
		names[c.name+".json"] = true
		in, err := os.ReadFile(filepath.Join(sseDir, c.name+".sse"))
		if err != nil {
			t.Fatalf("read stream of %s: %v (run go test -run ConformanceTestdata -update-sse ./ssex)", c.name, err)
		}
		if !bytes.Equal(in, []byte(c.in)) {
			t.Errorf("%s.sse: got %q, want %q", c.name, in, c.in)
		}
		js, err := os.ReadFile(filepath.Join(sseDir, c.name+".json"))
		if err != nil {
			t.Fatalf("read expectations of %s: %v", c.name, err)
		}
		if want := expectJSON(c); !bytes.Equal(js, want) {
			t.Errorf("%s.json: got %s, want %s", c.name, js, want)
		}
	}
	entries, err := os.ReadDir(sseDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !names[e.Name()] {
			t.Errorf("%s/%s: got a file no conformance case owns, want none", sseDir, e.Name())
		}
	}
}
