package chaos

import (
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/canaryd/canaryd/rollout"
	"github.com/canaryd/canaryd/test/faultproxy"
)

// lease is the leader-election lease of the two-replica scenarios: short,
// so a failover fits a CI run.
const lease = 4 * time.Second

// twin is a second canaryd replica for w's namespace, with its own
// kubeconfig and log; it shares w's apps.
func (w *world) twin(name, kubeconfig string) *world {
	t := &world{t: w.t, ctx: w.ctx, ns: w.ns, kubeconfig: kubeconfig, extra: w.extra,
		log: filepath.Join(env.dir, w.ns+"-"+name+"-canaryd.log")}
	w.t.Cleanup(func() {
		t.stop(syscall.SIGTERM)
		if w.t.Failed() {
			t.dumpLog(40)
		}
	})
	return t
}

// leading reports whether this replica says it holds the lease.
func (w *world) leading() bool {
	m, err := w.metrics()
	return err == nil && m["canaryd_leader"] == 1
}

// pair is two canaryd replicas with leader election over one app mid-rollout,
// each reaching the API server through its own fault proxy: a leads, b
// stands by.
func pair(t *testing.T, ns string) (a, b *world, pa, pb *faultproxy.Proxy, web *app) {
	if env.skip != "" {
		t.Skip(env.skip)
	}
	t.Parallel()
	a = newWorld(t, ns)
	pa, pb = newProxy(t, faultproxy.Config{}), newProxy(t, faultproxy.Config{})
	a.kubeconfig = filepath.Join(t.TempDir(), "a.kubeconfig")
	if err := pa.WriteKubeconfig(a.kubeconfig); err != nil {
		t.Fatal(err)
	}
	kb := filepath.Join(t.TempDir(), "b.kubeconfig")
	if err := pb.WriteKubeconfig(kb); err != nil {
		t.Fatal(err)
	}
	a.extra = []string{"--leader-elect", "--leader-election-namespace", ns, "--leader-election-id", "canaryd",
		"--leader-election-lease", lease.String()}
	b = a.twin("b", kb)
	web = a.app("web", 2, nil, healthy, 40)
	a.start()
	a.waitFor("replica a leading", time.Minute, func() (bool, error) { return a.leading(), nil })
	b.start()
	web.adopted()
	if b.leading() {
		t.Fatal("both replicas say they lead")
	}
	web.deploy("example.com/web:2.0", healthy)
	web.waitStatus("step 1", 2*time.Minute, func(s rollout.Status) bool { return s.Phase == rollout.PhaseProgressing && s.Step >= 1 })
	return a, b, pa, pb, web
}

// finish waits for the rollout to end and checks it promoted, every step
// once; it returns converged (0 or 1) and the violations.
func finish(t *testing.T, web *app) (int, int) {
	web.waitStatus("a final phase", 3*time.Minute, func(s rollout.Status) bool { return final(s.Phase) })
	converged := 1
	if why := web.endedPromoted("example.com/web:2.0"); why != "" {
		t.Error(why)
		converged = 0
	}
	return converged, web.violations()
}

// TestLeaderKilledTheStandbyTakesOver: the leader is SIGKILLed mid-rollout,
// so its lease is never released; the standby takes over once it expires and
// finishes the rollout, every step once.
func TestLeaderKilledTheStandbyTakesOver(t *testing.T) {
	sc := begin("leader SIGKILLed (4s lease)", "kill → standby leading", 1)
	a, b, _, _, web := pair(t, "chaos-leader-kill")
	killed := time.Now()
	a.stop(syscall.SIGKILL)
	b.waitFor("replica b leading", 6*lease, func() (bool, error) { return b.leading(), nil })
	takeover := time.Since(killed)
	a.start() // back as the standby
	converged, violations := finish(t, web)
	if a.leading() {
		t.Error("the restarted replica says it leads too")
		violations++
	}
	t.Logf("lease %s: the standby led %s after the leader was killed", lease, takeover.Round(100*time.Millisecond))
	sc.end(converged, violations, takeover)
}

// TestLeaderPartitionedStopsBeforeItsLeaseEnds: the leader is cut off from
// the API server mid-rollout. The standby takes over once the lease
// expires; the old leader must have stopped acting by then (no reconcile
// and no write attempt after the new leader leads), and exit soon after.
func TestLeaderPartitionedStopsBeforeItsLeaseEnds(t *testing.T) {
	sc := begin("leader partitioned from the API server", "partition → standby leading", 1)
	a, b, pa, _, web := pair(t, "chaos-leader-partition")
	partitioned := time.Now()
	pa.SetPartitioned(true)
	b.waitFor("replica b leading", 6*lease, func() (bool, error) { return b.leading(), nil })
	bLeads := time.Now()
	takeover := bLeads.Sub(partitioned)
	// a's /metrics is on loopback, not behind the partition: watch whether
	// it still reconciles now that b leads.
	start, _ := a.goodReconcilesOrErrors()
	time.Sleep(2 * time.Second)
	end, _ := a.goodReconcilesOrErrors()
	pa.SetPartitioned(false)
	// Healed, a replica that still thought it led would write now.
	time.Sleep(2 * time.Second)
	violations := 0
	if end > start {
		t.Errorf("the partitioned old leader reconciled %v more times after the new leader took over", end-start)
		violations++
	}
	if at := pa.Stats().LastWriteAttempt; at.After(bLeads) {
		t.Errorf("the partitioned old leader sent a write at %s, %s after the new leader took over", at.Format("15:04:05.000"), at.Sub(bLeads).Round(time.Millisecond))
		violations++
	}
	a.mu.Lock()
	exitedAt := a.exitedAt
	a.mu.Unlock()
	// Once it stops acting, when the process goes is a matter of time, not
	// safety: client-go first tries to release the lock, up to another
	// renew deadline.
	if exitedAt.IsZero() {
		t.Errorf("the partitioned old leader is still running %s after the partition", time.Since(partitioned).Round(time.Second))
		violations++
	} else {
		t.Logf("the old leader exited %s after the partition (the new one led after %s)", exitedAt.Sub(partitioned).Round(100*time.Millisecond), takeover.Round(100*time.Millisecond))
	}
	converged, v := finish(t, web)
	t.Logf("lease %s: the standby led %s after the leader was partitioned", lease, takeover.Round(100*time.Millisecond))
	sc.end(converged, violations+v, takeover)
}
