package cli

import (
	"errors"

	"github.com/fanscope/fanscope/browserx"
	"github.com/fanscope/fanscope/pollx"
	"github.com/fanscope/fanscope/probes"
	"github.com/fanscope/fanscope/redisx"
	"github.com/fanscope/fanscope/session"
	"github.com/fanscope/fanscope/ssex"
	"github.com/fanscope/fanscope/wsx"
)

// Exit statuses, a contract with scripts: 0 every check met, 1 a budget or
// delivery check failed, 2 usage or configuration, 3 a source unreachable.
const (
	exitOK          = 0
	exitCheckFailed = 1
	exitUsage       = 2
	exitUnreachable = 3
)

// exitError carries an explicit exit status.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// exitWith wraps err so that it ends the process with code.
func exitWith(code int, err error) error { return &exitError{code: code, err: err} }

// usageError marks err as a usage or configuration error (exit 2).
func usageError(err error) error { return exitWith(exitUsage, err) }

// quietError ends the process with a status but prints nothing more: the
// command already said why (a failed probe prints its own report).
type quietError struct{ code int }

func (e *quietError) Error() string { return "exit status" }

// exitCode maps an error to the process exit status.
func exitCode(err error) int {
	var ee *exitError
	var qe *quietError
	var ce *session.ConnectError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &qe):
		return qe.code
	case errors.As(err, &ee):
		return ee.code
	case errors.Is(err, redisx.ErrUsage), errors.Is(err, ssex.ErrUsage), errors.Is(err, probes.ErrUsage),
		errors.Is(err, session.ErrUsage), errors.Is(err, session.ErrNoProbeTarget),
		errors.Is(err, wsx.ErrUsage), errors.Is(err, pollx.ErrUsage), errors.Is(err, browserx.ErrUsage):
		return exitUsage
	case errors.Is(err, redisx.ErrUnreachable), errors.Is(err, redisx.ErrAuth),
		errors.Is(err, redisx.ErrNoPerm), errors.Is(err, ssex.ErrFatal), errors.As(err, &ce),
		errors.Is(err, wsx.ErrFatal), errors.Is(err, pollx.ErrFatal), errors.Is(err, browserx.ErrFatal),
		errors.Is(err, browserx.ErrNoChromium):
		return exitUnreachable
	}
	return exitCheckFailed
}
