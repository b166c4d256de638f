package cluster

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// processesMentioning lists the live processes whose command line contains s (e.g. a cluster's Dir, which
// every component gets in a flag), as "pid: cmdline".
func processesMentioning(s string) []string {
	entries, _ := os.ReadDir("/proc")
	var out []string
	self := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmdline, []byte(s)) || !processAlive(pid) {
			continue
		}
		out = append(out, e.Name()+": "+strings.ReplaceAll(string(cmdline), "\x00", " "))
	}
	return out
}

func TestStopLeavesNoProcessBehind(t *testing.T) {
	need(t)
	dir := t.TempDir()
	c, err := Start(context.Background(), Options{Dir: dir, Nodes: 1, Prometheus: true, CRDs: []string{}})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	pids := c.Pids()
	for _, name := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "prometheus"} {
		pid, ok := pids[name]
		if !ok {
			t.Errorf("Pids() has no %s: %v", name, pids)
			continue
		}
		if !processAlive(pid) {
			t.Errorf("%s (pid %d) not running after Start", name, pid)
		}
	}
	if err := c.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	for name, pid := range pids {
		if processAlive(pid) {
			t.Errorf("%s (pid %d) still alive after Stop", name, pid)
		}
	}
	if left := processesMentioning(dir); len(left) > 0 {
		t.Errorf("processes left behind: %v", left)
	}
	if err := c.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// TestStartFailureNamesComponentAndStopsTheRest swaps kube-apiserver for a script that fails at once: Start
// must say which component failed, quote its log, and not leave etcd (already started) running.
func TestStartFailureNamesComponentAndStopsTheRest(t *testing.T) {
	need(t)
	real, err := FindBinaries()
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	k8s := filepath.Join(cache, "k8s-"+KubernetesVersion, "bin")
	kwok := filepath.Join(cache, "kwok-"+KwokVersion)
	for _, d := range []string{k8s, filepath.Join(kwok, "bin")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{
		filepath.Join(k8s, "kube-controller-manager"): real.ControllerManager,
		filepath.Join(k8s, "kube-scheduler"):          real.Scheduler,
		filepath.Join(kwok, "bin", "kwok"):            real.Kwok,
		filepath.Join(kwok, "stages"):                 real.KwokStages,
	}
	for link, target := range links {
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	script := "#!/bin/sh\necho 'flag provided but not defined: -canaryd-test-marker' >&2\nexit 3\n"
	if err := os.WriteFile(filepath.Join(k8s, "kube-apiserver"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CANARYD_CACHE", cache)

	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := Start(ctx, Options{Dir: dir, CRDs: []string{}})
	if err == nil {
		c.Stop()
		t.Fatal("Start succeeded with a broken kube-apiserver")
	}
	t.Logf("Start error, as a user sees it:\n%v", err)
	for _, want := range []string{"kube-apiserver", "exit status 3", "canaryd-test-marker"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
	if left := processesMentioning(dir); len(left) > 0 {
		t.Errorf("processes left behind after a failed Start: %v", left)
	}
}

func TestMissingBinariesErrorTellsToBootstrap(t *testing.T) {
	t.Setenv("CANARYD_CACHE", t.TempDir())
	_, err := Start(context.Background(), Options{})
	if err == nil {
		t.Fatal("Start succeeded with an empty cache")
	}
	if !strings.Contains(err.Error(), "test/bootstrap.sh") || !strings.Contains(err.Error(), "kube-apiserver") {
		t.Errorf("error should name the missing binary and test/bootstrap.sh: %v", err)
	}
}
