package browserx

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fanscope/fanscope/feed"
)

// appPage is a small app page: it opens an EventSource to /events and shows
// a notification with the event's data, after showAfter.
const appPage = `<!doctype html>
<html><head><meta charset=utf-8><title>stories</title></head>
<body><h1>Stories</h1>
<script>
const es = new EventSource("/events");
es.onmessage = (e) => setTimeout(() => {
  const n = document.createElement("div");
  n.dataset.testid = "new-story-notification";
  n.textContent = "New story: " + e.data;
  document.body.appendChild(n);
}, %d);
</script></body></html>`

const notification = `[data-testid="new-story-notification"]`

// app serves appPage and its stream, counting page loads.
type app struct {
	stream *stream
	loads  atomic.Int32
}

func newApp(t *testing.T, showAfter time.Duration) (*app, string) {
	a := &app{stream: newStream()}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		a.loads.Add(1)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, appPage, showAfter.Milliseconds())
	})
	mux.Handle("/events", a.stream)
	srv := newServer(t, false, mux)
	return a, srv.URL + "/"
}

// runPage runs p until the test ends and waits for its first load.
func runPage(t *testing.T, p *Page, c *collector) (cancel func(), done chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done = make(chan error, 1)
	go func() { done <- p.Run(ctx, c) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Errorf("page Run did not return within 15s of cancel")
		}
	})
	return cancel, done
}

func TestPageCheck(t *testing.T) {
	b := newBrowser(t)
	cases := []struct {
		name     string
		show     time.Duration
		min, max time.Duration
	}{
		// Bounds are generous: the check is that the record's time is the
		// element's appearance, not the event's arrival.
		{"fast", 0, 0, 1500 * time.Millisecond},
		{"slow", 2500 * time.Millisecond, 2450 * time.Millisecond, 5 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, pageURL := newApp(t, tc.show)
			p, err := NewPage(b, PageConfig{Name: tc.name, URL: pageURL, Expect: notification})
			if err != nil {
				t.Fatal(err)
			}
			if got, want := p.Path(), "page:"+tc.name; got != want {
				t.Errorf("Path() = %q, want %q", got, want)
			}
			c := &collector{}
			runPage(t, p, c)
			select {
			case <-p.Connected():
			case <-time.After(20 * time.Second):
				t.Fatalf("page not ready within 20s; records: %s", describe(c.all()))
			}
			for i := 1; i <= 2; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				err := p.Reset(ctx)
				cancel()
				if err != nil {
					t.Fatalf("probe %d: Reset = %v", i, err)
				}
				// The first probe finds nothing visible: no reload. The
				// second finds the first notification: one reload.
				if got := a.loads.Load(); int(got) != i {
					t.Errorf("probe %d: page loads %d, want %d", i, got, i)
				}
				token := fmt.Sprintf("tok-%s-%d", tc.name, i)
				trigger := time.Now()
				a.stream.events <- "data: " + token + "\n\n"
				r := c.waitFor(t, "showing "+token, 10*time.Second, func(r feed.Record) bool {
					return r.Kind == feed.KindEvent && strings.Contains(r.Data, token)
				})
				if r.Source != feed.SourcePage || r.Path() != "page:"+tc.name || r.Data != "New story: "+token {
					t.Errorf("probe %d: record %s data %q, want page:%s with the notification's text", i, r.Path(), r.Data, tc.name)
				}
				d := r.TS.Sub(trigger)
				t.Logf("probe %d: visible %s after the publish", i, d.Round(time.Millisecond))
				if d < tc.min || d > tc.max {
					t.Errorf("probe %d: visible %s after the publish, want %s..%s", i, d, tc.min, tc.max)
				}
			}
			// After the reload only the second notification was shown.
			for _, r := range c.all() {
				if r.Kind == feed.KindEvent && strings.Contains(r.Data, "tok-"+tc.name+"-1") && strings.Contains(r.Data, "-2") {
					t.Errorf("record holds both probes' notifications: %q", r.Data)
				}
			}
			if st := p.Status(); st.State != feed.StateConnected || st.Events != 2 {
				t.Errorf("status %q events %d, want connected 2", st.State, st.Events)
			}
		})
	}
}

func TestPageFailures(t *testing.T) {
	b := newBrowser(t)
	noES := newServer(t, false, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, "<!doctype html><title>static</title><p>no stream here")
	}))
	_, appURL := newApp(t, 0)
	cases := []struct {
		name, url, expect, want string
	}{
		{"no EventSource", noES.URL + "/", notification, "opened no EventSource within 2s"},
		{"not found", appURL + "missing", notification, "HTTP 404 Not Found"},
		{"bad selector", appURL, "div[[", "not a valid CSS selector"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := NewPage(b, PageConfig{Name: "bad", URL: tc.url, Expect: tc.expect, ReadyTimeout: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			c := &collector{}
			_, done := runPage(t, p, c)
			select {
			case err := <-done:
				done <- err // for the cleanup
				if !errors.Is(err, ErrFatal) || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("Run = %v, want an error with %q", err, tc.want)
				}
				// A probe's Reset then says why instead of waiting.
				if rerr := p.Reset(context.Background()); rerr == nil || rerr.Error() != err.Error() {
					t.Errorf("Reset after Run failed = %v, want Run's error", rerr)
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("Run did not fail within 20s; records: %s", describe(c.all()))
			}
		})
	}
	if _, err := NewPage(b, PageConfig{URL: "http://h/"}); !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), "--expect") {
		t.Errorf("NewPage without --expect = %v, want a usage error naming --expect", err)
	}
	if _, err := NewPage(b, PageConfig{URL: "h/", Expect: "p"}); !errors.Is(err, ErrUsage) {
		t.Errorf("NewPage with a bad URL = %v, want a usage error", err)
	}
}
