package main

import (
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/canaryd/canaryd/rollout"
)

// labelWidth is the width of status's left column ("Last command:  ").
const labelWidth = 15

// page builds status's output: labelled lines whose values wrap within width.
type page struct{ b strings.Builder }

func (p *page) field(label, value string) {
	for i, line := range wrap(value, width-labelWidth) {
		if i == 0 {
			p.b.WriteString(pad(label+":", labelWidth))
		} else {
			p.b.WriteString(strings.Repeat(" ", labelWidth))
		}
		p.b.WriteString(strings.TrimRight(line, " "))
		p.b.WriteString("\n")
	}
}

// more continues the previous field on its own line(s).
func (p *page) more(value string) {
	for _, line := range wrap(value, width-labelWidth) {
		p.b.WriteString(strings.Repeat(" ", labelWidth) + line + "\n")
	}
}

// line continues the previous field with one preformatted line (kept as
// is: its spacing aligns columns).
func (p *page) line(s string) { p.b.WriteString(strings.Repeat(" ", labelWidth) + s + "\n") }

// renderStatus draws one Deployment's rollout as a person wants to see it:
// where it is, the steps with a progress bar, the last check's numbers and
// verdict, and the last events (the verdict history). Pure, so golden tests
// pin it; now is the only clock.
func renderStatus(v view, now time.Time) string {
	p := &page{}
	st := v.Status
	p.field("Name", v.Name)
	p.field("Namespace", v.Namespace)
	switch {
	case !v.Enabled && !v.Adopted:
		p.field("Phase", fmt.Sprintf("not managed by canaryd (label it %s=true to opt in)", rollout.LabelEnabled))
		return p.b.String()
	case !v.Adopted:
		p.field("Phase", "Adopting: canaryd has not written its status yet (is it running and watching this namespace?)")
		return p.b.String()
	case v.StatusErr != nil:
		p.field("Phase", "Unknown: "+v.StatusErr.Error())
		return p.b.String()
	}
	p.field("Phase", phaseLine(v, now))
	if st.Message != "" {
		p.field("Message", st.Message)
	}
	p.field("Revision", revisionLine(v))
	p.field("Weight", fmt.Sprintf("canary %s · stable %s", percent(st.Weight), percent(1000-st.Weight)))
	pods := fmt.Sprintf("stable %d/%d available", v.Ready, v.Replicas)
	if v.Canary != nil {
		pods += fmt.Sprintf(" · canary %d/%d ready", v.Canary[0], v.Canary[1])
	}
	p.field("Pods", pods)
	if v.SpecErr != nil {
		p.field("Config", "invalid, canaryd changes nothing: "+v.SpecErr.Error())
	} else {
		steps(p, v, now)
		p.field("Config", configLine(v.Spec))
	}
	if c := st.LastCheck; c != nil {
		p.field("Last check", fmt.Sprintf("%s %s %s ago: %s", verdictSymbol(c.Verdict), c.Verdict, age(now, c.Time), numbers(c)))
		if c.Reason != "" {
			p.more(c.Reason)
		}
	}
	if v.SpecErr == nil {
		p.field("Failures", fmt.Sprintf("%d of %d allowed · inconclusive checks %d", st.Failures, v.Spec.MaxFailures, st.Inconclusive))
	}
	if st.LastCommand != "" {
		p.field("Last command", st.LastCommand)
	}
	for _, c := range v.Pending {
		p.field("Pending", c.Key()+": canaryd has not carried it out yet")
	}
	events(p, v.Events, now)
	return p.b.String()
}

func phaseLine(v view, now time.Time) string {
	st := v.Status
	n := len(v.Spec.Steps)
	var s string
	switch st.Phase {
	case rollout.PhaseIdle:
		s = "Idle: nothing to roll out"
	case rollout.PhaseWaiting:
		s = "Waiting: the new revision waits to start"
	case rollout.PhaseProgressing:
		s = fmt.Sprintf("Progressing: step %d of %d", st.Step, n)
	case rollout.PhaseHeld:
		s = fmt.Sprintf("Held at step %d of %d", st.Step, n)
		if st.HeldSince != nil {
			s += " for " + age(now, *st.HeldSince)
		}
	case rollout.PhaseWaitingPromotion:
		s = fmt.Sprintf("WaitingPromotion: all %d steps passed; `kubectl canary promote %s` to promote", n, v.Name)
	case rollout.PhasePromoting:
		s = "Promoting: " + stageText(st.Stage)
	case rollout.PhaseSucceeded:
		s = "Succeeded: revision " + st.Revision + " is stable"
	case rollout.PhaseRollingBack:
		s = "RollingBack: all traffic returns to stable"
	case rollout.PhaseFailed:
		s = "Failed: revision " + st.FailedRevision + " was rolled back"
		if st.FailedRevision == v.Template {
			s += fmt.Sprintf("; it stays pending until `kubectl canary retry %s` or a new revision", v.Name)
		}
	default:
		s = string(st.Phase)
	}
	if st.Paused {
		s += fmt.Sprintf(" (paused: `kubectl canary resume %s`)", v.Name)
	}
	if st.SkipAnalysis {
		s += " (the next revision is promoted without analysis)"
	}
	return s
}

func stageText(stage string) string {
	switch stage {
	case rollout.StageScaleCanary:
		return "scaling the canary to the stable replica count (1 of 4)"
	case rollout.StageShiftCanary:
		return "shifting all traffic to the canary (2 of 4)"
	case rollout.StageRollStable:
		return "rolling the Deployment to the new revision (3 of 4)"
	case rollout.StageReturnStable:
		return "returning traffic to the new stable pods (4 of 4)"
	}
	return "stage " + stage
}

func revisionLine(v view) string {
	st := v.Status
	s := st.Revision
	if s == "" {
		s = st.StableRevision
	}
	if st.StableRevision != "" && st.StableRevision != s {
		s += " (stable " + st.StableRevision + ")"
	}
	if v.Template != s && v.Template != st.StableRevision && v.Template != st.Revision {
		s += " · template now " + v.Template + " (not yet picked up)"
	}
	return s
}

func configLine(s rollout.Spec) string {
	ws := make([]string, len(s.Steps))
	for i, w := range s.Steps {
		ws[i] = percent(w)
	}
	c := fmt.Sprintf("steps %s every %s · success rate ≥ %s%% · p99 ≤ %s · max failures %d",
		strings.Join(ws, ","), short(s.Interval), trim(s.MinSuccessRate, 2), short(s.MaxLatencyP99), s.MaxFailures)
	if s.ManualPromotion {
		c += " · manual promotion"
	}
	return c
}

// stepState is how one step (or the final promotion) is drawn.
type stepState int

const (
	stepPending stepState = iota
	stepCurrent
	stepHeld
	stepDone
	stepFailed
)

var stepMarks = map[stepState]string{stepPending: "·", stepCurrent: "▶", stepHeld: "‖", stepDone: "✔", stepFailed: "✘"}

// steps draws the progress bar and one line per step plus the promotion.
func steps(p *page, v view, now time.Time) {
	st, spec := v.Status, v.Spec
	n := len(spec.Steps)
	states := make([]stepState, n+1) // the last is the promotion
	progress := 0.0                  // in steps, of n+1
	walking := st.Phase == rollout.PhaseProgressing || st.Phase == rollout.PhaseHeld
	switch {
	case st.Phase == rollout.PhaseSucceeded:
		for i := range states {
			states[i] = stepDone
		}
		progress = float64(n + 1)
	case walking:
		cur := max(st.Step, 1) - 1
		for i := 0; i < cur; i++ {
			states[i] = stepDone
		}
		states[cur] = stepCurrent
		if st.Phase == rollout.PhaseHeld {
			states[cur] = stepHeld
		}
		progress = float64(cur)
		if st.Step > 0 && st.StepStartedAt != nil && spec.Interval > 0 {
			progress += math.Min(1, float64(now.Sub(*st.StepStartedAt))/float64(spec.Interval))
		}
	case st.Phase == rollout.PhaseWaitingPromotion || st.Phase == rollout.PhasePromoting:
		for i := 0; i < n; i++ {
			states[i] = stepDone
		}
		states[n] = stepCurrent
		progress = float64(n)
		if st.Phase == rollout.PhasePromoting {
			progress += stageProgress(st.Stage)
		}
	case st.Phase == rollout.PhaseRollingBack || st.Phase == rollout.PhaseFailed:
		cur := min(max(st.Step, 1), n) - 1
		for i := 0; i < cur; i++ {
			states[i] = stepDone
		}
		states[cur] = stepFailed
		progress = float64(cur)
	}
	p.field("Steps", bar(progress/float64(n+1), 40)+fmt.Sprintf(" %d%%", int(100*progress/float64(n+1))))
	for i := 0; i <= n; i++ {
		what := "promote"
		if i < n {
			what = fmt.Sprintf("%-2d %5s", i+1, percent(spec.Steps[i]))
		}
		line := stepMarks[states[i]] + " " + what
		switch {
		case i < n && (states[i] == stepCurrent || states[i] == stepHeld) && st.Step == 0:
			line += "   waiting for the canary to be ready"
		case i < n && (states[i] == stepCurrent || states[i] == stepHeld) && st.StepStartedAt != nil:
			if at := now.Sub(*st.StepStartedAt); at > spec.Interval {
				line += fmt.Sprintf("   %s at this step (interval %s)", age(now, *st.StepStartedAt), short(spec.Interval))
			} else {
				line += fmt.Sprintf("   %s of %s at this step", age(now, *st.StepStartedAt), short(spec.Interval))
			}
		case i == n && st.Phase == rollout.PhaseWaitingPromotion:
			line += "   waiting for " + rollout.CmdPromote.Key()
		case i == n && st.Phase == rollout.PhasePromoting:
			line += "   " + stageText(st.Stage)
		case states[i] == stepFailed:
			line += "   rolled back here"
		}
		p.line(line)
	}
}

func stageProgress(stage string) float64 {
	switch stage {
	case rollout.StageShiftCanary:
		return 0.25
	case rollout.StageRollStable:
		return 0.5
	case rollout.StageReturnStable:
		return 0.75
	}
	return 0
}

// bar draws a fraction as cells of █ and ░ between brackets.
func bar(f float64, cells int) string {
	f = math.Max(0, math.Min(1, f))
	full := int(math.Floor(f * float64(cells)))
	return "[" + strings.Repeat("█", full) + strings.Repeat("░", cells-full) + "]"
}

// events draws the last events as a table whose messages wrap in their column.
func events(p *page, evs []event, now time.Time) {
	if len(evs) == 0 {
		return
	}
	p.b.WriteString("\nEvents:\n")
	reasonW := len("REASON")
	for _, e := range evs {
		reasonW = max(reasonW, min(utf8.RuneCountInString(e.Reason), 24))
	}
	const indent, ageW, typeW = 2, 7, 9
	msgW := width - indent - ageW - typeW - (reasonW + 2)
	head := pad("AGE", ageW) + pad("TYPE", typeW) + pad("REASON", reasonW+2) + "MESSAGE"
	p.b.WriteString(strings.Repeat(" ", indent) + head + "\n")
	for _, e := range evs {
		typ := "Normal"
		if e.Warning {
			typ = "Warning"
		}
		msg := e.Message
		if e.Count > 1 {
			msg += fmt.Sprintf(" (×%d)", e.Count)
		}
		reason := e.Reason
		if utf8.RuneCountInString(reason) > 24 {
			reason = string([]rune(reason)[:23]) + "…"
		}
		for i, line := range wrap(msg, msgW) {
			left := strings.Repeat(" ", indent+ageW+typeW+reasonW+2)
			if i == 0 {
				left = strings.Repeat(" ", indent) + pad(age(now, e.Last), ageW) + pad(typ, typeW) + pad(reason, reasonW+2)
			}
			p.b.WriteString(left + line + "\n")
		}
	}
}
