package faultproxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// upstream is a TLS server standing in for the API server: it records the
// writes that reach it and answers every request 200 with a ConfigMap.
type upstream struct {
	srv    *httptest.Server
	mu     sync.Mutex
	writes []string
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{}
	u.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("watch") == "true" {
			w.Header().Set("Content-Type", "application/json")
			for i := 0; i < 3; i++ {
				_, _ = io.WriteString(w, `{"type":"ADDED","object":{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"c`+string(rune('0'+i))+`"}}}`+"\n")
				w.(http.Flusher).Flush()
				time.Sleep(50 * time.Millisecond)
			}
			return
		}
		if isWrite(r.Method) {
			u.mu.Lock()
			u.writes = append(u.writes, r.Method+" "+r.URL.Path)
			u.mu.Unlock()
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"x","namespace":"ns"}}`)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.writes)
}

func (u *upstream) tls() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(u.srv.Certificate())
	return &tls.Config{RootCAs: pool}
}

// client is a typed clientset that reaches the proxy through a kubeconfig
// written by WriteKubeconfig, as canaryd would.
func client(t *testing.T, p *Proxy) kubernetes.Interface {
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := p.WriteKubeconfig(path); err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 1000, 1000 // client-go's default 5/s would make the rate test crawl
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func newProxy(t *testing.T, u *upstream, cfg Config) *Proxy {
	cfg.Upstream, cfg.TLS = u.srv.URL, u.tls()
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func TestEveryWriteFailsWithTheCodesReasonAndNothingReachesTheServer(t *testing.T) {
	for name, tc := range map[string]struct {
		code int
		is   func(error) bool
	}{
		"500 is an internal error":   {500, apierrors.IsInternalError},
		"409 is a conflict":          {409, apierrors.IsConflict},
		"503 is service unavailable": {503, apierrors.IsServiceUnavailable},
		"504 is a server timeout":    {504, apierrors.IsTimeout},
		"429 is too many requests":   {429, apierrors.IsTooManyRequests},
	} {
		t.Run(name, func(t *testing.T) {
			u := newUpstream(t)
			p := newProxy(t, u, Config{WriteFailRate: 1, Codes: []int{tc.code}})
			cs := client(t, p)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			// client-go retries a 429 or 503 with Retry-After up to 10 times,
			// 1 s apart: give up sooner with a short context for those.
			if tc.code == 429 || tc.code == 503 {
				var c2 context.CancelFunc
				ctx, c2 = context.WithTimeout(ctx, 2500*time.Millisecond)
				defer c2()
			}
			_, err := cs.CoreV1().ConfigMaps("ns").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
			if err == nil {
				t.Fatal("a write went through a proxy that fails every write")
			}
			if !tc.is(err) && !strings.Contains(err.Error(), "context deadline exceeded") {
				t.Errorf("error %v (%T) is not classified as %d", err, err, tc.code)
			}
			if n := u.count(); n != 0 {
				t.Errorf("%d writes reached the server", n)
			}
			if _, err := cs.CoreV1().ConfigMaps("ns").Get(ctx, "x", metav1.GetOptions{}); err != nil && ctx.Err() == nil {
				t.Errorf("a read failed: %v", err)
			}
			if s := p.Stats(); s.Failed[tc.code] == 0 || s.Lost != 0 {
				t.Errorf("stats %v", s)
			}
		})
	}
}

func TestALostAnswerMeansTheWriteHappened(t *testing.T) {
	u := newUpstream(t)
	p := newProxy(t, u, Config{WriteFailRate: 1, Codes: []int{500}, LostShare: 1})
	cs := client(t, p)
	_, err := cs.CoreV1().ConfigMaps("ns").Create(context.Background(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
	if !apierrors.IsInternalError(err) {
		t.Fatalf("want an internal error, got %v", err)
	}
	if n := u.count(); n != 1 {
		t.Errorf("the write reached the server %d times, want 1", n)
	}
	if s := p.Stats(); s.Lost != 1 || s.Unrecovered != 1 {
		t.Errorf("stats %v", s)
	}
	// Faults off: the same target answers, and counts as recovered.
	p.SetFaults(false)
	if _, err := cs.CoreV1().ConfigMaps("ns").Create(context.Background(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if s := p.Stats(); s.Recovered != 1 || s.Unrecovered != 0 || s.WorstRecovery <= 0 {
		t.Errorf("stats after recovery %v", s)
	}
}

func TestTheFailureRateIsHonouredAndSeeded(t *testing.T) {
	run := func(seed uint64) (failed, through int) {
		u := newUpstream(t)
		p := newProxy(t, u, Config{WriteFailRate: 0.1, Codes: []int{500}, Seed: seed})
		cs := client(t, p)
		for i := 0; i < 400; i++ {
			err := cs.CoreV1().ConfigMaps("ns").Delete(context.Background(), "x", metav1.DeleteOptions{})
			if err != nil {
				failed++
			}
		}
		return failed, u.count()
	}
	f1, through := run(7)
	// 400 draws at 10 %: mean 40, standard deviation 6; 20..60 is beyond 3σ.
	if f1 < 20 || f1 > 60 || f1+through != 400 {
		t.Errorf("%d of 400 writes failed and %d went through; want about 40 failed", f1, through)
	}
	if f2, _ := run(7); f2 != f1 {
		t.Errorf("the same seed failed %d, then %d writes", f1, f2)
	}
}

func TestWatchesStreamThroughAndAreNeverFailed(t *testing.T) {
	u := newUpstream(t)
	p := newProxy(t, u, Config{WriteFailRate: 1, MaxDelay: 20 * time.Millisecond})
	resp, err := http.Get(p.URL() + "/api/v1/namespaces/ns/configmaps?watch=true")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("watch: %s", resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	var first time.Time
	lines := 0
	for sc.Scan() {
		if lines == 0 {
			first = time.Now()
		}
		lines++
	}
	if lines != 3 {
		t.Fatalf("%d watch events, want 3", lines)
	}
	// The upstream sends them 50 ms apart: had the proxy buffered, all
	// three would arrive together, at the end.
	if time.Since(first) < 50*time.Millisecond {
		t.Errorf("the events arrived together: the watch was buffered")
	}
}

func TestConfigIsValidated(t *testing.T) {
	u := newUpstream(t)
	for name, tc := range map[string]struct {
		cfg  Config
		want string
	}{
		"no upstream":           {Config{TLS: &tls.Config{}}, "Upstream and Config.TLS are required"},
		"plain http upstream":   {Config{Upstream: "http://127.0.0.1:1", TLS: &tls.Config{}}, "want https://host:port"},
		"upstream off loopback": {Config{Upstream: "https://10.0.0.1:443", TLS: &tls.Config{}}, "not a loopback address"},
		"listen off loopback":   {Config{Upstream: u.srv.URL, TLS: &tls.Config{}, Listen: "0.0.0.0:0"}, "Config.Listen"},
		"rate above 1":          {Config{Upstream: u.srv.URL, TLS: &tls.Config{}, WriteFailRate: 1.5}, "WriteFailRate 1.5: want 0 to 1"},
		"lost share below 0":    {Config{Upstream: u.srv.URL, TLS: &tls.Config{}, LostShare: -1}, "LostShare -1: want 0 to 1"},
		"a code it cannot fake": {Config{Upstream: u.srv.URL, TLS: &tls.Config{}, Codes: []int{404}}, "404 is not one of"},
		"a negative delay":      {Config{Upstream: u.srv.URL, TLS: &tls.Config{}, MaxDelay: -time.Second}, "MaxDelay -1s"},
	} {
		t.Run(name, func(t *testing.T) {
			p, err := New(tc.cfg)
			if err == nil {
				_ = p.Close()
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

func TestAPartitionCutsWatchesAndHoldsRequestsUntilItHeals(t *testing.T) {
	u := newUpstream(t)
	p := newProxy(t, u, Config{})
	// A slow watch: the upstream sends an event every 50 ms, three in all.
	resp, err := http.Get(p.URL() + "/api/v1/namespaces/ns/configmaps?watch=true")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatalf("first watch event: %v", err)
	}
	p.SetPartitioned(true)
	if _, err := io.ReadAll(r); err == nil {
		t.Error("the watch ended cleanly across a partition: it was not cut")
	}

	answered := make(chan int, 1)
	go func() {
		resp, err := http.Post(p.URL()+"/api/v1/namespaces/ns/configmaps", "application/json", strings.NewReader("{}"))
		if err != nil {
			answered <- -1
			return
		}
		resp.Body.Close()
		answered <- resp.StatusCode
	}()
	select {
	case code := <-answered:
		t.Fatalf("a request during the partition was answered %d at once", code)
	case <-time.After(300 * time.Millisecond):
	}
	p.SetPartitioned(false)
	if code := <-answered; code != http.StatusServiceUnavailable {
		t.Errorf("the held request got %d after the partition healed, want 503", code)
	}
	if n := u.count(); n != 0 {
		t.Errorf("%d writes reached the server through a partition", n)
	}
	if s := p.Stats(); s.Partitioned != 1 || !s.LastWrite.IsZero() || s.LastWriteAttempt.IsZero() {
		t.Errorf("stats %v", s)
	}
	resp2, err := http.Post(p.URL()+"/api/v1/namespaces/ns/configmaps", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != 200 || u.count() != 1 || p.Stats().LastWrite.IsZero() {
		t.Errorf("after healing: %s, %d writes upstream", resp2.Status, u.count())
	}
}

func TestHeldWritesWaitAndOthersDoNot(t *testing.T) {
	u := newUpstream(t)
	p := newProxy(t, u, Config{})
	p.SetHold("/trafficsplits/", time.Second)
	timed := func(path string) time.Duration {
		start := time.Now()
		req, _ := http.NewRequest(http.MethodPut, p.URL()+path, strings.NewReader("{}"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return time.Since(start)
	}
	if d := timed("/apis/split.smi-spec.io/v1alpha1/namespaces/ns/trafficsplits/web"); d < time.Second {
		t.Errorf("a held write went through after %s", d)
	}
	if d := timed("/apis/apps/v1/namespaces/ns/deployments/web"); d >= time.Second {
		t.Errorf("a write that is not held waited %s", d)
	}
	if s := p.Stats(); s.Held != 1 || u.count() != 2 {
		t.Errorf("stats %v, %d writes upstream", s, u.count())
	}
}
