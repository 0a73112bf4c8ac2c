package ssex

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestParseEndpoint(t *testing.T) {
	cases := []struct {
		in, name, url string
	}{
		{"http://127.0.0.1:8080/api/community/events", "127.0.0.1:8080", "http://127.0.0.1:8080/api/community/events"},
		{"app-1=http://10.0.0.5:8080/events", "app-1", "http://10.0.0.5:8080/events"},
		{"https://example.com/events", "example.com:443", "https://example.com/events"},
		{"http://example.com/events", "example.com:80", "http://example.com/events"},
		{"http://[::1]:9000/e", "[::1]:9000", "http://[::1]:9000/e"},
		{"http://h:1/e?token=abc&x=1", "h:1", "http://h:1/e?token=abc&x=1"},
		{"eu west=https://h/e?a=b", "eu west", "https://h/e?a=b"},
		{"  app=HTTPS://h:8443/e  ", "app", "HTTPS://h:8443/e"},
		{"http://user:pw@h:8080/e", "h:8080", "http://user:pw@h:8080/e"},
	}
	for _, tc := range cases {
		name, url, err := ParseEndpoint(tc.in)
		if err != nil || name != tc.name || url != tc.url {
			t.Errorf("ParseEndpoint(%q): got %q, %q, %v, want %q, %q, nil", tc.in, name, url, err, tc.name, tc.url)
		}
	}
}

func TestParseEndpointRejects(t *testing.T) {
	cases := []struct {
		in, want string
	}{
		{"", "empty value"},
		{"=http://h/e", "empty NAME"},
		{"app=", "no scheme"},
		{"localhost:8080/events", "no scheme"},
		{"ftp://h/e", `scheme "ftp" is not http or https`},
		{"app=ws://h/e", `scheme "ws"`},
		{"http:///e", "no host"},
		{"http://h:port/e", "invalid URL"},
		{"a\x1bb=http://h/e", "control characters"},
	}
	for _, tc := range cases {
		_, _, err := ParseEndpoint(tc.in)
		if !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseEndpoint(%q): got %v, want an ErrUsage containing %q", tc.in, err, tc.want)
		}
	}
}

func TestNewClientRejects(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no URL", Config{}, "no scheme"},
		{"bad scheme", Config{URL: "redis://h:6379"}, "not http or https"},
		{"header name", Config{URL: "http://h/e", Header: http.Header{"Bad Name": {"x"}}}, "invalid header name"},
		{"header value", Config{URL: "http://h/e", Header: http.Header{"X-A": {"a\r\nb"}}}, "control characters"},
		{"negative backoff", Config{URL: "http://h/e", MaxBackoff: -time.Second}, "negative"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewClient(tc.cfg)
			if !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewClient: got %v, want an ErrUsage containing %q", err, tc.want)
			}
		})
	}
}

func TestNewClientDefaults(t *testing.T) {
	c, err := NewClient(Config{URL: "http://user:secret@h:8080/e"})
	if err != nil {
		t.Fatal(err)
	}
	d := c.Diagnostics()
	if d.Name != "h:8080" || strings.Contains(d.URL, "secret") || !strings.Contains(d.URL, "***") {
		t.Errorf("diagnostics: got name %q URL %q, want h:8080 and the password masked", d.Name, d.URL)
	}
	if d.StallAfter != DefaultStallTimeout || c.cfg.MaxBackoff != DefaultMaxBackoff || d.RetryMS != DefaultRetry.Milliseconds() {
		t.Errorf("defaults: got stall %s backoff %s retry %d ms, want %s %s %d ms",
			d.StallAfter, c.cfg.MaxBackoff, d.RetryMS, DefaultStallTimeout, DefaultMaxBackoff, DefaultRetry.Milliseconds())
	}
	if d.State != "disconnected" {
		t.Errorf("state before Run: got %q, want disconnected", d.State)
	}
}

// TestEndpointErrorsMaskSecrets: every error about an endpoint flag shows
// its URL with the password and secret query values masked, also when the
// URL does not parse and the password holds the characters that end a host.
func TestEndpointErrorsMaskSecrets(t *testing.T) {
	cases := []struct {
		in      string
		secrets []string
	}{
		{"http://u:qq#zz@h:port/e", []string{"qq", "zz"}},
		{"http://u:qq/zz@h/e", []string{"qq", "zz"}},
		{"http://u:qq?zz@h/e", []string{"qq", "zz"}},
		{"http://u:12#zz@h/e", []string{"12#zz", "zz"}},
		{"http://u:qq@zz@h:port/e", []string{"qq", "zz"}},
		{"http://u:hunter2@h:port/e?token=tok42", []string{"hunter2", "tok42"}},
		{"http://h:1/e?access_token=tok42\x7f", []string{"tok42"}},
		{"=http://u:hunter2@h/e", []string{"hunter2"}},
		{"a\x1bb=http://u:hunter2@h/e", []string{"hunter2"}},
		{"http://u:hunter2@/e", []string{"hunter2"}},
		{"http://h:8080/e?mail=tok42@x", []string{"tok42"}},
	}
	for _, tc := range cases {
		_, _, err := ParseEndpoint(tc.in)
		if !errors.Is(err, ErrUsage) {
			t.Errorf("ParseEndpoint(%q): got %v, want an ErrUsage", tc.in, err)
			continue
		}
		for _, s := range tc.secrets {
			if strings.Contains(err.Error(), s) {
				t.Errorf("ParseEndpoint(%q): error %q holds the secret %q", tc.in, err, s)
			}
		}
		if _, err := NewClient(Config{URL: tc.in}); err != nil {
			for _, s := range tc.secrets {
				if strings.Contains(err.Error(), s) {
					t.Errorf("NewClient(%q): error %q holds the secret %q", tc.in, err, s)
				}
			}
		}
	}
	c, err := NewClient(Config{URL: "http://u:hunter2@h:1/e?token=tok42&page=2"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Diagnostics().URL, "http://u:***@h:1/e?token=***&page=2"; got != want {
		t.Errorf("Diagnostics().URL = %q, want %q", got, want)
	}
}
