module github.com/fanscope/fanscope/bench

go 1.26.7

replace github.com/fanscope/fanscope => ../

require (
	github.com/fanscope/fanscope v0.0.0-00010101000000-000000000000
	github.com/r3labs/sse/v2 v2.10.0
	github.com/redis/go-redis/v9 v9.23.0
	github.com/tmaxmax/go-sse v0.12.0
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	go.uber.org/atomic v1.12.0 // indirect
	golang.org/x/net v0.62.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
	gopkg.in/cenkalti/backoff.v1 v1.1.0 // indirect
)
