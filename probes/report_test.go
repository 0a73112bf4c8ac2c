package probes

import (
	"github.com/fanscope/fanscope/feed"

	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden reports in ../testdata/probe")

// sampleEngine runs 10 probes: redis delivers all in 90–180 µs; app-1
// delivers 7 (every probe but 3, 6 and 9) in 1.4–2.3 ms with one duplicate;
// app-2 over 2 connections delivers all, connection 1 at 3, 4, … 12 ms.
func sampleEngine() *Engine {
	e := NewEngine(Config{RunID: runID, Timeout: 5 * time.Second})
	e.AddPath(PathRedis, 1)
	e.AddPath(SSEPath("app-1"), 1)
	e.AddPath(SSEPath("app-2"), 2)
	for i := range 10 {
		sent := t0.Add(time.Duration(i) * 200 * time.Millisecond)
		p := e.Next(sent)
		e.Observe(redisRec(sent.Add(time.Duration(90+10*i)*time.Microsecond), p.Payload))
		if (i+1)%3 != 0 {
			e.Observe(sseRec(sent.Add(time.Duration(1400+100*i)*time.Microsecond), "app-1", 0, p.Payload))
		}
		if i == 4 {
			e.Observe(sseRec(sent.Add(3*time.Millisecond), "app-1", 0, p.Payload))
		}
		e.Observe(sseRec(sent.Add(2*time.Millisecond), "app-2", 0, p.Payload))
		e.Observe(sseRec(sent.Add(time.Duration(3+i)*time.Millisecond), "app-2", 1, p.Payload))
	}
	return e
}

func sampleInput() ReportInput {
	return ReportInput{
		Channel:          "story:published",
		Subscribers:      map[string]int64{"story:published": 3},
		SubscribersAfter: map[string]int64{"story:published": 3},
		Receivers:        Receivers{Min: 3, Max: 3},
		Duration:         7 * time.Second,
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("..", "testdata", "probe", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run with -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s: got\n%s\nwant\n%s", name, got, want)
	}
}

func TestGoldenReports(t *testing.T) {
	b := DefaultBudgets()
	b.MaxP99 = 2 * time.Millisecond
	b.MinSubscribers = 3
	rep := sampleEngine().Report(t0.Add(10*time.Second), sampleInput(), b)

	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "report.json", append(js, '\n'))

	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	golden(t, "report.txt", text.Bytes())

	var junit bytes.Buffer
	if err := rep.WriteJUnit(&junit); err != nil {
		t.Fatal(err)
	}
	golden(t, "report.junit.xml", junit.Bytes())
}

func TestReportJSONShape(t *testing.T) {
	rep := sampleEngine().Report(t0.Add(10*time.Second), sampleInput(), DefaultBudgets())
	js, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(js, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"pass", "sent", "run_id", "subscribers", "receivers", "paths", "failures"} {
		if _, ok := m[k]; !ok {
			t.Errorf("report JSON lacks %q: %s", k, js)
		}
	}
	path := m["paths"].([]any)[0].(map[string]any)
	var keys []string
	for k := range path {
		keys = append(keys, k)
	}
	if len(keys) != 10 || path["pass"] == nil {
		t.Errorf("path keys: got %v, want exactly SPEC's 10 (with pass)", keys)
	}
	for _, k := range []string{"publish_errors"} {
		if _, ok := m[k]; !ok {
			t.Errorf("report JSON lacks %q: %s", k, js)
		}
	}
	if f := m["failures"].([]any); len(f) == 0 || f[0].(map[string]any)["check"] == nil || f[0].(map[string]any)["message"] == nil {
		t.Errorf("failures: got %v, want objects with check and message", m["failures"])
	}
	if _, ok := m["error"]; ok {
		t.Errorf("a completed run has no error field: %s", js)
	}
	if m["pass"] != false || m["sent"] != 10.0 || m["run_id"] != runID {
		t.Errorf("got pass %v sent %v run_id %v, want false 10 %s", m["pass"], m["sent"], m["run_id"], runID)
	}
	// An empty run still has arrays, not null.
	empty, _ := json.Marshal(NewEngine(Config{RunID: runID}).Report(t0, ReportInput{}, DefaultBudgets()))
	if !strings.Contains(string(empty), `"paths":[]`) || !strings.Contains(string(empty), `"failures":[]`) || !strings.Contains(string(empty), `"subscribers":{}`) {
		t.Errorf("empty report: got %s, want [] and {} rather than null", empty)
	}
}

// TestReportNullLatencyAndPublishErrors checks that a path that delivered
// nothing reports null latencies (not 0 ms), and that probes whose
// PUBLISH failed count as publish errors, not as lost on any path.
func TestReportNullLatencyAndPublishErrors(t *testing.T) {
	e := NewEngine(Config{RunID: runID, Timeout: time.Second})
	e.AddPath(PathRedis, 1)
	e.AddPath(SSEPath("dead"), 1)
	for i := 0; i < 4; i++ {
		p := e.Next(t0.Add(time.Duration(i) * time.Millisecond))
		if i == 3 {
			e.PublishFailed(p.Seq)
			continue
		}
		r := feed.Record{TS: t0.Add(time.Duration(i)*time.Millisecond + 200*time.Microsecond), Source: feed.SourceRedis,
			Kind: feed.KindMessage, Data: p.Payload}
		e.Observe(&r)
	}
	rep := e.Report(t0.Add(5*time.Second), ReportInput{}, DefaultBudgets())
	js, _ := json.Marshal(rep)
	var m struct {
		Sent          int `json:"sent"`
		PublishErrors int `json:"publish_errors"`
		Paths         []map[string]any
		Failures      []Failure
	}
	if err := json.Unmarshal(js, &m); err != nil {
		t.Fatal(err)
	}
	if m.Sent != 3 || m.PublishErrors != 1 {
		t.Errorf("got sent %d publish_errors %d, want 3 1", m.Sent, m.PublishErrors)
	}
	redis, dead := m.Paths[0], m.Paths[1]
	if redis["lost"] != 0.0 || redis["delivered"] != 3.0 || redis["pass"] != true || redis["p50_ms"] == nil {
		t.Errorf("redis path: got %v, want 3 delivered, 0 lost, pass, a p50", redis)
	}
	if dead["lost"] != 3.0 || dead["pass"] != false || dead["p50_ms"] != nil || dead["max_ms"] != nil {
		t.Errorf("dead path: got %v, want 3 lost (not 4), pass false, null latencies", dead)
	}
	var checks []string
	for _, f := range m.Failures {
		checks = append(checks, f.Path+"/"+f.Check)
	}
	if got := strings.Join(checks, ","); got != "sse:dead/delivery,/publish" {
		t.Errorf("failures: got %s, want sse:dead/delivery,/publish", got)
	}
}

// TestReportFailedRun checks the report of a run that could not complete:
// pass false, error and exit set, a connect failure, and a JUnit <error>.
func TestReportFailedRun(t *testing.T) {
	rep := NewEngine(Config{RunID: runID}).Report(t0, ReportInput{}, DefaultBudgets())
	rep.Failed(errors.New("sse endpoint app-2 did not connect"), 3, CheckConnect, "")
	js, _ := json.Marshal(rep)
	for _, want := range []string{`"pass":false`, `"error":"sse endpoint app-2 did not connect"`, `"exit":3`, `"check":"connect"`} {
		if !strings.Contains(string(js), want) {
			t.Errorf("report JSON %s lacks %s", js, want)
		}
	}
	var junit bytes.Buffer
	if err := rep.WriteJUnit(&junit); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(junit.String(), `<error message="sse endpoint app-2 did not connect" type="exit 3">`) || !strings.Contains(junit.String(), `errors="1"`) {
		t.Errorf("junit: got\n%s\nwant an <error> case and errors=\"1\"", junit.String())
	}
}

func TestBudgetEdges(t *testing.T) {
	// 10 probes; 7 delivered; latencies 1..7 ms: p50 = 4 ms (rank 5 of 7 → 5 ms? see below).
	e := NewEngine(Config{RunID: runID})
	e.AddPath(PathRedis, 1)
	for i := range 10 {
		p := e.Next(t0)
		if i < 7 {
			e.Observe(redisRec(t0.Add(time.Duration(i+1)*time.Millisecond), p.Payload))
		}
	}
	snap := e.Snapshot(t0.Add(time.Minute))
	d := pathOf(t, snap, PathRedis).Latency
	// Nearest rank of 7 values: p50 → rank 4 (3.5+0.5), p99 → rank 7.
	if d.P50 != 4*time.Millisecond || d.P99 != 7*time.Millisecond {
		t.Fatalf("setup: got p50 %v p99 %v, want 4ms 7ms", d.P50, d.P99)
	}
	us := time.Microsecond
	tests := []struct {
		name string
		b    Budgets
		want string // "" passes
	}{
		{"delivery equal", Budgets{MinDelivery: 0.7}, ""},
		{"delivery just over", Budgets{MinDelivery: 0.71}, "redis: delivered 7 of 10 (70%), below --min-delivery 71%"},
		{"delivery default", DefaultBudgets(), "redis: delivered 7 of 10 (70%), below --min-delivery 100%"},
		{"delivery zero", Budgets{}, ""},
		{"p50 equal", Budgets{MaxP50: 4 * time.Millisecond}, ""},
		{"p50 just over", Budgets{MaxP50: 4*time.Millisecond - us}, "redis: p50 4ms above --max-p50 3.999ms"},
		{"p99 equal", Budgets{MaxP99: 7 * time.Millisecond}, ""},
		{"p99 just over", Budgets{MaxP99: 7*time.Millisecond - us}, "redis: p99 7ms above --max-p99 6.999ms"},
		{"subscribers equal", Budgets{MinSubscribers: 3}, ""},
		{"subscribers just over", Budgets{MinSubscribers: 4}, "story:published: 3 subscribers (PUBSUB NUMSUB), below --min-subscribers 4"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rep := BuildReport(snap, ReportInput{Channel: "story:published", Subscribers: map[string]int64{"story:published": 3}}, tc.b)
			got := strings.Join(messages(rep.Failures), " | ")
			if got != tc.want || rep.Pass != (tc.want == "") {
				t.Errorf("got pass %v failures %q, want %q", rep.Pass, got, tc.want)
			}
		})
	}
}

func TestBudgetsValidate(t *testing.T) {
	tests := []struct {
		b  Budgets
		ok bool
	}{
		{DefaultBudgets(), true},
		{Budgets{MinDelivery: 0}, true},
		{Budgets{MinDelivery: 1.5}, false},
		{Budgets{MinDelivery: -0.1}, false},
		{Budgets{MinDelivery: 1, MaxP50: -time.Second}, false},
		{Budgets{MinDelivery: 1, MinSubscribers: -1}, false},
	}
	for _, tc := range tests {
		err := tc.b.Validate()
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrUsage)) {
			t.Errorf("%+v: got %v, want ok=%v (ErrUsage otherwise)", tc.b, err, tc.ok)
		}
	}
}

func TestJUnitWellFormed(t *testing.T) {
	b := DefaultBudgets()
	b.MinSubscribers = 5
	rep := sampleEngine().Report(t0.Add(10*time.Second), sampleInput(), b)
	rep.Paths[0].Path = "redis <&\"\x1b>" // hostile name still gives valid XML
	var buf bytes.Buffer
	if err := rep.WriteJUnit(&buf); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Suite    struct {
			Cases []struct {
				Name    string `xml:"name,attr"`
				Failure *struct {
					Message string `xml:"message,attr"`
					Text    string `xml:",chardata"`
				} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	dec := xml.NewDecoder(bytes.NewReader(buf.Bytes()))
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("decode: %v\n%s", err, buf.Bytes())
	}
	if doc.Tests != 4 || doc.Failures != 2 || len(doc.Suite.Cases) != 4 {
		t.Fatalf("got tests %d failures %d cases %d, want 4 2 4", doc.Tests, doc.Failures, len(doc.Suite.Cases))
	}
	c := doc.Suite.Cases[2]
	want := "sse:app-1: delivered 7 of 10 (70%), below --min-delivery 100%"
	if c.Name != "sse:app-1" || c.Failure == nil || c.Failure.Message != want || c.Failure.Text != want {
		t.Errorf("app-1 case: got %+v, want failure %q", c, want)
	}
	if doc.Suite.Cases[0].Failure == nil || !strings.Contains(doc.Suite.Cases[0].Failure.Text, "below --min-subscribers 5") {
		t.Errorf("subscribers case: got %+v, want a --min-subscribers failure", doc.Suite.Cases[0])
	}
}

func TestGoldenFanoutText(t *testing.T) {
	e := NewEngine(Config{RunID: runID, Timeout: time.Second})
	e.AddPath(PathRedis, 1)
	e.AddPath(SSEPath("app-1"), 4)
	for i := range 4 {
		sent := t0.Add(time.Duration(i) * 100 * time.Millisecond)
		p := e.Next(sent)
		e.Observe(redisRec(sent.Add(100*time.Microsecond), p.Payload))
		for c := range 4 {
			if (c == 3 && i >= 2) || (c == 1 && i == 0) {
				continue // connection 3 misses probes 3 and 4, connection 1 misses probe 1
			}
			e.Observe(sseRec(sent.Add(time.Duration(1+c)*time.Millisecond), "app-1", c, p.Payload))
		}
	}
	b := DefaultBudgets()
	b.MinDelivery = 0.5
	rep := e.Report(t0.Add(5*time.Second), ReportInput{Channel: "story:published", Subscribers: map[string]int64{"story:published": 2},
		Receivers: Receivers{Min: 2, Max: 2}}, b)
	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	golden(t, "report_fanout.txt", text.Bytes())
}

func TestFanoutBudgets(t *testing.T) {
	// 2 connections: the first gets each probe in 1 ms, the second in 5 ms.
	e := NewEngine(Config{RunID: runID})
	e.AddPath(SSEPath("a"), 2)
	for range 3 {
		p := e.Next(t0)
		e.Observe(sseRec(t0.Add(time.Millisecond), "a", 0, p.Payload))
		e.Observe(sseRec(t0.Add(5*time.Millisecond), "a", 1, p.Payload))
	}
	snap := e.Snapshot(t0.Add(time.Second))
	tests := []struct {
		b    Budgets
		want string
	}{
		{Budgets{MinDelivery: 1, MaxP99: 5 * time.Millisecond}, ""},
		{Budgets{MinDelivery: 1, MaxP99: 5*time.Millisecond - time.Microsecond}, "sse:a: fan-out p99 (last of 2 connections) 5ms above --max-p99 4.999ms"},
		{Budgets{MinDelivery: 1, MaxP50: time.Millisecond}, "sse:a: fan-out p50 (last of 2 connections) 5ms above --max-p50 1ms"},
	}
	for _, tc := range tests {
		rep := BuildReport(snap, ReportInput{}, tc.b)
		if got := strings.Join(messages(rep.Failures), " | "); got != tc.want {
			t.Errorf("%+v: got %q, want %q", tc.b, got, tc.want)
		}
	}
}

func messages(fs []Failure) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.Message
	}
	return out
}

func TestValidateTemplate(t *testing.T) {
	tests := []struct {
		tmpl string
		ok   bool
	}{
		{DefaultTemplate, true},
		{`{"storyId":"{{token}}","title":"probe"}`, true},
		{"{{token}}-{{seq}}", true},
		{"{{token}}", true},
		{`{"a":1}`, false},
		{"{{token}}{{seq}}", false},
		{"{{token}}{{sent_at}}", false},
		{"x{{token}}7", false},
		{"{{token}} {{token}}1", false},
	}
	for _, tt := range tests {
		err := ValidateTemplate(tt.tmpl)
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrUsage)) {
			t.Errorf("ValidateTemplate(%q) = %v, want ok %v", tt.tmpl, err, tt.ok)
		}
		if tt.ok {
			// Every accepted template renders a payload its own token is found in.
			e := NewEngine(Config{RunID: runID, Template: tt.tmpl})
			p := e.Next(t0)
			if seq, found := findToken(p.Payload, e.prefix); !found || seq != p.Seq {
				t.Errorf("%q: the token of probe %d is not found in %q", tt.tmpl, p.Seq, p.Payload)
			}
		}
	}
}
