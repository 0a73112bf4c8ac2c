package browserx_test

import (
	"github.com/fanscope/fanscope/browserx"
	"github.com/fanscope/fanscope/session"
)

// Both browser sources plug into a session as any other path does.
var (
	_ session.Source = (*browserx.Path)(nil)
	_ session.Source = (*browserx.Page)(nil)
)
