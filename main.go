// Command fanscope watches a Redis Pub/Sub → SSE fan-out pipeline from both
// ends at once. See README.md.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/fanscope/fanscope/cli"
)

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		cancel() // the first signal ends the run cleanly (reports are written)
		sig := <-sigs
		// A second one ends the process at once, whatever it was waiting
		// on (a stdout nobody reads, a server that does not answer).
		fmt.Fprintf(os.Stderr, "fanscope: %v again: exiting now\n", sig)
		os.Exit(130)
	}()
	code := cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	cancel()
	os.Exit(code)
}
