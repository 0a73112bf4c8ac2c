package browserx

import (
	"errors"
	"fmt"
)

// Error kinds, matched with errors.Is; the error's text says the details.
var (
	// ErrUsage: a flag value is wrong; nothing was started.
	ErrUsage = errors.New("bad browser flag")
	// ErrFatal: a browser path cannot deliver and retrying will not fix
	// it (every error Run returns matches it).
	ErrFatal = errors.New("browser path failed")

	ErrCORS        = errors.New("cors rejected")
	ErrHTTPStatus  = errors.New("non-200 response")
	ErrContentType = errors.New("wrong content type")
	ErrCertificate = errors.New("certificate error")
	ErrBlocked     = errors.New("blocked by chromium")
)

// kindError carries a readable message while matching its kinds with
// errors.Is, so messages do not repeat the sentinels' text.
type kindError struct {
	kinds []error
	err   error
}

func (e *kindError) Error() string { return e.err.Error() }
func (e *kindError) Unwrap() []error {
	return append(append([]error{}, e.kinds...), e.err)
}

func usageErrorf(format string, args ...any) error {
	return &kindError{kinds: []error{ErrUsage}, err: fmt.Errorf(format, args...)}
}

// fatalError wraps err as fatal, with an extra kind when not nil.
func fatalError(kind error, err error) error {
	kinds := []error{ErrFatal}
	if kind != nil {
		kinds = append(kinds, kind)
	}
	return &kindError{kinds: kinds, err: err}
}
