package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// startEtcd runs a single-member etcd on two free loopback ports and waits for /health.
func (c *Cluster) startEtcd(ctx context.Context, bin string) (clientURL string, err error) {
	clientPort, err := freePort()
	if err != nil {
		return "", err
	}
	peerPort, err := freePort()
	if err != nil {
		return "", err
	}
	clientURL = "http://" + hostPort(clientPort)
	peerURL := "http://" + hostPort(peerPort)
	args := []string{
		"--name=canaryd-test",
		"--data-dir=" + filepath.Join(c.Dir, "etcd"),
		"--listen-client-urls=" + clientURL,
		"--advertise-client-urls=" + clientURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=canaryd-test=" + peerURL,
		"--initial-cluster-state=new",
		"--logger=zap",
		"--log-outputs=stderr",
		// A test cluster never holds more than a few thousand objects; compacting often keeps etcd small.
		"--auto-compaction-mode=revision",
		"--auto-compaction-retention=1000",
	}
	p, err := c.run("etcd", bin, args, nil)
	if err != nil {
		return "", err
	}
	client := &http.Client{}
	err = poll(ctx, p, "did not become healthy", 30*time.Second, func(ctx context.Context) error {
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
	})
	return clientURL, err
}

// startAPIServer runs kube-apiserver on a free loopback port, writes the admin kubeconfig and waits for /readyz.
func (c *Cluster) startAPIServer(ctx context.Context, bin, etcdURL string) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	c.APIServer = "https://" + hostPort(port)
	pk := c.pki
	args := []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + pk.dir,
		"--tls-cert-file=" + pk.servingCertFile,
		"--tls-private-key-file=" + pk.servingKeyFile,
		"--client-ca-file=" + pk.caFile,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + pk.saPubFile,
		"--service-account-signing-key-file=" + pk.saKeyFile,
		"--authorization-mode=Node,RBAC",
		"--service-cluster-ip-range=" + serviceCIDR,
		"--allow-privileged=true",
		// This plugin taints every new node not-ready until the node lifecycle controller lifts it; that
		// controller is off (see startControllerManager), and kwok's nodes are Ready from the start.
		"--disable-admission-plugins=TaintNodesByCondition",
		// The "kubernetes" Service would point at 127.0.0.1, which EndpointSlices reject; nothing in this
		// cluster dials it anyway (no pod really runs).
		"--endpoint-reconciler-type=none",
		// Benchmarks create thousands of objects quickly; the default limits would throttle them.
		"--max-requests-inflight=2000",
		"--max-mutating-requests-inflight=1000",
	}
	// CANARYD_APISERVER_PROFILING=1 serves /debug/pprof (to system:masters) for studying the API server's
	// CPU under a benchmark; off by default, as in a hardened cluster.
	if os.Getenv("CANARYD_APISERVER_PROFILING") == "" {
		args = append(args, "--profiling=false")
	}
	p, err := c.run("kube-apiserver", bin, args, nil)
	if err != nil {
		return err
	}
	certFile, keyFile, err := pk.clientCert("admin", "canaryd-admin", []string{"system:masters"})
	if err != nil {
		return err
	}
	c.Kubeconfig = filepath.Join(c.Dir, "kubeconfig")
	if err := writeKubeconfig(c.Kubeconfig, c.APIServer, pk.caFile, clientcmdapi.AuthInfo{
		ClientCertificate: certFile, ClientKey: keyFile,
	}); err != nil {
		return err
	}
	if c.RESTConfig, err = clientcmd.BuildConfigFromFlags("", c.Kubeconfig); err != nil {
		return fmt.Errorf("load admin kubeconfig: %w", err)
	}
	// Tests and benchmarks are the only clients; client-go's default 5 QPS would make them crawl.
	c.RESTConfig.QPS, c.RESTConfig.Burst = 500, 1000
	cs, err := kubernetes.NewForConfig(c.RESTConfig)
	if err != nil {
		return fmt.Errorf("admin client: %w", err)
	}
	return poll(ctx, p, "did not become ready", 60*time.Second, func(ctx context.Context) error {
		body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			return fmt.Errorf("/readyz: %w: %s", err, firstLines(string(body), 3))
		}
		return nil
	})
}

// component is a control-plane process with an HTTPS /healthz on a loopback port.
type component struct {
	proc      *process
	healthURL string
}

// componentArgs are the flags kube-controller-manager and kube-scheduler share: their own identity's
// kubeconfig (as kubeadm sets them up, so RBAC is exercised as in a real cluster), a serving certificate from
// our CA on a free loopback port for /healthz, and no leader election.
func (c *Cluster) componentArgs(name, user string) ([]string, string, error) {
	certFile, keyFile, err := c.pki.clientCert(name, user, nil)
	if err != nil {
		return nil, "", err
	}
	kubeconfig := filepath.Join(c.Dir, "kubeconfig-"+name)
	if err := writeKubeconfig(kubeconfig, c.APIServer, c.pki.caFile, clientcmdapi.AuthInfo{
		ClientCertificate: certFile, ClientKey: keyFile,
	}); err != nil {
		return nil, "", err
	}
	servingCert := filepath.Join(c.pki.dir, name+"-serving.crt")
	servingKey := filepath.Join(c.pki.dir, name+"-serving.key")
	if err := c.pki.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: name},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}, servingCert, servingKey); err != nil {
		return nil, "", fmt.Errorf("%s serving certificate: %w", name, err)
	}
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	args := []string{
		"--kubeconfig=" + kubeconfig,
		"--authentication-kubeconfig=" + kubeconfig,
		"--authorization-kubeconfig=" + kubeconfig,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--tls-cert-file=" + servingCert,
		"--tls-private-key-file=" + servingKey,
		"--leader-elect=false",
	}
	return args, "https://" + hostPort(port) + "/healthz", nil
}

// startControllerManager runs kube-controller-manager with every default controller except those that need
// a kubelet or a cloud: node lifecycle would taint kwok's nodes whenever a heartbeat is late.
func (c *Cluster) startControllerManager(bin string) (*component, error) {
	args, health, err := c.componentArgs("kube-controller-manager", "system:kube-controller-manager")
	if err != nil {
		return nil, err
	}
	args = append(args,
		"--use-service-account-credentials=true",
		"--service-account-private-key-file="+c.pki.saKeyFile,
		"--root-ca-file="+c.pki.caFile,
		"--cluster-signing-cert-file="+c.pki.caFile,
		"--cluster-signing-key-file="+c.pki.caKeyFile,
		"--service-cluster-ip-range="+serviceCIDR,
		"--controllers=*,-node-lifecycle-controller,-cloud-node-lifecycle-controller,-service-lb-controller,"+
			"-node-route-controller,-node-ipam-controller,-persistentvolume-attach-detach-controller",
		// Defaults are 20 QPS / 30 burst: a benchmark with hundreds of Deployments would wait on the client.
		"--kube-api-qps=300",
		"--kube-api-burst=600",
		"--concurrent-deployment-syncs=20",
		"--concurrent-replicaset-syncs=20",
		"--concurrent-service-endpoint-syncs=20",
	)
	p, err := c.run("kube-controller-manager", bin, args, nil)
	if err != nil {
		return nil, err
	}
	return &component{proc: p, healthURL: health}, nil
}

// startScheduler runs kube-scheduler: kwok only simulates kubelets, so pods still need to be bound to a node.
func (c *Cluster) startScheduler(bin string) (*component, error) {
	args, health, err := c.componentArgs("kube-scheduler", "system:kube-scheduler")
	if err != nil {
		return nil, err
	}
	// The default 50 QPS caps binding at ~40 pods/s, which a benchmark of hundreds of Deployments feels.
	// The flags are deprecated in favour of a config file, but still honoured without one.
	args = append(args, "--kube-api-qps=500", "--kube-api-burst=1000")
	p, err := c.run("kube-scheduler", bin, args, nil)
	if err != nil {
		return nil, err
	}
	return &component{proc: p, healthURL: health}, nil
}

// startKwok runs kwok for the nodes annotated kwok.x-k8s.io/node=fake, with the stages that make nodes Ready and
// pods Running+Ready at once. HOME points into Dir so that a developer's ~/.kwok/kwok.yaml is not read.
func (c *Cluster) startKwok(bins Binaries) (*process, error) {
	home := filepath.Join(c.Dir, "kwok-home")
	if err := os.MkdirAll(home, 0o755); err != nil {
		return nil, fmt.Errorf("kwok home: %w", err)
	}
	var stages []string
	for _, s := range kwokStageFiles {
		stages = append(stages, filepath.Join(bins.KwokStages, s))
	}
	args := []string{
		"--kubeconfig=" + c.Kubeconfig,
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
		"--cidr=" + podCIDR,
		"--node-ip=" + nodeIP,
		"--node-lease-duration-seconds=40",
		"--config=" + strings.Join(stages, ","),
	}
	env := append(os.Environ(), "HOME="+home)
	return c.run("kwok", bins.Kwok, args, env)
}

// waitForComponent waits for a component's /healthz, verified against our CA.
func (c *Cluster) waitForComponent(ctx context.Context, comp *component) error {
	pool := x509.NewCertPool()
	pool.AddCert(c.pki.caCert)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer client.CloseIdleConnections()
	return poll(ctx, comp.proc, "did not become healthy", 60*time.Second, func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, comp.healthURL, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s: %s", comp.healthURL, resp.Status, firstLines(string(body), 3))
		}
		return nil
	})
}

// run starts a component and records it for Stop.
func (c *Cluster) run(name, bin string, args, env []string) (*process, error) {
	p, err := startProcess(name, filepath.Join(c.Dir, "logs"), bin, args, env)
	if err != nil {
		return nil, err
	}
	c.procs = append(c.procs, p)
	return p, nil
}

// getJSON GETs url and decodes a 200 response into v.
func getJSON(ctx context.Context, client *http.Client, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("read %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, firstLines(string(body), 3))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("decode %s: %w", url, err)
	}
	return nil
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(strings.TrimSpace(s), "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, " / ")
}
