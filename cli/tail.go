package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/spf13/cobra"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/redisx"
	"github.com/fanscope/fanscope/session"
)

// tailOptions are the tail flags.
type tailOptions struct {
	JSON     bool
	Duration time.Duration
	Count    int
	NoState  bool
}

func (o *tailOptions) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.BoolVar(&o.JSON, "json", false, "one JSON object per line (NDJSON) instead of text")
	fs.DurationVar(&o.Duration, "duration", 0, "stop after `D` (e.g. 30s; default: until interrupted)")
	fs.IntVarP(&o.Count, "count", "n", 0, "stop after `N` message/event records")
	fs.BoolVar(&o.NoState, "no-state", false, "leave out state records")
}

func newTailCmd(e *env) *cobra.Command {
	var src SourceFlags
	var opts tailOptions
	cmd := &cobra.Command{
		Use:   "tail [source flags] [tail flags]",
		Short: "Stream records from Redis and every endpoint as text or NDJSON, no TUI",
		Long: `tail prints every observation from the sources, one line each: Redis messages,
events from every door (SSE, WebSocket, Socket.IO, polling, a browser, a page
check), SSE comments (keep-alives) and retry fields, publishes seen by
MONITOR (--monitor), and connection state changes (stalled included).
Each line carries the time the bytes were read. Control characters in payloads
are shown escaped (\x1b, \n), never written raw to the terminal.

--json prints one JSON object per line (see the README for the fields);
payloads that are not UTF-8 are given as data_b64, and DEL, C1 controls and
bidi overrides are escaped as \uXXXX so that a terminal never acts on them.`,
		Example: `  fanscope tail -c story:published -p 'story:*'
  fanscope tail --redis redis://127.0.0.1:6379 -c story:published --json --duration 30s
  fanscope tail --sse app-1=http://localhost:8080/api/community/events -n 5
  fanscope tail -c story:published --ws app-1=ws://localhost:8080/ws --poll app-1=http://localhost:8080/api/community/events/poll
  fanscope tail -c story:published --monitor --json
  FANSCOPE_TOKEN=… fanscope tail --sse https://app.example.com/api/community/events --bearer-env FANSCOPE_TOKEN`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runTail(cmd.Context(), e, src, opts)
		},
	}
	src.Register(cmd.Flags())
	src.registerChannelCompletion(cmd, e.getenv)
	opts.register(cmd)
	return cmd
}

// tailConnectWait is how long tail waits for an endpoint that does not
// connect before it gives up (exit 3). A variable so that a test can
// shorten it.
var tailConnectWait = 10 * time.Second

// runTail opens the sources and prints records until ctx ends, the
// duration passes, the count is reached, or a source fails for good.
func runTail(ctx context.Context, e *env, src SourceFlags, opts tailOptions) error {
	if opts.Count < 0 || opts.Duration < 0 {
		return usageError(fmt.Errorf("--count and --duration must not be negative"))
	}
	if e.getenv("GOGC") == "" {
		// Every message allocates a little (the driver's reply, the
		// record's strings) and tail's live heap is small, so the default
		// GOGC=100 spends a large share of ingest CPU on collections.
		defer debug.SetGCPercent(debug.SetGCPercent(400))
	}
	if e.getenv("GOMAXPROCS") == "" && src.endpoints() == 0 {
		// Redis alone is a pipeline of one reader, the fan-in and the
		// printer, each waiting on the one before: on one P they hand
		// over without waking another thread, and a flood leaves the
		// other cores to Redis and the publisher.
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	}
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if opts.Duration > 0 {
		ctx, cancel = context.WithTimeout(ctx, opts.Duration)
		defer cancel()
	}
	cfg, err := src.sessionConfig(e.getenv, false)
	if err != nil {
		return err
	}
	if cfg.Monitor {
		fmt.Fprintf(e.stderr, "fanscope: warning: %s\n", redisx.MonitorCostWarning)
	}
	s, err := session.Open(ctx, cfg)
	if err != nil {
		if opts.Duration > 0 && ctx.Err() != nil && parent.Err() == nil {
			return nil // --duration ended while connecting: a clean end, nothing seen
		}
		return err
	}
	p := newTailPrinter(e.stdout, opts, cancel)
	s.OnBatch(p.print)
	if err := s.Start(ctx); err != nil {
		s.Close()
		if opts.Duration > 0 && ctx.Err() != nil && parent.Err() == nil {
			return nil
		}
		return err
	}
	// An endpoint that is down at start ends tail with exit 3, naming it,
	// once no connection has made progress for tailConnectWait; watch and
	// serve keep retrying instead.
	down, wait := make(chan error, 1), tailConnectWait
	go func() {
		if _, err := s.AwaitConnected(ctx, wait); err != nil && ctx.Err() == nil {
			down <- err
		}
	}()
	var fatal error
	select {
	case <-ctx.Done():
	case fatal = <-s.Err():
	case fatal = <-down:
	}
	s.Close()
	if err := p.flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	if n := s.Dropped(); n > 0 {
		fmt.Fprintf(e.stderr, "fanscope: %d records were dropped because output could not keep up\n", n)
	}
	return fatal
}

// tailPrinter writes records through a large buffer, flushed after each
// batch, so a flood costs few write calls and a trickle shows at once.
type tailPrinter struct {
	w      *bufio.Writer
	opts   tailOptions
	buf    []byte
	shown  int
	done   bool
	stop   func()
	errOut error
}

func newTailPrinter(w io.Writer, opts tailOptions, stop func()) *tailPrinter {
	return &tailPrinter{w: bufio.NewWriterSize(w, 256<<10), opts: opts, stop: stop}
}

func (p *tailPrinter) print(batch []feed.Record) {
	if p.done || p.errOut != nil {
		return
	}
	for i := range batch {
		r := &batch[i]
		if p.opts.NoState && r.Kind == feed.KindState {
			continue
		}
		p.buf = p.buf[:0]
		if p.opts.JSON {
			p.buf = feed.AppendJSON(p.buf, r)
		} else {
			p.buf = feed.AppendText(p.buf, r)
		}
		if _, err := p.w.Write(p.buf); err != nil {
			p.errOut = err
			p.stop()
			return
		}
		if r.Kind == feed.KindMessage || r.Kind == feed.KindEvent || r.Kind == feed.KindPublish {
			p.shown++
			if p.opts.Count > 0 && p.shown >= p.opts.Count {
				p.done = true
				p.stop()
				break
			}
		}
	}
	if err := p.w.Flush(); err != nil {
		p.errOut = err
		p.stop()
	}
}

func (p *tailPrinter) flush() error {
	if p.errOut != nil {
		return p.errOut
	}
	return p.w.Flush()
}
