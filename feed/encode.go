package feed

import (
	"encoding/base64"
	"strconv"
	"time"

	"unicode/utf8"
)

// TimeLayout is the NDJSON ts format: RFC 3339, UTC, always nine fraction digits.
const TimeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// AppendJSON appends r as one NDJSON object (with a trailing newline) to
// buf. It appends to a caller's buffer instead of using encoding/json
// because the encoder, not Redis, limits how fast tail can ingest
// (../shared/NOTES.md); TestAppendJSONMatchesEncodingJSON keeps it honest.
func AppendJSON(buf []byte, r *Record) []byte {
	buf = append(buf, `{"ts":"`...)
	buf = AppendTimestamp(buf, r.TS)
	buf = append(buf, `","source":"`...)
	buf = append(buf, r.Source.String()...)
	buf = append(buf, `","kind":"`...)
	buf = append(buf, r.Kind.String()...)
	buf = append(buf, '"')
	switch r.Kind {
	case KindMessage:
		buf = appendField(buf, "channel", r.Channel)
		if r.Pattern != "" {
			buf = appendField(buf, "pattern", r.Pattern)
		}
		if r.Shard {
			buf = append(buf, `,"shard":true`...)
		}
		buf = appendData(buf, r.Data)
	case KindEvent:
		buf = appendField(buf, "endpoint", r.Endpoint)
		buf = appendField(buf, "type", r.Type)
		buf = appendField(buf, "id", r.ID)
		buf = appendData(buf, r.Data)
	case KindComment:
		buf = appendField(buf, "endpoint", r.Endpoint)
		buf = appendField(buf, "data", r.Data)
	case KindRetry:
		buf = appendField(buf, "endpoint", r.Endpoint)
		buf = append(buf, `,"retry_ms":`...)
		buf = strconv.AppendInt(buf, r.RetryMS, 10)
	case KindState:
		if r.Source == SourceSSE {
			buf = appendField(buf, "endpoint", r.Endpoint)
		} else {
			buf = appendField(buf, "target", r.Target)
		}
		buf = appendField(buf, "state", r.State)
		if r.Error != "" {
			buf = appendField(buf, "error", r.Error)
		}
		if r.Status != 0 {
			buf = append(buf, `,"status":`...)
			buf = strconv.AppendInt(buf, int64(r.Status), 10)
		}
		if r.Attempt != 0 {
			buf = append(buf, `,"attempt":`...)
			buf = strconv.AppendInt(buf, int64(r.Attempt), 10)
		}
	}
	if r.Probe != "" {
		buf = appendField(buf, "probe", r.Probe)
		buf = append(buf, `,"latency_us":`...)
		buf = strconv.AppendInt(buf, r.LatencyUS, 10)
	}
	if r.HasHop {
		buf = append(buf, `,"hop_us":`...)
		buf = strconv.AppendInt(buf, r.HopUS, 10)
	}
	return append(buf, "}\n"...)
}

// appendData writes data as "data", or as "data_b64" when it is not UTF-8.
func appendData(buf []byte, data string) []byte {
	if utf8.ValidString(data) {
		return appendField(buf, "data", data)
	}
	buf = append(buf, `,"data_b64":"`...)
	buf = base64.StdEncoding.AppendEncode(buf, []byte(data))
	return append(buf, '"')
}

func appendField(buf []byte, key, val string) []byte {
	buf = append(buf, ',', '"')
	buf = append(buf, key...)
	buf = append(buf, '"', ':')
	return AppendJSONString(buf, val)
}

// AppendTimestamp appends t in TimeLayout (UTC, nine fraction digits). It
// writes the digits itself: time.AppendFormat costs about three times as
// much, and every NDJSON record carries a timestamp.
func AppendTimestamp(buf []byte, t time.Time) []byte {
	t = t.UTC()
	y, mo, d := t.Date()
	if y < 0 || y > 9999 {
		return t.AppendFormat(buf, TimeLayout)
	}
	h, mi, sec := t.Clock()
	var b [30]byte
	put := func(i, v, w int) {
		for j := i + w - 1; j >= i; j-- {
			b[j] = byte('0' + v%10)
			v /= 10
		}
	}
	put(0, y, 4)
	b[4] = '-'
	put(5, int(mo), 2)
	b[7] = '-'
	put(8, d, 2)
	b[10] = 'T'
	put(11, h, 2)
	b[13] = ':'
	put(14, mi, 2)
	b[16] = ':'
	put(17, sec, 2)
	b[19] = '.'
	put(20, t.Nanosecond(), 9)
	b[29] = 'Z'
	return append(buf, b[:]...)
}

const hexDigits = "0123456789abcdef"

// jsonSafe[b] is true for the ASCII bytes a JSON string holds as they are.
var jsonSafe = func() (t [utf8.RuneSelf]bool) {
	for b := 0x20; b < utf8.RuneSelf; b++ {
		t[b] = b != '"' && b != '\\'
	}
	return t
}()

// AppendJSONString appends s as a JSON string literal, escaped the way
// encoding/json escapes it with HTML escaping off (invalid UTF-8 becomes
// U+FFFD; U+2028 and U+2029 are escaped).
func AppendJSONString(buf []byte, s string) []byte {
	buf = append(buf, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if jsonSafe[b] {
				i++
				continue
			}
			buf = append(buf, s[start:i]...)
			switch b {
			case '"', '\\':
				buf = append(buf, '\\', b)
			case '\n':
				buf = append(buf, '\\', 'n')
			case '\r':
				buf = append(buf, '\\', 'r')
			case '\t':
				buf = append(buf, '\\', 't')
			default:
				buf = append(buf, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			buf = append(buf, s[start:i]...)
			buf = append(buf, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			buf = append(buf, s[start:i]...)
			buf = append(buf, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	buf = append(buf, s[start:]...)
	return append(buf, '"')
}

// TextTimeLayout is the time column of text output (local time).
const TextTimeLayout = "15:04:05.000000"

// AppendText appends r as one human-readable line (with a trailing
// newline). Control characters and invalid UTF-8 in any field are escaped,
// so nothing in a payload can drive the terminal.
func AppendText(buf []byte, r *Record) []byte {
	buf = r.TS.Local().AppendFormat(buf, TextTimeLayout)
	buf = append(buf, ' ')
	switch r.Source {
	case SourceRedis:
		buf = append(buf, "redis  "...)
	case SourceSSE:
		buf = append(buf, "sse["...)
		buf = AppendEscaped(buf, r.Endpoint)
		buf = append(buf, "]  "...)
	}
	switch r.Kind {
	case KindMessage:
		buf = AppendEscaped(buf, r.Channel)
		if r.Pattern != "" {
			buf = append(buf, " ("...)
			buf = AppendEscaped(buf, r.Pattern)
			buf = append(buf, ')')
		}
		if r.Shard {
			buf = append(buf, " (shard)"...)
		}
		buf = append(buf, "  "...)
		buf = AppendEscaped(buf, r.Data)
	case KindEvent:
		buf = AppendEscaped(buf, r.Type)
		if r.ID != "" {
			buf = append(buf, " #"...)
			buf = AppendEscaped(buf, r.ID)
		}
		buf = append(buf, "  "...)
		buf = AppendEscaped(buf, r.Data)
	case KindComment:
		buf = append(buf, ": "...)
		buf = AppendEscaped(buf, r.Data)
	case KindRetry:
		buf = append(buf, "retry "...)
		buf = strconv.AppendInt(buf, r.RetryMS, 10)
		buf = append(buf, "ms"...)
	case KindState:
		buf = append(buf, "state "...)
		buf = append(buf, r.State...)
		if r.Target != "" {
			buf = append(buf, "  "...)
			buf = AppendEscaped(buf, r.Target)
		}
		if r.Status != 0 {
			buf = append(buf, "  HTTP "...)
			buf = strconv.AppendInt(buf, int64(r.Status), 10)
		}
		if r.Attempt != 0 {
			buf = append(buf, "  attempt "...)
			buf = strconv.AppendInt(buf, int64(r.Attempt), 10)
		}
		if r.Error != "" {
			buf = append(buf, "  "...)
			buf = AppendEscaped(buf, r.Error)
		}
	}
	if r.Probe != "" {
		buf = append(buf, "  [probe "...)
		buf = append(buf, r.Probe...)
		buf = append(buf, ' ')
		buf = appendMillis(buf, r.LatencyUS)
		buf = append(buf, ']')
	}
	if r.HasHop {
		buf = append(buf, "  [hop "...)
		buf = appendMillis(buf, r.HopUS)
		buf = append(buf, ']')
	}
	return append(buf, '\n')
}

func appendMillis(buf []byte, us int64) []byte {
	buf = strconv.AppendFloat(buf, float64(us)/1000, 'f', 3, 64)
	return append(buf, "ms"...)
}

// AppendEscaped appends s with every control character (C0, DEL, C1),
// every bidirectional-override character and every invalid UTF-8 byte
// written as a visible escape: \n, \r, \t, \x1b, \u202e.
func AppendEscaped(buf []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != 0x7f {
				i++
				continue
			}
			buf = append(buf, s[start:i]...)
			switch b {
			case '\n':
				buf = append(buf, '\\', 'n')
			case '\r':
				buf = append(buf, '\\', 'r')
			case '\t':
				buf = append(buf, '\\', 't')
			default:
				buf = append(buf, '\\', 'x', hexDigits[b>>4], hexDigits[b&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			buf = append(buf, s[start:i]...)
			buf = append(buf, '\\', 'x', hexDigits[b>>4], hexDigits[b&0xf])
		case r >= 0x80 && r <= 0x9f, isBidiControl(r):
			buf = append(buf, s[start:i]...)
			buf = append(buf, '\\', 'u')
			buf = append(buf, hexDigits[r>>12&0xf], hexDigits[r>>8&0xf], hexDigits[r>>4&0xf], hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	return append(buf, s[start:]...)
}

// Escaped returns s as AppendEscaped writes it.
func Escaped(s string) string { return string(AppendEscaped(nil, s)) }

func isBidiControl(r rune) bool {
	return (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) || r == 0x200e || r == 0x200f || r == 0x061c
}
