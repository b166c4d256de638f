// Command demo is `make demo`: the one command that shows a newcomer what
// canaryd does, on this machine, in a minute or two.
//
// It builds canaryd, starts the local control plane with Prometheus
// (test/cluster), the Linkerd data-plane simulator (test/meshsim) inside this
// process and canaryd as a child process; deploys a sample app, podinfo, opted
// in to canaryd; bumps it to a good version and shows it promoted step by
// step, live, then to a bad one and shows it rolled back; prints a summary
// and how to look around with kubectl; and stops everything, at the end or
// on Ctrl-C (--keep: only on Ctrl-C).
//
// It exits 0 only when the good version was promoted and the bad one rolled
// back, so it doubles as a smoke test of the whole system.
//
// What it must never do: leave a process behind (canaryd runs in its own
// process group with a parent-death signal, the cluster's processes likewise),
// touch anything but loopback, or fake an outcome: every number shown comes
// from the API server, Prometheus or the simulator's counters.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/canaryd/canaryd/test/cluster"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	keepDefault, _ := strconv.ParseBool(os.Getenv("CANARYD_DEMO_KEEP"))
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	keep := fs.Bool("keep", keepDefault, "keep everything running after the demo until Ctrl-C (env CANARYD_DEMO_KEEP=1)")
	dir := fs.String("dir", "", "working directory: binary, logs, cluster state (default <repo>/.cache/demo)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dir == "" {
		root, err := cluster.RepoRoot()
		if err != nil {
			fmt.Fprintln(os.Stderr, "demo:", err)
			return 1
		}
		*dir = filepath.Join(root, ".cache", "demo")
	}
	unlock, err := lock(*dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		return 1
	}
	defer unlock()

	p := &printer{w: os.Stdout, colour: wantColour(os.Stdout)}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		// From now on a second Ctrl-C kills the demo at once; its children
		// still die with it, by their parent-death signal.
		stop()
	}()
	return demo(ctx, *dir, *keep, p)
}

func demo(ctx context.Context, dir string, keep bool, p *printer) int {
	t0 := time.Now()
	p.println(p.style(bold, "canaryd demo") + ": a Deployment under canaryd, a good version promoted, a bad one rolled back")
	p.println("")
	e, err := startEnv(ctx, dir, p)
	if err != nil {
		return failed(ctx, p, err)
	}
	code := 0
	outs, err := runDemo(ctx, e, p)
	if len(outs) > 0 {
		p.heading(fmt.Sprintf("Summary (%s from the start)", time.Since(t0).Round(time.Second)))
		for _, l := range p.summary(outs) {
			p.println(l)
		}
	}
	if err != nil {
		code = failed(ctx, p, err)
	} else if !allOK(outs) {
		p.println("")
		p.println(p.style(red, "FAILED: canaryd did not promote the good version and roll back the bad one"))
		p.printf("see the rows above and canaryd's log, %s", rel(e.canarydLog))
		code = 1
	}
	if ctx.Err() == nil {
		pokeAround(p, e, keep)
		if keep {
			<-ctx.Done()
		}
	}
	p.println("")
	p.println("stopping canaryd, the mesh simulator, Prometheus and the control plane...")
	t1 := time.Now()
	if err := e.stop(); err != nil {
		p.println(p.style(red, "demo: "+err.Error()))
		code = max(code, 1)
	} else {
		p.printf("stopped in %.1fs; logs stay in %s", time.Since(t1).Seconds(), rel(dir))
	}
	if ctx.Err() != nil && !keep {
		code = 130 // interrupted, as a shell reports Ctrl-C
	}
	return code
}

// allOK: both rollouts ran, each ended as expected.
func allOK(outs []outcome) bool {
	if len(outs) != 2 {
		return false
	}
	for _, o := range outs {
		if !o.OK {
			return false
		}
	}
	return true
}

// failed reports err. After Ctrl-C every error (a killed go build, a
// cancelled wait) is the interruption itself, not a failure to explain.
func failed(ctx context.Context, p *printer, err error) int {
	if ctx.Err() != nil {
		p.println("")
		p.println("interrupted")
		return 130
	}
	p.println("")
	p.println(p.style(red, "demo: "+err.Error()))
	return 1
}

// pokeAround prints how to look at what the demo left in the cluster.
func pokeAround(p *printer, e *env, keep bool) {
	p.heading("Poke at it")
	if keep {
		p.println("Everything keeps running until Ctrl-C. In another terminal:")
	} else {
		p.println("Everything stops now; `go run ./test/demo --keep` keeps it running until Ctrl-C. Then:")
	}
	for _, l := range []string{
		"export KUBECONFIG=" + e.cluster.Kubeconfig,
		"kubectl get deploy,svc,trafficsplits -n " + namespace,
		"kubectl describe deploy " + app + " -n " + namespace,
		"kubectl get events -n " + namespace,
		"kubectl get deploy " + app + " -n " + namespace + ` -o jsonpath='{.metadata.annotations.canaryd\.io/status}'`,
	} {
		p.println("  " + l)
	}
	p.printf("Prometheus %s, e.g. the canary's and stable's request rates:", e.cluster.Prometheus.URL)
	p.printf(`  sum by (deployment) (rate(response_total{namespace="%s",direction="inbound"}[30s]))`, namespace)
	p.printf("canaryd's log: %s", rel(e.canarydLog))
}

// lock takes an exclusive lock on dir/.lock, so that a second demo does not
// reset the cluster directory of one still running.
func lock(dir string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("demo dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another demo is running in %s (%w); stop it with Ctrl-C first", dir, err)
	}
	// The kernel drops the lock when the process exits, however it exits.
	return func() { f.Close() }, nil
}
