package redisx

import "context"

func (c *Client) openCluster(ctx context.Context) error {
	return usageError(c.mask, "Redis Cluster is not supported yet")
}

func (c *Client) planCluster(ctx context.Context, sub Subscription) ([]*link, error) {
	return nil, usageError(c.mask, "Redis Cluster is not supported yet")
}
