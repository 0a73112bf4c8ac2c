package serve

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/probes"
)

// Defaults of a target's settings left out of the file.
const (
	DefaultProbeEvery = 10 * time.Second
	DefaultWindow     = time.Minute
	DefaultListen     = ":9464"
	maxSSEClients     = 100000
)

// Config is a --config file, checked, with defaults filled in.
type Config struct {
	File      string
	Listen    string            // "" when the file does not say
	Window    time.Duration     // 0 when the file does not say
	Labels    map[string]string // constant labels on every series
	LogFormat string            // "", "text" or "json"
	Targets   []TargetConfig
}

// TargetConfig is one watched pipeline of a Config.
type TargetConfig struct {
	Name string
	Line int // where the target starts in the file

	Redis          []string
	Cluster        bool
	SentinelMaster string
	Channels       []string
	Patterns       []string
	ShardChannels  []string
	Endpoints      []Endpoint
	Headers        map[string]string
	BearerEnv      string
	TLSCA          string
	TLSInsecure    bool
	MatchKey       string

	ProbeChannel string        // "" : the first channel, else the first shard channel
	ProbeEvery   time.Duration // 0: passive watching only
	Timeout      time.Duration
	Template     string
	SSEClients   int
	Stall        time.Duration // 0: the sources' default threshold
	PollInterval time.Duration // 0: the poll source's default
	SocketIOPath string        // "": the Socket.IO sources' default
	Budgets      probes.Budgets
	Labels       map[string]string
}

// Endpoint is a delivery endpoint of a target.
type Endpoint struct {
	Kind feed.Source // SourceSSE, SourceWS, SourceSocketIO, SourcePoll or SourceBrowser
	Name string
	URL  string
}

// Flag is the endpoint as its command-line flag value, "NAME=URL".
func (e Endpoint) Flag() string { return e.Name + "=" + e.URL }

// Path is the endpoint's path name ("sse:app-1").
func (e Endpoint) Path() string { return feed.PathName(e.Kind, e.Name) }

// Paths are the paths a target is expected to have: "redis", then each
// endpoint's.
func (t TargetConfig) Paths() []string {
	out := []string{feed.PathRedis}
	for _, e := range t.Endpoints {
		out = append(out, e.Path())
	}
	return out
}

// ProbeTo is the channel probes go to, and whether it is a shard channel
// (SPUBLISH); "" when there is none.
func (t TargetConfig) ProbeTo() (channel string, shard bool) {
	switch {
	case t.ProbeChannel != "":
		return t.ProbeChannel, slices.Contains(t.ShardChannels, t.ProbeChannel)
	case len(t.Channels) > 0:
		return t.Channels[0], false
	case len(t.ShardChannels) > 0:
		return t.ShardChannels[0], true
	}
	return "", false
}

// ConfigError is a mistake in a --config file, with where it is.
type ConfigError struct {
	File string
	Line int // 0: the file as a whole
	Msg  string
}

func (e *ConfigError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("config %s, line %d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("config %s: %s", e.File, e.Msg)
}

// ConfigErrors are every mistake found in one file.
type ConfigErrors []*ConfigError

func (es ConfigErrors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "\n")
}

// Unwrap lets errors.As find each ConfigError.
func (es ConfigErrors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// The file's shape. Unknown keys are refused (KnownFields).
type fileYAML struct {
	Listen     string            `yaml:"listen"`
	Window     duration          `yaml:"window"`
	ProbeEvery *duration         `yaml:"probe_every"`
	Labels     map[string]string `yaml:"labels"`
	LogFormat  string            `yaml:"log_format"`
	Targets    []targetYAML      `yaml:"targets"`
}

type targetYAML struct {
	Name           string            `yaml:"name"`
	Redis          stringList        `yaml:"redis"`
	Cluster        bool              `yaml:"cluster"`
	SentinelMaster string            `yaml:"sentinel_master"`
	Channels       []string          `yaml:"channels"`
	Patterns       []string          `yaml:"patterns"`
	ShardChannels  []string          `yaml:"shard_channels"`
	Endpoints      endpointsYAML     `yaml:"endpoints"`
	Headers        map[string]string `yaml:"headers"`
	BearerEnv      string            `yaml:"bearer_env"`
	TLSCA          string            `yaml:"tls_ca"`
	TLSInsecure    bool              `yaml:"tls_insecure"`
	MatchKey       string            `yaml:"match_key"`
	ProbeChannel   string            `yaml:"probe_channel"`
	ProbeEvery     *duration         `yaml:"probe_every"`
	Timeout        duration          `yaml:"timeout"`
	Template       string            `yaml:"template"`
	SSEClients     int               `yaml:"sse_clients"`
	Stall          duration          `yaml:"stall"`
	PollInterval   duration          `yaml:"poll_interval"`
	SocketIOPath   string            `yaml:"socketio_path"`
	Budgets        budgetsYAML       `yaml:"budgets"`
	Labels         map[string]string `yaml:"labels"`
}

type endpointsYAML struct {
	SSE      []endpointYAML `yaml:"sse"`
	WS       []endpointYAML `yaml:"ws"`
	SocketIO []endpointYAML `yaml:"socketio"`
	Poll     []endpointYAML `yaml:"poll"`
	Browser  []endpointYAML `yaml:"browser"`
}

type budgetsYAML struct {
	MaxP50         duration `yaml:"max_p50"`
	MaxP99         duration `yaml:"max_p99"`
	MinDelivery    *float64 `yaml:"min_delivery"`
	MinSubscribers int64    `yaml:"min_subscribers"`
}

// duration is a time.Duration written as Go writes it ("10s", "250ms",
// "1m30s"), or 0.
type duration time.Duration

func (d *duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode && n.Tag != "!!null" {
		if n.Value == "0" {
			*d = 0
			return nil
		}
		if v, err := time.ParseDuration(n.Value); err == nil {
			*d = duration(v)
			return nil
		}
	}
	got := n.Value
	if n.Kind != yaml.ScalarNode {
		got = "a list or key: value pairs"
	}
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: wrong type: want a duration such as 10s or 250ms, got %q", n.Line, got)}}
}

// stringList is one string or a list of them.
type stringList []string

func (s *stringList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		var v string
		if err := n.Decode(&v); err != nil {
			return err
		}
		*s = []string{v}
		return nil
	}
	var v []string
	if err := n.Decode(&v); err != nil {
		return err
	}
	*s = v
	return nil
}

// endpointYAML is "[NAME=]URL" or {name: NAME, url: URL}.
type endpointYAML struct {
	Name, URL string
	Line      int
}

func (e *endpointYAML) UnmarshalYAML(n *yaml.Node) error {
	e.Line = n.Line
	switch n.Kind {
	case yaml.ScalarNode:
		var s string
		if err := n.Decode(&s); err != nil {
			return err
		}
		e.URL = strings.TrimSpace(s)
		// A URL's query may hold '=': NAME is split off only before "://".
		if i := strings.IndexByte(e.URL, '='); i >= 0 && !strings.Contains(e.URL[:i], "://") {
			e.Name, e.URL = strings.TrimSpace(e.URL[:i]), strings.TrimSpace(e.URL[i+1:])
			if e.Name == "" {
				return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: endpoint has an empty NAME before '=' (want [NAME=]URL)", n.Line)}}
			}
		}
		return nil
	case yaml.MappingNode:
		var errs []string
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			var dst *string
			switch k.Value {
			case "name":
				dst = &e.Name
			case "url":
				dst = &e.URL
			default:
				errs = append(errs, fmt.Sprintf("line %d: unknown key %q in an endpoint (known keys: name, url)", k.Line, k.Value))
				continue
			}
			if v.Kind != yaml.ScalarNode {
				errs = append(errs, fmt.Sprintf("line %d: endpoint %s: want a string", v.Line, k.Value))
				continue
			}
			*dst = strings.TrimSpace(v.Value)
		}
		if errs != nil {
			return &yaml.TypeError{Errors: errs}
		}
		return nil
	}
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: an endpoint is \"[NAME=]URL\" or {name: NAME, url: URL}", n.Line)}}
}

// LoadConfig reads and checks a --config file.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &ConfigError{File: path, Msg: fmt.Sprintf("cannot read it: %v", unwrapPathError(err))}
	}
	return ParseConfig(path, data)
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// ParseConfig parses and checks a config file's contents; file names it
// in errors. Every mistake found is reported, each with its line.
func ParseConfig(file string, data []byte) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlErrors(file, err)
	}
	if len(root.Content) == 0 {
		return nil, &ConfigError{File: file, Msg: "the file is empty; it needs a targets: list"}
	}
	var fy fileYAML
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&fy); err != nil && !errors.Is(err, io.EOF) {
		return nil, yamlErrors(file, err)
	}
	c := &checker{file: file, doc: root.Content[0]}
	cfg := c.check(&fy)
	if len(c.errs) > 0 {
		return nil, c.errs
	}
	return cfg, nil
}

var yamlLineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// yamlErrors turns the YAML library's errors into ConfigErrors in words
// a user of the file knows (key names, not Go types).
func yamlErrors(file string, err error) error {
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	var out ConfigErrors
	for _, m := range msgs {
		ce := &ConfigError{File: file, Msg: strings.TrimPrefix(m, "yaml: ")}
		if sub := yamlLineRE.FindStringSubmatch(m); sub != nil {
			ce.Line, _ = strconv.Atoi(sub[1])
			ce.Msg = sub[2]
		}
		ce.Msg = humanYAML(ce.Msg)
		out = append(out, ce)
	}
	return out
}

var (
	unknownFieldRE = regexp.MustCompile(`^field (\S+) not found in type (\S+)$`)
	unmarshalRE    = regexp.MustCompile("^cannot unmarshal !!(\\w+) (?:`(.*)` )?into (\\S+)$")
)

// sections name the file's parts by their Go types, with their keys.
var sections = map[string]struct {
	what string
	typ  reflect.Type
}{
	"serve.fileYAML":      {"the file's top level", reflect.TypeFor[fileYAML]()},
	"serve.targetYAML":    {"a target", reflect.TypeFor[targetYAML]()},
	"serve.endpointsYAML": {"endpoints", reflect.TypeFor[endpointsYAML]()},
	"serve.budgetsYAML":   {"budgets", reflect.TypeFor[budgetsYAML]()},
}

var typeWords = map[string]string{
	"string":               "a string",
	"int":                  "a whole number",
	"int64":                "a whole number",
	"float64":              "a number",
	"bool":                 "true or false",
	"*float64":             "a number",
	"[]string":             "a list of strings",
	"serve.stringList":     "a string or a list of strings",
	"map[string]string":    "key: value pairs",
	"[]serve.targetYAML":   "a list of targets",
	"[]serve.endpointYAML": "a list of endpoints",
}

func humanYAML(msg string) string {
	if m := unknownFieldRE.FindStringSubmatch(msg); m != nil {
		if s, ok := sections[m[2]]; ok {
			return fmt.Sprintf("unknown key %q in %s (known keys: %s)", m[1], s.what, strings.Join(yamlKeys(s.typ), ", "))
		}
		return fmt.Sprintf("unknown key %q", m[1])
	}
	if m := unmarshalRE.FindStringSubmatch(msg); m != nil {
		want := typeWords[m[3]]
		if want == "" {
			if s, ok := sections[m[3]]; ok {
				want = s.what + " (key: value pairs)"
			} else {
				want = m[3]
			}
		}
		got := map[string]string{"seq": "a list", "map": "key: value pairs", "str": "a string", "int": "a whole number",
			"float": "a number", "bool": "a boolean", "null": "nothing"}[m[1]]
		if got == "" {
			got = m[1]
		}
		if m[2] != "" {
			got += " " + strconv.Quote(m[2])
		}
		return fmt.Sprintf("wrong type: want %s, got %s", want, got)
	}
	return msg
}

func yamlKeys(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		if tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); tag != "" && tag != "-" {
			out = append(out, tag)
		}
	}
	return out
}

// checker validates a decoded file, finding lines in its node tree.
type checker struct {
	file string
	doc  *yaml.Node
	errs ConfigErrors
}

func (c *checker) errorf(line int, format string, args ...any) {
	c.errs = append(c.errs, &ConfigError{File: c.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// value returns the value node of key in mapping n, or nil.
func value(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// lineOf is the line of key's value in mapping n, else n's own line.
func lineOf(n *yaml.Node, key string) int {
	if v := value(n, key); v != nil {
		return v.Line
	}
	if n != nil {
		return n.Line
	}
	return 0
}

func (c *checker) check(fy *fileYAML) *Config {
	cfg := &Config{File: c.file, Listen: fy.Listen, Window: time.Duration(fy.Window), LogFormat: fy.LogFormat, Labels: fy.Labels}
	if fy.Listen != "" {
		if _, _, err := net.SplitHostPort(fy.Listen); err != nil {
			c.errorf(lineOf(c.doc, "listen"), "listen %q: want [HOST]:PORT, e.g. :9464", fy.Listen)
		}
	}
	if w := time.Duration(fy.Window); w < 0 || (w > 0 && w < time.Second) {
		c.errorf(lineOf(c.doc, "window"), "window %v: want at least 1s", w)
	}
	switch fy.LogFormat {
	case "", "text", "json":
	default:
		c.errorf(lineOf(c.doc, "log_format"), "log_format %q: want text or json", fy.LogFormat)
	}
	c.labels(value(c.doc, "labels"), fy.Labels)
	defEvery := DefaultProbeEvery
	if fy.ProbeEvery != nil {
		defEvery = time.Duration(*fy.ProbeEvery)
		c.probeEvery(lineOf(c.doc, "probe_every"), defEvery)
	}
	targets := value(c.doc, "targets")
	if len(fy.Targets) == 0 {
		c.errorf(lineOf(c.doc, "targets"), "no targets: add a targets: list, each with a name, redis and channels")
		return cfg
	}
	names := map[string]int{}
	for i := range fy.Targets {
		var n *yaml.Node
		if targets != nil && i < len(targets.Content) {
			n = targets.Content[i]
		}
		t := c.target(n, &fy.Targets[i], defEvery)
		if t.Name != "" {
			if at, dup := names[t.Name]; dup {
				c.errorf(lineOf(n, "name"), "target name %q is already used by the target at line %d; names must differ", t.Name, at)
			} else {
				names[t.Name] = t.Line
			}
		}
		for k := range t.Labels {
			if _, ok := fy.Labels[k]; ok {
				c.errorf(lineOf(value(n, "labels"), k), "label %q is set both at the top level and in target %q; keep one", k, t.Name)
			}
		}
		cfg.Targets = append(cfg.Targets, t)
	}
	return cfg
}

func (c *checker) labels(n *yaml.Node, labels map[string]string) {
	for k := range labels {
		if err := ValidateLabelName(k); err != nil {
			c.errorf(keyLine(n, k), "%v", err)
		}
	}
}

// keyLine is the line of key itself in mapping n.
func keyLine(n *yaml.Node, key string) int {
	if n != nil && n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				return n.Content[i].Line
			}
		}
	}
	if n != nil {
		return n.Line
	}
	return 0
}

func (c *checker) probeEvery(line int, d time.Duration) {
	if d != 0 && d < MinProbeEvery {
		c.errorf(line, "probe_every %v: want 0 (passive watching only) or at least %v, so that probe traffic stays small", d, MinProbeEvery)
	}
}

func (c *checker) target(n *yaml.Node, ty *targetYAML, defEvery time.Duration) TargetConfig {
	line := 0
	if n != nil {
		line = n.Line
	}
	t := TargetConfig{
		Name: strings.TrimSpace(ty.Name), Line: line,
		Redis: ty.Redis, Cluster: ty.Cluster, SentinelMaster: ty.SentinelMaster,
		Channels: ty.Channels, Patterns: ty.Patterns, ShardChannels: ty.ShardChannels,
		Headers: ty.Headers, BearerEnv: ty.BearerEnv, TLSCA: ty.TLSCA, TLSInsecure: ty.TLSInsecure, MatchKey: ty.MatchKey,
		ProbeChannel: ty.ProbeChannel, ProbeEvery: defEvery, Timeout: time.Duration(ty.Timeout), Template: ty.Template,
		SSEClients: ty.SSEClients, Stall: time.Duration(ty.Stall),
		PollInterval: time.Duration(ty.PollInterval), SocketIOPath: ty.SocketIOPath, Labels: ty.Labels,
		Budgets: probes.Budgets{MaxP50: time.Duration(ty.Budgets.MaxP50), MaxP99: time.Duration(ty.Budgets.MaxP99), MinDelivery: 1, MinSubscribers: ty.Budgets.MinSubscribers},
	}
	who := "target"
	if t.Name == "" {
		c.errorf(line, "a target has no name: add `name: NAME` (it becomes the target label)")
	} else {
		who = fmt.Sprintf("target %q", t.Name)
	}
	if len(t.Redis) == 0 {
		c.errorf(line, "%s has no redis: add `redis: redis://HOST:6379` (a list for a Cluster's seeds or Sentinels)", who)
	}
	rn := value(n, "redis")
	for i, u := range t.Redis {
		l := lineOf(n, "redis")
		if rn != nil && rn.Kind == yaml.SequenceNode && i < len(rn.Content) {
			l = rn.Content[i].Line
		}
		if err := checkRedisURL(u); err != nil {
			c.errorf(l, "%s: redis: %v", who, err)
		}
	}
	if t.Cluster && t.SentinelMaster != "" {
		c.errorf(lineOf(n, "cluster"), "%s: cluster and sentinel_master exclude each other", who)
	}
	watchesNothing := len(t.Channels)+len(t.Patterns)+len(t.ShardChannels) == 0 && t.ProbeChannel == ""
	if watchesNothing {
		c.errorf(line, "%s watches nothing: give channels, patterns, shard_channels or probe_channel", who)
	}
	if ty.ProbeEvery != nil {
		t.ProbeEvery = time.Duration(*ty.ProbeEvery)
		c.probeEvery(lineOf(n, "probe_every"), t.ProbeEvery)
	}
	if t.ProbeEvery > 0 && !watchesNothing {
		if ch, _ := t.ProbeTo(); ch == "" {
			c.errorf(line, "%s probes every %v but has no channel to publish to: give channels, shard_channels or probe_channel (or probe_every: 0)", who, t.ProbeEvery)
		}
	}
	if t.Timeout < 0 {
		c.errorf(lineOf(n, "timeout"), "%s: timeout %v is negative", who, t.Timeout)
	}
	if t.Timeout == 0 {
		t.Timeout = probes.DefaultTimeout
	}
	if t.Stall < 0 {
		c.errorf(lineOf(n, "stall"), "%s: stall %v is negative", who, t.Stall)
	}
	if t.PollInterval < 0 {
		c.errorf(lineOf(n, "poll_interval"), "%s: poll_interval %v is negative", who, t.PollInterval)
	}
	if t.Template != "" {
		if err := probes.ValidateTemplate(t.Template); err != nil {
			c.errorf(lineOf(n, "template"), "%s: %v", who, err)
		}
	}
	if t.SSEClients == 0 {
		t.SSEClients = 1
	}
	if t.SSEClients < 1 || t.SSEClients > maxSSEClients {
		c.errorf(lineOf(n, "sse_clients"), "%s: sse_clients %d: want 1 to %d", who, t.SSEClients, maxSSEClients)
	}
	bn := value(n, "budgets")
	if ty.Budgets.MinDelivery != nil {
		t.Budgets.MinDelivery = *ty.Budgets.MinDelivery
		if d := t.Budgets.MinDelivery; math.IsNaN(d) || d < 0 || d > 1 {
			c.errorf(lineOf(bn, "min_delivery"), "%s: min_delivery %v: want a fraction from 0 to 1", who, d)
		}
	}
	for key, d := range map[string]time.Duration{"max_p50": t.Budgets.MaxP50, "max_p99": t.Budgets.MaxP99} {
		if d < 0 {
			c.errorf(lineOf(bn, key), "%s: %s %v is negative", who, key, d)
		}
	}
	if t.Budgets.MinSubscribers < 0 {
		c.errorf(lineOf(bn, "min_subscribers"), "%s: min_subscribers %d is negative", who, t.Budgets.MinSubscribers)
	}
	hn := value(n, "headers")
	for k, v := range t.Headers {
		if k == "" || strings.ContainsAny(k, " \t\r\n:") {
			c.errorf(keyLine(hn, k), "%s: header name %q is not a valid header name", who, k)
		}
		if strings.ContainsAny(v, "\r\n") {
			c.errorf(lineOf(hn, k), "%s: header %s: the value contains a line break", who, k)
		}
	}
	c.labels(value(n, "labels"), t.Labels)
	t.Endpoints = c.endpoints(who, ty.Endpoints)
	return t
}

func checkRedisURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || !strings.Contains(raw, "://") {
		return errors.New("not a URL; want redis://[user:pass@]host:port[/db], rediss://… or unix:///path.sock")
	}
	switch u.Scheme {
	case "redis", "rediss":
		if u.Host == "" {
			return fmt.Errorf("%s URL has no host", u.Scheme)
		}
	case "unix":
		if u.Path == "" {
			return errors.New("unix URL has no socket path")
		}
	default:
		return fmt.Errorf("scheme %q: want redis, rediss or unix", u.Scheme)
	}
	return nil
}

// endpoints checks each endpoint's URL for its kind and gives unnamed ones
// their host:port as name. Names are unique per kind: they make path names.
func (c *checker) endpoints(who string, ey endpointsYAML) []Endpoint {
	kinds := []struct {
		kind    feed.Source
		list    []endpointYAML
		schemes []string
	}{
		{feed.SourceSSE, ey.SSE, []string{"http", "https"}},
		{feed.SourceWS, ey.WS, []string{"ws", "wss"}},
		{feed.SourceSocketIO, ey.SocketIO, []string{"ws", "wss", "http", "https"}},
		{feed.SourcePoll, ey.Poll, []string{"http", "https"}},
		{feed.SourceBrowser, ey.Browser, []string{"http", "https"}},
	}
	var out []Endpoint
	for _, k := range kinds {
		seen := map[string]int{}
		for _, e := range k.list {
			u, err := url.Parse(e.URL)
			if err != nil || !strings.Contains(e.URL, "://") {
				c.errorf(e.Line, "%s: %s endpoint: not a URL (want [NAME=]%s://HOST/PATH)", who, k.kind, k.schemes[0])
				continue
			}
			if !slices.Contains(k.schemes, strings.ToLower(u.Scheme)) {
				c.errorf(e.Line, "%s: %s endpoint: scheme %q, want %s", who, k.kind, u.Scheme, strings.Join(k.schemes, " or "))
				continue
			}
			if u.Hostname() == "" {
				c.errorf(e.Line, "%s: %s endpoint: the URL has no host", who, k.kind)
				continue
			}
			name := e.Name
			if name == "" {
				name = u.Host
				if u.Port() == "" {
					port := "80"
					if s := strings.ToLower(u.Scheme); s == "https" || s == "wss" {
						port = "443"
					}
					name = net.JoinHostPort(u.Hostname(), port)
				}
			}
			if at, dup := seen[name]; dup {
				c.errorf(e.Line, "%s: %s endpoint name %q is already used at line %d; give each a NAME=", who, k.kind, name, at)
				continue
			}
			seen[name] = e.Line
			out = append(out, Endpoint{Kind: k.kind, Name: name, URL: e.URL})
		}
	}
	return out
}
