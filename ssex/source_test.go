package ssex_test

import (
	"github.com/fanscope/fanscope/session"
	"github.com/fanscope/fanscope/ssex"
)

// *ssex.Client is a delivery path a session can run.
var _ session.Source = (*ssex.Client)(nil)
