package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/canaryd/canaryd/rollout"
)

// commandFor maps the CLI's verbs to canaryd's one-shot commands.
var commandFor = map[string]rollout.Command{
	"promote": rollout.CmdPromote, "abort": rollout.CmdAbort, "retry": rollout.CmdRetry,
	"pause": rollout.CmdPause, "resume": rollout.CmdResume, "skip": rollout.CmdSkipAnalysis,
}

// command sets one command annotation, after checking that it makes sense
// in the rollout's phase, and waits for canaryd to carry it out.
func (a *app) command(ctx context.Context, verb string, args []string) error {
	fs := a.flags(verb)
	wait := fs.Duration("wait", 30*time.Second, "how long to wait for canaryd to carry the command out; 0 returns at once")
	rest, err := a.parse(fs, args)
	if err != nil {
		return err
	}
	name, err := oneName(verb, rest)
	if err != nil {
		return err
	}
	if *wait < 0 {
		return usageError("--wait %s: want 0 or more", *wait)
	}
	if err := a.connect(); err != nil {
		return err
	}
	cmd := commandFor[verb]
	if err := a.request(ctx, name, verb, cmd); err != nil {
		return err
	}
	if *wait == 0 {
		fmt.Fprintf(a.out, "%s/%s: %s requested\n", a.namespace, name, cmd.Key())
		return nil
	}
	return a.await(ctx, name, cmd, *wait)
}

// request writes the annotation with a precondition on the resourceVersion
// it was judged from: if canaryd changed the status in between, the phase
// is judged again from a fresh read.
func (a *app) request(ctx context.Context, name, verb string, cmd rollout.Command) error {
	for attempt := 0; ; attempt++ {
		d, err := a.client.AppsV1().Deployments(a.namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return notFound(err, a.namespace, name)
		}
		v := viewOf(d)
		if why := refusal(v, cmd); why != "" {
			return no("%s %s/%s refused: %s", verb, a.namespace, name, why)
		}
		patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{
			"resourceVersion": d.ResourceVersion,
			"annotations":     map[string]string{cmd.Key(): a.now().UTC().Format(time.RFC3339)},
		}})
		_, err = a.client.AppsV1().Deployments(a.namespace).Patch(ctx, name, types.MergePatchType, patch,
			metav1.PatchOptions{FieldManager: "kubectl-canary"})
		if apierrors.IsConflict(err) && attempt < 5 {
			continue
		}
		if err != nil {
			return &exitError{code: exitUnknown, err: fmt.Errorf("setting %s on %s/%s: %w", cmd.Key(), a.namespace, name, err)}
		}
		return nil
	}
}

// refusal says why cmd makes no sense for v now, or "" when it does. It
// mirrors what canaryd accepts (rollout/commands.go), so that a person gets
// the answer at once instead of a CommandRefused event later; canaryd still
// judges for itself.
func refusal(v view, cmd rollout.Command) string {
	st := v.Status
	switch {
	case !v.Enabled:
		return fmt.Sprintf("not managed by canaryd (no %s=true label)", rollout.LabelEnabled)
	case !v.Adopted:
		return "canaryd has not adopted it yet (no " + rollout.AnnotationStatus + "): is canaryd running and watching this namespace?"
	case v.StatusErr != nil:
		return v.StatusErr.Error()
	}
	for _, p := range v.Pending {
		if p == cmd {
			return cmd.Key() + " is already set and waits for canaryd: is canaryd running?"
		}
	}
	walking := st.Phase == rollout.PhaseProgressing || st.Phase == rollout.PhaseHeld || st.Phase == rollout.PhaseWaitingPromotion
	earlyPromotion := st.Phase == rollout.PhasePromoting && (st.Stage == rollout.StageScaleCanary || st.Stage == rollout.StageShiftCanary)
	failedPending := st.FailedRevision != "" && st.FailedRevision == v.Template
	phase := "the rollout is " + string(st.Phase)
	switch cmd {
	case rollout.CmdAbort:
		switch {
		case walking || earlyPromotion || st.Phase == rollout.PhaseWaiting:
			return ""
		case st.Phase == rollout.PhasePromoting:
			return "the promotion is already rolling the Deployment to the new revision; too late to abort"
		case st.Phase == rollout.PhaseRollingBack:
			return "it is already rolling back"
		case st.Phase == rollout.PhaseFailed:
			return "revision " + st.FailedRevision + " already failed and was rolled back"
		}
		return phase + ": no rollout in progress to abort"
	case rollout.CmdRetry:
		switch {
		case failedPending:
			return ""
		case st.Phase == rollout.PhaseFailed:
			return fmt.Sprintf("the failed revision %s is no longer the Deployment's template (%s); canaryd rolls out the new one by itself",
				st.FailedRevision, v.Template)
		}
		return phase + ", not Failed: there is no failed revision to retry"
	case rollout.CmdPromote:
		switch {
		case walking || failedPending:
			return ""
		case st.Phase == rollout.PhaseWaiting && st.Paused:
			return "rollouts are paused: resume first"
		case st.Phase == rollout.PhaseWaiting:
			return ""
		case st.Phase == rollout.PhasePromoting:
			return "it is already promoting"
		case st.Phase == rollout.PhaseRollingBack:
			return "it is rolling back; once Failed, retry or promote the failed revision"
		}
		return phase + ": no rollout in progress to promote"
	case rollout.CmdSkipAnalysis:
		switch {
		case walking || failedPending:
			return ""
		case st.Phase == rollout.PhasePromoting || st.Phase == rollout.PhaseRollingBack:
			return phase + ": too late to skip the analysis"
		case st.SkipAnalysis:
			return "already set: the next revision will be promoted without analysis"
		}
		return ""
	case rollout.CmdPause:
		if st.Paused {
			return "already paused; resume with `kubectl canary resume " + v.Name + "`"
		}
		return ""
	case rollout.CmdResume:
		if !st.Paused {
			return "not paused"
		}
		return ""
	}
	return "unknown command " + string(cmd)
}

// await waits until canaryd has removed the annotation (carried out or
// refused) and prints the outcome it recorded in status.
func (a *app) await(ctx context.Context, name string, cmd rollout.Command, wait time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		d, err := a.client.AppsV1().Deployments(a.namespace).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			if _, pending := d.Annotations[cmd.Key()]; !pending {
				st, err := rollout.ParseStatus(d.Annotations[rollout.AnnotationStatus])
				if err != nil {
					return &exitError{code: exitUnknown, err: err}
				}
				outcome, ok := strings.CutPrefix(st.LastCommand, string(cmd)+": ")
				switch {
				case !ok:
					fmt.Fprintf(a.out, "%s/%s: %s carried out\n", a.namespace, name, cmd.Key())
				case strings.HasPrefix(outcome, "refused"):
					return no("%s/%s: canaryd %s", a.namespace, name, outcome)
				default:
					fmt.Fprintf(a.out, "%s/%s: %s\n", a.namespace, name, outcome)
				}
				return nil
			}
		} else if apierrors.IsNotFound(err) {
			return notFound(err, a.namespace, name)
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return &exitError{code: exitUnknown, err: fmt.Errorf(
					"%s is set on %s/%s, but canaryd has not carried it out within %s: is canaryd running and watching namespace %s?",
					cmd.Key(), a.namespace, name, wait, a.namespace)}
			}
			return &exitError{code: exitUnknown, err: ctx.Err()}
		case <-tick.C:
		}
	}
}
