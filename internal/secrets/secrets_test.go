package secrets

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestURL(t *testing.T) {
	tests := []struct {
		name, raw, want string
	}{
		{"plain", "http://host:8080/events", "http://host:8080/events"},
		{"user only", "https://alice@host/x", "https://alice@host/x"},
		{"password", "https://alice:s3cret@host/x", "https://alice:***@host/x"},
		{"empty password", "https://alice:@host/x", "https://alice:***@host/x"},
		{"escaped password", "http://u:p%40ss@host/", "http://u:***@host/"},
		{"password with @", "http://u:p@ss@host/", "http://u:***@host/"},
		{"password with #", "http://u:pa#ss@host:80/x", "http://u:***@host:80/x"},
		{"password with /", "http://u:pa/ss@host/x", "http://u:***@host/x"},
		{"password with ?", "http://u:pa?ss@host/x", "http://u:***@host/x"},
		{"digits then /", "http://u:1234/ab@host/x", "http://u:***@host/x"},
		{"token", "http://h/e?token=abc&x=1", "http://h/e?token=***&x=1"},
		{"token upper", "http://h/e?TOKEN=abc", "http://h/e?TOKEN=***"},
		{"token escaped key", "http://h/e?%74oken=abc", "http://h/e?%74oken=***"},
		{"every listed key", "http://h/?access_token=1&auth=2&key=3&apikey=4&password=5&secret=6&sig=7&signature=8&page=9",
			"http://h/?access_token=***&auth=***&key=***&apikey=***&password=***&secret=***&sig=***&signature=***&page=9"},
		{"named like a secret", "http://h/?refresh_token=1&client_secret=2&api_key=3", "http://h/?refresh_token=***&client_secret=***&api_key=***"},
		{"empty value", "http://h/?token=&a=b", "http://h/?token=&a=b"},
		{"key without value", "http://h/?token&a=b", "http://h/?token&a=b"},
		{"fragment pairs", "http://h/cb#access_token=abc&state=1", "http://h/cb#access_token=***&state=1"},
		{"hash in fragment value", "http://h/cb#token=a#b", "http://h/cb#token=***"},
		{"query ends at #", "http://h/?token=a#b", "http://h/?token=***#b"},
		{"both", "https://u:pw@h:1/p?sig=zz&v=1", "https://u:***@h:1/p?sig=***&v=1"},
		{"at in path, no userinfo", "http://h/@alice/feed", "http://h/@alice/feed"},
		{"at in query with port", "http://h:8080/a?mail=x@y", "http://h:***@y"},
		{"token holding @ and :", "http://h/p?token=a:b@c", "http://h/p?token=***"},
		{"token holding @, port", "http://h:1/p?token=a@c&o=1", "http://h:***&o=1"},
		{"no scheme", "h:80/p?token=x", "h:80/p?token=***"},
		{"does not parse", "http://u:pa ss@[::1/x?token=t", "http://u:***@[::1/x?token=***"},
		{"redis url", "redis://default:pw@127.0.0.1:6379/0", "redis://default:***@127.0.0.1:6379/0"},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := URL(tt.raw); got != tt.want {
				t.Errorf("URL(%q) = %q, want %q", tt.raw, got, tt.want)
			}
		})
	}
}

func TestAmbiguous(t *testing.T) {
	tests := []struct {
		raw  string
		want bool
	}{
		{"http://u:pw@host/x", false},
		{"http://host:8080/x", false},
		{"http://host/@alice", false},
		{"http://u:12/x@host", true},
		{"http://u:p#x@host", true},
		{"http://host:8080/a?mail=x@y", true},
		{"http://host:8080/a?mail=x%40y", false},
		{"http://u:p%2Fx@host/y", false},
	}
	for _, tt := range tests {
		if got := Ambiguous(tt.raw); got != tt.want {
			t.Errorf("Ambiguous(%q) = %v, want %v", tt.raw, got, tt.want)
		}
	}
}

func TestHeader(t *testing.T) {
	tests := []struct{ name, value, want string }{
		{"Authorization", "Bearer abc.def", "Bearer ***"},
		{"authorization", "Basic dTpw", "Basic ***"},
		{"Authorization", "rawtoken", "***"},
		{"Proxy-Authorization", "Basic dTpw", "Basic ***"},
		{"Cookie", "sid=1; theme=dark", "***"},
		{"Set-Cookie", "sid=1; HttpOnly", "***"},
		{"X-Api-Key", "k", "***"},
		{"X-Auth-Token", "t", "***"},
		{"X-Session-Id", "s", "***"},
		{"X-Client-Secret", "s", "***"},
		{"X-Password", "p", "***"},
		{"Location", "https://u:pw@h/next?token=t", "https://u:***@h/next?token=***"},
		{"Referer", "https://h/page?sig=x", "https://h/page?sig=***"},
		{"Accept", "text/event-stream", "text/event-stream"},
		{"X-Request-Id", "abc", "abc"},
	}
	for _, tt := range tests {
		if got := Header(tt.name, tt.value); got != tt.want {
			t.Errorf("Header(%q, %q) = %q, want %q", tt.name, tt.value, got, tt.want)
		}
	}
}

func TestErrorParse(t *testing.T) {
	tests := []struct{ raw, secret string }{
		{"http://u:qq#zz@host:80/x", "qq"},
		{"http://u:qq/zz@host/x", "qq"},
		{"http://u:qq?zz@host/x", "qq"},
		{"http://u:q%zzq@host/", "%zz"},
		{"http://h/?token=qq\x7fzz", "qq"},
	}
	for _, tt := range tests {
		_, perr := url.Parse(tt.raw)
		if perr == nil {
			t.Fatalf("url.Parse(%q) did not fail; pick a URL that does", tt.raw)
		}
		err := Error(perr)
		if strings.Contains(err.Error(), tt.secret) {
			t.Errorf("Error(parse %q) = %q: holds %q", tt.raw, err, tt.secret)
		}
		if !strings.HasPrefix(err.Error(), "parse URL: ") {
			t.Errorf("Error(parse %q) = %q, want it to say what failed", tt.raw, err)
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			t.Errorf("Error(parse %q) unwraps to the url.Error with the raw URL", tt.raw)
		}
	}
}

func TestErrorRequest(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://u:hunter2@127.0.0.1:1/x?token=tok42", nil)
	_, rerr := http.DefaultClient.Do(req)
	if rerr == nil {
		t.Fatal("request with a canceled context succeeded")
	}
	err := Error(rerr)
	for _, s := range []string{"hunter2", "tok42"} {
		if strings.Contains(err.Error(), s) {
			t.Errorf("Error = %q: holds %q", err, s)
		}
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Error = %v: does not unwrap to context.Canceled", err)
	}
	wrapped := Error(errors.Join(errors.New("connect"), rerr))
	if strings.Contains(wrapped.Error(), "hunter2") || !strings.Contains(wrapped.Error(), "connect") {
		t.Errorf("Error(wrapped) = %q, want the password masked and the rest kept", wrapped)
	}
	if Error(nil) != nil {
		t.Error("Error(nil) != nil")
	}
	plain := errors.New("x")
	if Error(plain) != plain {
		t.Error("Error changed an error without a URL")
	}
	if got := Reason(rerr); strings.Contains(got, "hunter2") || strings.Contains(got, "127.0.0.1") {
		t.Errorf("Reason = %q, want the cause without the URL", got)
	}
}

// blur keeps the punctuation of a secret and replaces its letters and
// digits: masking may depend on where a secret's delimiters are (they
// decide the fields), never on its letters and digits.
func blur(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= '0' && r <= '9':
			return '0'
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r > 0x7f:
			return 'x'
		}
		return r
	}, s)
}

// FuzzURL checks that no part of a password or of a secret query value
// survives URL, Header or Error: the output is the same when the secret's
// letters and digits change, and a long secret never appears in it.
func FuzzURL(f *testing.F) {
	f.Add("u", "pa#ss", "host:80", "/x", "token", "abc", "a=b")
	f.Add("alice", "p@ss/w?rd", "h", "/@me", "sig", "z@z", "mail=x@y")
	f.Add("", "1234/x", "127.0.0.1:8080", "/e", "access_token", "t:u@v", "")
	f.Add("u", "%zz", "[::1", "", "KEY", "v%", "#frag")
	f.Fuzz(func(t *testing.T, user, pass, host, path, key, val, other string) {
		// A user name never holds ':' (it ends the name) or the
		// delimiters that end the authority; a query value never holds the
		// '&' or '#' that end it. Those are not secrets but fields.
		if strings.ContainsAny(user, ":/?#@") || strings.ContainsAny(val, "&#") ||
			strings.ContainsAny(host, "@/?#") || strings.ContainsAny(path, "?#") ||
			!QueryKey(key) || strings.ContainsAny(key, "=&#") {
			t.Skip()
		}
		if path != "" && path[0] != '/' {
			path = "/" + path
		}
		build := func(pass, val string) string {
			return "http://" + user + ":" + pass + "@" + host + path + "?" + key + "=" + val + "&" + other
		}
		raw, raw2 := build(pass, val), build(blur(pass), blur(val))
		got, got2 := URL(raw), URL(raw2)
		if got != got2 {
			t.Fatalf("URL depends on the secret:\n%q -> %q\n%q -> %q", raw, got, raw2, got2)
		}
		rest := URL(build("", ""))
		for _, s := range []string{pass, val} {
			if len(s) >= 8 && strings.Contains(got, s) && !strings.Contains(rest, s) {
				t.Fatalf("URL(%q) = %q: holds secret %q", raw, got, s)
			}
		}
		if h, h2 := Header("Location", raw), Header("Location", raw2); h != h2 {
			t.Fatalf("Header(Location) depends on the secret: %q vs %q", h, h2)
		}
		_, err := url.Parse(raw)
		_, err2 := url.Parse(raw2)
		if (err == nil) != (err2 == nil) {
			return // the letters changed how net/url reads it (a port of digits); nothing printed to compare
		}
		if err != nil {
			if m, m2 := Error(err).Error(), Error(err2).Error(); m != m2 {
				t.Fatalf("Error depends on the secret:\n%q\n%q", m, m2)
			}
		}
	})
}
