package testenv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/canaryd/canaryd/test/cluster"
	"github.com/canaryd/canaryd/test/meshsim"
)

// Options say what differs between the suites; the zero value is a temporary
// directory, no canaryd build, a two-node cluster with Prometheus and a
// simulator with seed 0 logging to slog.Default().
type Options struct {
	// Name makes the temporary directory "canaryd-<Name>-*" when Dir is empty.
	Name string
	// Dir is the work directory, created if missing and kept by Stop. Empty: a
	// new temporary directory, which Stop removes unless CANARYD_KEEP_DIR is set.
	Dir string
	// Canaryd, if set, builds ./cmd/canaryd into Dir/canaryd before anything starts.
	Canaryd *Build
	// Cluster configures the control plane. Prometheus is always started (the
	// simulator's targets are for it); Cluster.Dir defaults to Dir/cluster.
	Cluster cluster.Options
	// Sim configures the mesh simulator; RESTConfig and TargetsFile are filled in.
	Sim meshsim.Config
	// SimLog, if set, is a file name in Dir the simulator logs to as text,
	// instead of Sim.Logger; Stop adds the simulator's exit error to it.
	SimLog string
	// Progress, if set, is called as each part is up, with the time it took.
	// It gets the Env as built so far: no Cluster yet at CanarydBuilt.
	Progress func(e *Env, s Step, took time.Duration)
}

// Build says how canaryd is built: `go build <Flags> -o Dir/canaryd ./cmd/canaryd`
// in the repository root, with Env added to the environment.
type Build struct {
	Flags []string // e.g. "-trimpath", "-ldflags", "-s -w"
	Env   []string // e.g. "CGO_ENABLED=0"
}

// Step is a part of Start, for Options.Progress.
type Step int

// The parts of Start, in order.
const (
	CanarydBuilt Step = iota + 1
	ClusterUp
	SimReady
)

// Env is a running environment. Stop it when done.
type Env struct {
	Dir     string
	Canaryd string // the built binary; empty unless Options.Canaryd was set
	Cluster *cluster.Cluster
	Client  kubernetes.Interface
	Dyn     dynamic.Interface
	Sim     *meshsim.Sim

	ownsDir  bool
	simLog   *os.File
	stopSim  func() error // cancels Run and returns its error
	stopOnce sync.Once
	stopErr  error
}

// simReadyTimeout bounds the simulator's first sync of the API server's objects.
const simReadyTimeout = time.Minute

// Start builds canaryd (if asked), starts the cluster and the simulator and
// returns once the simulator is ready. ctx bounds the start-up only. On error
// whatever started is stopped again.
func Start(ctx context.Context, o Options) (e *Env, err error) {
	e = &Env{Dir: o.Dir}
	defer func() {
		if err != nil {
			err = errors.Join(err, e.Stop())
			e = nil
		}
	}()
	if e.Dir == "" {
		if e.Dir, err = os.MkdirTemp("", "canaryd-"+o.Name+"-"); err != nil {
			return e, fmt.Errorf("work directory: %w", err)
		}
		e.ownsDir = true
	} else if err := os.MkdirAll(e.Dir, 0o755); err != nil {
		return e, fmt.Errorf("work directory: %w", err)
	}
	progress := func(s Step, t0 time.Time) {
		if o.Progress != nil {
			o.Progress(e, s, time.Since(t0))
		}
	}
	if o.Canaryd != nil {
		t0 := time.Now()
		if e.Canaryd, err = o.Canaryd.build(ctx, e.Dir); err != nil {
			return e, err
		}
		progress(CanarydBuilt, t0)
	}
	t0 := time.Now()
	co := o.Cluster
	co.Prometheus = true
	if co.Dir == "" {
		co.Dir = filepath.Join(e.Dir, "cluster")
	}
	if e.Cluster, err = cluster.Start(ctx, co); err != nil {
		return e, fmt.Errorf("starting the cluster: %w", err)
	}
	progress(ClusterUp, t0)
	rc := rest.CopyConfig(e.Cluster.RESTConfig)
	if e.Client, err = kubernetes.NewForConfig(rc); err != nil {
		return e, fmt.Errorf("kubernetes client: %w", err)
	}
	if e.Dyn, err = dynamic.NewForConfig(rc); err != nil {
		return e, fmt.Errorf("dynamic client: %w", err)
	}
	t0 = time.Now()
	if err := e.startSim(ctx, o, rc); err != nil {
		return e, err
	}
	progress(SimReady, t0)
	return e, nil
}

func (b *Build) build(ctx context.Context, dir string) (string, error) {
	root, err := cluster.RepoRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "canaryd")
	args := append(append([]string{"build"}, b.Flags...), "-o", bin, "./cmd/canaryd")
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), b.Env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building canaryd: %w\n%s", err, out)
	}
	return bin, nil
}

// startSim runs the simulator until Stop, not until ctx is done: ctx is the
// start-up's, and the suites' tests run after it.
func (e *Env) startSim(ctx context.Context, o Options, rc *rest.Config) error {
	cfg := o.Sim
	cfg.RESTConfig, cfg.TargetsFile = rc, e.Cluster.MeshTargetsFile
	if o.SimLog != "" {
		f, err := os.Create(filepath.Join(e.Dir, o.SimLog))
		if err != nil {
			return fmt.Errorf("mesh simulator log: %w", err)
		}
		e.simLog = f
		cfg.Logger = slog.New(slog.NewTextHandler(f, nil))
	}
	var err error
	if e.Sim, err = meshsim.New(cfg); err != nil {
		return fmt.Errorf("mesh simulator: %w", err)
	}
	simCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Sim.Run(simCtx) }()
	e.stopSim = func() error { cancel(); return <-done }
	select {
	case <-e.Sim.Ready():
		return nil
	case err := <-done:
		cancel()
		e.stopSim = nil // Run has returned, with the error returned here
		return fmt.Errorf("mesh simulator stopped: %w", err)
	case <-ctx.Done():
		return fmt.Errorf("waiting for the mesh simulator: %w", ctx.Err())
	case <-time.After(simReadyTimeout):
		return fmt.Errorf("mesh simulator not ready within %s", simReadyTimeout)
	}
}

// Stop stops the simulator, then the cluster, and waits for both; then it
// removes Dir if Start created it and CANARYD_KEEP_DIR is not set. It is safe
// on a partly started Env and safe to call more than once.
func (e *Env) Stop() error {
	e.stopOnce.Do(func() {
		var errs []error
		if e.stopSim != nil {
			// Run returns an error on the way out only when it could not empty
			// the targets file: worth knowing, though the cluster stops next.
			if err := e.stopSim(); err != nil && !errors.Is(err, context.Canceled) {
				if e.simLog != nil {
					fmt.Fprintln(e.simLog, "mesh simulator stopped:", err)
				}
				errs = append(errs, fmt.Errorf("mesh simulator: %w", err))
			}
		}
		if e.simLog != nil {
			_ = e.simLog.Close() // nothing writes to it any more; a lost line is no reason to fail
		}
		if e.Cluster != nil {
			if err := e.Cluster.Stop(); err != nil {
				errs = append(errs, fmt.Errorf("stopping the cluster: %w", err))
			}
		}
		if e.ownsDir && os.Getenv("CANARYD_KEEP_DIR") == "" {
			if err := os.RemoveAll(e.Dir); err != nil {
				errs = append(errs, fmt.Errorf("removing the work directory: %w", err))
			}
		}
		e.stopErr = errors.Join(errs...)
	})
	return e.stopErr
}
