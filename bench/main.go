// Command bench measures fanscope against baselines run side by side, in one
// run, on loopback: ingest rate against redis-cli, redis-path latency against
// a minimal go-redis loop, SSE fan-out scale against a minimal net/http
// client, the relay against a Node.js relay (http + better-sse), TUI cost against redis-cli in the same terminal, and the ssex
// parser against r3labs/sse/v2 and tmaxmax/go-sse. It starts its own
// redis-server and relay and prints one table of ratios with PASS/FAIL per
// target. The hostile section points the binary at misbehaving servers and
// reads its RSS; the soak section (only on request) runs `fanscope serve`
// for minutes and checks that RSS and goroutines stay flat. Run it with
// scripts/bench; see docs/BENCHMARKS.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// sections in the order they run; names are the values of --only. An
// optional section runs only when asked for (--only NAME, or its own flag).
var sections = []struct {
	name     string
	run      func(ctx context.Context, e *env) ([]row, error)
	optional bool
}{
	{"parser", runParser, false},
	{"ingest", runIngest, false},
	{"overhead", runOverhead, false},
	{"fanout", runFanout, false},
	{"relay", runRelay, false},
	{"tui", runTUI, false},
	{"hostile", runHostile, false},
	{"soak", runSoak, true},
}

func main() {
	// A re-executed copy of this binary serves as the minimal SSE client
	// baseline of the fan-out section.
	if len(os.Args) > 1 && os.Args[1] == childSSEArg {
		os.Exit(childSSE(os.Args[2:]))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		only  = fs.String("only", "", "run one section: "+sectionNames())
		quick = fs.Bool("quick", false, "smaller sizes, for a smoke run (under 2 minutes)")
		bin   = fs.String("fanscope", "", "the fanscope binary to measure (scripts/bench builds it)")
		keep  = fs.Bool("keep", false, "keep the work directory (logs of every child process)")
		node  = fs.String("node-dir", "", "folder with better-sse and ioredis installed and relay.mjs (scripts/bench makes it)")
		soak  = fs.Bool("soak", false, "also run the soak section (fanscope serve for --soak-duration)")
		soakD = fs.Duration("soak-duration", 10*time.Minute, "how long the soak section runs (at least 2m: the baseline is taken after the first minute)")
	)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: scripts/bench [--quick] [--only SECTION] [--soak] [--soak-duration D]\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "bench: unexpected arguments: %s\n", strings.Join(fs.Args(), " "))
		return 2
	}
	if *only != "" && !validSection(*only) {
		fmt.Fprintf(stderr, "bench: unknown section %q (want one of %s)\n", *only, sectionNames())
		return 2
	}
	if *soakD < 2*time.Minute {
		fmt.Fprintf(stderr, "bench: --soak-duration %s: want at least 2m (the baseline is the value after the first minute)\n", *soakD)
		return 2
	}
	e, err := newEnv(*bin, *node, *quick, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 2
	}
	e.soak = *soakD
	defer func() {
		if *keep {
			fmt.Fprintf(stderr, "bench: logs kept in %s\n", e.dir)
			return
		}
		os.RemoveAll(e.dir)
	}()
	defer e.close()

	start := time.Now()
	loadBefore := loadAverage()
	var rows []row
	for _, s := range sections {
		if !selected(s.name, s.optional, *only, *soak) {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		e.logf("== %s", s.name)
		t0 := time.Now()
		got, err := s.run(ctx, e)
		rows = append(rows, got...)
		if err != nil {
			if errors.Is(err, context.Canceled) && ctx.Err() != nil {
				break
			}
			rows = append(rows, row{Section: s.name, Metric: "error: " + err.Error(), Result: fail})
		}
		e.logf("   %s took %s", s.name, time.Since(t0).Round(time.Second))
	}
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "bench: interrupted")
		return 130
	}
	fmt.Fprintln(stdout)
	fmt.Fprintf(stdout, "fanscope bench (%s mode), %s, took %s, load average %s before, %s after\n\n",
		e.mode(), e.machine(), time.Since(start).Round(time.Second), loadBefore, loadAverage())
	writeTable(stdout, rows)
	for _, r := range rows {
		if r.Result == fail {
			return 1
		}
	}
	return 0
}

// selected says whether a section runs: the one named by --only, else
// every section that is not optional, and the soak when --soak is given.
func selected(name string, optional bool, only string, soak bool) bool {
	if only != "" {
		return name == only
	}
	return !optional || (name == "soak" && soak)
}

func sectionNames() string {
	var names []string
	for _, s := range sections {
		names = append(names, s.name)
	}
	return strings.Join(names, ", ")
}

func validSection(name string) bool {
	for _, s := range sections {
		if s.name == name {
			return true
		}
	}
	return false
}

// loadAverage is the 1-minute load average, for judging how noisy a run was.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return "unknown"
}

// findFanscope resolves the binary to measure: the flag, else $FANSCOPE_BIN,
// else fanscope on PATH.
func findFanscope(flagValue string) (string, error) {
	p := flagValue
	if p == "" {
		p = os.Getenv("FANSCOPE_BIN")
	}
	if p == "" {
		return "", errors.New("no fanscope binary: run scripts/bench, or pass --fanscope PATH")
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("resolve fanscope binary: %w", err)
	}
	if _, err := os.Stat(abs); err != nil {
		return "", fmt.Errorf("fanscope binary: %w", err)
	}
	return abs, nil
}
