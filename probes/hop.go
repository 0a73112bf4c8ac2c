package probes

import (
	"encoding/json"
	"hash/maphash"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// hopMatcher remembers recent organic Redis messages by key so that an SSE
// event carrying the same message can be given its Redis→SSE hop time.
// Keys are 64-bit hashes, so memory stays bounded whatever the payload size.
type hopMatcher struct {
	seen    map[uint64]time.Time
	fifo    []hopEntry // ring, oldest at head
	head, n int
	maxAge  time.Duration
}

type hopEntry struct {
	key uint64
	at  time.Time
}

func newHopMatcher(entries int, maxAge time.Duration) *hopMatcher {
	return &hopMatcher{
		seen:   make(map[uint64]time.Time),
		fifo:   make([]hopEntry, entries),
		maxAge: maxAge,
	}
}

// add remembers key as seen on Redis at at, evicting the oldest entry when
// full and every entry older than maxAge.
func (m *hopMatcher) add(key uint64, at time.Time) {
	m.evict(at)
	if m.n == len(m.fifo) {
		m.pop()
	}
	m.fifo[(m.head+m.n)%len(m.fifo)] = hopEntry{key, at}
	m.n++
	m.seen[key] = at
}

func (m *hopMatcher) pop() {
	e := m.fifo[m.head]
	// Only forget the key when it was not seen again since.
	if at, ok := m.seen[e.key]; ok && at.Equal(e.at) {
		delete(m.seen, e.key)
	}
	m.fifo[m.head] = hopEntry{}
	m.head = (m.head + 1) % len(m.fifo)
	m.n--
}

func (m *hopMatcher) evict(now time.Time) {
	for m.n > 0 && now.Sub(m.fifo[m.head].at) > m.maxAge {
		m.pop()
	}
}

// lookup returns when key was last seen on Redis.
func (m *hopMatcher) lookup(key uint64, now time.Time) (time.Time, bool) {
	at, ok := m.seen[key]
	if !ok || now.Sub(at) > m.maxAge {
		return time.Time{}, false
	}
	return at, true
}

func (m *hopMatcher) len() int { return len(m.seen) }

// matchKey returns the key that identifies data for hop matching: a hash of
// the data itself, or, with a match key, of the JSON value found at that
// key (dots separate nested keys; the key is searched for at any depth and
// inside strings that hold JSON, so a relay that re-wraps the message in
// another object still matches). A string value is hashed unescaped, other
// values in canonical form. ok is false when the key is set and not found.
func matchKey(seed maphash.Seed, data, key string) (uint64, bool) {
	if key == "" {
		return maphash.String(seed, data), true
	}
	if !strings.Contains(data, lastPart(key)) {
		return 0, false // cheap reject before parsing
	}
	if tag, val, ok := fastValue(data, key); ok {
		return hashTagged(seed, tag, val), true
	}
	return parsedKey(seed, data, key)
}

// parsedKey is matchKey by a full JSON parse.
func parsedKey(seed maphash.Seed, data, key string) (uint64, bool) {
	parts := strings.Split(key, ".")
	v, ok := parseJSON(data)
	if !ok {
		return 0, false
	}
	found, ok := findKey(v, parts, 4)
	if !ok {
		return 0, false
	}
	switch x := found.(type) {
	case string:
		return hashTagged(seed, 's', x), true
	case json.Number:
		return hashTagged(seed, 'n', x.String()), true
	}
	b, err := json.Marshal(found) // maps marshal with sorted keys
	if err != nil {
		return 0, false
	}
	return hashTagged(seed, 'v', string(b)), true
}

// hashTagged hashes a type tag and a value without building the string.
func hashTagged(seed maphash.Seed, tag byte, s string) uint64 {
	var h maphash.Hash
	h.SetSeed(seed)
	_ = h.WriteByte(tag)
	_, _ = h.WriteString(s)
	return h.Sum64()
}

// fastValue finds the value of a plain (undotted) key without parsing
// when that is unambiguous: "key" occurs once, in key position, and its
// value is a string without escapes or a number. It gives what the full
// parse would give; anything else is left to the full parse.
func fastValue(data, key string) (tag byte, val string, ok bool) {
	if strings.Contains(key, ".") {
		return 0, "", false
	}
	var qk [64]byte
	if len(key)+2 > len(qk) {
		return 0, "", false
	}
	quoted := string(append(append(append(qk[:0], '"'), key...), '"'))
	i := strings.Index(data, quoted)
	if i <= 0 || strings.Contains(data[i+len(quoted):], quoted) {
		return 0, "", false
	}
	switch data[i-1] {
	case '{', ',', ' ', '\t', '\n', '\r':
	default:
		return 0, "", false
	}
	rest := strings.TrimLeft(data[i+len(quoted):], " \t\n\r")
	if len(rest) == 0 || rest[0] != ':' {
		return 0, "", false
	}
	rest = strings.TrimLeft(rest[1:], " \t\n\r")
	switch {
	case len(rest) > 0 && rest[0] == '"':
		end := strings.IndexByte(rest[1:], '"')
		if end < 0 {
			return 0, "", false
		}
		v := rest[1 : 1+end]
		if strings.IndexByte(v, '\\') >= 0 || !utf8.ValidString(v) {
			return 0, "", false
		}
		return 's', v, true
	case len(rest) > 0 && (rest[0] == '-' || rest[0] >= '0' && rest[0] <= '9'):
		n := 0
		for n < len(rest) && strings.IndexByte("+-.eE0123456789", rest[n]) >= 0 {
			n++
		}
		return 'n', rest[:n], true
	}
	return 0, "", false
}

func parseJSON(s string) (any, bool) {
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var v any
	if d.Decode(&v) != nil {
		return nil, false
	}
	return v, true
}

// findKey looks for the dotted path parts in v: at the top, then inside
// nested values and JSON-holding strings, up to depth levels of strings.
func findKey(v any, parts []string, depth int) (any, bool) {
	switch x := v.(type) {
	case map[string]any:
		if got, ok := follow(x, parts); ok {
			return got, true
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys) // deterministic when the key occurs twice
		for _, k := range keys {
			if got, ok := findKey(x[k], parts, depth); ok {
				return got, true
			}
		}
	case []any:
		for _, e := range x {
			if got, ok := findKey(e, parts, depth); ok {
				return got, true
			}
		}
	case string:
		t := strings.TrimSpace(x)
		if depth > 0 && len(t) > 1 && (t[0] == '{' || t[0] == '[') {
			if inner, ok := parseJSON(t); ok {
				return findKey(inner, parts, depth-1)
			}
		}
	}
	return nil, false
}

func follow(m map[string]any, parts []string) (any, bool) {
	var cur any = m
	for _, p := range parts {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = obj[p]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func lastPart(key string) string {
	if i := strings.LastIndexByte(key, '.'); i >= 0 {
		return key[i+1:]
	}
	return key
}
