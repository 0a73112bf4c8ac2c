package probes

import (
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Budgets are the checks a probe run must pass. Zero durations and a zero
// MinSubscribers mean "no budget"; MinDelivery is taken as given, so start
// from DefaultBudgets (MinDelivery 1.0).
type Budgets struct {
	MaxP50         time.Duration
	MaxP99         time.Duration
	MinDelivery    float64 // fraction 0..1 of probes each path must deliver
	MinSubscribers int64   // PUBSUB NUMSUB of the probe channel must be at least this
}

// DefaultBudgets requires every probe delivered on every path.
func DefaultBudgets() Budgets { return Budgets{MinDelivery: 1} }

// Validate returns an ErrUsage-wrapping error for budgets out of range.
func (b Budgets) Validate() error {
	switch {
	case math.IsNaN(b.MinDelivery) || b.MinDelivery < 0 || b.MinDelivery > 1:
		return fmt.Errorf("--min-delivery %v is not a fraction between 0 and 1: %w", b.MinDelivery, ErrUsage)
	case b.MaxP50 < 0:
		return fmt.Errorf("--max-p50 %v is negative: %w", b.MaxP50, ErrUsage)
	case b.MaxP99 < 0:
		return fmt.Errorf("--max-p99 %v is negative: %w", b.MaxP99, ErrUsage)
	case b.MinSubscribers < 0:
		return fmt.Errorf("--min-subscribers %d is negative: %w", b.MinSubscribers, ErrUsage)
	}
	return nil
}

// Receivers are the min and max receiver counts PUBLISH answered.
type Receivers struct {
	Min int64 `json:"min"`
	Max int64 `json:"max"`
}

// Observe widens r to include n (the first call sets both).
func (r *Receivers) Observe(n int64, first bool) {
	if first || n < r.Min {
		r.Min = n
	}
	if first || n > r.Max {
		r.Max = n
	}
}

// ReportInput is what the prober measured outside the engine.
type ReportInput struct {
	Channel           string                      // the probe channel
	Subscribers       map[string]int64            // PUBSUB NUMSUB before the probes
	SubscribersAfter  map[string]int64            // and after
	SubscribersByNode map[string]map[string]int64 // cluster: node → channel → count
	Receivers         Receivers
	Duration          time.Duration // how long the run took (JUnit time)
}

// Report is the result of a probe run. Its JSON form is a contract with
// scripts and CI: field names and types change only with the README.
type Report struct {
	Pass              bool                        `json:"pass"`
	Sent              int                         `json:"sent"`
	RunID             string                      `json:"run_id"`
	Subscribers       map[string]int64            `json:"subscribers"`
	SubscribersAfter  map[string]int64            `json:"subscribers_after,omitempty"`
	SubscribersByNode map[string]map[string]int64 `json:"subscribers_by_node,omitempty"`
	Receivers         Receivers                   `json:"receivers"`
	Paths             []PathReport                `json:"paths"`
	Fanout            []FanoutReport              `json:"fanout,omitempty"`
	Failures          []Failure                   `json:"failures"`
	// PublishErrors counts probes whose PUBLISH failed: not lost on any
	// path, since none could have delivered them.
	PublishErrors int `json:"publish_errors"`
	// Error says why the run could not complete (a source unreachable);
	// Exit is then the process exit status (3). Both are empty otherwise.
	Error string `json:"error,omitempty"`
	Exit  int    `json:"exit,omitempty"`

	Channel  string        `json:"-"`
	Duration time.Duration `json:"-"`
	Budgets  Budgets       `json:"-"`
	// SubscriberFailure is the --min-subscribers failure, "" when met.
	SubscriberFailure string `json:"-"`
}

// Failure is one failed check. Check is one of the Check* names.
type Failure struct {
	Path    string `json:"path,omitempty"`
	Check   string `json:"check"`
	Message string `json:"message"`
}

func (f Failure) String() string { return f.Message }

// The checks a Failure names.
const (
	CheckDelivery    = "delivery"
	CheckP50         = "p50"
	CheckP99         = "p99"
	CheckSubscribers = "subscribers"
	CheckConnect     = "connect"
	CheckPublish     = "publish"
	CheckDuplicates  = "duplicates"
)

// PathReport is one path of a Report. Latency fields are nil (JSON null)
// when the path delivered nothing: there is no latency to report.
type PathReport struct {
	Path       string   `json:"path"`
	Pass       bool     `json:"pass"`
	Delivered  int64    `json:"delivered"`
	Lost       int64    `json:"lost"`
	Duplicates int64    `json:"duplicates"`
	Reordered  int64    `json:"reordered"`
	P50MS      *float64 `json:"p50_ms"`
	P90MS      *float64 `json:"p90_ms"`
	P99MS      *float64 `json:"p99_ms"`
	MaxMS      *float64 `json:"max_ms"`

	Sent     int64     `json:"-"`
	Conns    int       `json:"-"`
	Failures []Failure `json:"-"`
}

// FanoutReport is, for an endpoint probed over several connections, the
// time until the last connection received each probe, and the connections
// that missed probes.
type FanoutReport struct {
	Path        string     `json:"path"`
	Connections int        `json:"connections"`
	Complete    int64      `json:"complete"` // probes every connection received
	P50MS       float64    `json:"p50_ms"`
	P99MS       float64    `json:"p99_ms"`
	MaxMS       float64    `json:"max_ms"`
	Missed      []ConnMiss `json:"missed"`
}

// ConnMiss is a connection (0-based index) that missed probes.
type ConnMiss struct {
	Conn   int   `json:"conn"`
	Missed int64 `json:"missed"`
}

// Report expires what is due at now and builds the final report: probes
// still undelivered count as lost.
func (e *Engine) Report(now time.Time, in ReportInput, b Budgets) Report {
	return BuildReport(e.Snapshot(now), in, b)
}

// BuildReport turns a snapshot into the final report, evaluating b on every
// path. Pending probes count as lost: the run is over.
func BuildReport(s Snapshot, in ReportInput, b Budgets) Report {
	r := Report{
		Pass:              true,
		Sent:              s.Sent,
		RunID:             s.RunID,
		Subscribers:       in.Subscribers,
		SubscribersAfter:  in.SubscribersAfter,
		SubscribersByNode: in.SubscribersByNode,
		Receivers:         in.Receivers,
		Paths:             []PathReport{},
		Failures:          []Failure{},
		PublishErrors:     s.PublishErrors,
		Channel:           in.Channel,
		Duration:          in.Duration,
		Budgets:           b,
	}
	if r.Subscribers == nil {
		r.Subscribers = map[string]int64{}
	}
	if b.MinSubscribers > 0 {
		n := r.Subscribers[in.Channel]
		if n < b.MinSubscribers {
			r.SubscriberFailure = fmt.Sprintf("%s: %d subscribers (PUBSUB NUMSUB), below --min-subscribers %d", in.Channel, n, b.MinSubscribers)
			r.Failures = append(r.Failures, Failure{Check: CheckSubscribers, Message: r.SubscriberFailure})
		}
	}
	for _, p := range s.Paths {
		pr := PathReport{
			Path:       p.Path,
			Delivered:  p.Delivered,
			Lost:       p.Lost + p.Pending,
			Duplicates: p.Duplicates,
			Reordered:  p.Reordered,
			Sent:       p.Sent,
			Conns:      p.Conns,
			Pass:       true,
		}
		if p.Latency.Count > 0 {
			pr.P50MS, pr.P90MS = msPtr(p.Latency.P50), msPtr(p.Latency.P90)
			pr.P99MS, pr.MaxMS = msPtr(p.Latency.P99), msPtr(p.Latency.Max)
		}
		var missed []ConnMiss
		for _, c := range p.ConnStats {
			if m := c.Missed + c.Pending; m > 0 {
				missed = append(missed, ConnMiss{Conn: c.Conn, Missed: m})
			}
		}
		pr.Failures = evaluate(p, missed, b)
		pr.Pass = len(pr.Failures) == 0
		r.Failures = append(r.Failures, pr.Failures...)
		r.Paths = append(r.Paths, pr)
		if p.Conns > 1 {
			if missed == nil {
				missed = []ConnMiss{}
			}
			r.Fanout = append(r.Fanout, FanoutReport{
				Path:        p.Path,
				Connections: p.Conns,
				Complete:    p.Delivered,
				P50MS:       ms(p.Fanout.P50),
				P99MS:       ms(p.Fanout.P99),
				MaxMS:       ms(p.Fanout.Max),
				Missed:      missed,
			})
		}
	}
	if s.PublishErrors > 0 {
		r.Failures = append(r.Failures, Failure{Check: CheckPublish,
			Message: fmt.Sprintf("%d of %d probes could not be published", s.PublishErrors, s.PublishErrors+s.Sent)})
	}
	r.Pass = len(r.Failures) == 0
	return r
}

// Failed marks the report as a run that could not complete: pass false,
// err's text in Error, exit in Exit, and a failure naming check (connect
// or publish) so that every reader of the report sees why. path names the
// path at fault ("" when none is), which then does not pass either.
func (r *Report) Failed(err error, exit int, check, path string) {
	r.Pass = false
	r.Error = err.Error()
	r.Exit = exit
	if r.Paths == nil {
		r.Paths = []PathReport{}
	}
	for i := range r.Paths {
		if r.Paths[i].Path == path {
			r.Paths[i].Pass = false
		}
	}
	r.Failures = append(r.Failures, Failure{Path: path, Check: check, Message: r.Error})
}

// evaluate returns the failed checks of one path.
func evaluate(p PathStats, missed []ConnMiss, b Budgets) []Failure {
	var out []Failure
	fail := func(check, msg string) { out = append(out, Failure{Path: p.Path, Check: check, Message: msg}) }
	if p.Sent > 0 {
		frac := float64(p.Delivered) / float64(p.Sent)
		if frac < b.MinDelivery-1e-9 {
			msg := fmt.Sprintf("%s: delivered %d of %d (%s), below --min-delivery %s",
				p.Path, p.Delivered, p.Sent, pct(frac), pct(b.MinDelivery))
			if p.Conns > 1 {
				msg = fmt.Sprintf("%s: delivered %d of %d to all %d connections (%s), below --min-delivery %s; %s",
					p.Path, p.Delivered, p.Sent, p.Conns, pct(frac), pct(b.MinDelivery), missedWords(missed))
			}
			fail(CheckDelivery, msg)
		}
	}
	if p.Latency.Count > 0 {
		if b.MaxP50 > 0 && p.Latency.P50 > b.MaxP50 {
			fail(CheckP50, fmt.Sprintf("%s: p50 %s above --max-p50 %s", p.Path, dur(p.Latency.P50), dur(b.MaxP50)))
		}
		if b.MaxP99 > 0 && p.Latency.P99 > b.MaxP99 {
			fail(CheckP99, fmt.Sprintf("%s: p99 %s above --max-p99 %s", p.Path, dur(p.Latency.P99), dur(b.MaxP99)))
		}
	}
	// Over several connections the budgets hold for every one of them:
	// the time until the last connection got each probe is checked too.
	if p.Conns > 1 && p.Fanout.Count > 0 {
		if b.MaxP50 > 0 && p.Fanout.P50 > b.MaxP50 {
			fail(CheckP50, fmt.Sprintf("%s: fan-out p50 (last of %d connections) %s above --max-p50 %s", p.Path, p.Conns, dur(p.Fanout.P50), dur(b.MaxP50)))
		}
		if b.MaxP99 > 0 && p.Fanout.P99 > b.MaxP99 {
			fail(CheckP99, fmt.Sprintf("%s: fan-out p99 (last of %d connections) %s above --max-p99 %s", p.Path, p.Conns, dur(p.Fanout.P99), dur(b.MaxP99)))
		}
	}
	return out
}

func missedWords(missed []ConnMiss) string {
	if len(missed) == 0 {
		return "no connection missed all"
	}
	s := append([]ConnMiss(nil), missed...)
	sort.SliceStable(s, func(i, j int) bool { return s[i].Missed > s[j].Missed })
	var parts []string
	for i, m := range s {
		if i == 3 {
			parts = append(parts, fmt.Sprintf("and %d more", len(s)-3))
			break
		}
		parts = append(parts, fmt.Sprintf("#%d missed %d", m.Conn, m.Missed))
	}
	noun := "connections"
	if len(s) == 1 {
		noun = "connection"
	}
	return fmt.Sprintf("%d %s missed probes (%s)", len(s), noun, strings.Join(parts, ", "))
}

// msPtr is ms(d) as a pointer, for latency fields that may be null.
func msPtr(d time.Duration) *float64 {
	v := ms(d)
	return &v
}

// ms converts to milliseconds at microsecond resolution.
func ms(d time.Duration) float64 {
	return float64(d.Microseconds()) / 1000
}

// dur formats d in milliseconds at microsecond resolution: "212.345ms".
func dur(d time.Duration) string {
	return strconv.FormatFloat(ms(d), 'f', -1, 64) + "ms"
}

// pct formats a fraction as a percentage with at most one decimal: "70%",
// "66.7%".
func pct(f float64) string {
	s := strconv.FormatFloat(f*100, 'f', 1, 64)
	return strings.TrimSuffix(s, ".0") + "%"
}

// WriteText writes the human summary: a header, one row per path with
// PASS/FAIL, fan-out lines, then the reason for every failure.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "fanscope probe %s: %d probes", r.RunID, r.Sent)
	if r.Channel != "" {
		fmt.Fprintf(&b, " on %s", r.Channel)
	}
	if r.Channel != "" {
		if n, ok := r.Subscribers[r.Channel]; ok {
			fmt.Fprintf(&b, ", subscribers %d", n)
			if a, ok := r.SubscribersAfter[r.Channel]; ok {
				fmt.Fprintf(&b, " (after: %d)", a)
			}
		}
	}
	if r.Sent > 0 {
		fmt.Fprintf(&b, ", PUBLISH receivers min %d max %d", r.Receivers.Min, r.Receivers.Max)
	}
	b.WriteString("\n\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PATH\tRESULT\tDELIVERED\tLOST\tDUP\tREORDERED\tP50\tP90\tP99\tMAX")
	for _, p := range r.Paths {
		res := "PASS"
		if !p.Pass {
			res = "FAIL"
		}
		lat := func(v *float64) string {
			if v == nil {
				return "-"
			}
			return strconv.FormatFloat(*v, 'f', -1, 64) + "ms"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\n", p.Path, res, p.Delivered, p.Sent,
			p.Lost, p.Duplicates, p.Reordered, lat(p.P50MS), lat(p.P90MS), lat(p.P99MS), lat(p.MaxMS))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, f := range r.Fanout {
		fmt.Fprintf(&b, "\nfan-out %s: %d connections, %d/%d probes reached all; last connection p50 %sms p99 %sms max %sms",
			f.Path, f.Connections, f.Complete, r.Sent, fmtMS(f.P50MS), fmtMS(f.P99MS), fmtMS(f.MaxMS))
		if len(f.Missed) > 0 {
			b.WriteString("; " + missedWords(f.Missed))
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
	if r.PublishErrors > 0 {
		fmt.Fprintf(&b, "publish errors: %d probes could not be published (not counted as lost)\n", r.PublishErrors)
	}
	for _, f := range r.Failures {
		b.WriteString("FAIL " + f.Message + "\n")
	}
	if r.Pass {
		b.WriteString("PASS: every check met\n")
	} else {
		fmt.Fprintf(&b, "FAIL: %d of the checks failed\n", len(r.Failures))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func fmtMS(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

func fmtMSPtr(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmtMS(*v) + "ms"
}

type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Time     string       `xml:"time,attr,omitempty"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Time       string          `xml:"time,attr,omitempty"`
	Properties []junitProperty `xml:"properties>property"`
	Cases      []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Failure   *junitFailure `xml:"failure,omitempty"`
	Error     *junitFailure `xml:"error,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

// WriteJUnit writes a JUnit XML report: one test case per path (and one for
// the subscriber count when --min-subscribers was set).
func (r *Report) WriteJUnit(w io.Writer) error {
	s := junitSuite{
		Name: "fanscope probe",
		Properties: []junitProperty{
			{Name: "run_id", Value: r.RunID},
			{Name: "sent", Value: strconv.Itoa(r.Sent)},
		},
	}
	if r.Channel != "" {
		s.Properties = append(s.Properties, junitProperty{Name: "channel", Value: r.Channel})
	}
	if r.Duration > 0 {
		s.Time = strconv.FormatFloat(r.Duration.Seconds(), 'f', 3, 64)
	}
	if r.Budgets.MinSubscribers > 0 {
		c := junitCase{Name: "subscribers:" + r.Channel, Classname: "fanscope.probe"}
		if r.SubscriberFailure != "" {
			c.Failure = &junitFailure{Message: r.SubscriberFailure, Type: "min-subscribers", Text: r.SubscriberFailure}
		}
		s.Cases = append(s.Cases, c)
	}
	for _, p := range r.Paths {
		c := junitCase{
			Name:      p.Path,
			Classname: "fanscope.probe",
			SystemOut: fmt.Sprintf("delivered %d/%d lost %d duplicates %d reordered %d p50 %s p90 %s p99 %s max %s",
				p.Delivered, p.Sent, p.Lost, p.Duplicates, p.Reordered, fmtMSPtr(p.P50MS), fmtMSPtr(p.P90MS), fmtMSPtr(p.P99MS), fmtMSPtr(p.MaxMS)),
		}
		if !p.Pass {
			msgs := make([]string, len(p.Failures))
			for i, f := range p.Failures {
				msgs[i] = f.Message
			}
			c.Failure = &junitFailure{Message: strings.Join(msgs, "; "), Type: "budget", Text: strings.Join(msgs, "\n")}
		}
		s.Cases = append(s.Cases, c)
	}
	if r.PublishErrors > 0 {
		msg := fmt.Sprintf("%d probes could not be published", r.PublishErrors)
		s.Cases = append(s.Cases, junitCase{Name: "publish", Classname: "fanscope.probe",
			Failure: &junitFailure{Message: msg, Type: "publish", Text: msg}})
	}
	if r.Error != "" {
		s.Cases = append(s.Cases, junitCase{Name: "run", Classname: "fanscope.probe",
			Error: &junitFailure{Message: r.Error, Type: "exit " + strconv.Itoa(r.Exit), Text: r.Error}})
	}
	for _, c := range s.Cases {
		s.Tests++
		if c.Failure != nil {
			s.Failures++
		}
		if c.Error != nil {
			s.Errors++
		}
	}
	doc := junitSuites{Name: "fanscope", Tests: s.Tests, Failures: s.Failures, Errors: s.Errors, Time: s.Time, Suites: []junitSuite{s}}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("write junit report: %w", err)
	}
	_, err := io.WriteString(w, "\n")
	return err
}
