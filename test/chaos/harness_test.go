package chaos

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// interval is every scenario's step interval: short enough for CI, long
// enough for several 1 s scrapes per step.
const interval = 5 * time.Second

// world is one scenario's namespace, watched by one canaryd process that the
// scenario may kill, restart or point elsewhere.
type world struct {
	t          *testing.T
	ctx        context.Context
	ns         string
	kubeconfig string   // canaryd's; the admin one unless a scenario says otherwise
	extra      []string // extra canaryd flags
	log        string
	// unaudited: apps created now get no auditor (one costs 40 API reads a
	// second; apps that never get a split need none).
	unaudited bool

	mu      sync.Mutex
	proc    *exec.Cmd
	exited  chan struct{}
	exitErr error
	// exitedAt is when the last canaryd process ended (zero while running).
	exitedAt time.Time
	listen   string
	starts   int
	apps     []*app
}

// namespaces counts the worlds made per name, so that -count=N runs each
// scenario in a fresh namespace (a deleted one lingers while terminating).
var namespaces = struct {
	sync.Mutex
	used map[string]int
}{used: map[string]int{}}

func newWorld(t *testing.T, ns string) *world {
	t.Helper()
	if env.skip != "" {
		t.Skip(env.skip)
	}
	namespaces.Lock()
	namespaces.used[ns]++
	if n := namespaces.used[ns]; n > 1 {
		ns = fmt.Sprintf("%s-%d", ns, n)
	}
	namespaces.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	w := &world{t: t, ctx: ctx, ns: ns, kubeconfig: env.cluster.Kubeconfig, log: filepath.Join(env.dir, ns+"-canaryd.log")}
	if _, err := env.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating namespace %s: %v", ns, err)
	}
	t.Cleanup(func() {
		w.stop(syscall.SIGTERM)
		for _, a := range w.apps {
			if a.auditor != nil {
				a.auditor.Stop()
			}
		}
		if t.Failed() {
			w.dumpLog(80)
		}
		cancel()
	})
	return w
}

// start starts canaryd for this namespace (again, after stop or kill).
func (w *world) start() {
	w.t.Helper()
	if err := w.tryStart(); err != nil {
		w.t.Fatal(err)
	}
}

// tryStart is start for goroutines other than the test's.
func (w *world) tryStart() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.proc != nil {
		return fmt.Errorf("canaryd is already running")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	w.listen = ln.Addr().String()
	_ = ln.Close()
	args := append([]string{
		"run", "--kubeconfig", w.kubeconfig, "--namespaces", w.ns, "--listen", w.listen,
		"--prometheus-url", env.cluster.Prometheus.URL, "--scrape-interval", "1s", "--analysis-period", "1s",
		"--default-interval", interval.String(), "--default-min-requests", "5", "--log-level", "debug",
		// The judge rolls a good canary back with probability alpha per
		// metric by design (default 1 %): over the 60-odd good rollouts of
		// a full run that is about one expected false rollback. The suite
		// tests canaryd under faults, not the judge's error rates (the
		// analysis package's tests do), so it asks for 0.1 %.
		"--judge-alpha", "0.001",
	}, w.extra...)
	logf, err := os.OpenFile(w.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "=== chaos: start #%d at %s\n", w.starts+1, time.Now().Format("15:04:05.000"))
	cmd := exec.Command(env.canaryd, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return fmt.Errorf("starting canaryd: %w", err)
	}
	_ = logf.Close()
	exited := make(chan struct{})
	go func() {
		err := cmd.Wait()
		w.mu.Lock()
		w.exitErr, w.exitedAt = err, time.Now()
		w.mu.Unlock()
		close(exited)
	}()
	w.proc, w.exited = cmd, exited
	w.starts++
	return nil
}

// stop signals canaryd and waits for it (SIGKILL after 10 s).
func (w *world) stop(sig syscall.Signal) {
	w.mu.Lock()
	proc, exited := w.proc, w.exited
	w.proc = nil
	w.mu.Unlock()
	if proc == nil {
		return
	}
	_ = proc.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = proc.Process.Kill()
		<-exited
	}
}

// alive reports whether the canaryd process is still running: a panic
// would have ended it.
func (w *world) alive() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.proc == nil {
		return false
	}
	select {
	case <-w.exited:
		return false
	default:
		return true
	}
}

// tryReady waits until canaryd has finished at least one reconcile without
// error (its informers synced first); it returns how long that took. It may
// run on any goroutine.
func (w *world) tryReady(timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	var last error
	ok := poll(timeout, func() (bool, error) {
		if !w.alive() {
			w.mu.Lock()
			last = fmt.Errorf("canaryd exited: %w", w.exitErr)
			w.mu.Unlock()
			return false, last
		}
		n, err := w.goodReconciles()
		last = err
		return err == nil && n >= 1, err
	})
	if !ok {
		return 0, fmt.Errorf("canaryd not ready and reconciling within %s: %w", timeout, last)
	}
	return time.Since(start), nil
}

// goodReconcilesOrErrors is how many reconciles this canaryd process
// finished, with or without error: every one could have written.
func (w *world) goodReconcilesOrErrors() (float64, error) {
	m, err := w.metrics()
	if err != nil {
		return 0, err
	}
	return m["canaryd_reconcile_duration_seconds_count"], nil
}

// goodReconciles is how many reconciles this canaryd process finished
// without error.
func (w *world) goodReconciles() (float64, error) {
	m, err := w.metrics()
	if err != nil {
		return 0, err
	}
	return m["canaryd_reconcile_duration_seconds_count"] - m["canaryd_reconcile_errors_total"], nil
}

// metrics scrapes canaryd's own /metrics, unlabelled series only.
func (w *world) metrics() (map[string]float64, error) {
	w.mu.Lock()
	addr := w.listen
	w.mu.Unlock()
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || strings.Contains(line, "{") {
			continue
		}
		name, v, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
			out[name] = f
		}
	}
	return out, sc.Err()
}

// dumpLog shows the end of canaryd's log in the test output and keeps the
// whole of it in $TMPDIR/canaryd-chaos-failed, which outlives the run.
func (w *world) dumpLog(n int) {
	b, _ := os.ReadFile(w.log)
	keep := filepath.Join(os.TempDir(), "canaryd-chaos-failed")
	if err := os.MkdirAll(keep, 0o755); err == nil {
		dst := filepath.Join(keep, time.Now().Format("150405-")+filepath.Base(w.log))
		if os.WriteFile(dst, b, 0o644) == nil {
			w.t.Logf("canaryd's whole log: %s", dst)
		}
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	w.t.Logf("canaryd log %s (last %d lines):\n%s", w.log, len(lines), strings.Join(lines, "\n"))
}

// logHas reports whether canaryd's log (all its runs) contains s.
func (w *world) logHas(s string) bool {
	b, _ := os.ReadFile(w.log)
	return strings.Contains(string(b), s)
}

// waitFor polls cond every 100 ms until it holds or timeout passes.
func (w *world) waitFor(what string, timeout time.Duration, cond func() (bool, error)) {
	w.t.Helper()
	if !poll(timeout, cond) {
		_, err := cond()
		w.t.Fatalf("%s: not within %s (last error: %v)", what, timeout, err)
	}
}

// poll is waitFor without failing: it says whether cond came true.
func poll(timeout time.Duration, cond func() (bool, error)) bool {
	deadline := time.Now().Add(timeout)
	for {
		if ok, _ := cond(); ok {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}
