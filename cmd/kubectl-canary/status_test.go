package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/canaryd/canaryd/rollout"
)

// outcome decides status --watch's exit code: it must wait while canaryd
// has not yet picked up the template a CI job just pushed, and end only on
// the fate of that template.
func TestWatchOutcome(t *testing.T) {
	const r1, r2, r3 = "r1", "r2", "r3"
	cases := []struct {
		name string
		v    view
		done bool
		code int
		says string
	}{
		{"promoted", view{Enabled: true, Adopted: true, Template: r2,
			Status: rollout.Status{Phase: rollout.PhaseSucceeded, Revision: r2, StableRevision: r2}}, true, exitOK, "promoted"},
		{"previous rollout succeeded, new template not picked up yet", view{Enabled: true, Adopted: true, Template: r3,
			Status: rollout.Status{Phase: rollout.PhaseSucceeded, Revision: r2, StableRevision: r2}}, false, 0, ""},
		{"nothing to roll out", view{Enabled: true, Adopted: true, Template: r1,
			Status: rollout.Status{Phase: rollout.PhaseIdle, StableRevision: r1}}, true, exitOK, "nothing to roll out"},
		{"idle but the template is new", view{Enabled: true, Adopted: true, Template: r2,
			Status: rollout.Status{Phase: rollout.PhaseIdle, StableRevision: r1}}, false, 0, ""},
		{"rolled back", view{Enabled: true, Adopted: true, Template: r2,
			Status: rollout.Status{Phase: rollout.PhaseFailed, Revision: r2, StableRevision: r1, FailedRevision: r2,
				Message: "2 of 2 allowed failed checks"}}, true, exitNo, "rolled back: 2 of 2"},
		{"previous revision failed, a new one is pushed", view{Enabled: true, Adopted: true, Template: r3,
			Status: rollout.Status{Phase: rollout.PhaseFailed, Revision: r2, StableRevision: r1, FailedRevision: r2}}, false, 0, ""},
		{"progressing", view{Enabled: true, Adopted: true, Template: r2,
			Status: rollout.Status{Phase: rollout.PhaseProgressing, Revision: r2, StableRevision: r1}}, false, 0, ""},
		{"rolling back", view{Enabled: true, Adopted: true, Template: r2,
			Status: rollout.Status{Phase: rollout.PhaseRollingBack, Revision: r2, StableRevision: r1}}, false, 0, ""},
		{"not adopted yet", view{Enabled: true, Template: r1}, false, 0, ""},
		{"not managed", view{Template: r1}, true, exitUnknown, "not managed"},
		{"invalid configuration", view{Enabled: true, Adopted: true, Template: r2, SpecErr: errString("canaryd.io/steps: bad"),
			Status: rollout.Status{Phase: rollout.PhaseIdle, StableRevision: r1}}, true, exitNo, "canaryd.io/steps"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			done, code, msg := outcome(c.v)
			if done != c.done || code != c.code || !strings.Contains(msg, c.says) {
				t.Errorf("outcome = %v, %d, %q; want %v, %d, containing %q", done, code, msg, c.done, c.code, c.says)
			}
		})
	}
}

type errString string

func (e errString) Error() string { return string(e) }

func TestViewOfReadsWhatItCan(t *testing.T) {
	d := deploy("shop", "web", nil, map[string]string{rollout.AnnotationStatus: "{not json", rollout.CmdAbort.Key(): "now"}, "web:1")
	v := viewOf(d)
	if v.StatusErr == nil || !strings.Contains(v.StatusErr.Error(), rollout.AnnotationStatus) {
		t.Errorf("a broken status should be reported naming the annotation: %v", v.StatusErr)
	}
	if len(v.Pending) != 1 || v.Pending[0] != rollout.CmdAbort {
		t.Errorf("pending commands %v, want [abort]", v.Pending)
	}
	if got := phaseText(v); got != "Unknown" {
		t.Errorf("phase %q, want Unknown", got)
	}
	if !strings.Contains(renderStatus(v, now), "Unknown: "+rollout.AnnotationStatus) {
		t.Errorf("status should say why it is unknown:\n%s", renderStatus(v, now))
	}
}

// Usage errors are found before any cluster is contacted, each saying
// what is allowed, with exit code 2.
func TestUsageErrors(t *testing.T) {
	cases := map[string][]string{
		"unknown command":            {"rollback", "web"},
		"promote without a name":     {"promote"},
		"status with two names":      {"status", "a", "b"},
		"status with a bad output":   {"status", "web", "-o", "xml"},
		"list with an argument":      {"list", "web"},
		"check with a bad API":       {"check", "--httproute-version", "httproutes"},
		"check with a bad router":    {"check", "--default-router", "istio"},
		"an unknown flag":            {"list", "--bogus"},
		"a negative wait":            {"abort", "web", "--wait", "-1s"},
		"a negative count of events": {"status", "web", "--events", "-2"},
	}
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			// An unreachable kubeconfig: any contact with a cluster would fail with 3, not 2.
			code := run(context.Background(), append(args, "--kubeconfig", "/nonexistent"), &out, &errOut)
			if code != exitUsage {
				t.Errorf("exit %d, want %d; stderr: %s", code, exitUsage, errOut.String())
			}
			if !strings.HasPrefix(errOut.String(), "error: ") || len(errOut.String()) < 20 {
				t.Errorf("stderr should explain: %q", errOut.String())
			}
		})
	}
}

func TestHelpAndVersion(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"help"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "status NAME") {
		t.Errorf("help: exit %d, %q", code, out.String())
	}
	out.Reset()
	if code := run(context.Background(), []string{"version"}, &out, &errOut); code != 0 || !strings.HasPrefix(out.String(), "kubectl-canary ") {
		t.Errorf("version: exit %d, %q", code, out.String())
	}
}

// A watch in a CI log prints a line per change, within 100 columns, the
// message wrapped below it.
func TestProgressLinesFit(t *testing.T) {
	long := strings.Repeat("revision r2 failed; set canaryd.io/retry or change the Deployment ", 3)
	v := view{Enabled: true, Adopted: true, Template: "r3", Spec: rollout.DefaultSpec(), Status: rollout.Status{
		Phase: rollout.PhaseRollingBack, Revision: "r2", StableRevision: "r1", Step: 3, Weight: 500, Message: long,
		LastCheck: passCheck(time.Second)}}
	out := progressLines(v, now)
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if n := utf8.RuneCountInString(line); n > width {
			t.Errorf("%d columns: %q", n, line)
		}
	}
	for _, want := range []string{"15:09:26 RollingBack 3/3 · canary 50% · ✔ Pass: 243 req, 99.59%, p99 42.5ms",
		"\n         revision r3 not picked up yet\n", "\n         revision r2 failed;"} {
		if !strings.Contains(out, want) {
			t.Errorf("lacks %q:\n%s", want, out)
		}
	}
	a := progressKey(v)
	v.Status.LastCheck = passCheck(0)
	v.Status.LastCheck.Requests = f64(999)
	if progressKey(v) != a {
		t.Error("new numbers alone should not print a new line")
	}
	v.Status.Phase = rollout.PhaseFailed
	if progressKey(v) == a {
		t.Error("a new phase should print a new line")
	}
}

// syncBuffer is a bytes.Buffer the watch goroutine writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The watch loop on a fake API server: it waits through a stale Succeeded
// (the template is newer) and ends with the fate of the current template.
func TestWatchLoopFollowsTheDeployment(t *testing.T) {
	for _, c := range []struct {
		name  string
		final rollout.Status
		code  int
		says  string
	}{
		{"promoted", rollout.Status{Phase: rollout.PhaseSucceeded, Revision: rev("web:2"), StableRevision: rev("web:2")},
			exitOK, "revision " + rev("web:2") + " promoted"},
		{"rolled back", rollout.Status{Phase: rollout.PhaseFailed, Revision: rev("web:2"), StableRevision: rev("web:1"),
			FailedRevision: rev("web:2"), Message: "2 of 2 allowed failed checks"}, exitNo, "rolled back: 2 of 2 allowed failed checks"},
	} {
		t.Run(c.name, func(t *testing.T) {
			stale := &rollout.Status{Phase: rollout.PhaseSucceeded, Revision: rev("web:1"), StableRevision: rev("web:1")}
			client := fake.NewClientset(deploy("shop", "web", stale, nil, "web:2"))
			out := &syncBuffer{}
			a := &app{out: out, now: func() time.Time { return now }, client: client, namespace: "shop"}
			done := make(chan error, 1)
			go func() { done <- a.watch(context.Background(), "web", statusOptions{events: 3}) }()
			set := func(after string, st rollout.Status) {
				t.Helper()
				for deadline := time.Now().Add(10 * time.Second); !strings.Contains(out.String(), after); time.Sleep(5 * time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatalf("the watch did not print %q:\n%s", after, out.String())
					}
				}
				d, _ := client.AppsV1().Deployments("shop").Get(context.Background(), "web", metav1.GetOptions{})
				d.Annotations[rollout.AnnotationStatus] = st.Encode()
				if _, err := client.AppsV1().Deployments("shop").Update(context.Background(), d, metav1.UpdateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			set("revision "+rev("web:2")+" not picked up yet",
				rollout.Status{Phase: rollout.PhaseProgressing, Revision: rev("web:2"), StableRevision: rev("web:1"), Step: 1, Weight: 100})
			set("Progressing 1/3 · canary 10%", c.final)
			err := <-done
			code := exitOK
			var ee *exitError
			if errors.As(err, &ee) {
				code = ee.code
			}
			if code != c.code || !strings.Contains(out.String()+fmt.Sprint(err), c.says) {
				t.Errorf("exit %d (err %v), want %d saying %q\n%s", code, err, c.code, c.says, out.String())
			}
		})
	}
}

// On a terminal the watch redraws the whole screen, only when it changed.
func TestTerminalFramesRedrawOnlyOnChange(t *testing.T) {
	var out bytes.Buffer
	a := &app{out: &out, now: func() time.Time { return now }}
	v := viewOf(deploy("shop", "web", &rollout.Status{Phase: rollout.PhaseProgressing, Revision: rev("web:2"), Step: 1, Weight: 100}, nil, "web:2"))
	last := a.frame(v, statusOptions{}, true, "")
	if !strings.HasPrefix(out.String(), "\x1b[H\x1b[2J") || !strings.Contains(out.String(), "Progressing: step 1 of 3") {
		t.Fatalf("first frame %q", out.String())
	}
	n := out.Len()
	if a.frame(v, statusOptions{}, true, last); out.Len() != n {
		t.Error("an unchanged frame was redrawn")
	}
	v.Status.Step, v.Status.Weight = 2, 200
	if a.frame(v, statusOptions{}, true, last); !strings.Contains(out.String()[n:], "Progressing: step 2 of 3") {
		t.Error("a changed frame was not redrawn")
	}
}
