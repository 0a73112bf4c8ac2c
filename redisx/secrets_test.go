package redisx

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/internal/feedtest"
	"github.com/fanscope/fanscope/internal/redistest"
)

// awkwardPasswords break masking by substring: "e" occurs in "connect",
// "redis" in the scheme, "6379" and "127" in addresses, and '#', '/', '?',
// '@' and ':' change where net/url thinks the password ends.
var awkwardPasswords = []string{"e", "#", "p/a?s#s", "a@b:c", "redis", "6379", "127"}

// sameShape is pw with every letter and digit replaced by another of its
// kind (hex letters by hex letters, so a percent-escape stays valid or
// invalid): a URL holding either parses the same way, so every message
// made from it must be the same. "" when pw has no letter or digit.
func sameShape(pw string) string {
	b := []byte(pw)
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'f':
			b[i] = 'a' + (c-'a'+1)%6
		case c >= 'A' && c <= 'F':
			b[i] = 'A' + (c-'A'+1)%6
		case c >= 'g' && c <= 'z':
			b[i] = 'g' + (c-'g'+1)%20
		case c >= 'G' && c <= 'Z':
			b[i] = 'G' + (c-'G'+1)%20
		case c >= '0' && c <= '9':
			b[i] = '0' + (c-'0'+1)%10
		}
	}
	if string(b) == pw {
		return ""
	}
	return string(b)
}

// checkShown fails when msg, made with password pw, reveals it: ref is the
// same message made with sameShape(pw) ("" when there is none). A message
// that differs from ref depends on the password; a password of two or
// more characters in msg but not in ref is shown (in ref it occurs by
// itself: "127" in 127.0.0.1).
func checkShown(t *testing.T, what, pw, msg, ref string, hasRef bool) {
	t.Helper()
	if hasRef && msg != ref {
		t.Errorf("%s depends on the password %q:\n  %q\nwith a password of the same shape:\n  %q", what, pw, msg, ref)
	}
	if len(pw) > 1 && strings.Contains(msg, pw) && !(hasRef && strings.Contains(ref, pw)) {
		t.Errorf("%s shows the password %q: %q", what, pw, msg)
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// userURL is redis://[user]:pw@addr/0 with pw percent-encoded.
func userURL(user, pw, addr string) string {
	return "redis://" + url.UserPassword(user, pw).String() + "@" + addr + "/0"
}

// rawURL is the same with pw as typed, not encoded.
func rawURL(user, pw, addr string) string {
	return "redis://" + user + ":" + pw + "@" + addr + "/0"
}

// ambiguous reports whether pw typed raw into a URL makes it ambiguous
// (New refuses those).
func ambiguous(pw string) bool { return strings.ContainsAny(pw, "/?#") }

func TestAwkwardPasswordsNew(t *testing.T) {
	for _, pw := range awkwardPasswords {
		ref := sameShape(pw)
		forms := []struct {
			name string
			url  func(pw string) string
		}{
			{"encoded", func(pw string) string { return userURL("app", pw, "127.0.0.1:6379") }},
			{"encoded no user", func(pw string) string { return userURL("", pw, "127.0.0.1:6379") }},
			{"raw", func(pw string) string { return rawURL("app", pw, "127.0.0.1:6379") }},
			{"bare", func(pw string) string { return "app:" + pw + "@127.0.0.1:6379" }},
			{"cluster", func(pw string) string { return rawURL("", pw, "10.0.0.5:7000") }},
		}
		for _, f := range forms {
			t.Run(pw+"/"+f.name, func(t *testing.T) {
				shown := func(pw string) (string, error) {
					urls := []string{f.url(pw)}
					if f.name == "cluster" {
						urls = append(urls, rawURL("", pw, "10.0.0.6:7000"))
					}
					c, err := New(Options{URLs: urls})
					if err != nil {
						return err.Error(), err
					}
					defer c.Close()
					return c.Target(), nil
				}
				msg, err := shown(pw)
				refMsg := ""
				if ref != "" {
					refMsg, _ = shown(ref)
				}
				checkShown(t, "New's message or Target", pw, msg, refMsg, ref != "")
				raw := f.name == "raw" || f.name == "bare" || f.name == "cluster"
				switch {
				case raw && ambiguous(pw):
					if !errors.Is(err, ErrUsage) || !strings.Contains(msg, "ambiguous URL") || !strings.Contains(msg, "percent-encode") {
						t.Errorf("got %v, want an ErrUsage saying the URL is ambiguous and how to encode the password", err)
					}
				case err != nil:
					t.Errorf("New: %v", err)
				case !strings.Contains(msg, ":***@"):
					t.Errorf("Target %q does not show that there is a password", msg)
				}
			})
		}
	}
}

// TestParseErrorsQuoteNoPassword: net/url's reasons quote pieces of the URL
// (`invalid port ":pa" after host`, `invalid URL escape "%zz"`), and the
// old messages quoted the port or the path as parsed.
func TestParseErrorsQuoteNoPassword(t *testing.T) {
	for _, raw := range []string{
		"redis://app:secret%zz@127.0.0.1:6379",
		"redis://app:secret pass@127.0.0.1:6379",
		"redis://app:secret\x7fpass@127.0.0.1:6379",
		"redis://app:secret#frag@127.0.0.1:6379",
		"redis://app:secret/x@127.0.0.1:6379",
		"redis://app:12/secret@127.0.0.1:6379",
		"redis://app:secret?x@127.0.0.1:6379",
		"redis://app:secret@127.0.0.1:99999",
		"redis://app:secret@127.0.0.1:6379/notadb",
		"redis://app:secret@127.0.0.1:6379/0?token=hidden",
		"redis://app:secret@127.0.0.1:6379/0?db=x",
		"http://app:secret@127.0.0.1:6379",
		"app:secret/x@127.0.0.1:6379",
	} {
		_, err := New(Options{URLs: []string{raw}})
		if !errors.Is(err, ErrUsage) {
			t.Errorf("New(%q): got %v, want an ErrUsage", raw, err)
			continue
		}
		msg := err.Error()
		for _, secret := range []string{"secret", "hidden"} {
			if strings.Contains(msg, secret) {
				t.Errorf("New(%q): %q shows %q", raw, msg, secret)
			}
		}
		if !strings.HasPrefix(msg, "redis URL ") || !strings.Contains(msg, "***") {
			t.Errorf("New(%q): %q does not show the URL, masked", raw, msg)
		}
	}
}

// recordsText is what the state records show, each distinct line once
// (MONITOR retries an unreachable server as long as it runs).
func recordsText(recs []feed.Record) string {
	var lines []string
	for _, r := range recs {
		if r.Kind == feed.KindState {
			lines = append(lines, r.State+"|"+r.Target+"|"+r.Error)
		}
	}
	return strings.Join(slices.Compact(lines), "\n")
}

// failures are what fanscope shows when pw is wrong for s (or s is
// unreachable): Open's error, and the error and state records of a
// subscription and of MONITOR.
type failures struct{ open, sub, subRecs, monitor, monitorRecs string }

func failuresFor(t *testing.T, rawURL string) failures {
	t.Helper()
	var f failures
	o := fastOptions(rawURL)
	o.DialTimeout = 2 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := Open(ctx, o)
	f.open = errText(err)

	c, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer c.Close()
	sub, err := c.NewSubscriber(Subscription{Channels: []string{"news"}})
	if err != nil {
		t.Fatal(err)
	}
	col := newCollector()
	f.sub = errText(sub.FailFast().Run(ctx, col))
	f.subRecs = recordsText(col.snapshot())

	// MONITOR gives up on a refused password, and retries an
	// unreachable server until its context ends: then the error is the
	// one its records show.
	mctx, mcancel := context.WithTimeout(ctx, time.Second)
	defer mcancel()
	mcol := newCollector()
	f.monitor = errText(c.NewMonitor(MonitorFilter{}).Run(mctx, mcol))
	recs := mcol.states()
	if f.monitor == "" && len(recs) > 0 {
		f.monitor = recs[len(recs)-1].Error
	}
	f.monitorRecs = recordsText(recs)
	return f
}

func TestAwkwardPasswordsLive(t *testing.T) {
	wrong := redistest.Start(t, "requirepass right-password")
	down := redistest.FreePort(t)
	for _, pw := range awkwardPasswords {
		t.Run(pw, func(t *testing.T) {
			ref := sameShape(pw)

			// The right password, encoded and (where unambiguous) raw:
			// connected, and nothing shows it.
			s := redistest.Start(t, "requirepass "+strconv.Quote(pw))
			urls := []string{userURL("", pw, s.Addr()), userURL("default", pw, s.Addr())}
			if !ambiguous(pw) {
				urls = append(urls, rawURL("", pw, s.Addr()))
			}
			for _, u := range urls {
				c := open(t, fastOptions(u))
				want := "redis://:***@" + s.Addr() + "/0"
				if strings.Contains(u, "default") {
					want = "redis://default:***@" + s.Addr() + "/0"
				}
				if c.Target() != want {
					t.Errorf("Target() = %q, want %q", c.Target(), want)
				}
				col := newCollector()
				subscribe(t, c, Subscription{Channels: []string{"news"}}, col)
				publish(t, c, "news", "hello")
				col.waitFor(t, 10*time.Second, "the message", func(rs []feed.Record) bool { return countMessages(rs, "news") == 1 })
				for _, r := range col.states() {
					if r.Target != want || r.Error != "" {
						t.Errorf("state record target=%q error=%q, want target %q and no error", r.Target, r.Error, want)
					}
				}
			}

			// A wrong password and an unreachable server: the same
			// messages as with another password of the same shape, and
			// they read as they should.
			for _, tc := range []struct {
				name, addr, want string
				kind             error
			}{
				{"wrong", wrong.Addr(), "authentication failed: wrong user name or password", ErrAuth},
				{"unreachable", fmt.Sprintf("127.0.0.1:%d", down), "connection refused", ErrUnreachable},
			} {
				got := failuresFor(t, userURL("", pw, tc.addr))
				var refF failures
				if ref != "" {
					refF = failuresFor(t, userURL("", ref, tc.addr))
				}
				checkShown(t, tc.name+": Open's error", pw, got.open, refF.open, ref != "")
				checkShown(t, tc.name+": the subscription's error", pw, got.sub, refF.sub, ref != "")
				checkShown(t, tc.name+": the subscription's state records", pw, got.subRecs, refF.subRecs, ref != "")
				checkShown(t, tc.name+": MONITOR's error", pw, got.monitor, refF.monitor, ref != "")
				checkShown(t, tc.name+": MONITOR's state records", pw, got.monitorRecs, refF.monitorRecs, ref != "")
				for _, m := range []string{got.open, got.sub, got.monitor} {
					if !strings.Contains(m, tc.want) || !strings.Contains(m, "redis://:***@"+tc.addr) {
						t.Errorf("%s: %q does not name the target with the password masked and say %q", tc.name, m, tc.want)
					}
				}
				if !strings.HasPrefix(got.open, "connect redis://") {
					t.Errorf("%s: %q does not start with \"connect redis://\"", tc.name, got.open)
				}
			}
		})
	}
}

// hostileRedis is a server that answers every command with Redis's
// "unknown command" error, quoting the arguments it got (as Redis does
// for a renamed AUTH, and some proxies do), so an AUTH refusal quotes the
// password; or (echo) sends back every byte it gets.
func hostileRedis(t *testing.T, echo bool) string {
	t.Helper()
	return feedtest.ServeTCP(t, func(conn net.Conn) {
		if echo {
			_, _ = io.Copy(conn, conn)
			return
		}
		br := bufio.NewReader(conn)
		for {
			args, err := readCommand(br)
			if err != nil {
				return
			}
			reply := "-ERR unknown command '" + args[0] + "', with args beginning with:"
			for _, a := range args[1:] {
				reply += " '" + a + "'"
			}
			if _, err := conn.Write([]byte(reply + " \r\n")); err != nil {
				return
			}
		}
	})
}

// readCommand reads one RESP array of bulk strings.
func readCommand(br *bufio.Reader) ([]string, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return nil, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "*")))
	if err != nil || n < 1 || n > 64 {
		return nil, fmt.Errorf("not a command: %q", line)
	}
	args := make([]string, n)
	for i := range args {
		head, err := br.ReadString('\n')
		if err != nil {
			return nil, err
		}
		size, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(head, "$")))
		if err != nil || size < 0 || size > 1<<20 {
			return nil, fmt.Errorf("not a bulk string: %q", head)
		}
		b := make([]byte, size+2)
		if _, err := io.ReadFull(br, b); err != nil {
			return nil, err
		}
		args[i] = string(b[:size])
	}
	return args, nil
}

func TestHostileServerRepeatsPassword(t *testing.T) {
	const pw = "hunter2-secret"
	for _, echo := range []bool{false, true} {
		addr := hostileRedis(t, echo)
		for _, user := range []string{"", "app"} {
			f := failuresFor(t, userURL(user, pw, addr))
			for what, m := range map[string]string{"Open": f.open, "Subscribe": f.sub, "subscription records": f.subRecs,
				"MONITOR": f.monitor, "MONITOR records": f.monitorRecs} {
				if strings.Contains(m, pw) || strings.Contains(m, "hunter2") {
					t.Errorf("echo=%v user=%q: %s shows the password: %q", echo, user, what, m)
				}
			}
			if !echo && (!strings.Contains(f.open, "the server refused AUTH") || !strings.Contains(f.sub, "the server refused AUTH")) {
				t.Errorf("user=%q: Open %q, Subscribe %q: want both to say the server refused AUTH", user, f.open, f.sub)
			}
			if f.open == "" || f.sub == "" {
				t.Errorf("echo=%v user=%q: Open %q, Subscribe %q: want both to fail", echo, user, f.open, f.sub)
			}

			// The same through go-redis's Cluster client (its node clients
			// get the AUTH hook as it makes them).
			o := fastOptions(userURL(user, pw, addr))
			o.Cluster = true
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := Open(ctx, o)
			cancel()
			if err == nil || strings.Contains(err.Error(), "hunter2") {
				t.Errorf("echo=%v user=%q: Open of a cluster: got %v, want an error without the password", echo, user, err)
			}
			if !echo && (err == nil || !strings.Contains(err.Error(), "the server refused AUTH")) {
				t.Errorf("user=%q: Open of a cluster: got %v, want it to say the server refused AUTH", user, err)
			}
		}
	}
}

func TestServerTextQuotesNoArguments(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		kind     error
		want     string
		mustHide string
	}{
		{"unknown command quotes args", serverError("ERR unknown command 'FOO', with args beginning with: 'secret-arg' "),
			ErrUnreachable, "unknown command 'FOO'", "secret-arg"},
		{"AUTH refused by a proxy", &authError{serverError("ERR unknown command 'AUTH', with args beginning with: 'default' 'pw-1234' ")},
			ErrAuth, "the server refused AUTH", "pw-1234"},
		{"AUTH answered with junk", &authError{badReply("unexpected reply", []byte("pw-1234"))},
			ErrAuth, "the server refused AUTH", "pw-1234"},
		{"go-redis AUTH answered with junk", &authError{fmt.Errorf("redis: can't parse %.100q", "pw-1234")},
			ErrAuth, "the server refused AUTH", "pw-1234"},
		{"AUTH WRONGPASS keeps its reason", &authError{serverError("WRONGPASS invalid username-password pair or user is disabled.")},
			ErrAuth, "wrong user name or password", "invalid username-password"},
		{"NOPERM during AUTH", &authError{serverError("NOPERM pw-1234")}, ErrAuth, "the server refused AUTH", "pw-1234"},
		{"protocol error", badReply("unexpected reply", []byte("HTTP/1.1 400 pw-1234")),
			ErrUnreachable, "redis protocol error: unexpected reply", "pw-1234"},
		{"go-redis protocol error", fmt.Errorf("redis: can't parse %.100q", "pw-1234"),
			ErrUnreachable, "redis: can't parse", "pw-1234"},
		{"network error during AUTH", &authError{io.ErrUnexpectedEOF},
			ErrUnreachable, "the server closed the connection", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := wrapErr("connect redis://:***@10.0.0.5:6379/0", tt.err)
			if !errors.Is(err, tt.kind) {
				t.Errorf("got %v, want %v", err, tt.kind)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.want) || (tt.mustHide != "" && strings.Contains(msg, tt.mustHide)) {
				t.Errorf("got %q, want it to say %q and not %q", msg, tt.want, tt.mustHide)
			}
			// Nor does any error it unwraps to.
			for _, e := range err.(*Error).Unwrap() {
				if tt.mustHide != "" && strings.Contains(e.Error(), tt.mustHide) {
					t.Errorf("unwraps to %q, which shows %q", e, tt.mustHide)
				}
			}
		})
	}
}

// fuzzForms are URL shapes a password goes into; %s is the password as
// typed.
var fuzzForms = []string{
	"redis://u:%s@127.0.0.1:6379/0",
	":%s@localhost",
	"rediss://:%s@10.0.0.5:7000?db=2",
	"unix://u:%s@/run/redis.sock",
	"redis://u:%s@[::1]:6380/1",
}

// FuzzNewShowsNoPassword gives New redis URLs with any password typed into
// them: no error and no Target holds a password of 4 or more characters,
// and every message is the one a password of the same shape gives.
func FuzzNewShowsNoPassword(f *testing.F) {
	for _, pw := range append(awkwardPasswords, "%zz", "%41bc", ":x", "a b", "\x00", "p@ss@word", "redis://x", "6379/0@h",
		"secret?db=1", "x#y@z", "]:[", "%", "@", "::::", "pa%2Fss", "a\nb",
		"#seCret", ":***") {
		for i := range fuzzForms {
			f.Add(pw, uint8(i))
		}
	}
	f.Fuzz(func(t *testing.T, pw string, form uint8) {
		shape := fuzzForms[int(form)%len(fuzzForms)]
		shown := func(pw string) string {
			urls := []string{fmt.Sprintf(shape, pw)}
			if form >= uint8(len(fuzzForms)) {
				// Several URLs: a Cluster's seeds.
				urls = append(urls, fmt.Sprintf("redis://u:%s@127.0.0.2:6379", pw))
			}
			c, err := New(Options{URLs: urls})
			if err != nil {
				return err.Error()
			}
			defer c.Close()
			return c.Target()
		}
		msg := shown(pw)
		ref := sameShape(pw)
		refMsg := ""
		if ref != "" {
			refMsg = shown(ref)
			if msg != refMsg {
				t.Errorf("the message depends on the password %q:\n  %q\nwith %q:\n  %q", pw, msg, ref, refMsg)
			}
		}
		// A password of 4 or more characters does not occur by chance,
		// unless a message made with another password holds it too (a
		// password "6379" of a URL on port 6379, or ":***").
		natural := func() bool {
			return strings.Contains(refMsg, pw) || strings.Contains(shown(strings.Repeat("x", len(pw))), pw)
		}
		if len(pw) >= 4 && strings.Contains(msg, pw) && !natural() {
			t.Errorf("the message shows the password %q: %q", pw, msg)
		}
	})
}
