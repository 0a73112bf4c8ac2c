package probes

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrUsage marks a configuration error (exit status 2), e.g. a template
// without {{token}}.
var ErrUsage = errors.New("usage error")

// TokenPrefix starts every probe token: fsp-<8 hex run id>-<seq>.
const TokenPrefix = "fsp-"

// DefaultTemplate is the probe payload when --template is not given.
const DefaultTemplate = `{"fanscope_probe":"{{token}}","seq":{{seq}},"sent_at":"{{sent_at}}"}`

// Template placeholders.
const (
	PlaceToken  = "{{token}}"
	PlaceSeq    = "{{seq}}"
	PlaceSentAt = "{{sent_at}}"
)

// NewRunID returns a random run id of 8 lowercase hex digits.
func NewRunID() string {
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// Token returns the probe token for seq in run runID.
func Token(runID string, seq int) string {
	return TokenPrefix + runID + "-" + strconv.Itoa(seq)
}

// ValidRunID reports whether id is 8 lowercase hex digits.
func ValidRunID(id string) bool {
	if len(id) != 8 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// ValidateTemplate returns an ErrUsage-wrapping error when t cannot carry a
// probe: without {{token}} no delivery could be matched.
func ValidateTemplate(t string) error {
	if !strings.Contains(t, PlaceToken) {
		return fmt.Errorf("probe template %q has no {{token}}: deliveries could not be matched: %w", t, ErrUsage)
	}
	// The token ends with its sequence number: a digit right after it
	// ({{seq}}, {{sent_at}} or a literal one) would run into it, and no
	// delivery would match.
	for rest := t; ; {
		i := strings.Index(rest, PlaceToken)
		if i < 0 {
			return nil
		}
		rest = rest[i+len(PlaceToken):]
		if strings.HasPrefix(rest, PlaceSeq) || strings.HasPrefix(rest, PlaceSentAt) || (rest != "" && rest[0] >= '0' && rest[0] <= '9') {
			return fmt.Errorf("probe template %q: put a separator after {{token}} (it ends in digits, so what follows must not be a digit, {{seq}} or {{sent_at}}): %w", t, ErrUsage)
		}
	}
}

// Render fills template t for one probe. sent_at is RFC 3339 with
// nanoseconds, UTC.
func Render(t, token string, seq int, sentAt time.Time) string {
	return strings.NewReplacer(
		PlaceToken, token,
		PlaceSeq, strconv.Itoa(seq),
		PlaceSentAt, sentAt.UTC().Format(time.RFC3339Nano),
	).Replace(t)
}

// nextToken finds the first token with the given prefix in data and
// returns its seq and how far into data it ends (0: none).
func nextToken(data, prefix string) (seq, end int) {
	off := 0
	for {
		i := strings.Index(data[off:], prefix)
		if i < 0 {
			return 0, 0
		}
		off += i + len(prefix)
		seq, n := 0, 0
		for off+n < len(data) && n < 9 && data[off+n] >= '0' && data[off+n] <= '9' {
			seq = seq*10 + int(data[off+n]-'0')
			n++
		}
		if n > 0 && seq > 0 {
			return seq, off + n
		}
	}
}

// findToken finds the first token with the given prefix ("fsp-<runid>-")
// in data and returns its seq. A prefix not followed by digits is skipped.
func findToken(data, prefix string) (int, bool) {
	for {
		i := strings.Index(data, prefix)
		if i < 0 {
			return 0, false
		}
		data = data[i+len(prefix):]
		seq, n := 0, 0
		for n < len(data) && n < 9 && data[n] >= '0' && data[n] <= '9' {
			seq = seq*10 + int(data[n]-'0')
			n++
		}
		if n > 0 && seq > 0 {
			return seq, true
		}
	}
}
