package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fanscope/fanscope/feed"
)

// fakePubSub is a loopback server that confirms one SUBSCRIBE and then
// streams n pub/sub message frames as fast as the client reads them, so a
// benchmark measures only the client's cost per message.
func fakePubSub(tb testing.TB, ch string, payload string, n int) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	frame := fmt.Sprintf("*3\r\n$7\r\nmessage\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len(ch), ch, len(payload), payload)
	chunk := bytes.Repeat([]byte(frame), 1000)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		// Read commands until SUBSCRIBE; HELLO is refused as by an old
		// server, anything else gets +OK.
		for {
			args, err := readCommand(br)
			if err != nil {
				return
			}
			if len(args) > 0 && (args[0] == "SUBSCRIBE" || args[0] == "subscribe") {
				break
			}
			if len(args) > 0 && (args[0] == "hello" || args[0] == "HELLO") {
				c.Write([]byte("-ERR unknown command 'hello'\r\n"))
				continue
			}
			c.Write([]byte("+OK\r\n"))
		}
		fmt.Fprintf(c, "*3\r\n$9\r\nsubscribe\r\n$%d\r\n%s\r\n:1\r\n", len(ch), ch)
		for sent := 0; sent < n; sent += 1000 {
			k := min(1000, n-sent)
			if _, err := c.Write(chunk[:k*len(frame)]); err != nil {
				return
			}
		}
		io.Copy(io.Discard, c)
	}()
	return ln.Addr().String()
}

func readCommand(br *bufio.Reader) ([]string, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return nil, err
	}
	n, _ := strconv.Atoi(line[1 : len(line)-2])
	args := make([]string, 0, n)
	for range n {
		hdr, err := br.ReadString('\n')
		if err != nil {
			return nil, err
		}
		l, _ := strconv.Atoi(hdr[1 : len(hdr)-2])
		b := make([]byte, l+2)
		if _, err := io.ReadFull(br, b); err != nil {
			return nil, err
		}
		args = append(args, string(b[:l]))
	}
	return args, nil
}

// BenchmarkPubSubReceive sizes the Redis side of the ingest path per
// message: go-redis's PubSub.ReceiveTimeout with a time.Now() per message
// (the shape redisx uses), against a plain RESP reader on the socket that
// stamps once per socket read, reuses the channel string and allocates only
// the payload. Both build a feed.Record.
func BenchmarkPubSubReceive(b *testing.B) {
	const ch = "bench:ingest"
	msg := payload(1, 100)
	var sink feed.Record
	b.Run("go-redis", func(b *testing.B) {
		addr := fakePubSub(b, ch, msg, b.N)
		c := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, DisableIdentity: true})
		defer c.Close()
		ctx := context.Background()
		ps := c.Subscribe(ctx, ch)
		defer ps.Close()
		if _, err := ps.Receive(ctx); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			m, err := ps.ReceiveTimeout(ctx, 5*time.Second)
			at := time.Now()
			if err != nil {
				b.Fatal(err)
			}
			pm := m.(*redis.Message)
			sink = feed.Record{TS: at, Source: feed.SourceRedis, Kind: feed.KindMessage, Channel: pm.Channel, Data: pm.Payload}
		}
	})
	b.Run("raw-resp", func(b *testing.B) {
		addr := fakePubSub(b, ch, msg, b.N)
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%s\r\n", len(ch), ch)
		r := &respReader{br: bufio.NewReaderSize(conn, 64<<10)}
		if _, _, _, err := r.next(); err != nil { // the confirmation
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			kind, channel, data, err := r.next()
			if err != nil || kind != "message" {
				b.Fatalf("got %q %v", kind, err)
			}
			sink = feed.Record{TS: r.at, Source: feed.SourceRedis, Kind: feed.KindMessage, Channel: channel, Data: data}
		}
	})
	_ = sink
}

// respReader reads RESP2 pub/sub pushes ("*3" arrays of bulk strings, the
// last one an integer for confirmations).
type respReader struct {
	br      *bufio.Reader
	at      time.Time // when the bytes of the current push were read
	channel string    // last channel seen, reused while it repeats
}

func (r *respReader) line() ([]byte, error) {
	fresh := r.br.Buffered() == 0
	l, err := r.br.ReadSlice('\n')
	if fresh {
		r.at = time.Now()
	}
	if err != nil {
		return nil, err
	}
	return l[:len(l)-2], nil
}

func (r *respReader) bulk() ([]byte, error) {
	l, err := r.line()
	if err != nil {
		return nil, err
	}
	if len(l) == 0 || (l[0] != '$' && l[0] != ':') {
		return nil, fmt.Errorf("unexpected %q", l)
	}
	if l[0] == ':' {
		return l[1:], nil
	}
	n, err := strconv.Atoi(string(l[1:]))
	if err != nil {
		return nil, err
	}
	if b, err := r.br.Peek(n + 2); err == nil {
		r.br.Discard(n + 2)
		return b[:n], nil
	}
	b := make([]byte, n+2)
	if _, err := io.ReadFull(r.br, b); err != nil {
		return nil, err
	}
	return b[:n], nil
}

func (r *respReader) next() (kind, channel, data string, err error) {
	l, err := r.line()
	if err != nil {
		return "", "", "", err
	}
	if string(l) != "*3" {
		return "", "", "", fmt.Errorf("unexpected %q", l)
	}
	k, err := r.bulk()
	if err != nil {
		return "", "", "", err
	}
	kind = "message"
	if string(k) != "message" {
		kind = string(k)
	}
	c, err := r.bulk()
	if err != nil {
		return "", "", "", err
	}
	if string(c) != r.channel {
		r.channel = string(c)
	}
	d, err := r.bulk()
	if err != nil {
		return "", "", "", err
	}
	return kind, r.channel, string(d), nil
}
