package cluster

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
)

// RestartAPIServer stops kube-apiserver and etcd (SIGTERM, as an upgrade or
// a node reboot would), keeps them down for down, starts them again on the
// same ports with the same data, and returns once /readyz answers. The other
// components, and every client, reconnect by themselves: that is what a
// chaos test wants to see. It must not run concurrently with Stop.
func (c *Cluster) RestartAPIServer(ctx context.Context, down time.Duration) error {
	api, etcd := c.proc("kube-apiserver"), c.proc("etcd")
	if api == nil || etcd == nil {
		return fmt.Errorf("restart: kube-apiserver or etcd was never started")
	}
	api.stop(10 * time.Second)
	etcd.stop(10 * time.Second)
	select {
	case <-time.After(down):
	case <-ctx.Done():
		return fmt.Errorf("restart: %w", ctx.Err())
	}
	etcd, err := c.rerun(etcd)
	if err != nil {
		return err
	}
	clientURL := flagValue(etcd.cmd.Args, "--listen-client-urls")
	client := &http.Client{}
	defer client.CloseIdleConnections()
	if err := poll(ctx, etcd, "did not become healthy after a restart", 30*time.Second, func(ctx context.Context) error {
		var health struct {
			Health string `json:"health"`
		}
		if err := getJSON(ctx, client, clientURL+"/health", &health); err != nil {
			return err
		}
		if health.Health != "true" {
			return fmt.Errorf("/health says %q", health.Health)
		}
		return nil
	}); err != nil {
		return err
	}
	if api, err = c.rerun(api); err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(c.RESTConfig)
	if err != nil {
		return fmt.Errorf("restart: admin client: %w", err)
	}
	return poll(ctx, api, "did not become ready after a restart", 60*time.Second, func(ctx context.Context) error {
		body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			return fmt.Errorf("/readyz: %w: %s", err, firstLines(string(body), 3))
		}
		return nil
	})
}

// proc finds a started component by name.
func (c *Cluster) proc(name string) *process {
	for _, p := range c.procs {
		if p.name == name {
			return p
		}
	}
	return nil
}

// rerun starts a stopped component again with the same binary, flags and
// environment, and puts the new process in its place for Stop.
func (c *Cluster) rerun(old *process) (*process, error) {
	p, err := startProcess(old.name, filepath.Dir(old.logPath), old.cmd.Path, old.cmd.Args[1:], old.cmd.Env)
	if err != nil {
		return nil, fmt.Errorf("restart: %w", err)
	}
	for i := range c.procs {
		if c.procs[i] == old {
			c.procs[i] = p
		}
	}
	return p, nil
}

// flagValue is the value of --name=value in args, "" if absent.
func flagValue(args []string, name string) string {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}
