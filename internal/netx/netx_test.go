package netx

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/internal/feedtest"
)

func TestSplitEndpoint(t *testing.T) {
	tests := []struct {
		in      string
		schemes []string
		name    string
		err     string
	}{
		{"ws://h:9/x", []string{"ws", "wss"}, "h:9", ""},
		{"app=wss://h/x?token=a=b", []string{"ws", "wss"}, "app", ""},
		{"https://h/x", []string{"http", "https"}, "h:443", ""},
		{"", []string{"http", "https"}, "", "empty value"},
		{"=http://h/?token=zz", []string{"http", "https"}, "", "empty NAME"},
		{"app=h/x", []string{"ws", "wss", "http", "https"}, "", "want ws://, wss://, http:// or https://"},
		{"ftp://h/?token=zz", []string{"http", "https"}, "", `scheme "ftp" is not http or https`},
		{"ftp://h/?token=zz", []string{"ws", "wss", "http", "https"}, "", `scheme "ftp" is not one of ws, wss, http or https`},
		{"http://u:zz@h:port/", []string{"http", "https"}, "", "invalid URL"},
		{"http://u:zz/x@h/", []string{"http", "https"}, "", "ambiguous"},
		{"http:///x?key=zz", []string{"http", "https"}, "", "no host"},
	}
	for _, tc := range tests {
		usage := errors.New("usage")
		name, _, err := SplitEndpoint(tc.in, "x endpoint", usage, tc.schemes...)
		if tc.err != "" {
			if !errors.Is(err, usage) || !strings.Contains(err.Error(), tc.err) || strings.Contains(err.Error(), "zz") {
				t.Errorf("SplitEndpoint(%q) error = %v, want one with %q and no secret", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || name != tc.name {
			t.Errorf("SplitEndpoint(%q) = %q, %v; want %q", tc.in, name, err, tc.name)
		}
	}
}

func TestCheckHeader(t *testing.T) {
	into := http.Header{"Accept": {"text/event-stream"}}
	h, err := CheckHeader(http.Header{"accept": {"*/*"}, "Host": {"a", "b"}, "X-Team": {"t"}}, into)
	if err != nil {
		t.Fatal(err)
	}
	if h.Host != "b" || h.Header.Get("Accept") != "*/*" || h.Header.Get("X-Team") != "t" || h.Header.Get("Host") != "" || len(h.Names) != 2 {
		t.Errorf("CheckHeader = %+v, want Host b, Accept replaced, X-Team, two names", h)
	}
	for _, bad := range []http.Header{{"Bad Name": {"v"}}, {"X": {"a\nb"}}, {"": {"v"}}} {
		if _, err := CheckHeader(bad, nil); err == nil {
			t.Errorf("CheckHeader(%v) = nil, want an error", bad)
		}
	}
}

func TestBackoff(t *testing.T) {
	top := func(n int64) int64 { return n - 1 }
	bottom := func(int64) int64 { return 0 }
	tests := []struct {
		base     time.Duration
		failures int
		jitter   func(int64) int64
		want     time.Duration
	}{
		{time.Second, 0, top, time.Second},
		{time.Second, 1, top, 2 * time.Second},
		{time.Second, 1, bottom, time.Second},
		{time.Second, 3, top, 8 * time.Second},
		{time.Second, 10, top, 30 * time.Second},
		{time.Second, 10, bottom, 15 * time.Second},
		{0, 0, top, time.Second},           // never below the floor
		{0, 1, bottom, time.Second},        // nor after a failure
		{time.Minute, 3, top, time.Minute}, // a base above the cap wins
		{time.Second, 1 << 20, top, 30 * time.Second},
	}
	for _, tc := range tests {
		if got := Backoff(tc.base, 30*time.Second, time.Second, tc.failures, tc.jitter); got != tc.want {
			t.Errorf("Backoff(%s, 30s, 1s, %d) = %s, want %s", tc.base, tc.failures, got, tc.want)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0}, {"7", 7 * time.Second}, {"5", 5 * time.Second}, {" 0 ", 0}, {"-1", 0}, {"-3", 0}, {"soon", 0},
		{"99999999999999", MaxRetryAfter},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{now.Add(48 * time.Hour).Format(http.TimeFormat), MaxRetryAfter},
	}
	for _, tc := range tests {
		if got := ParseRetryAfter(tc.in, now); got != tc.want {
			t.Errorf("ParseRetryAfter(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestRefused(t *testing.T) {
	resp := func(code int, retryAfter, body string) *http.Response {
		r := &http.Response{StatusCode: code, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(body)), ContentLength: -1}
		if retryAfter != "" {
			r.Header.Set("Retry-After", retryAfter)
		}
		return r
	}
	now := time.Now()
	tests := []struct {
		resp  *http.Response
		want  string
		retry bool
		after time.Duration
	}{
		{resp(401, "", "who are you\nmore"), `401 Unauthorized: "who are you …" (check -H/--bearer-env)`, false, 0},
		{resp(403, "", ""), "403 Forbidden (the credentials sent lack access; check -H/--bearer-env)", false, 0},
		{resp(404, "", ""), "404 Not Found (check the path)", false, 0},
		{resp(429, "2", "slow down"), `429 Too Many Requests: "slow down"`, true, 2 * time.Second},
		{resp(503, "", ""), "503 Service Unavailable", true, 0},
		{resp(408, "", ""), "408 Request Timeout", true, 0},
		{resp(599, "", ""), "599", true, 0},
		{resp(302, "", ""), "302 Found", false, 0},
	}
	for _, tc := range tests {
		r := Refused(tc.resp, BodySnippet(tc.resp), "check the path", now)
		if r.Reason != tc.want || r.Retry != tc.retry || r.RetryAfter != tc.after {
			t.Errorf("Refused(%d) = %+v, want %q retry %v after %s", tc.resp.StatusCode, r, tc.want, tc.retry, tc.after)
		}
	}
}

func TestHealth(t *testing.T) {
	h := NewHealth(feed.Status{Source: feed.SourcePoll, Name: "app", URL: "http://h/?token=***", Conn: 2})
	sink := feedtest.NewSink()
	s, err := h.Start(sink)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Start(sink); err == nil || !strings.Contains(err.Error(), "poll:app: already running") {
		t.Errorf("second Start = %v, want already running", err)
	}
	if h.EverConnected() {
		t.Error("EverConnected before any connection")
	}
	h.Emit(s, feed.StateConnecting, 0, "", 1)
	h.Emit(s, feed.StateReconnecting, 503, "503 Service Unavailable (retry in 1s)", 2)
	if st := h.Status(); st.State != feed.StateReconnecting || st.HTTPStatus != 503 || st.Error == "" || st.Attempt != 2 {
		t.Errorf("Status after reconnecting = %+v", st)
	}
	h.Emit(s, feed.StateConnected, 200, "", 1)
	select {
	case <-h.Connected():
	default:
		t.Error("Connected() not closed after a connected state")
	}
	st := h.Status()
	if st.State != feed.StateConnected || st.Error != "" || st.ConnectedAt.IsZero() || st.HTTPStatus != 200 {
		t.Errorf("Status after connected = %+v", st)
	}
	h.Stopped()
	if st := h.Status(); st.State != feed.StateDisconnected || !st.ConnectedAt.IsZero() {
		t.Errorf("Status after Stopped = %+v", st)
	}
	recs := sink.All()
	if len(recs) != 3 {
		t.Fatalf("%d records, want 3 (Stopped sends none):\n%s", len(recs), feedtest.Dump(recs))
	}
	r := recs[1]
	if r.Kind != feed.KindState || r.Source != feed.SourcePoll || r.Endpoint != "app" || r.Conn != 2 || r.Status != 503 || r.Attempt != 2 || r.State != feed.StateReconnecting {
		t.Errorf("state record = %+v", r)
	}
}

func TestKindError(t *testing.T) {
	kind := errors.New("kind")
	cause := errors.New("cause")
	err := Errorf(kind, "doing x: %w", cause)
	if !errors.Is(err, kind) || !errors.Is(err, cause) || err.Error() != "doing x: cause" {
		t.Errorf("Errorf = %v, want a message without the kind that matches both", err)
	}
}

func TestRedirects(t *testing.T) {
	var followed []string
	p := &Redirects{
		Schemes:     []string{"http", "https"},
		UserHeaders: []string{"X-Team", "Accept"},
		Defaults:    http.Header{"Accept": {"text/event-stream"}},
		Followed:    func(_ *http.Request, code int, shown string) { followed = append(followed, shown) },
	}
	first, _ := http.NewRequest(http.MethodGet, "http://a:1/x", nil)
	next := func(to string) *http.Request {
		r, _ := http.NewRequest(http.MethodGet, to, nil)
		r.Header = http.Header{"Authorization": {"Bearer b"}, "Cookie": {"c"}, "X-Team": {"t"}, "Accept": {"*/*"}, "Referer": {"http://a:1/x?token=t"}}
		r.Response = &http.Response{StatusCode: http.StatusFound}
		return r
	}
	same := next("http://a:1/y")
	if err := p.Check(same, []*http.Request{first}); err != nil || same.Header.Get("Authorization") == "" || same.Header.Get("X-Team") == "" || same.Header.Get("Referer") != "" {
		t.Errorf("same origin: err %v headers %v, want credentials kept and no Referer", err, same.Header)
	}
	other := next("http://a:2/y?token=zz")
	if err := p.Check(other, []*http.Request{first}); err != nil || len(other.Header) != 1 || other.Header.Get("Accept") != "text/event-stream" {
		t.Errorf("other origin: err %v headers %v, want only the default Accept", err, other.Header)
	}
	if len(followed) != 2 || followed[1] != "http://a:2/y?token=***" {
		t.Errorf("followed %q, want two, the second masked", followed)
	}
	err := p.Check(next("ftp://a:1/y"), []*http.Request{first})
	var re *RedirectError
	if !errors.As(err, &re) || re.Status != http.StatusFound || !strings.Contains(err.Error(), `scheme "ftp" is not http or https`) {
		t.Errorf("ftp: %v, want a RedirectError naming the scheme", err)
	}
	if err := p.Check(next("http://a:1/z"), make([]*http.Request, MaxRedirects)); !errors.As(err, &re) || !strings.Contains(err.Error(), "stopped after 10 redirects") {
		t.Errorf("eleventh redirect: %v, want refused", err)
	}
}
