package probes

import (
	"encoding/json"
	"hash/maphash"
	"slices"
	"strings"
	"time"
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
	parts := strings.Split(key, ".")
	if !strings.Contains(data, parts[len(parts)-1]) {
		return 0, false // cheap reject before parsing
	}
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
		return maphash.String(seed, "s"+x), true
	case json.Number:
		return maphash.String(seed, "n"+x.String()), true
	}
	b, err := json.Marshal(found) // maps marshal with sorted keys
	if err != nil {
		return 0, false
	}
	return maphash.Bytes(seed, append([]byte{'v'}, b...)), true
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
