package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/canaryd/canaryd/rollout"
	"github.com/canaryd/canaryd/test/cluster"
)

// needCluster skips without the control-plane binaries, unless CI is set:
// there, missing binaries are a broken pipeline, not a reason to skip.
func needCluster(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts the local control plane and runs the demo (-short)")
	}
	if _, err := cluster.FindBinaries(); err != nil {
		if ci := os.Getenv("CI"); ci != "" && ci != "false" && ci != "0" {
			t.Fatalf("CI is set and the control-plane binaries are missing: %v", err)
		}
		t.Skipf("control-plane binaries missing (run test/bootstrap.sh): %v", err)
	}
}

// syncBuffer is the demo's output, readable while the demo writes it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// started is a running env and the processes it started, to check after
// stop that none is left.
func started(ctx context.Context, t *testing.T, p *printer) (*env, []int) {
	t.Helper()
	e, err := startEnv(ctx, t.TempDir(), p)
	if err != nil {
		t.Fatalf("startEnv: %v\n%s", err, p.w)
	}
	pids := []int{e.proc.Process.Pid}
	for _, pid := range e.cluster.Pids() {
		pids = append(pids, pid)
	}
	return e, pids
}

func checkNothingLeft(t *testing.T, pids []int) {
	t.Helper()
	for _, pid := range pids {
		// Every child was waited for, so a live pid here is one that was not stopped.
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process %d still there after stop (kill -0: %v)", pid, err)
		}
	}
}

// The demo's own flow on the real control plane, Prometheus, simulator and
// canaryd binary: the good version is promoted, the bad one rolled back,
// the cluster agrees, the output tells it within 100 columns, and stopping
// leaves no process behind. test/e2e proves canaryd's behaviour in depth;
// this proves that the demo shows it truly.
func TestTheDemoPromotesTheGoodVersionAndRollsBackTheBadOne(t *testing.T) {
	needCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	out := &syncBuffer{}
	p := &printer{w: out}
	e, pids := started(ctx, t, p)
	outs, err := runDemo(ctx, e, p)
	if stopErr := e.stop(); stopErr != nil {
		t.Errorf("stop: %v", stopErr)
	}
	text := out.String()
	defer func() {
		if t.Failed() {
			t.Logf("demo output:\n%s", text)
		}
	}()
	if err != nil {
		t.Fatalf("runDemo: %v", err)
	}
	checkNothingLeft(t, pids)

	if len(outs) != 2 {
		t.Fatalf("%d rollouts, want 2: %+v", len(outs), outs)
	}
	good, bad := outs[0], outs[1]
	if good.Phase != rollout.PhaseSucceeded || !good.OK {
		t.Errorf("good version: %+v", good)
	}
	if bad.Phase != rollout.PhaseFailed || !bad.OK {
		t.Errorf("bad version: %+v", bad)
	}
	if good.CanaryRequests == 0 || bad.CanaryRequests == 0 {
		t.Errorf("a canary served nothing: good %d, bad %d requests", good.CanaryRequests, bad.CanaryRequests)
	}
	if bad.CanaryFailures == 0 {
		t.Errorf("the bad canary was rolled back without a failed request: %+v", bad)
	}
	// Either the threshold check ("success rate 90% < 99%") or the sequential
	// test ("5 of 39 requests failed") may be the one that rolls back.
	if !strings.Contains(bad.Reason, "success rate") && !strings.Contains(bad.Reason, "failed") {
		t.Errorf("the rollback's reason names no failure: %q", bad.Reason)
	}

	// Paths are as long as the directory they are in (a test's temporary
	// one is long); every other line must fit.
	for _, l := range strings.Split(text, "\n") {
		if !strings.Contains(l, e.dir) && !strings.Contains(l, "KUBECONFIG=") {
			checkWidth(t, false, l)
		}
	}
	goodPart, badPart, ok := strings.Cut(text, "Bump podinfo to example.com/podinfo:3.0")
	if !ok {
		t.Fatal("no section for the bad version")
	}
	// Live, step by step: a row at each weight, the Events that explain them.
	for _, want := range []string{"event Adopted:", "event RolloutStarted:", "1/3    10.0%", "2/3    20.0%",
		"3/3    50.0%", "event Promoting:", "100.0%", "event Promoted:", "Succeeded"} {
		if !strings.Contains(goodPart, want) {
			t.Errorf("the good rollout's section lacks %q", want)
		}
	}
	for _, want := range []string{"event RolloutStarted:", "1/3    10.0%", "  Fail", "event RollingBack:",
		"event RolledBack:", "Failed "} {
		if !strings.Contains(badPart, want) {
			t.Errorf("the bad rollout's section lacks %q", want)
		}
	}
	if strings.Contains(badPart, "event Promoted:") {
		t.Error("the bad version shows a promotion")
	}
}

// Ctrl-C in the middle of a rollout: runDemo returns the context's error
// (no outcome is made up) and stop leaves no process behind.
func TestAnInterruptedDemoStopsEverything(t *testing.T) {
	needCluster(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &syncBuffer{}
	p := &printer{w: out}
	e, pids := started(ctx, t, p)
	done := make(chan error, 1)
	go func() {
		_, err := runDemo(ctx, e, p)
		done <- err
	}()
	var err error
wait:
	for {
		select {
		case err = <-done:
			break wait
		case <-time.After(100 * time.Millisecond):
			if strings.Contains(out.String(), "event StepAdvanced:") {
				cancel()
			}
		}
	}
	if stopErr := e.stop(); stopErr != nil {
		t.Errorf("stop: %v", stopErr)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("runDemo = %v, want the cancellation\n%s", err, out)
	}
	checkNothingLeft(t, pids)
}
