package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// process is one child of the harness: a binary with its own log file and process group.
type process struct {
	name    string // component name used in errors, e.g. "kube-apiserver"
	logPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed once the process has exited and been reaped
	mu      sync.Mutex
	err     error // exit status, valid after done is closed
	logFile *os.File
}

// startProcess starts bin with args, stdout and stderr appended to logDir/<name>.log.
//
// Setpgid puts the child in its own process group so that Stop can kill whatever it forks, and so that a
// Ctrl-C in a terminal reaches only the harness, which then stops the children in order. Pdeathsig kills the
// child if the harness dies without calling Stop (e.g. `go test` timing out with SIGKILL). Pdeathsig fires when
// the OS thread that forked the child exits; the Go runtime only retires threads locked with LockOSThread, which
// os/exec does not do, so in practice it fires when the process exits.
func startProcess(name, logDir, bin string, args []string, env []string) (*process, error) {
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, fmt.Errorf("%s: create log dir: %w", name, err)
	}
	logPath := filepath.Join(logDir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: open log: %w", name, err)
	}
	fmt.Fprintf(f, "=== %s %s %q\n", time.Now().Format(time.RFC3339), bin, args)
	cmd := exec.Command(bin, args...)
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: start %s: %w", name, bin, err)
	}
	p := &process{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{}), logFile: f}
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// Pid is the child's process id (also its process group id).
func (p *process) Pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended, and how.
func (p *process) exited() (bool, error) {
	select {
	case <-p.done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return true, p.err
	default:
		return false, nil
	}
}

// stop sends SIGTERM to the process group, waits up to grace, then SIGKILLs the group and waits for the exit.
// Once the leader has been reaped its pid (= the group id) may be reused, so an exited process is left alone;
// none of the components forks helpers that could outlive it.
func (p *process) stop(grace time.Duration) {
	if done, _ := p.exited(); done {
		return
	}
	_ = syscall.Kill(-p.Pid(), syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(grace):
	}
	_ = syscall.Kill(-p.Pid(), syscall.SIGKILL)
	<-p.done
}

// failure builds the error returned when this component does not come up: it names the component, says
// whether the process is still running, and quotes the end of its log.
func (p *process) failure(what string, cause error) error {
	state := "still running"
	if done, err := p.exited(); done {
		state = fmt.Sprintf("exited: %v", err)
	}
	return fmt.Errorf("%s %s: %w (%s); last lines of %s:\n%s", p.name, what, cause, state, p.logPath, tailFile(p.logPath, 25))
}

// tailFile returns the last n lines of a file, for error messages.
func tailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	defer f.Close()
	const max = 64 << 10
	if st, err := f.Stat(); err == nil && st.Size() > max {
		_, _ = f.Seek(st.Size()-max, io.SeekStart)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "    | " + string(bytes.Join(lines, []byte("\n    | ")))
}

// freePort asks the kernel for an unused TCP port on 127.0.0.1. The port is free when this returns; a
// process started right after will normally get it (the kernel hands out ephemeral ports round-robin).
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// hostPort formats 127.0.0.1:port.
func hostPort(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// poll calls check every interval until it returns nil, the process dies, or ctx/timeout expires.
// The returned error is the component's failure with the last check error as cause.
func poll(ctx context.Context, p *process, what string, timeout time.Duration, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	interval := 50 * time.Millisecond
	var last error
	for {
		if p != nil {
			if done, _ := p.exited(); done {
				return p.failure(what, errors.New("process exited"))
			}
		}
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		last = check(cctx)
		ccancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			cause := fmt.Errorf("%w (last check: %w)", ctx.Err(), last)
			if p == nil {
				return fmt.Errorf("%s: %w", what, cause)
			}
			return p.failure(what, cause)
		case <-time.After(interval):
		}
		if interval < 500*time.Millisecond {
			interval *= 2
		}
	}
}

// processAlive reports whether a pid still names a live (non-zombie) process.
func processAlive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	// Field 3 of /proc/<pid>/stat is the state; it follows the ")" closing the command name.
	if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) {
		return b[i+2] != 'Z' && b[i+2] != 'X'
	}
	return true
}
