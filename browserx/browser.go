package browserx

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/chromedp/chromedp"
)

// ErrNoChromium: no Chromium was found to run browser paths.
var ErrNoChromium = errors.New("no chromium found")

// chromiumNames are the names looked up on PATH, in order, when
// $FANSCOPE_CHROMIUM is unset.
var chromiumNames = []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome", "headless_shell"}

// FindChromium returns the Chromium to run: $FANSCOPE_CHROMIUM when set,
// else the first of the usual names found on PATH.
func FindChromium() (string, error) {
	if p := os.Getenv("FANSCOPE_CHROMIUM"); p != "" {
		found, err := exec.LookPath(p)
		if err != nil {
			return "", fmt.Errorf("%w: $FANSCOPE_CHROMIUM=%s: %v (point it at a Chromium executable, or unset it to search PATH)", ErrNoChromium, p, err)
		}
		return found, nil
	}
	for _, name := range chromiumNames {
		if found, err := exec.LookPath(name); err == nil {
			return found, nil
		}
	}
	return "", fmt.Errorf("%w: none of %s on PATH (install the Debian package chromium: apt-get install chromium, or set $FANSCOPE_CHROMIUM)", ErrNoChromium, strings.Join(chromiumNames, ", "))
}

// Browser is the one headless Chromium process that every browser path of
// a run shares; each path is a tab in it. It starts on first use and ends
// with Close. Its methods are safe for concurrent use.
type Browser struct {
	once     sync.Once
	startErr error
	exec     string

	ctx     context.Context // the chromedp context that owns the browser
	cancel  context.CancelFunc
	pid     int
	clock   *clock
	started time.Time

	mu      sync.Mutex
	closed  bool
	hosts   map[string]int // host:port -> open HTTP/1.1 EventSource connections of our paths
	rss     int64
	rssAt   time.Time
	version string
}

// New returns a Browser that starts Chromium when a path first needs it.
func New() *Browser { return &Browser{hosts: map[string]int{}} }

// Start starts Chromium once; later calls return the first result. ctx
// bounds only the start: the browser lives until Close.
func (b *Browser) Start(ctx context.Context) error {
	b.once.Do(func() { b.startErr = b.start(ctx) })
	return b.startErr
}

func (b *Browser) start(ctx context.Context) error {
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return errors.New("start chromium: the browser was closed")
	}
	path, err := FindChromium()
	if err != nil {
		return err
	}
	b.exec = path
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		// Tabs other than the front one must not be throttled: every path
		// is a tab and all of them time deliveries.
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		// The blank page fanscope serves through the Fetch domain has no
		// address, so Local Network Access would block its EventSource to
		// a loopback or private host; a user's page comes from the app.
		chromedp.Flag("disable-features", "LocalNetworkAccessChecks,Translate"),
	}
	if os.Getuid() == 0 {
		// As root Chromium refuses to start with its sandbox, as in
		// containers.
		opts = append(opts, chromedp.NoSandbox)
	}
	// chromedp makes a fresh temporary --user-data-dir and removes it when
	// the browser ends.
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, bcancel := chromedp.NewContext(actx)
	cancel := func() { bcancel(); acancel() }

	done := make(chan error, 1)
	go func() { done <- chromedp.Do(bctx) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		cancel()
		return fmt.Errorf("start chromium %s: %w", path, ctx.Err())
	}
	if err != nil {
		cancel()
		return fmt.Errorf("start chromium %s: %w (check that it runs: %s --headless --version)", path, err, path)
	}
	c := chromedp.FromContext(bctx)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		cancel()
		return errors.New("start chromium: the browser was closed")
	}
	b.ctx, b.cancel = bctx, cancel
	if p := c.Browser.Process(); p != nil {
		b.pid = p.Pid
	}
	b.clock = newClock()
	b.started = time.Now()
	return nil
}

// Close ends Chromium and removes its profile directory, once it exited.
// Call it after the paths' Run returned (their tabs close with their
// contexts). It is safe to call more than once and before Start.
func (b *Browser) Close() error {
	b.mu.Lock()
	b.closed = true
	cancel := b.cancel
	b.cancel = nil
	b.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	return nil
}

// Exec is the path of the Chromium executable in use ("" before Start).
func (b *Browser) Exec() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.exec
}

// PID is the browser process's id (0 before Start).
func (b *Browser) PID() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.pid
}

// RSS is the resident memory of the browser's whole process tree in bytes
// (0 before Start or where /proc is missing). It is read at most once a
// second, so callers may ask on every frame.
func (b *Browser) RSS() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.pid == 0 || b.cancel == nil {
		return 0
	}
	if now := time.Now(); now.Sub(b.rssAt) >= time.Second {
		b.rss, b.rssAt = treeRSS(b.pid), now
	}
	return b.rss
}

// tabContext makes a new tab's chromedp context; its first Run opens it.
func (b *Browser) tabContext(opts ...chromedp.ContextOption) (context.Context, context.CancelFunc, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || b.ctx == nil {
		return nil, nil, errors.New("open tab: the browser is closed")
	}
	ctx, cancel := chromedp.NewContext(b.ctx, opts...)
	return ctx, cancel, nil
}

// connOpened and connClosed count our EventSources that hold an HTTP/1.1
// connection to hostPort, to name the connection limit when one waits.
func (b *Browser) connOpened(hostPort string) {
	b.mu.Lock()
	b.hosts[hostPort]++
	b.mu.Unlock()
}

func (b *Browser) connClosed(hostPort string) {
	b.mu.Lock()
	if b.hosts[hostPort] > 0 {
		b.hosts[hostPort]--
	}
	b.mu.Unlock()
}

func (b *Browser) openConns(hostPort string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.hosts[hostPort]
}
