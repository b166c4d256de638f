package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/rollout"
)

// width is the widest line the demo prints: it must read in a 100-column
// terminal without wrapping.
const width = 100

// ANSI styles; empty strings when colour is off.
const (
	reset  = "\x1b[0m"
	bold   = "\x1b[1m"
	dim    = "\x1b[2m"
	red    = "\x1b[31m"
	green  = "\x1b[32m"
	yellow = "\x1b[33m"
	cyan   = "\x1b[36m"
)

// wantColour says whether out is a terminal that should get colours: a
// character device, with NO_COLOR unset and TERM not "dumb". Piped into a
// file or a CI log, the output stays plain text.
func wantColour(out *os.File) bool {
	if os.Getenv("NO_COLOR") != "" || os.Getenv("TERM") == "dumb" {
		return false
	}
	fi, err := out.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// printer writes the demo's output. Layout is computed on plain text first
// and styles wrap whole fields, so colour never changes column widths.
type printer struct {
	mu     sync.Mutex
	w      io.Writer
	colour bool
}

func (p *printer) style(s, text string) string {
	if !p.colour || s == "" || text == "" {
		return text
	}
	return s + text + reset
}

func (p *printer) println(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintln(p.w, s)
}

func (p *printer) printf(format string, args ...any) {
	p.println(fmt.Sprintf(format, args...))
}

// heading starts a section: a blank line and the title in bold.
func (p *printer) heading(title string) {
	p.println("")
	p.println(p.style(bold, "== "+title))
}

// row is one line of the live view: where the rollout is and what
// Prometheus says about canary and stable over the analysis window.
type row struct {
	Elapsed time.Duration
	Phase   rollout.Phase
	Step    int // steps applied
	Steps   int // steps in the spec; 0: unknown
	Weight  int // canary weight in the TrafficSplit, milli; -1: no split yet
	Canary  analysis.Numbers
	Stable  analysis.Numbers
	Note    string
}

// rowFormat lays a row out in 82 columns before its note. The phase is
// padded by the caller (cell), so that its colour codes stay outside the
// padding.
const rowFormat = "%8s  %s  %-4s  %6s   %7s %6s %4s   %7s %6s %4s  %s"

// cell pads s to n columns.
func cell(s string, n int) string { return fmt.Sprintf("%-*s", n, s) }

// header is the column titles of rows, aligned with rowFormat.
func (p *printer) header() string {
	h := fmt.Sprintf(rowFormat, "time", cell("phase", 11), "step", "weight",
		"canary", "p99", "req", "stable", "p99", "req", "")
	return p.style(dim, strings.TrimRight(h, " "))
}

// formatRow renders r within width columns. Numbers Prometheus has no data
// for (NaN) show as "-".
func (p *printer) formatRow(r row) string {
	step := "-"
	if r.Steps > 0 && r.Step > 0 {
		step = fmt.Sprintf("%d/%d", r.Step, r.Steps)
	}
	weight := "-"
	if r.Weight >= 0 {
		weight = fmt.Sprintf("%.1f%%", float64(r.Weight)/10)
	}
	phase := string(r.Phase)
	if phase == "" {
		phase = "-"
	}
	cells := func(phase string) string {
		return fmt.Sprintf(rowFormat, elapsed(r.Elapsed), phase, step, weight,
			rate(r.Canary.SuccessRate), millis(r.Canary.LatencyP99Ms), count(r.Canary.Requests),
			rate(r.Stable.SuccessRate), millis(r.Stable.LatencyP99Ms), count(r.Stable.Requests), "")
	}
	plain := cells(cell(phase, 11))
	note := truncate(r.Note, width-utf8.RuneCountInString(plain))
	return strings.TrimRight(cells(p.style(phaseStyle(r.Phase), cell(phase, 11)))+note, " ")
}

func phaseStyle(ph rollout.Phase) string {
	switch ph {
	case rollout.PhaseSucceeded:
		return green
	case rollout.PhaseFailed, rollout.PhaseRollingBack:
		return red
	case rollout.PhaseHeld, rollout.PhaseWaiting, rollout.PhaseWaitingPromotion:
		return yellow
	}
	return ""
}

// event renders one Kubernetes Event: time, reason, and the message wrapped
// to width with a hanging indent, so long analysis reasons stay readable.
func (p *printer) event(at time.Duration, warning bool, reason, message string) []string {
	prefix := fmt.Sprintf("%8s  ", elapsed(at))
	tag := "event " + reason + ": "
	indent := strings.Repeat(" ", len(prefix)+2)
	lines := wrap(tag+message, width-len(prefix), width-len(indent))
	st := cyan
	if warning {
		st = yellow
	}
	out := make([]string, len(lines))
	for i, l := range lines {
		if i == 0 {
			out[i] = prefix + p.style(st, tag) + strings.TrimPrefix(l, tag)
			continue
		}
		out[i] = indent + l
	}
	return out
}

// message renders a status message change under the row it belongs to.
func (p *printer) message(msg string) []string {
	indent := strings.Repeat(" ", 10)
	lines := wrap("status: "+msg, width-len(indent), width-len(indent)-2)
	for i := range lines {
		if i > 0 {
			lines[i] = "  " + lines[i]
		}
		lines[i] = indent + p.style(dim, lines[i])
	}
	return lines
}

// wrap splits s into lines of at most first runes (the first line) and rest
// runes (the others), at spaces where it can; a word longer than a line is
// cut.
func wrap(s string, first, rest int) []string {
	var lines []string
	limit := first
	words := strings.Fields(s)
	cur := ""
	for len(words) > 0 {
		w := words[0]
		switch {
		case cur == "" && utf8.RuneCountInString(w) > limit:
			r := []rune(w)
			lines = append(lines, string(r[:limit]))
			words[0] = string(r[limit:])
			limit = rest
		case cur == "":
			cur = w
			words = words[1:]
		case utf8.RuneCountInString(cur)+1+utf8.RuneCountInString(w) <= limit:
			cur += " " + w
			words = words[1:]
		default:
			lines = append(lines, cur)
			cur = ""
			limit = rest
		}
	}
	if cur != "" || len(lines) == 0 {
		lines = append(lines, cur)
	}
	return lines
}

func truncate(s string, n int) string {
	if n <= 0 {
		return ""
	}
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	if n <= 3 {
		return string(r[:n])
	}
	return string(r[:n-3]) + "..."
}

func elapsed(d time.Duration) string { return fmt.Sprintf("+%.1fs", d.Seconds()) }

func rate(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "-"
	}
	return fmt.Sprintf("%.2f%%", v)
}

func millis(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "-"
	}
	return fmt.Sprintf("%.0fms", v)
}

func count(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "-"
	}
	return fmt.Sprintf("%.0f", v)
}

// summary renders the table of rollouts: what was expected, what canaryd
// did, how long it took and what the mesh simulator counted for the canary.
func (p *printer) summary(outs []outcome) []string {
	const f = "  %-18s %-11s %-11s %7s  %15s %15s %10s"
	lines := []string{p.style(dim, fmt.Sprintf(f, "rollout", "expected", "result", "took",
		"canary requests", "canary failures", "all failed"))}
	for _, o := range outs {
		result := fmt.Sprintf("%-11s", o.result())
		if o.OK {
			result = p.style(green, result)
		} else {
			result = p.style(red, result)
		}
		line := fmt.Sprintf("  %-18s %-11s %s %7s  %15d %15d %10d", o.Name, o.want(), result,
			fmt.Sprintf("%.1fs", o.Took.Seconds()), o.CanaryRequests, o.CanaryFailures, o.AllFailures)
		lines = append(lines, line)
		if o.Reason != "" {
			for i, l := range wrap("why: "+o.Reason, width-4, width-6) {
				indent := "    "
				if i > 0 {
					indent = "      "
				}
				lines = append(lines, indent+p.style(dim, l))
			}
		}
	}
	return lines
}
