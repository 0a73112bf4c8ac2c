package relay

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// BenchmarkFanout publishes b.N events of 200 bytes to N connected
// clients (loopback, each read by the ssex parser) and waits until every
// client has every event. ns/op is the cost of one event delivered to
// all N clients; deliveries/s is events × clients per second. The client
// queue is made large: this measures throughput, not the drop policy (a
// tight loop of Publish outruns any reader).
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{1, 10, 100, 1000} {
		b.Run(fmt.Sprintf("clients=%d", n), func(b *testing.B) {
			r := startRelay(b, Config{ClientQueue: 1 << 14, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			conns := make([]*sseConn, n)
			for i := range conns {
				conns[i] = mustDial(b, r.addr, DefaultPath, nil)
			}
			waitConnections(b, r, n)
			payload := strings.Repeat("p", 200)
			var wg sync.WaitGroup
			errs := make(chan error, n)
			b.ResetTimer()
			start := time.Now()
			for _, c := range conns {
				wg.Go(func() {
					for i := 0; i < b.N; i++ {
						if _, err := c.nextEvent(60 * time.Second); err != nil {
							errs <- err
							return
						}
					}
				})
			}
			for i := 0; i < b.N; i++ {
				r.Publish("story:published", payload)
			}
			wg.Wait()
			b.StopTimer()
			close(errs)
			for err := range errs {
				b.Fatal(err)
			}
			if st := r.Stats(); st.SlowClientsDropped > 0 {
				b.Fatalf("%d clients dropped as too slow", st.SlowClientsDropped)
			}
			b.ReportMetric(float64(b.N)*float64(n)/time.Since(start).Seconds(), "deliveries/s")
		})
	}
}
