package ssex

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzParser checks the parser's invariants on arbitrary bytes: no panic;
// the same observations (and error) whether the input arrives whole, split
// at a fuzz-chosen offset, or byte by byte; valid UTF-8 in everything
// emitted; no NUL in a last event ID; and, under the default cap, agreement
// with refParse, a slow spec-literal model written independently of the
// parser's fast paths.
func FuzzParser(f *testing.F) {
	files, err := filepath.Glob(filepath.Join(sseDir, "*.sse"))
	if err != nil || len(files) == 0 {
		f.Fatalf("seed streams in %s: got %d files, %v; want some", sseDir, len(files), err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint16(len(b)/2), false)
		f.Add(b, uint16(len(b)/3), true)
	}
	f.Fuzz(func(t *testing.T, in []byte, split uint16, small bool) {
		maxLine := 0
		if small {
			maxLine = 24
		}
		k := int(split) % (len(in) + 1)
		whole, wholeLast, wholeErr := fuzzRun(maxLine, in)
		parts, partsLast, partsErr := fuzzRun(maxLine, in[:k:k], in[k:])
		if !slices.Equal(whole, parts) || wholeLast != partsLast || !sameErr(wholeErr, partsErr) {
			t.Fatalf("whole vs split at %d: got %+v %q %v, want %+v %q %v", k, parts, partsLast, partsErr, whole, wholeLast, wholeErr)
		}
		if len(in) <= 512 {
			chunks := make([][]byte, len(in))
			for i := range in {
				chunks[i] = in[i : i+1 : i+1]
			}
			bytewise, last, err := fuzzRun(maxLine, chunks...)
			if !slices.Equal(whole, bytewise) || wholeLast != last || !sameErr(wholeErr, err) {
				t.Fatalf("whole vs byte by byte: got %+v %q %v, want %+v %q %v", bytewise, last, err, whole, wholeLast, wholeErr)
			}
		}
		if wholeErr != nil && !errors.Is(wholeErr, ErrLineTooLong) {
			t.Fatalf("got error %v, want nil or ErrLineTooLong", wholeErr)
		}
		for _, o := range whole {
			if !utf8.ValidString(o.Type) || !utf8.ValidString(o.Data) || !utf8.ValidString(o.LastEventID) {
				t.Fatalf("got invalid UTF-8 in %+v, want valid", o)
			}
			if strings.IndexByte(o.LastEventID, 0) >= 0 {
				t.Fatalf("got NUL in last event ID %q, want none", o.LastEventID)
			}
			switch o.Kind {
			case ObsEvent:
				if o.Type == "" {
					t.Fatalf("got an event with no type, want \"message\" at least")
				}
			case ObsComment:
			case ObsRetry:
				if o.RetryMS < 0 {
					t.Fatalf("got retry %d, want >= 0", o.RetryMS)
				}
			default:
				t.Fatalf("got kind %d, want event, comment or retry", o.Kind)
			}
			if maxLine > 0 && (len(o.Data) > maxLine || len(o.Type) > maxLine || len(o.LastEventID) > maxLine) {
				t.Fatalf("got %+v, want no field longer than the %d-byte cap", o, maxLine)
			}
		}
		if !utf8.ValidString(wholeLast) || strings.IndexByte(wholeLast, 0) >= 0 {
			t.Fatalf("got LastEventID() %q, want valid UTF-8 without NUL", wholeLast)
		}
		if maxLine == 0 {
			want, wantLast := refParse(in)
			got := make([]obs, len(whole))
			for i, o := range whole {
				got[i] = toObs(o)
			}
			if !slices.Equal(got, want) || wholeLast != wantLast {
				t.Fatalf("parser vs reference model: got%s %q\nwant%s %q", describe(got), wholeLast, describe(want), wantLast)
			}
		}
	})
}

func sameErr(a, b error) bool {
	return (a == nil) == (b == nil) && errors.Is(a, ErrLineTooLong) == errors.Is(b, ErrLineTooLong)
}

func fuzzRun(maxLine int, chunks ...[]byte) ([]Observation, string, error) {
	p := NewParser(maxLine)
	var got []Observation
	emit := func(o Observation) { got = append(got, o) }
	for _, c := range chunks {
		if err := p.Feed(c, time.Time{}, emit); err != nil {
			return got, p.LastEventID(), err
		}
	}
	return got, p.LastEventID(), nil
}

// refParse is the spec read literally, on the whole stream at once: decode
// (one BOM stripped, U+FFFD per maximal subpart), cut complete lines, and
// interpret them one by one.
func refParse(in []byte) ([]obs, string) {
	in = bytes.TrimPrefix(in, []byte("\xEF\xBB\xBF"))
	s := refDecode(in)
	var out []obs
	var data, typ strings.Builder
	id, lastID := "", ""
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] != '\r' && s[i] != '\n' {
			continue
		}
		line := s[start:i]
		if s[i] == '\r' && i+1 < len(s) && s[i+1] == '\n' {
			i++
		}
		start = i + 1
		switch {
		case line == "":
			lastID = id
			if data.Len() == 0 {
				typ.Reset()
				continue
			}
			t := typ.String()
			if t == "" {
				t = "message"
			}
			d := data.String()
			out = append(out, ev(t, d[:len(d)-1], lastID))
			data.Reset()
			typ.Reset()
		case line[0] == ':':
			out = append(out, cm(strings.TrimPrefix(line[1:], " ")))
		default:
			name, value, found := strings.Cut(line, ":")
			if found {
				value = strings.TrimPrefix(value, " ")
			}
			switch name {
			case "event":
				typ.Reset()
				typ.WriteString(value)
			case "data":
				data.WriteString(value)
				data.WriteByte('\n')
			case "id":
				if !strings.ContainsRune(value, 0) {
					id = value
				}
			case "retry":
				if value != "" && strings.Trim(value, "0123456789") == "" {
					var n int64
					ok := true
					for _, c := range value {
						if n > (1<<63-1-int64(c-'0'))/10 {
							ok = false
							break
						}
						n = n*10 + int64(c-'0')
					}
					if ok {
						out = append(out, rt(n))
					}
				}
			}
		}
	}
	return out, lastID
}

// refDecode decodes UTF-8 with one U+FFFD per maximal subpart of an
// ill-formed sequence, from the well-formed byte ranges of Unicode Table 3-7.
func refDecode(b []byte) string {
	var sb strings.Builder
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if r != utf8.RuneError || n > 1 {
			sb.WriteRune(r)
			b = b[n:]
			continue
		}
		// Count how many bytes form a prefix of some well-formed sequence.
		c := b[0]
		var size int
		lo, hi := byte(0x80), byte(0xBF)
		switch {
		case c >= 0xC2 && c <= 0xDF:
			size = 2
		case c == 0xE0:
			size, lo = 3, 0xA0
		case c >= 0xE1 && c <= 0xEC, c == 0xEE, c == 0xEF:
			size = 3
		case c == 0xED:
			size, hi = 3, 0x9F
		case c == 0xF0:
			size, lo = 4, 0x90
		case c >= 0xF1 && c <= 0xF3:
			size = 4
		case c == 0xF4:
			size, hi = 4, 0x8F
		}
		sub := 1
		for sub < size && sub < len(b) {
			if sub == 1 && (b[1] < lo || b[1] > hi) || sub > 1 && (b[sub] < 0x80 || b[sub] > 0xBF) {
				break
			}
			sub++
		}
		sb.WriteRune(utf8.RuneError)
		b = b[sub:]
	}
	return sb.String()
}

// FuzzParserSkip checks a parser that skips oversized events: it never
// fails, gives the same observations whole, split and byte by byte, and
// never emits a field longer than its cap.
func FuzzParserSkip(f *testing.F) {
	f.Add([]byte("data: "+strings.Repeat("x", 40)+"\nid: 1\n\ndata: ok\n\n"), uint16(10))
	f.Add([]byte(": "+strings.Repeat("c", 40)+"\r\ndata: a\r\n\r\n"), uint16(3))
	f.Fuzz(func(t *testing.T, in []byte, split uint16) {
		const maxLine = 24
		run := func(chunks ...[]byte) ([]Observation, string) {
			p := NewParser(maxLine)
			p.SkipOversized()
			var got []Observation
			for _, c := range chunks {
				if err := p.Feed(c, time.Time{}, func(o Observation) { got = append(got, o) }); err != nil {
					t.Fatalf("Feed: %v, want no error when skipping", err)
				}
			}
			return got, p.LastEventID()
		}
		k := int(split) % (len(in) + 1)
		whole, wholeLast := run(in)
		parts, partsLast := run(in[:k:k], in[k:])
		if !slices.Equal(whole, parts) || wholeLast != partsLast {
			t.Fatalf("whole vs split at %d: got %+v %q, want %+v %q", k, parts, partsLast, whole, wholeLast)
		}
		if len(in) <= 512 {
			chunks := make([][]byte, len(in))
			for i := range in {
				chunks[i] = in[i : i+1 : i+1]
			}
			if bytewise, last := run(chunks...); !slices.Equal(whole, bytewise) || wholeLast != last {
				t.Fatalf("whole vs byte by byte: got %+v %q, want %+v %q", bytewise, last, whole, wholeLast)
			}
		}
		for _, o := range whole {
			if len(o.Data) > maxLine || len(o.Type) > maxLine || len(o.LastEventID) > maxLine {
				t.Fatalf("got %+v, want no field longer than the %d-byte cap", o, maxLine)
			}
		}
	})
}
