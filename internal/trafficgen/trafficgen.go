// Package trafficgen makes the demo's traffic: realistic "story published"
// notifications (and now and then a like or a comment) for the story:*
// channels, at random intervals. It has no network of its own: Run calls
// a publish function, and a seeded *rand.Rand makes it reproducible.
package trafficgen

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"
)

// Channels the generator publishes to.
const (
	ChannelPublished = "story:published"
	ChannelLiked     = "story:liked"
	ChannelCommented = "story:commented"
)

// Config tunes a Generator. Zero fields take the defaults.
type Config struct {
	MinInterval time.Duration // default 500ms
	MaxInterval time.Duration // default 2s
	// OtherShare is the fraction of messages that go to story:liked or
	// story:commented instead of story:published (default 0.15; <0: none).
	OtherShare float64
	Rand       *rand.Rand       // default: randomly seeded
	Now        func() time.Time // default time.Now
}

// Generator yields messages; not safe for concurrent use.
type Generator struct {
	cfg     Config
	r       *rand.Rand
	now     func() time.Time
	stories []string // recent story ids, for likes and comments
}

// New returns a generator for cfg.
func New(cfg Config) *Generator {
	if cfg.MinInterval <= 0 {
		cfg.MinInterval = 500 * time.Millisecond
	}
	if cfg.MaxInterval < cfg.MinInterval {
		cfg.MaxInterval = max(2*time.Second, cfg.MinInterval)
	}
	if cfg.OtherShare == 0 {
		cfg.OtherShare = 0.15
	}
	g := &Generator{cfg: cfg, r: cfg.Rand, now: cfg.Now}
	if g.r == nil {
		g.r = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	if g.now == nil {
		g.now = time.Now
	}
	return g
}

// Interval is a random pause between MinInterval and MaxInterval.
func (g *Generator) Interval() time.Duration {
	span := g.cfg.MaxInterval - g.cfg.MinInterval
	if span <= 0 {
		return g.cfg.MinInterval
	}
	return g.cfg.MinInterval + time.Duration(g.r.Int64N(int64(span)+1))
}

// Story is the story:published payload.
type Story struct {
	StoryID     string `json:"storyId"`
	Title       string `json:"title"`
	Author      string `json:"author"`
	Genre       string `json:"genre"`
	PublishedAt string `json:"publishedAt"`
}

// Like is the story:liked payload.
type Like struct {
	StoryID string `json:"storyId"`
	UserID  string `json:"userId"`
	Likes   int    `json:"likes"`
	LikedAt string `json:"likedAt"`
}

// Comment is the story:commented payload.
type Comment struct {
	StoryID   string `json:"storyId"`
	CommentID string `json:"commentId"`
	Author    string `json:"author"`
	Excerpt   string `json:"excerpt"`
	PostedAt  string `json:"postedAt"`
}

// Next returns the next message: its channel and JSON payload.
func (g *Generator) Next() (channel, payload string) {
	at := g.now().UTC().Format("2006-01-02T15:04:05.000Z07:00")
	if len(g.stories) > 0 && g.cfg.OtherShare > 0 && g.r.Float64() < g.cfg.OtherShare {
		story := g.stories[g.r.IntN(len(g.stories))]
		if g.r.IntN(2) == 0 {
			return ChannelLiked, mustJSON(Like{StoryID: story, UserID: g.id("u_"), Likes: 1 + g.r.IntN(500), LikedAt: at})
		}
		return ChannelCommented, mustJSON(Comment{
			StoryID: story, CommentID: g.id("c_"), Author: g.name(),
			Excerpt: pick(g.r, excerpts), PostedAt: at,
		})
	}
	s := Story{StoryID: g.id("st_"), Title: g.title(), Author: g.name(), Genre: pick(g.r, genres), PublishedAt: at}
	g.stories = append(g.stories, s.StoryID)
	if len(g.stories) > 20 {
		g.stories = g.stories[1:]
	}
	return ChannelPublished, mustJSON(s)
}

// Run publishes a message after every Interval until ctx ends (nil) or
// publish fails (that error).
func Run(ctx context.Context, g *Generator, publish func(ctx context.Context, channel, payload string) error) error {
	t := time.NewTimer(g.Interval())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		ch, p := g.Next()
		if err := publish(ctx, ch, p); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("publish demo traffic to %s: %w", ch, err)
		}
		t.Reset(g.Interval())
	}
}

func (g *Generator) id(prefix string) string {
	const alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
	b := []byte(prefix)
	for range 8 {
		b = append(b, alphabet[g.r.IntN(len(alphabet))])
	}
	return string(b)
}

func (g *Generator) name() string { return pick(g.r, firstNames) + " " + pick(g.r, lastNames) }

func (g *Generator) title() string {
	switch g.r.IntN(4) {
	case 0:
		return "The " + pick(g.r, adjectives) + " " + pick(g.r, nouns)
	case 1:
		return pick(g.r, nouns) + " of " + pick(g.r, places)
	case 2:
		return "A " + pick(g.r, adjectives) + " " + pick(g.r, nouns) + " in " + pick(g.r, places)
	}
	return "What the " + pick(g.r, nouns) + " " + pick(g.r, verbs)
}

func pick(r *rand.Rand, list []string) string { return list[r.IntN(len(list))] }

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only plain structs of strings and ints are marshalled
	}
	return string(b)
}

var (
	genres     = []string{"fantasy", "science-fiction", "mystery", "romance", "horror", "literary", "historical", "thriller", "poetry", "humor"}
	firstNames = []string{"Maya", "Tomás", "Aiko", "Oluwaseun", "Freya", "Dmitri", "Priya", "Jonah", "Lucía", "Kwame", "Elif", "Nora", "Mateo", "Saoirse", "Hyun-woo", "Ingrid"}
	lastNames  = []string{"Okafor", "Lindqvist", "Tanaka", "Moreau", "Castillo", "Novak", "Haddad", "O'Brien", "Kowalski", "Nakamura", "Ferreira", "Abernathy", "Mensah", "Rossi"}
	adjectives = []string{"Silent", "Last", "Crimson", "Hollow", "Forgotten", "Glass", "Midnight", "Wandering", "Borrowed", "Paper", "Quiet", "Burning", "Salt-Stained"}
	nouns      = []string{"Lighthouse", "Cartographer", "Orchard", "Archive", "Clockmaker", "Tide", "Letters", "Garden", "Station", "Violin", "Harbor", "Comet", "Winter"}
	places     = []string{"Ashford", "the Northern Sea", "Lower Vale", "the Old Quarter", "Marrow Hill", "Kestrel Bay", "the Salt Flats", "Brindlewood"}
	verbs      = []string{"Remembers", "Forgot", "Carried Home", "Left Behind", "Knew", "Kept Secret"}
	excerpts   = []string{"This gave me chills.", "Waiting for part two!", "The ending… wow.", "Beautifully written.", "I read it twice.", "Who else cried at the lighthouse scene?"}
)
