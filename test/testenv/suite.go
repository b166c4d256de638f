package testenv

import (
	"context"
	"fmt"
	"os"

	"github.com/canaryd/canaryd/test/cluster"
)

// Available reports whether the control-plane binaries are installed. Without
// them a developer's run skips, with skip saying what is missing and how to
// install it; under CI (CI set, and not "false" or "0") it fails with err
// instead: there, missing binaries are a broken pipeline, not a reason to skip.
func Available() (skip string, err error) {
	if _, err := cluster.FindBinaries(); err != nil {
		if ci := os.Getenv("CI"); ci != "" && ci != "false" && ci != "0" {
			return "", fmt.Errorf("CI is set and the control-plane binaries are missing: %w", err)
		}
		return fmt.Sprintf("control-plane binaries missing (run test/bootstrap.sh): %v", err), nil
	}
	return "", nil
}

// Main is the body of a TestMain whose tests share one Env; run is m.Run and
// the result is the exit code. Without the binaries it fails under CI (see
// Available) without running a test, and elsewhere calls use(nil, reason)
// and runs the tests, each of which must then skip with reason. Otherwise it
// starts the Env, calls use(e, ""), runs the tests and stops the Env, however
// they end: a failed test leaves no process behind. What goes wrong is
// printed to stderr, as a TestMain has no *testing.T to report to.
func Main(run func() int, o Options, use func(e *Env, skip string)) int {
	skip, err := Available()
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	if skip != "" {
		use(nil, skip)
		return run()
	}
	e, err := Start(context.Background(), o)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if err := e.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the test environment:", err)
		}
	}()
	use(e, "")
	return run()
}
