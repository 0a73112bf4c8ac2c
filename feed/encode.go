package feed

import (
	"encoding/base64"
	"strconv"
	"time"

	"unicode/utf8"
)

// TimeLayout is the NDJSON ts format: RFC 3339, UTC, always nine fraction digits.
const TimeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// ServerTimeLayout is the server_ts format of publish records: RFC 3339,
// UTC, microseconds (MONITOR's own resolution).
const ServerTimeLayout = "2006-01-02T15:04:05.000000Z07:00"

// AppendJSON appends r as one NDJSON object (with a trailing newline) to
// buf. It appends to a caller's buffer instead of using encoding/json
// because the encoder, not Redis, limits how fast tail can ingest (an
// encoding/json record per message takes ingest from ~750k to ~165k
// messages/s); TestAppendJSONStringMatchesEncodingJSON keeps it honest.
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
		if r.Status != 0 {
			buf = append(buf, `,"status":`...)
			buf = strconv.AppendInt(buf, int64(r.Status), 10)
		}
		buf = appendData(buf, r.Data)
	case KindPublish:
		buf = appendField(buf, "channel", r.Channel)
		if r.Shard {
			buf = append(buf, `,"shard":true`...)
		}
		buf = appendData(buf, r.Data)
		buf = appendField(buf, "client", r.Client)
		if r.ClientName != "" {
			buf = appendField(buf, "client_name", r.ClientName)
		}
		buf = append(buf, `,"server_ts":"`...)
		buf = r.ServerTS.UTC().AppendFormat(buf, ServerTimeLayout)
		buf = append(buf, '"')
	case KindComment:
		buf = appendField(buf, "endpoint", r.Endpoint)
		buf = appendField(buf, "data", r.Data)
	case KindRetry:
		buf = appendField(buf, "endpoint", r.Endpoint)
		buf = append(buf, `,"retry_ms":`...)
		buf = strconv.AppendInt(buf, r.RetryMS, 10)
	case KindState:
		if r.Endpoint != "" || r.Source.Delivers() {
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
	if r.HasPublish {
		buf = append(buf, `,"publish_us":`...)
		buf = strconv.AppendInt(buf, r.PublishUS, 10)
	}
	return append(buf, "}\n"...)
}

// appendData writes data as "data", or as "data_b64" when it is not UTF-8.
// The UTF-8 check is the escaping pass itself: a payload is read once.
func appendData(buf []byte, data string) []byte {
	mark := len(buf)
	buf = append(buf, `,"data":`...)
	if out, ok := appendJSONString(buf, data, true); ok {
		return out
	}
	buf = append(buf[:mark], `,"data_b64":"`...)
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
	ns := t.Nanosecond()
	var b [30]byte
	put2(b[0:2], y/100)
	put2(b[2:4], y%100)
	b[4] = '-'
	put2(b[5:7], int(mo))
	b[7] = '-'
	put2(b[8:10], d)
	b[10] = 'T'
	put2(b[11:13], h)
	b[13] = ':'
	put2(b[14:16], mi)
	b[16] = ':'
	put2(b[17:19], sec)
	b[19] = '.'
	b[20] = byte('0' + ns/1e8)
	put2(b[21:23], ns/1e6%100)
	put2(b[23:25], ns/1e4%100)
	put2(b[25:27], ns/100%100)
	put2(b[27:29], ns%100)
	b[29] = 'Z'
	return append(buf, b[:]...)
}

// twoDigits holds "00" to "99".
const twoDigits = "00010203040506070809101112131415161718192021222324252627282930313233343536373839" +
	"40414243444546474849505152535455565758596061626364656667686970717273747576777879" +
	"8081828384858687888990919293949596979899"

// put2 writes v (0–99) as two digits.
func put2(b []byte, v int) {
	b[0], b[1] = twoDigits[2*v], twoDigits[2*v+1]
}

const hexDigits = "0123456789abcdef"

// jsonSafe[b] is true for the ASCII bytes a JSON string holds as they are.
// DEL is escaped too: JSON allows it raw, but a terminal would act on it.
var jsonSafe = func() (t [256]bool) {
	for b := 0x20; b < utf8.RuneSelf; b++ {
		t[b] = b != '"' && b != '\\' && b != 0x7f
	}
	return t
}()

// AppendJSONString appends s as a JSON string literal, escaped the way
// encoding/json escapes it with HTML escaping off (invalid UTF-8 becomes
// U+FFFD; U+2028 and U+2029 are escaped), and also with DEL, the C1
// controls and the bidirectional overrides escaped as \uXXXX, so that
// NDJSON read on a terminal cannot drive it or reorder what it shows. The
// decoded string is the same.
func AppendJSONString(buf []byte, s string) []byte {
	buf, _ = appendJSONString(buf, s, false)
	return buf
}

// For testing 8 bytes at once whether any has its top bit set, is below
// 0x20, or equals '"' or '\\' (exact for the word as a whole).
const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

func hasZero(w uint64) uint64 { return (w - ones) & ^w & highs }

// appendJSONString is AppendJSONString; with strict it stops at the first
// invalid UTF-8 sequence and reports false (buf then holds a partial
// literal the caller discards).
func appendJSONString(buf []byte, s string, strict bool) ([]byte, bool) {
	buf = append(buf, '"')
	start := 0
	for i := 0; ; {
		// Whole words of plain ASCII first (written out: a helper would
		// not be inlined), then single bytes.
		for ; i+8 <= len(s); i += 8 {
			w := s[i : i+8]
			x := uint64(w[0]) | uint64(w[1])<<8 | uint64(w[2])<<16 | uint64(w[3])<<24 |
				uint64(w[4])<<32 | uint64(w[5])<<40 | uint64(w[6])<<48 | uint64(w[7])<<56
			if (x|(x-0x20*ones)&^x|hasZero(x^'"'*ones)|hasZero(x^'\\'*ones)|hasZero(x^0x7f*ones))&highs != 0 {
				break
			}
		}
		for i < len(s) && jsonSafe[s[i]] {
			i++
		}
		if i == len(s) {
			break
		}
		b := s[i]
		if b < utf8.RuneSelf {
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
		switch {
		case r == utf8.RuneError && size == 1:
			if strict {
				return buf, false
			}
			buf = append(buf, s[start:i]...)
			buf = append(buf, `\ufffd`...)
			start = i + size
		case r == '\u2028' || r == '\u2029', r >= 0x80 && r <= 0x9f, isBidiControl(r):
			buf = append(buf, s[start:i]...)
			buf = append(buf, '\\', 'u', hexDigits[r>>12&0xf], hexDigits[r>>8&0xf], hexDigits[r>>4&0xf], hexDigits[r&0xf])
			start = i + size
		}
		i += size
	}
	buf = append(buf, s[start:]...)
	return append(buf, '"'), true
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
	case SourceMonitor:
		buf = append(buf, "monitor  "...)
	default:
		buf = append(buf, r.Source.String()...)
		buf = append(buf, '[')
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
		if r.Status != 0 {
			buf = append(buf, " HTTP "...)
			buf = strconv.AppendInt(buf, int64(r.Status), 10)
		}
		buf = append(buf, "  "...)
		buf = AppendEscaped(buf, r.Data)
	case KindPublish:
		buf = AppendEscaped(buf, r.Channel)
		if r.Shard {
			buf = append(buf, " (shard)"...)
		}
		buf = append(buf, " by "...)
		buf = AppendEscaped(buf, r.Client)
		if r.ClientName != "" {
			buf = append(buf, " ("...)
			buf = AppendEscaped(buf, r.ClientName)
			buf = append(buf, ')')
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
	if r.HasPublish {
		buf = append(buf, "  [publish "...)
		buf = appendMillis(buf, r.PublishUS)
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
