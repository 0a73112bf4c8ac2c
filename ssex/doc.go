// Package ssex is fanscope's Server-Sent-Events side: a parser that turns an
// event stream into exactly the events a browser's EventSource would dispatch
// (WHATWG HTML "Parsing an event stream" and "Interpreting an event stream"),
// plus the comments and retry fields a browser hides, and a client that owns
// connecting, reconnecting and per-endpoint diagnostics.
//
// The parser has no HTTP in it: Parser.Feed takes the bytes of each read with
// the time they were read, and Reader wraps any io.Reader.
//
// The client's files follow one attempt's life: client.go holds the
// configuration and the reconnect loop (Run, backoff); transport.go the
// shared HTTP transports; direct.go the per-connection transport that
// reads a stream in place; attempt.go one connection attempt (request,
// response, why it failed); response.go what a response means;
// redirect.go the redirect policy; stream.go the read loop that turns
// bytes into records; watchdog.go stall detection; diag.go Diagnostics
// and Status. The client faces servers it does not control, so every
// buffer is bounded (the response head, each line and event), reconnects
// never come faster than MinRetry, and URLs and headers are shown only
// through internal/secrets.
package ssex
