package redisx

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/internal/redistest"
)

// proposedACL is the read-only recipe with everything fanscope uses:
// HELLO (go-redis's handshake), CLIENT SETNAME (its connections' name),
// CONFIG GET (the output buffer limit) besides the rest.
const proposedACL = "ACL SETUSER fanscope on >PASS resetchannels &story:* +subscribe +psubscribe +ssubscribe +ping +hello +client|setname +client|list +pubsub +info +config|get"

// readmeACL is the recipe as the README gives it.
func readmeACL(t *testing.T) string {
	t.Helper()
	text, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatalf("read the README: %v", err)
	}
	m := regexp.MustCompile("`(ACL SETUSER fanscope [^`]*)`").FindStringSubmatch(string(text))
	if m == nil {
		t.Fatal("the README has no `ACL SETUSER fanscope …` recipe")
	}
	return m[1]
}

// The README's read-only ACL recipe, applied to a real server exactly as
// written, lets fanscope do what it does: subscribe (naming its
// connection), count subscribers, list pub/sub clients, read INFO and the
// output buffer limit.
func TestReadOnlyACLRecipe(t *testing.T) {
	for _, tc := range []struct{ name, recipe string }{
		{"README", readmeACL(t)},
		{"proposed", proposedACL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Logf("recipe: %s", tc.recipe)
			s := redistest.Start(t)
			args := strings.Fields(strings.Replace(tc.recipe, ">PASS", ">ro-secret", 1))
			if got := s.CLI(args...); got != "OK" {
				t.Fatalf("applying the recipe: %s", got)
			}
			c := open(t, fastOptions("redis://fanscope:ro-secret@"+s.Addr()))
			col := newCollector()
			sub := subscribe(t, c, Subscription{Channels: []string{"story:published"}, Patterns: []string{"story:*"}}, col)

			admin := redis.NewClient(&redis.Options{Addr: s.Addr()})
			defer admin.Close()
			if err := admin.Publish(context.Background(), "story:published", "hello").Err(); err != nil {
				t.Fatal(err)
			}
			col.waitFor(t, 5*time.Second, "the message (channel and pattern)", func(r []feed.Record) bool { return countMessages(r, "story:published") == 2 })

			ctx := context.Background()
			n, err := c.NumSub(ctx, "story:published")
			if err != nil || n["story:published"] != 1 {
				t.Errorf("NumSub: got %v, %v; want 1", n, err)
			}
			in, err := c.Introspect(ctx, Subscription{Channels: []string{"story:published"}, Patterns: []string{"story:*"}})
			if err != nil {
				t.Fatalf("Introspect: %v", err)
			}
			t.Logf("unavailable: %q; limit: %+v; warnings: %q", in.Unavailable, in.Limit, c.Warnings())
			if len(in.Clients) != 1 || in.Info["pubsub_channels"] != "1" || in.NumPat != 1 {
				t.Errorf("got clients %+v, INFO %v, NUMPAT %d; want fanscope's connection, pubsub_channels 1, 1 pattern", in.Clients, in.Info, in.NumPat)
			}
			for _, u := range in.Unavailable {
				if !strings.Contains(u, "CONFIG") {
					t.Errorf("got %q unavailable, want CLIENT LIST, INFO and PUBSUB allowed", u)
				}
			}
			complete := strings.Contains(tc.recipe, "+client|setname") && strings.Contains(tc.recipe, "+config|get")
			if !complete {
				return // a recipe without them works, with the warnings above
			}
			if len(in.Unavailable) != 0 || !in.Limit.Available {
				t.Errorf("got unavailable %q and limit %+v, want everything", in.Unavailable, in.Limit)
			}
			if len(in.Clients) == 1 && in.Clients[0].Name != "fanscope" {
				t.Errorf("got client name %q, want fanscope", in.Clients[0].Name)
			}
			if w := sub.Status().Warnings; len(w) != 0 {
				t.Errorf("got warnings %q, want none", w)
			}
			if log := s.CLI("ACL", "LOG"); log != "" {
				t.Errorf("got ACL LOG entries, want none (nothing refused):\n%s", log)
			}
		})
	}
}
