// Command cluster starts the local control plane of package test/cluster for manual work and stops it again.
//
//	cluster up [--dir D] [--prometheus] [--nodes N]   start, print kubeconfig and Prometheus URL, run until Ctrl-C
//	cluster down [--dir D]                            stop the `up` running in D
//
// D defaults to .cache/cluster under the repository root. It never starts a second cluster in a directory
// whose `up` is still running, and never kills a process it cannot tie to that directory's state file.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/canaryd/canaryd/test/cluster"
)

// state is written to D/state.json while `up` runs, for `down` and for scripts.
type state struct {
	Pid         int            `json:"pid"`
	Kubeconfig  string         `json:"kubeconfig"`
	APIServer   string         `json:"apiServer"`
	Prometheus  string         `json:"prometheus,omitempty"`
	MeshTargets string         `json:"meshTargetsFile"`
	Processes   map[string]int `json:"processes"`
	StartedAt   time.Time      `json:"startedAt"`
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "up":
		err = up(os.Args[2:])
	case "down":
		err = down(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: cluster up [--dir D] [--prometheus] [--nodes N] | cluster down [--dir D]")
	os.Exit(2)
}

func defaultDir() string {
	root, err := cluster.RepoRoot()
	if err != nil {
		return filepath.Join(".cache", "cluster")
	}
	return filepath.Join(root, ".cache", "cluster")
}

func up(args []string) error {
	fs := flag.NewFlagSet("up", flag.ExitOnError)
	dir := fs.String("dir", defaultDir(), "working directory (certificates, data, logs, kubeconfig)")
	prom := fs.Bool("prometheus", false, "also start Prometheus")
	nodes := fs.Int("nodes", 2, "number of kwok nodes")
	_ = fs.Parse(args)

	if st, err := readState(*dir); err == nil && alive(st.Pid) {
		return fmt.Errorf("a cluster is already up in %s (pid %d); run `cluster down --dir %s` first", *dir, st.Pid, *dir)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	t0 := time.Now()
	c, err := cluster.Start(ctx, cluster.Options{Dir: *dir, Nodes: *nodes, Prometheus: *prom})
	if err != nil {
		return err
	}
	st := state{Pid: os.Getpid(), Kubeconfig: c.Kubeconfig, APIServer: c.APIServer, MeshTargets: c.MeshTargetsFile,
		Processes: c.Pids(), StartedAt: time.Now()}
	if c.Prometheus != nil {
		st.Prometheus = c.Prometheus.URL
	}
	if err := writeState(c.Dir, st); err != nil {
		return errors.Join(err, c.Stop())
	}
	fmt.Printf("cluster up in %s (%s)\n", c.Dir, time.Since(t0).Round(100*time.Millisecond))
	fmt.Printf("export KUBECONFIG=%s\n", c.Kubeconfig)
	if c.Prometheus != nil {
		fmt.Printf("prometheus: %s\n", c.Prometheus.URL)
		fmt.Printf("mesh targets file: %s\n", c.MeshTargetsFile)
	}
	fmt.Println("Ctrl-C or `cluster down` stops it.")

	<-ctx.Done()
	fmt.Println("stopping…")
	err = c.Stop()
	_ = os.Remove(statePath(c.Dir))
	return err
}

func down(args []string) error {
	fs := flag.NewFlagSet("down", flag.ExitOnError)
	dir := fs.String("dir", defaultDir(), "working directory of the running `cluster up`")
	_ = fs.Parse(args)

	st, err := readState(*dir)
	if errors.Is(err, os.ErrNotExist) {
		fmt.Printf("no cluster up in %s\n", *dir)
		return nil
	}
	if err != nil {
		return err
	}
	if !alive(st.Pid) || !isOurUp(st.Pid) {
		_ = os.Remove(statePath(*dir))
		fmt.Printf("cluster in %s was not running (stale state file removed)\n", *dir)
		return nil
	}
	if err := syscall.Kill(st.Pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("signal pid %d: %w", st.Pid, err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for alive(st.Pid) {
		if time.Now().After(deadline) {
			return fmt.Errorf("pid %d still running 60s after SIGTERM", st.Pid)
		}
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Printf("cluster in %s stopped\n", *dir)
	return nil
}

func statePath(dir string) string { return filepath.Join(dir, "state.json") }

func writeState(dir string, st state) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	tmp := statePath(dir) + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	if err := os.Rename(tmp, statePath(dir)); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

func readState(dir string) (state, error) {
	var st state
	b, err := os.ReadFile(statePath(dir))
	if err != nil {
		return st, fmt.Errorf("read state: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("decode %s: %w", statePath(dir), err)
	}
	return st, nil
}

func alive(pid int) bool { return pid > 0 && syscall.Kill(pid, 0) == nil }

// isOurUp checks that pid still runs a `cluster up`, so that a recycled pid is never signalled.
func isOurUp(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	parts := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	for _, p := range parts[1:] {
		if p == "up" {
			return true
		}
	}
	return false
}
