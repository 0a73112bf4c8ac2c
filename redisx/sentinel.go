package redisx

import "context"

type sentinelState struct{}

func (s *sentinelState) close()             {}
func (s *sentinelState) masterAddr() string { return "" }
func (s *sentinelState) resolve(ctx context.Context) (endpoint, error) {
	return endpoint{}, usageError(nil, "Sentinel is not supported yet")
}

func (c *Client) openSentinel(ctx context.Context) error {
	return usageError(c.mask, "Sentinel is not supported yet")
}
