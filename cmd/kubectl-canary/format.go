package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/util/duration"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/rollout"
)

// width is the widest line list and status print: a terminal split in two
// still shows them whole.
const width = 100

// percent writes a milli weight as a percentage: 200 → "20%", 125 → "12.5%".
func percent(milli int) string {
	if milli%10 == 0 {
		return strconv.Itoa(milli/10) + "%"
	}
	return strconv.FormatFloat(float64(milli)/10, 'f', 1, 64) + "%"
}

// age is kubectl's way of saying how long ago: "12s", "5m3s", "2d".
func age(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	if d < 0 {
		d = 0
	}
	return duration.HumanDuration(d)
}

// short writes a configured duration as a person would: 1m, not 1m0s.
func short(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func verdictSymbol(v analysis.Verdict) string {
	switch v {
	case analysis.Pass:
		return "✔"
	case analysis.Fail:
		return "✘"
	case analysis.Inconclusive:
		return "?"
	}
	return "!"
}

// numbers summarises a check's measurements of the canary.
func numbers(c *rollout.Check) string {
	var parts []string
	if c.Requests != nil {
		parts = append(parts, fmt.Sprintf("%s requests", trim(*c.Requests, 0)))
	}
	if c.SuccessRate != nil {
		parts = append(parts, fmt.Sprintf("success rate %s%%", trim(*c.SuccessRate, 2)))
	}
	if c.P99Ms != nil {
		parts = append(parts, fmt.Sprintf("p99 %sms", trim(*c.P99Ms, 1)))
	}
	if len(parts) == 0 {
		return "no measurements"
	}
	return strings.Join(parts, ", ")
}

// trim prints f with at most prec decimals and no trailing zeros.
func trim(f float64, prec int) string {
	s := strconv.FormatFloat(f, 'f', prec, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// phaseText is the PHASE column: the phase, and Paused when a person paused
// the rollout (as kubectl writes "Ready,SchedulingDisabled").
func phaseText(v view) string {
	switch {
	case !v.Adopted && v.Enabled:
		return "Adopting"
	case !v.Adopted:
		return "NotManaged"
	case v.StatusErr != nil:
		return "Unknown"
	}
	p := string(v.Status.Phase)
	if v.Status.Paused {
		p += ",Paused"
	}
	return p
}

// stepText is "step/steps", "-" before any rollout, "?" when the
// configuration is invalid (canaryd changes nothing then).
func stepText(v view) string {
	if v.SpecErr != nil {
		return "?"
	}
	if !v.Adopted || v.StatusErr != nil {
		return "-"
	}
	if v.Status.Phase == rollout.PhaseSucceeded {
		return fmt.Sprintf("%d/%d", len(v.Spec.Steps), len(v.Spec.Steps)) // canaryd resets step once promoted
	}
	return fmt.Sprintf("%d/%d", v.Status.Step, len(v.Spec.Steps))
}

// wrap breaks text into lines of at most w runes, at spaces when it can.
func wrap(text string, w int) []string {
	var lines []string
	for _, para := range strings.Split(text, "\n") {
		line := ""
		for _, word := range strings.Fields(para) {
			for utf8.RuneCountInString(word) > w {
				if line != "" {
					lines, line = append(lines, line), ""
				}
				r := []rune(word)
				lines, word = append(lines, string(r[:w])), string(r[w:])
			}
			switch {
			case line == "":
				line = word
			case utf8.RuneCountInString(line)+1+utf8.RuneCountInString(word) <= w:
				line += " " + word
			default:
				lines, line = append(lines, line), word
			}
		}
		lines = append(lines, line)
	}
	return lines
}

// pad right-pads s with spaces to n runes.
func pad(s string, n int) string {
	if k := utf8.RuneCountInString(s); k < n {
		return s + strings.Repeat(" ", n-k)
	}
	return s
}
