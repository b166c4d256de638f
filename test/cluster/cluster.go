package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Options configure Start. The zero value is a two-node cluster with the shared CRDs and no Prometheus.
type Options struct {
	// Dir holds certificates, data, logs and kubeconfigs. Empty: a temporary directory, removed by Stop
	// unless CANARYD_KEEP_DIR is set (and kept after a failed Start, for its logs). A given Dir is kept;
	// Start removes what an earlier cluster left in it, and refuses to empty any other non-empty directory.
	Dir string
	// Nodes is the number of kwok fake nodes (default 2), each with PodsPerNode pods of capacity.
	Nodes int
	// PodsPerNode is each node's pods capacity (default 1000): the usual 110 runs out in benchmarks.
	PodsPerNode int
	// Prometheus also starts Prometheus, scraping Cluster.MeshTargetsFile as the "linkerd-proxy" job.
	Prometheus bool
	// ScrapeInterval is Prometheus's scrape and evaluation interval (default 1s).
	ScrapeInterval time.Duration
	// PromStaticTargets are extra host:port targets on loopback for Prometheus (see PromOptions).
	PromStaticTargets []string
	// CRDs are CRD manifest files to install. nil: every *.yaml in the shared crds directory
	// ($CANARYD_SHARED/crds, default <repo root>/../shared/crds). An empty non-nil slice installs none.
	CRDs []string
	// Timeout bounds the whole start-up (default 2m).
	Timeout time.Duration
}

// Cluster is a running control plane. Stop it when done; it is safe to call Stop more than once.
type Cluster struct {
	Dir        string
	Kubeconfig string       // admin kubeconfig (client certificate in group system:masters)
	RESTConfig *rest.Config // admin config; copy it (rest.CopyConfig) before changing it
	APIServer  string       // https://127.0.0.1:<port>
	Prometheus *Prometheus  // nil unless Options.Prometheus
	// MeshTargetsFile is the file_sd file the mesh simulator writes and Prometheus's "linkerd-proxy" job reads.
	// It lives in Dir and may not exist yet.
	MeshTargetsFile string
	Nodes           []string // names of the kwok nodes

	pki      *pki
	procs    []*process // in start order; stopped in reverse
	ownsDir  bool
	stopOnce sync.Once
	stopErr  error
	mu       sync.Mutex
	users    map[string]string // KubeconfigFor cache: key → kubeconfig path
}

const (
	serviceCIDR = "10.96.0.0/16"  // /24 is full after ~250 Services; the benchmark needs thousands
	podCIDR     = "10.244.0.0/16" // one pool shared by all kwok nodes, so pod IPs are unique cluster-wide
	nodeIP      = "10.240.0.1"    // fake, like pod IPs: kwok reports it as every node's InternalIP
)

// Start runs a control plane and returns once it is usable: the API server is ready, the CRDs are
// Established, every node is Ready, the "default" ServiceAccount exists and (if asked) Prometheus is ready.
// ctx bounds the start-up only; the processes run until Stop. On error, whatever started is stopped and the
// error names the component that failed with the end of its log.
func Start(ctx context.Context, o Options) (*Cluster, error) {
	o = o.withDefaults()
	bins, err := FindBinaries()
	if err != nil {
		return nil, err
	}
	crds, err := crdFiles(o.CRDs)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	// Ports are picked free and then handed to the child, so another process on the machine (a parallel
	// test package starting its own cluster) can take one in between. That is rare and not the caller's
	// fault: start again from scratch, with new ports.
	for attempt := 1; ; attempt++ {
		c, err := startOnce(ctx, o, bins, crds)
		if err == nil || attempt == 3 || ctx.Err() != nil || !strings.Contains(err.Error(), "address already in use") {
			return c, err
		}
	}
}

func startOnce(ctx context.Context, o Options, bins Binaries, crds []string) (*Cluster, error) {
	var err error
	c := &Cluster{Dir: o.Dir, users: map[string]string{}}
	if c.Dir == "" {
		if c.Dir, err = os.MkdirTemp("", "canaryd-cluster-"); err != nil {
			return nil, fmt.Errorf("create temp dir: %w", err)
		}
		c.ownsDir = os.Getenv("CANARYD_KEEP_DIR") == ""
	} else if err := resetDir(c.Dir); err != nil {
		return nil, err
	}
	if c.Dir, err = filepath.Abs(c.Dir); err != nil {
		return nil, fmt.Errorf("absolute dir: %w", err)
	}
	c.MeshTargetsFile = filepath.Join(c.Dir, "mesh-targets.json")
	if err := c.start(ctx, o, bins, crds); err != nil {
		c.ownsDir = false // keep the logs the error points at
		if stopErr := c.Stop(); stopErr != nil {
			err = errors.Join(err, fmt.Errorf("stop after failed start: %w", stopErr))
		}
		return nil, fmt.Errorf("start cluster in %s: %w", c.Dir, err)
	}
	return c, nil
}

func (o Options) withDefaults() Options {
	if o.Nodes <= 0 {
		o.Nodes = 2
	}
	if o.PodsPerNode <= 0 {
		o.PodsPerNode = 1000
	}
	if o.ScrapeInterval <= 0 {
		o.ScrapeInterval = time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Minute
	}
	return o
}

// start brings the components up in dependency order; Prometheus starts alongside, as it needs nothing else.
func (c *Cluster) start(ctx context.Context, o Options, bins Binaries, crds []string) error {
	type promResult struct {
		p   *Prometheus
		err error
	}
	promDone := make(chan promResult, 1)
	if o.Prometheus {
		go func() {
			p, err := startPrometheus(ctx, bins.Prometheus, PromOptions{
				Dir:             filepath.Join(c.Dir, "prometheus"),
				ScrapeInterval:  o.ScrapeInterval,
				MeshTargetsFile: c.MeshTargetsFile,
				StaticTargets:   o.PromStaticTargets,
			}, filepath.Join(c.Dir, "logs"))
			promDone <- promResult{p, err}
		}()
	} else {
		promDone <- promResult{}
	}
	cpErr := c.startControlPlane(ctx, o, bins, crds)
	pr := <-promDone
	c.Prometheus = pr.p // set even when the control plane failed, so that Stop stops it
	if cpErr != nil {
		return cpErr
	}
	if pr.err != nil {
		return pr.err
	}
	return nil
}

func (c *Cluster) startControlPlane(ctx context.Context, o Options, bins Binaries, crds []string) error {
	var err error
	if c.pki, err = newPKI(filepath.Join(c.Dir, "pki")); err != nil {
		return err
	}
	etcdURL, err := c.startEtcd(ctx, bins.Etcd)
	if err != nil {
		return err
	}
	if err := c.startAPIServer(ctx, bins.APIServer, etcdURL); err != nil {
		return err
	}
	// The remaining components only need the API server, so they start together; each readiness check
	// below covers one of them.
	cm, err := c.startControllerManager(bins.ControllerManager)
	if err != nil {
		return err
	}
	sched, err := c.startScheduler(bins.Scheduler)
	if err != nil {
		return err
	}
	kwok, err := c.startKwok(bins)
	if err != nil {
		return err
	}
	if err := c.installCRDs(ctx, crds); err != nil {
		return err
	}
	if err := c.createNodes(ctx, o.Nodes, o.PodsPerNode); err != nil {
		return err
	}
	if err := c.waitForComponent(ctx, cm); err != nil {
		return err
	}
	if err := c.waitForComponent(ctx, sched); err != nil {
		return err
	}
	if err := c.waitForNodesReady(ctx, kwok); err != nil {
		return err
	}
	return c.waitForDefaultServiceAccount(ctx, cm)
}

// Stop stops Prometheus and every control-plane process (in reverse start order) and waits for them to exit.
// It is idempotent and safe to call on a partly started cluster.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		var errs []error
		if c.Prometheus != nil {
			if err := c.Prometheus.Stop(); err != nil {
				errs = append(errs, err)
			}
		}
		for i := len(c.procs) - 1; i >= 0; i-- {
			c.procs[i].stop(5 * time.Second)
		}
		if c.ownsDir {
			if err := os.RemoveAll(c.Dir); err != nil {
				errs = append(errs, fmt.Errorf("remove %s: %w", c.Dir, err))
			}
		}
		c.stopErr = errors.Join(errs...)
	})
	return c.stopErr
}

// Pids returns the process id of every process the cluster started, by component name, Prometheus included.
// The processes may have exited already; tests use it to check that Stop left nothing behind.
func (c *Cluster) Pids() map[string]int {
	m := map[string]int{}
	for _, p := range c.procs {
		m[p.name] = p.Pid()
	}
	if c.Prometheus != nil && c.Prometheus.Pid() != 0 {
		m["prometheus"] = c.Prometheus.Pid()
	}
	return m
}

// KubeconfigFor issues a client certificate for user in groups and writes a kubeconfig using it, so tests can
// act as a non-admin identity under RBAC (e.g. "jane", or "system:serviceaccount:canaryd:canaryd" with group
// "system:serviceaccounts"). The same user and groups return the same file.
func (c *Cluster) KubeconfigFor(user string, groups []string) (string, error) {
	key := user + "\x00" + strings.Join(groups, "\x00")
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.users[key]; ok {
		return p, nil
	}
	sum := sha256.Sum256([]byte(key))
	// The hash keeps two users whose names differ only in characters unsafe for file names apart.
	name := safeFileName(user) + "-" + hex.EncodeToString(sum[:4])
	certFile, keyFile, err := c.pki.clientCert(name, user, groups)
	if err != nil {
		return "", err
	}
	path := filepath.Join(c.Dir, "kubeconfig-"+name)
	if err := writeKubeconfig(path, c.APIServer, c.pki.caFile, clientcmdapi.AuthInfo{
		ClientCertificate: certFile, ClientKey: keyFile,
	}); err != nil {
		return "", err
	}
	c.users[key] = path
	return path, nil
}

// KubeconfigForToken writes a kubeconfig that authenticates with a bearer token, e.g. one returned by the
// TokenRequest API for a ServiceAccount. name only tells the files apart.
func (c *Cluster) KubeconfigForToken(name, token string) (string, error) {
	path := filepath.Join(c.Dir, "kubeconfig-token-"+safeFileName(name))
	if err := writeKubeconfig(path, c.APIServer, c.pki.caFile, clientcmdapi.AuthInfo{Token: token}); err != nil {
		return "", err
	}
	return path, nil
}

// RESTConfigFor loads a kubeconfig written by KubeconfigFor or KubeconfigForToken.
func RESTConfigFor(kubeconfig string) (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig %s: %w", kubeconfig, err)
	}
	return cfg, nil
}

// resetDir empties a caller-given Dir so that a previous run's etcd data or certificates can't leak in.
// It refuses to empty a directory that does not look like one of ours.
func resetDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return os.MkdirAll(dir, 0o755)
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", dir, err)
	}
	if len(entries) == 0 {
		return nil
	}
	if _, err := os.Stat(filepath.Join(dir, "pki", "ca.crt")); err != nil {
		if _, err := os.Stat(filepath.Join(dir, "prometheus", "prometheus.yml")); err != nil {
			return fmt.Errorf("dir %s is not empty and holds no earlier cluster: refusing to wipe it", dir)
		}
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("clean %s: %w", dir, err)
		}
	}
	return nil
}
