package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/charmbracelet/x/term"
	"github.com/spf13/cobra"

	"github.com/fanscope/fanscope/feed"
)

// maxStdinLine is the longest message publish reads from one stdin line:
// Redis's own default limit for one argument (proto-max-bulk-len).
const maxStdinLine = 512 << 20

// stdinIsTerminal reports whether r is a terminal a person can answer
// on; tests replace it.
var stdinIsTerminal = func(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && term.IsTerminal(f.Fd())
}

type publishOptions struct {
	JSON         bool
	AllowPublish bool
}

func newPublishCmd(e *env) *cobra.Command {
	var src SourceFlags
	var opts publishOptions
	cmd := &cobra.Command{
		Use:   "publish [-c CHANNEL | -s SHARD-CHANNEL] PAYLOAD|-",
		Short: "PUBLISH (or SPUBLISH) a message and print how many subscribers received it",
		Long: `publish sends PAYLOAD to a channel with PUBLISH (-c) or to a shard channel
with SPUBLISH (-s), and prints the receiver count Redis answers. With - as
the payload it reads stdin and publishes one message per line, in order: the
payload is the bytes up to each newline (a \r before it is kept), any bytes,
up to 512 MiB a line.

In a Cluster the receiver count of PUBLISH is what the node that took it
counts (Redis does not add up the others); 'fanscope channels' sums them.

Publishing to a Redis that is not on loopback asks you to type the channel
name first, unless --allow-publish is given; without a terminal to ask on,
it refuses (exit 2).`,
		Example: `  fanscope publish -c story:published '{"storyId":"s1"}'
  fanscope publish -s '{feed}:1' hello
  printf '%s\n' one two three | fanscope publish -c story:published - --json`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError(fmt.Errorf("publish takes one PAYLOAD argument (or - to read stdin), got %d", len(args)))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPublish(cmd.Context(), e, &src, opts, args[0])
		},
	}
	registerRedisFlags(cmd.Flags(), &src, map[string]string{
		"channel":       "PUBLISH to channel `NAME`",
		"shard-channel": "SPUBLISH to shard channel `NAME` (Redis 7+)",
	}, "channel", "shard-channel")
	cmd.Flags().BoolVar(&opts.JSON, "json", false, `print {"channel": "...", "receivers": N} per message`)
	cmd.Flags().BoolVar(&opts.AllowPublish, "allow-publish", false, "publish to a Redis that is not on loopback without asking first")
	src.registerChannelCompletion(cmd, e.getenv)
	return cmd
}

func runPublish(ctx context.Context, e *env, src *SourceFlags, opts publishOptions, payload string) error {
	channel, shard := "", false
	switch {
	case len(src.Channels)+len(src.ShardChannels) == 0:
		return usageError(errors.New("publish: say where: -c CHANNEL (PUBLISH) or -s SHARD-CHANNEL (SPUBLISH)"))
	case len(src.Channels)+len(src.ShardChannels) > 1:
		return usageError(errors.New("publish: give one channel: a single -c CHANNEL or -s SHARD-CHANNEL"))
	case len(src.Channels) == 1:
		channel = src.Channels[0]
	default:
		channel, shard = src.ShardChannels[0], true
	}
	c, err := openRedis(ctx, src, e.getenv, 0)
	if err != nil {
		return err
	}
	defer c.Close()
	in := bufio.NewReaderSize(e.stdin, 64<<10)
	if !c.Loopback() && !opts.AllowPublish {
		if err := confirmPublish(in, stdinIsTerminal(e.stdin), e.stderr, c.Target(), channel); err != nil {
			return err
		}
	}
	out := bufio.NewWriter(e.stdout)
	defer out.Flush()
	send := func(data string) error {
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		var n int64
		var err error
		if shard {
			n, err = c.SPublish(pctx, channel, data)
		} else {
			n, err = c.Publish(pctx, channel, data)
		}
		if err != nil {
			return err
		}
		if opts.JSON {
			b, _ := json.Marshal(struct {
				Channel   string `json:"channel"`
				Receivers int64  `json:"receivers"`
			}{channel, n})
			b = append(b, '\n')
			_, err = out.Write(b)
		} else {
			_, err = fmt.Fprintf(out, "%s: %d %s\n", feed.Escaped(channel), n, plural(n, "receiver", "receivers"))
		}
		if err == nil {
			err = out.Flush() // a line per message as it happens: scripts read along
		}
		return err
	}
	if payload != "-" {
		return send(payload)
	}
	return publishLines(ctx, in, send)
}

// publishLines publishes each line of in, in order, until EOF or ctx ends.
// Reading happens on its own goroutine, so an interrupt does not wait for
// a terminal's next line.
func publishLines(ctx context.Context, in *bufio.Reader, send func(string) error) error {
	type line struct {
		data string
		err  error
	}
	lines := make(chan line)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		defer close(lines)
		for n := 1; ; n++ {
			data, err := readLine(in, maxStdinLine)
			if err == io.EOF && data == "" {
				return
			}
			if err != nil && err != io.EOF {
				err = fmt.Errorf("read stdin line %d: %w", n, err)
			} else {
				err = nil
			}
			select {
			case lines <- line{data, err}:
			case <-stop:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	n := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case l, ok := <-lines:
			if !ok {
				return nil
			}
			n++
			if l.err != nil {
				return l.err
			}
			if err := send(l.data); err != nil {
				return fmt.Errorf("line %d: %w", n, err)
			}
		}
	}
}

// errLineTooLong is a stdin line longer than the limit.
var errLineTooLong = errors.New("line too long")

// readLine reads up to '\n' (not included) and at most limit bytes; it
// returns io.EOF with the last line when that has no newline.
func readLine(r *bufio.Reader, limit int) (string, error) {
	var buf []byte
	for {
		frag, err := r.ReadSlice('\n')
		if len(buf)+len(frag) > limit+1 {
			return "", fmt.Errorf("%w: more than %d MiB (Redis's default proto-max-bulk-len)", errLineTooLong, limit>>20)
		}
		switch err {
		case nil:
			if buf == nil {
				return string(frag[:len(frag)-1]), nil
			}
			buf = append(buf, frag...)
			return string(buf[:len(buf)-1]), nil
		case bufio.ErrBufferFull:
			buf = append(buf, frag...)
		default:
			buf = append(buf, frag...)
			return string(buf), err
		}
	}
}

// confirmPublish is the production guard: publishing to a Redis that is
// not on loopback needs the channel name typed on a terminal. Without a
// terminal it refuses with a usage error that names --allow-publish.
func confirmPublish(in *bufio.Reader, terminal bool, prompt io.Writer, target, channel string) error {
	if !terminal {
		return usageError(fmt.Errorf("publish: %s is not on loopback and stdin is not a terminal to confirm on; pass --allow-publish to publish there", target))
	}
	fmt.Fprintf(prompt, "fanscope: %s is not on loopback. Type the channel name (%s) to publish there, anything else cancels: ", target, feed.Escaped(channel))
	answer, err := readLine(in, 64<<10)
	if err != nil && err != io.EOF {
		return usageError(fmt.Errorf("publish: read the confirmation: %w", err))
	}
	if strings.TrimSpace(answer) != channel {
		return usageError(errors.New("publish: not confirmed, nothing was published (pass --allow-publish to skip the question)"))
	}
	return nil
}

func plural(n int64, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
