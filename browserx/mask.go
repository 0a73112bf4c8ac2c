package browserx

import (
	"net/url"
	"strings"

	"github.com/fanscope/fanscope/internal/secrets"
)

// maskURL is u as text with its password and secret query values as
// "***".
func maskURL(u *url.URL) string {
	if u == nil {
		return ""
	}
	return secrets.URL(u.String())
}

// Cookie is one --browser-cookie: set in the browser before a path
// connects. Its value never appears in output.
type Cookie struct {
	Name, Value string
}

// ParseCookie parses --browser-cookie 'name=value'.
func ParseCookie(s string) (Cookie, error) {
	name, value, ok := strings.Cut(s, "=")
	name = strings.TrimSpace(name)
	if !ok {
		return Cookie{}, usageErrorf("--browser-cookie %q: want name=value, no '=' found (e.g. --browser-cookie 'session=VALUE')", maskCookieText(s))
	}
	if name == "" {
		return Cookie{}, usageErrorf("--browser-cookie %q: want name=value, the name is empty", maskCookieText(s))
	}
	if strings.ContainsAny(name, " \t;,=\"") {
		return Cookie{}, usageErrorf("--browser-cookie %s=***: the name may not hold spaces, ';', ',', '=' or quotes", name)
	}
	if strings.ContainsAny(value, ";\r\n") {
		return Cookie{}, usageErrorf("--browser-cookie %s=***: the value may not hold ';' or line breaks (give one cookie per flag)", name)
	}
	return Cookie{Name: name, Value: value}, nil
}

// String is the cookie as fanscope prints it: name=***.
func (c Cookie) String() string { return c.Name + "=***" }

// maskCookieText masks what follows the first '=' of a cookie flag.
func maskCookieText(s string) string {
	if name, _, ok := strings.Cut(s, "="); ok {
		return name + "=***"
	}
	return "***"
}
