package probes

import (
	"hash/maphash"
	"testing"
)

var matchKeySeeds = []string{
	`{"storyId":"s1"}`,
	`{"storyId": 42, "x":1}`,
	`{ "storyId" : -1.5e3 }`,
	`{"a":{"storyId":"nested"}}`,
	`{"storyId":"s1","storyId":"s2"}`,
	`{"title":"storyId","storyId":"s3"}`,
	`{"x\"storyId":"trap","storyId":"s4"}`,
	`{"storyId":"esc\u00e9"}`,
	`{"storyId":"\xff"}`,
	`{"storyId":true}`,
	`{"payload":"{\"storyId\":\"s5\"}"}`,
	`["storyId"]`,
	`{"storyId":"unterminated`,
	`{"storyId":0123}`,
}

// The fast path must give what the full parse gives whenever both answer.
func TestFastValueAgreesWithParse(t *testing.T) {
	seed := maphash.MakeSeed()
	answered := 0
	for _, data := range matchKeySeeds {
		tag, val, ok := fastValue(data, "storyId")
		if !ok {
			continue
		}
		answered++
		want, wok := parsedKey(seed, data, "storyId")
		if !wok {
			continue // not JSON: the fast path may still match equal values
		}
		if hashTagged(seed, tag, val) != want {
			t.Errorf("%s: fast path gave %c %q, the parse disagrees (found %v)", data, tag, val, wok)
		}
	}
	if answered < 4 {
		t.Errorf("fast path answered %d seeds, want at least 4", answered)
	}
}

func FuzzFastValue(f *testing.F) {
	for _, s := range matchKeySeeds {
		f.Add(s)
	}
	seed := maphash.MakeSeed()
	f.Fuzz(func(t *testing.T, data string) {
		tag, val, ok := fastValue(data, "storyId")
		if !ok {
			return
		}
		want, wok := parsedKey(seed, data, "storyId")
		if wok && hashTagged(seed, tag, val) != want {
			t.Errorf("%q: fast path gave %c %q, the parse disagrees", data, tag, val)
		}
	})
}
