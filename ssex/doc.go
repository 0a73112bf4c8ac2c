// Package ssex is fanscope's Server-Sent-Events side: a parser that turns an
// event stream into exactly the events a browser's EventSource would dispatch
// (WHATWG HTML "Parsing an event stream" and "Interpreting an event stream"),
// plus the comments and retry fields a browser hides, and a client that owns
// connecting, reconnecting and per-endpoint diagnostics.
//
// The parser has no HTTP in it: Parser.Feed takes the bytes of each read with
// the time they were read, and Reader wraps any io.Reader.
package ssex
