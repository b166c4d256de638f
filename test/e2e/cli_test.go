package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"sigs.k8s.io/yaml"

	"github.com/canaryd/canaryd/rollout"
)

// kubectl canary, as its built binary, against the real control plane and
// a running canaryd: every command, and status --watch's exit codes.

var cliBuild struct {
	once sync.Once
	path string
	err  error
}

// kubectlCanary builds the plugin once per test binary.
func kubectlCanary(t *testing.T) string {
	t.Helper()
	cliBuild.once.Do(func() {
		cliBuild.path = filepath.Join(env.dir, "kubectl-canary")
		out, err := exec.Command("go", "build", "-o", cliBuild.path, "../../cmd/kubectl-canary").CombinedOutput()
		if err != nil {
			cliBuild.err = errors.New(string(out))
		}
	})
	if cliBuild.err != nil {
		t.Fatalf("building kubectl-canary: %v", cliBuild.err)
	}
	return cliBuild.path
}

type cliResult struct {
	out, err string
	code     int
}

// cli runs kubectl canary in the scenario's namespace and waits for it.
func (f *fixture) cli(args ...string) cliResult {
	f.t.Helper()
	return f.cliStart(args...)()
}

// cliStart runs kubectl canary in the background; the returned function
// waits for it to exit.
func (f *fixture) cliStart(args ...string) func() cliResult {
	f.t.Helper()
	bin := kubectlCanary(f.t)
	ctx, cancel := context.WithTimeout(f.ctx, 4*time.Minute)
	cmd := exec.CommandContext(ctx, bin, append(args, "--kubeconfig", env.cluster.Kubeconfig, "-n", f.ns)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Start(); err != nil {
		cancel()
		f.t.Fatalf("starting kubectl canary: %v", err)
	}
	var once sync.Once
	var res cliResult
	return func() cliResult {
		once.Do(func() {
			defer cancel()
			err := cmd.Wait()
			res = cliResult{out: out.String(), err: errOut.String()}
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				res.code = ee.ExitCode()
			} else if err != nil {
				f.t.Fatalf("kubectl canary %s: %v", strings.Join(args, " "), err)
			}
			f.t.Logf("$ kubectl canary %s → exit %d\n%s%s", strings.Join(args, " "), res.code, res.out, res.err)
		})
		return res
	}
}

// expect checks an exit code and that stdout+stderr say something, with
// runs of white space (a wrapped line) read as one space.
func (r cliResult) expect(t *testing.T, code int, says ...string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.out, r.err)
	}
	flat := strings.Join(strings.Fields(r.out+"\n"+r.err), " ")
	for _, s := range says {
		if !strings.Contains(flat, strings.Join(strings.Fields(s), " ")) {
			t.Errorf("output lacks %q:\n%s%s", s, r.out, r.err)
		}
	}
}

// fits holds human output to 100 columns.
func (r cliResult) fits(t *testing.T) {
	t.Helper()
	for _, line := range strings.Split(r.out, "\n") {
		if n := utf8.RuneCountInString(line); n > 100 {
			t.Errorf("a line of %d columns: %q", n, line)
		}
	}
}

// A person watches a manual-promotion rollout and promotes it from the
// terminal; the watch ends 0. Around it: list, status in every format, and
// the commands that make no sense refused. canaryd runs with exactly the
// permissions `canaryd check` asks for, which proves they are enough.
func TestCLIWatchEndsZeroWhenAPersonPromotes(t *testing.T) {
	// The interval is canaryd's --default-interval here; set as an annotation
	// too, so that the CLI (which knows annotations, not canaryd's flags)
	// shows the one in force.
	f := given(t, "e2e-cli-promote").app(map[string]string{rollout.KeyManualPromotion: "true", rollout.KeyInterval: interval.String()}, healthy).audit()
	f.canaryd("--kubeconfig", leastPrivilege(t, f.ns, "canaryd-"+f.ns, nil)).adopted()

	// The CLI's revision of the template agrees with canaryd's: a watch on
	// an adopted Deployment with nothing new ends at once, "nothing to roll
	// out", only if the two hashes are equal (TestCLIRevisionMatchesCanaryd).
	t.Run("TestCLIRevisionMatchesCanaryd", func(t *testing.T) {
		f.cli("status", "web", "--watch").expect(t, 0, "nothing to roll out")
	})
	list := f.cli("list")
	list.expect(t, 0, "NAME", "PHASE", "REVISION", "WEIGHT", "STEP", "LAST-CHECK", "AGE")
	list.fits(t)
	if row := strings.Fields(strings.Split(list.out, "\n")[1]); len(row) != 7 || row[0] != "web" || row[1] != "Idle" || row[3] != "0%" || row[4] != "0/3" {
		t.Errorf("list row %q", row)
	}
	all := f.cli("list", "-A")
	all.expect(t, 0, "NAMESPACE", f.ns+" ")
	all.fits(t)
	f.cli("retry", "web").expect(t, 1, "refused", "not Failed")
	f.cli("promote", "web").expect(t, 1, "refused", "no rollout in progress")
	f.cli("resume", "web").expect(t, 1, "refused", "not paused")
	f.cli("abort", "nosuch").expect(t, 3, "nosuch not found in namespace "+f.ns)

	f.deploy("example.com/web:2.0", healthy)
	watch := f.cliStart("status", "web", "--watch")
	f.waitStatus("step 2", 2*time.Minute, func(s rollout.Status) bool { return s.Step >= 2 })
	st := f.cli("status", "web")
	st.expect(t, 0, "Progressing", "Steps:", "✔ 1", "Last check:", "Events:", "RolloutStarted", "StepAdvanced")
	st.fits(t)
	var asJSON rollout.Status
	if j := f.cli("status", "web", "-o", "json"); j.code != 0 || json.Unmarshal([]byte(j.out), &asJSON) != nil || asJSON.Step < 2 || asJSON.Revision == "" {
		t.Errorf("-o json: exit %d, %+v", j.code, asJSON)
	}
	var asYAML rollout.Status
	if y := f.cli("status", "web", "-o", "yaml"); y.code != 0 || yaml.Unmarshal([]byte(y.out), &asYAML) != nil || asYAML.Revision != asJSON.Revision {
		t.Errorf("-o yaml: exit %d, %+v", y.code, asYAML)
	}

	f.waitPhase(rollout.PhaseWaitingPromotion, 2*time.Minute)
	f.cli("status", "web").expect(t, 0, "WaitingPromotion", "▶ promote", "every 5s")
	f.cli("promote", "web").expect(t, 0, "promoting revision "+asJSON.Revision)
	w := watch()
	w.expect(t, 0, "revision "+asJSON.Revision+" promoted")
	w.fits(t)
	if got, _ := f.tryStatus(); got.Phase != rollout.PhaseSucceeded {
		t.Errorf("the watch ended 0 before the promotion: %+v", got)
	}

	// Pause and resume, each refused when it would change nothing.
	f.cli("pause", "web").expect(t, 0, "rollouts paused")
	f.cli("pause", "web").expect(t, 1, "already paused")
	f.cli("list").expect(t, 0, "Succeeded,Paused")
	f.cli("resume", "web").expect(t, 0, "rollouts resumed")
	f.auditor.check(t, interval)
}

// A bad canary: the watch ends 1. Then every other command, each where it
// makes sense and so deterministically: pause, retry (the revision waits,
// paused), abort (failed again: the watch ends 1), resume, and skip, which
// promotes the failed revision without analysis: the watch ends 0.
func TestCLIWatchEndsNonZeroOnRollbackAndTheCommandsThatFollow(t *testing.T) {
	f := given(t, "e2e-cli-rollback").app(map[string]string{rollout.KeyInterval: interval.String()}, healthy).audit().canaryd().adopted()

	f.deploy("example.com/web:2.0-bad", broken)
	w := f.cli("status", "web", "--watch")
	w.expect(t, 1, "rolled back")
	w.fits(t)
	failed, _ := f.tryStatus()
	if failed.Phase != rollout.PhaseFailed || failed.FailedRevision == "" {
		t.Fatalf("the watch ended 1 but the status is %+v", failed)
	}
	rev := failed.FailedRevision
	st := f.cli("status", "web")
	st.expect(t, 0, "Failed: revision "+rev, "✘ 1", "kubectl canary retry web", "RolledBack")
	st.fits(t)
	f.cli("abort", "web").expect(t, 1, "refused", "already failed")
	f.cli("resume", "web").expect(t, 1, "refused", "not paused")

	f.cli("pause", "web", "--wait", "0").expect(t, 0, "canaryd.io/pause requested")
	f.waitStatus("paused", 30*time.Second, func(s rollout.Status) bool { return s.Paused })
	f.cli("retry", "web").expect(t, 0, "retrying revision "+rev)
	f.waitPhase(rollout.PhaseWaiting, 30*time.Second)
	f.cli("status", "web").expect(t, 0, "Waiting", "paused")
	f.cli("promote", "web").expect(t, 1, "refused", "paused")
	f.cli("abort", "web").expect(t, 0, "revision "+rev+" marked failed")
	f.cli("status", "web", "--watch").expect(t, 1, "rolled back")

	f.cli("resume", "web").expect(t, 0, "rollouts resumed")
	f.cli("skip", "web").expect(t, 0, "promoting failed revision "+rev+" without analysis")
	f.cli("status", "web", "--watch").expect(t, 0, "revision "+rev+" promoted")
	if f.image() != "example.com/web:2.0-bad" || f.deployment().Status.UpdatedReplicas != 2 {
		t.Errorf("skip did not promote the failed revision: image %s, %+v", f.image(), f.deployment().Status)
	}
	f.auditor.check(t, interval)
}
