package rollout

import "fmt"

// Command is a one-shot instruction a person (or kubectl canary) sets as an
// annotation on the Deployment. canaryd removes it once carried out or
// refused, and records the outcome in status.
type Command string

const (
	CmdPromote      Command = "promote"
	CmdAbort        Command = "abort"
	CmdRetry        Command = "retry"
	CmdPause        Command = "pause"
	CmdResume       Command = "resume"
	CmdSkipAnalysis Command = "skip-analysis"
)

// Commands in the order they are carried out when several are set at once:
// abort wins over promote; pause before resume so "pause+resume" ends resumed.
var commandOrder = []Command{CmdAbort, CmdRetry, CmdSkipAnalysis, CmdPromote, CmdPause, CmdResume}

var commandByKey = func() map[string]Command {
	m := map[string]Command{}
	for _, c := range commandOrder {
		m[c.Key()] = c
	}
	return m
}()

// Key is the annotation that carries the command.
func (c Command) Key() string { return Prefix + string(c) }

// pendingCommands lists the commands present in the annotations, in the order
// they are carried out.
func pendingCommands(annotations map[string]string) []Command {
	var cmds []Command
	for _, c := range commandOrder {
		if _, ok := annotations[c.Key()]; ok {
			cmds = append(cmds, c)
		}
	}
	return cmds
}

// commands carries out the one-shot commands found on foo, each once: it is
// removed from the annotations and its outcome recorded in status.
func (d *decider) commands() {
	for _, c := range pendingCommands(d.o.Annotations) {
		d.remove = append(d.remove, c.Key())
		outcome, ok := d.command(c)
		d.st.LastCommand = string(c) + ": " + outcome
		if ok {
			d.event("Command", "%s: %s", c.Key(), outcome)
		} else {
			d.warn("CommandRefused", "%s: %s", c.Key(), outcome)
		}
	}
}

func (d *decider) command(c Command) (string, bool) {
	st := &d.st
	walking := st.Phase == PhaseProgressing || st.Phase == PhaseHeld || st.Phase == PhaseWaitingPromotion
	earlyPromotion := st.Phase == PhasePromoting && (st.Stage == StageScaleCanary || st.Stage == StageShiftCanary)
	failedPending := st.FailedRevision != "" && d.o.Revision == st.FailedRevision
	switch c {
	case CmdAbort:
		switch {
		case walking || earlyPromotion:
			d.beginRollBack("aborted by "+c.Key(), true)
			return "rolling back revision " + st.Revision, true
		case st.Phase == PhaseWaiting:
			st.Phase, st.FailedRevision = PhaseFailed, d.o.Revision
			return "revision " + d.o.Revision + " marked failed", true
		case st.Phase == PhasePromoting:
			return "refused: the promotion is already rolling the Deployment", false
		}
	case CmdRetry:
		if failedPending {
			st.Phase, st.FailedRevision = PhaseIdle, ""
			return "retrying revision " + d.o.Revision, true
		}
		return "refused: no failed revision is pending", false
	case CmdPromote:
		switch {
		case walking:
			d.beginPromotion("promoted by " + c.Key())
			return "promoting revision " + st.Revision, true
		case failedPending:
			st.Phase, st.FailedRevision, st.SkipAnalysis = PhaseIdle, "", true
			return "promoting failed revision " + d.o.Revision + " without analysis", true
		case st.Phase == PhaseWaiting && !st.Paused:
			d.start()
			return "starting revision " + d.o.Revision + " outside its window", true
		}
	case CmdSkipAnalysis:
		switch {
		case walking:
			d.beginPromotion("analysis skipped by " + c.Key())
			return "promoting revision " + st.Revision + " without further analysis", true
		case failedPending:
			st.Phase, st.FailedRevision, st.SkipAnalysis = PhaseIdle, "", true
			return "promoting failed revision " + d.o.Revision + " without analysis", true
		case st.Phase != PhasePromoting && st.Phase != PhaseRollingBack:
			st.SkipAnalysis = true
			return "the next revision will be promoted without analysis", true
		}
	case CmdPause:
		st.Paused = true
		return "rollouts paused", true
	case CmdResume:
		if !st.Paused {
			return "not paused", true
		}
		st.Paused = false
		return "rollouts resumed", true
	}
	return fmt.Sprintf("refused: nothing to %s in phase %s", c, st.Phase), false
}
