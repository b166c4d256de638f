// Command kubectl-canary steers canaryd's rollouts from a terminal. On the
// PATH it is the kubectl plugin `kubectl canary`; it also runs on its own.
//
// It only reads Deployments, their Events and canaryd's status annotation,
// and writes nothing but the one-shot command annotations of DESIGN.md
// (canaryd.io/promote, …): canaryd carries them out. It must never change a
// Deployment's spec or canaryd's status, so that a person at a terminal and
// the controller can never disagree about what happened.
//
// Exit codes, for scripts and CI:
//
//	0  done: listed, shown, command accepted, rollout promoted, checks passed
//	1  the answer is no: rolled back, command refused, a check failed
//	2  usage error
//	3  could not find out: API unreachable, not found, timed out
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// Version is stamped at build time: -ldflags "-X main.Version=v0.1.0".
var Version = "dev"

const (
	exitOK      = 0
	exitNo      = 1
	exitUsage   = 2
	exitUnknown = 3
)

// exitError carries the exit code an error ends the command with.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func no(format string, args ...any) error {
	return &exitError{code: exitNo, err: fmt.Errorf(format, args...)}
}

func usageError(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `kubectl canary steers canaryd's rollouts.

Commands:
  list                      managed Deployments, their phase, weight and step
  status NAME               the rollout as a whole: steps, weight, last check, events
                              --watch       redraw until it ends: exit 0 promoted, 1 rolled back
                              -o json|yaml  canaryd's status annotation
  promote NAME              finish the rollout now (or promote a failed revision)
  abort NAME                roll the canary back
  retry NAME                roll out the failed revision again
  pause NAME | resume NAME  stop or continue stepping
  skip NAME                 promote without (further) analysis: an emergency
  check                     can canaryd work here? (like linkerd check)
  version

Common flags: --kubeconfig, --context, -n/--namespace, -A/--all-namespaces, --as, …
Exit codes: 0 done, 1 no (rolled back, refused, check failed), 2 usage, 3 could not find out.
`

// run is the command line minus the process: testable, no os.Exit.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	cmd, args := args[0], args[1:]
	a := &app{out: stdout, now: time.Now}
	var err error
	switch cmd {
	case "list", "ls":
		err = a.list(ctx, args)
	case "status":
		err = a.status(ctx, args)
	case "promote", "abort", "retry", "pause", "resume", "skip":
		err = a.command(ctx, cmd, args)
	case "check":
		err = a.check(ctx, args)
	case "version":
		fmt.Fprintln(stdout, "kubectl-canary", Version)
	default:
		err = usageError("unknown command %q; run `kubectl canary help`", cmd)
	}
	if err == nil {
		return exitOK
	}
	if errors.Is(err, pflag.ErrHelp) {
		return exitOK
	}
	fmt.Fprintln(stderr, "error:", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return exitUnknown
}

// app is one invocation: its output, its clock and, once flags are parsed,
// its clients.
type app struct {
	out io.Writer
	now func() time.Time

	client        kubernetes.Interface
	dyn           dynamic.Interface
	host          string
	namespace     string
	allNamespaces bool

	loading   *clientcmd.ClientConfigLoadingRules
	overrides *clientcmd.ConfigOverrides
}

// flags returns a flag set for one command with kubectl's standard
// kubeconfig flags on it.
func (a *app) flags(name string) *pflag.FlagSet {
	fs := pflag.NewFlagSet("kubectl canary "+name, pflag.ContinueOnError)
	fs.SortFlags = false
	a.loading = clientcmd.NewDefaultClientConfigLoadingRules()
	a.overrides = &clientcmd.ConfigOverrides{}
	fs.StringVar(&a.loading.ExplicitPath, "kubeconfig", "", "path to the kubeconfig file")
	clientcmd.BindOverrideFlags(a.overrides, fs, clientcmd.RecommendedConfigOverrideFlags(""))
	return fs
}

// parse parses args and returns the positional ones.
func (a *app) parse(fs *pflag.FlagSet, args []string) ([]string, error) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil, err
		}
		return nil, usageError("%w", err)
	}
	return fs.Args(), nil
}

// connect builds the clients from the kubeconfig flags; commands call it
// once their arguments are known to be right.
func (a *app) connect() error {
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(a.loading, a.overrides)
	ns, _, err := cc.Namespace()
	if err != nil {
		return &exitError{code: exitUnknown, err: fmt.Errorf("reading the kubeconfig: %w", err)}
	}
	rc, err := cc.ClientConfig()
	if err != nil {
		return &exitError{code: exitUnknown, err: fmt.Errorf("reading the kubeconfig: %w", err)}
	}
	rc.UserAgent = "kubectl-canary/" + Version
	if rc.Timeout == 0 {
		rc.Timeout = 30 * time.Second
	}
	if a.client, err = kubernetes.NewForConfig(rc); err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	if a.dyn, err = dynamic.NewForConfig(rc); err != nil {
		return fmt.Errorf("kubernetes dynamic client: %w", err)
	}
	a.namespace, a.host = ns, rc.Host
	return nil
}

// oneName checks that a command got exactly one Deployment name.
func oneName(cmd string, args []string) (string, error) {
	if len(args) != 1 || strings.TrimSpace(args[0]) == "" {
		return "", usageError("%s takes one Deployment name, e.g. `kubectl canary %s web -n shop` (got %d arguments)", cmd, cmd, len(args))
	}
	return args[0], nil
}
