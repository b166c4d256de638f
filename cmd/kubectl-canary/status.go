package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/yaml"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/rollout"
)

type statusOptions struct {
	watch   bool
	output  string
	events  int
	timeout time.Duration
}

// status shows one Deployment's rollout, once or (--watch) until it ends.
func (a *app) status(ctx context.Context, args []string) error {
	fs := a.flags("status")
	var o statusOptions
	fs.BoolVarP(&o.watch, "watch", "w", false, "redraw until the rollout ends: exit 0 when promoted, 1 when rolled back")
	fs.StringVarP(&o.output, "output", "o", "", "json or yaml: print canaryd's status annotation instead")
	fs.IntVar(&o.events, "events", 8, "how many of the last events to show")
	fs.DurationVar(&o.timeout, "timeout", 0, "with --watch, give up after this long (exit 3); 0 waits as long as it takes")
	rest, err := a.parse(fs, args)
	if err != nil {
		return err
	}
	name, err := oneName("status", rest)
	if err != nil {
		return err
	}
	if o.output != "" && o.output != "json" && o.output != "yaml" {
		return usageError("--output %q: want json or yaml", o.output)
	}
	if o.events < 0 {
		return usageError("--events %d: want 0 or more", o.events)
	}
	if err := a.connect(); err != nil {
		return err
	}
	if o.watch {
		return a.watch(ctx, name, o)
	}
	_, v, err := a.load(ctx, a.namespace, name, o.events)
	if err != nil {
		return err
	}
	if o.output != "" {
		b, err := encode(v, o.output, true)
		if err != nil {
			return err
		}
		_, err = a.out.Write(b)
		return err
	}
	_, err = io.WriteString(a.out, renderStatus(v, a.now()))
	return err
}

// encode renders canaryd's status as JSON or YAML.
func encode(v view, format string, indent bool) ([]byte, error) {
	if !v.Adopted {
		return nil, &exitError{code: exitUnknown, err: fmt.Errorf("%s/%s has no %s: canaryd has not adopted it", v.Namespace, v.Name, rollout.AnnotationStatus)}
	}
	if v.StatusErr != nil {
		return nil, &exitError{code: exitUnknown, err: v.StatusErr}
	}
	if format == "yaml" {
		b, err := yaml.Marshal(v.Status)
		if err != nil {
			return nil, fmt.Errorf("encoding status as YAML: %w", err)
		}
		return b, nil
	}
	var b []byte
	var err error
	if indent {
		b, err = json.MarshalIndent(v.Status, "", "  ")
	} else {
		b, err = json.Marshal(v.Status)
	}
	if err != nil {
		return nil, fmt.Errorf("encoding status as JSON: %w", err)
	}
	return append(b, '\n'), nil
}

// outcome says whether the rollout of the Deployment's current template
// is over, and how: promoted (exit 0), rolled back or never to happen
// (exit 1). It compares canaryd's status with the template's revision, so
// a watch started right after an image bump waits for canaryd to notice it
// instead of reporting the previous rollout's end.
func outcome(v view) (done bool, code int, msg string) {
	st := v.Status
	switch {
	case !v.Enabled && !v.Adopted:
		return true, exitUnknown, fmt.Sprintf("%s/%s is not managed by canaryd (no %s=true label)", v.Namespace, v.Name, rollout.LabelEnabled)
	case v.StatusErr != nil:
		return true, exitUnknown, v.StatusErr.Error()
	case v.SpecErr != nil:
		return true, exitNo, "canaryd will not roll this out: invalid configuration: " + v.SpecErr.Error()
	case !v.Adopted:
		return false, 0, ""
	case st.Phase == rollout.PhaseSucceeded && st.StableRevision == v.Template:
		return true, exitOK, fmt.Sprintf("revision %s promoted: it is stable", v.Template)
	case st.Phase == rollout.PhaseIdle && st.StableRevision == v.Template:
		return true, exitOK, fmt.Sprintf("revision %s is stable: nothing to roll out", v.Template)
	case st.Phase == rollout.PhaseFailed && st.FailedRevision == v.Template:
		why := st.Message
		switch {
		case strings.HasPrefix(st.LastCommand, string(rollout.CmdAbort)+":"):
			why = "aborted (" + rollout.CmdAbort.Key() + ")"
		case st.LastCheck != nil && st.LastCheck.Verdict == analysis.Fail && st.LastCheck.Reason != "":
			why = st.LastCheck.Reason
		}
		return true, exitNo, fmt.Sprintf("revision %s rolled back: %s", v.Template, why)
	}
	return false, 0, ""
}

// watch redraws the rollout on every change of the Deployment, and at least
// every second so ages move, until outcome says it is over. On a terminal
// it redraws the screen; elsewhere (CI logs) it prints one line per change
// and the whole status at the end.
func (a *app) watch(ctx context.Context, name string, o statusOptions) error {
	if o.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}
	f, ok := a.out.(*os.File)
	tty := ok && term.IsTerminal(int(f.Fd()))
	var w watch.Interface
	defer func() {
		if w != nil {
			w.Stop()
		}
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last, failing := "", 0
	for {
		_, v, err := a.load(ctx, a.namespace, name, o.events)
		if err != nil {
			final := apierrors.IsNotFound(err) || apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err)
			if ctx.Err() == nil && !final && failing < 30 {
				failing++ // an API hiccup during a long rollout is not its outcome
			} else {
				return a.watchEnded(ctx, err)
			}
		} else {
			failing = 0
			last = a.frame(v, o, tty, last)
			if done, code, msg := outcome(v); done {
				if !tty && o.output == "" {
					fmt.Fprintf(a.out, "\n%s", renderStatus(v, a.now()))
				}
				if code == exitOK {
					fmt.Fprintln(a.out, msg)
					return nil
				}
				return &exitError{code: code, err: errors.New(msg)}
			}
		}
		if w == nil {
			w, _ = a.client.AppsV1().Deployments(a.namespace).Watch(ctx, metav1.ListOptions{
				FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String()})
		}
		var changes <-chan watch.Event
		if w != nil {
			changes = w.ResultChan()
		}
		select {
		case <-ctx.Done():
			return a.watchEnded(ctx, ctx.Err())
		case <-tick.C:
		case _, open := <-changes:
			if !open {
				w = nil // the server ended the watch; open another
			}
		}
	}
}

func (a *app) watchEnded(ctx context.Context, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &exitError{code: exitUnknown, err: errors.New("timed out before the rollout ended")}
	}
	if ctx.Err() != nil {
		return &exitError{code: exitUnknown, err: errors.New("interrupted before the rollout ended")}
	}
	return err
}

// frame draws v if it differs from the last frame and returns what it drew.
func (a *app) frame(v view, o statusOptions, tty bool, last string) string {
	switch {
	case o.output != "":
		b, err := encode(v, o.output, false)
		if err != nil {
			return last // not adopted yet: nothing to print
		}
		if o.output == "yaml" {
			b = append([]byte("---\n"), b...)
		}
		if s := string(b); s != last {
			_, _ = io.WriteString(a.out, s)
			return s
		}
	case tty:
		if s := renderStatus(v, a.now()); s != last {
			_, _ = io.WriteString(a.out, "\x1b[H\x1b[2J"+s)
			return s
		}
	default:
		if k := progressKey(v); k != last {
			_, _ = io.WriteString(a.out, progressLines(v, a.now()))
			return k
		}
	}
	return last
}

// progressKey is what makes a watch in a log print a new line: a change of
// phase, step, weight, verdict or message, not every new measurement.
func progressKey(v view) string {
	st := v.Status
	k := fmt.Sprintf("%s|%s|%d|%s|%s", phaseText(v), stepText(v), st.Weight, st.Message, v.Template)
	if c := st.LastCheck; c != nil {
		k += "|" + string(c.Verdict)
	}
	return k
}

// progressLines is a watch's output in a log: one line of what changed,
// the message wrapped below it, all within width.
func progressLines(v view, now time.Time) string {
	stamp := now.Format("15:04:05") + " "
	indent := strings.Repeat(" ", len(stamp))
	if !v.Adopted {
		return stamp + "waiting for canaryd to adopt " + v.Name + "\n"
	}
	st := v.Status
	s := fmt.Sprintf("%s %s · canary %s", phaseText(v), stepText(v), percent(st.Weight))
	if c := st.LastCheck; c != nil {
		s += fmt.Sprintf(" · %s %s: %s", verdictSymbol(c.Verdict), c.Verdict, compactNumbers(c))
	}
	lines := []string{stamp + s}
	var notes []string
	if v.Template != st.Revision && v.Template != st.StableRevision && v.Template != st.FailedRevision {
		notes = append(notes, "revision "+v.Template+" not picked up yet")
	}
	if st.Message != "" {
		notes = append(notes, st.Message)
	}
	for _, n := range notes {
		for _, l := range wrap(n, width-len(indent)) {
			lines = append(lines, indent+l)
		}
	}
	return strings.Join(lines, "\n") + "\n"
}

// compactNumbers is numbers for a one-line log: "52 req, 97.62%, p99 27.9ms".
func compactNumbers(c *rollout.Check) string {
	var parts []string
	if c.Requests != nil {
		parts = append(parts, trim(*c.Requests, 0)+" req")
	}
	if c.SuccessRate != nil {
		parts = append(parts, trim(*c.SuccessRate, 2)+"%")
	}
	if c.P99Ms != nil {
		parts = append(parts, "p99 "+trim(*c.P99Ms, 1)+"ms")
	}
	if len(parts) == 0 {
		return "no data"
	}
	return strings.Join(parts, ", ")
}
