package main

import (
	"fmt"
	"io"
	"strings"
)

// Results of a row: a target met or missed, or a figure given for context.
const (
	pass = "PASS"
	fail = "FAIL"
	info = "info"
)

// row is one line of the result table. Fanscope and Baseline are figures
// measured in the same run; Ratio compares them.
type row struct {
	Section  string
	Metric   string
	Fanscope string
	Baseline string
	Ratio    string
	Target   string
	Result   string
}

// writeTable prints rows as a Markdown table with aligned columns, readable
// in a terminal and pasteable into docs/BENCHMARKS.md.
func writeTable(w io.Writer, rows []row) {
	head := []string{"section", "metric", "fanscope", "baseline (same run)", "ratio", "target", "result"}
	cells := [][]string{head}
	for _, r := range rows {
		cells = append(cells, []string{r.Section, r.Metric, r.Fanscope, r.Baseline, r.Ratio, r.Target, r.Result})
	}
	width := make([]int, len(head))
	for _, c := range cells {
		for i, s := range c {
			width[i] = max(width[i], len([]rune(s)))
		}
	}
	line := func(c []string) {
		var b strings.Builder
		b.WriteString("|")
		for i, s := range c {
			b.WriteString(" ")
			b.WriteString(s)
			b.WriteString(strings.Repeat(" ", width[i]-len([]rune(s))))
			b.WriteString(" |")
		}
		fmt.Fprintln(w, b.String())
	}
	line(cells[0])
	sep := make([]string, len(head))
	for i := range sep {
		sep[i] = strings.Repeat("-", width[i])
	}
	line(sep)
	for _, c := range cells[1:] {
		line(c)
	}
}

// verdict is pass when ok, else fail.
func verdict(ok bool) string {
	if ok {
		return pass
	}
	return fail
}

// ratio formats a/b as "1.23x", or "n/a" when b is not positive.
func ratio(a, b float64) string {
	if b <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

// rate formats a per-second figure as 812k/s or 1.52M/s.
func rate(perSec float64) string {
	switch {
	case perSec >= 1e6:
		return fmt.Sprintf("%.2fM/s", perSec/1e6)
	case perSec >= 1e3:
		return fmt.Sprintf("%.0fk/s", perSec/1e3)
	}
	return fmt.Sprintf("%.0f/s", perSec)
}

// ms formats milliseconds with enough digits for loopback latencies.
func ms(v float64) string {
	if v < 1 {
		return fmt.Sprintf("%.3f ms", v)
	}
	return fmt.Sprintf("%.2f ms", v)
}

// count formats an integer with thousands separators.
func count(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
