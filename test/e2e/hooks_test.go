package e2e

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/canaryd/canaryd/rollout"
)

// gate is a webhook receiver on loopback that records every call and
// answers each hook as the test says.
type gate struct {
	mu     sync.Mutex
	calls  []rollout.HookPayload
	answer map[rollout.Hook]int // HTTP status per hook
	srv    *httptest.Server
}

func newGate(t *testing.T) *gate {
	g := &gate{answer: map[rollout.Hook]int{}}
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p rollout.HookPayload
		if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		g.mu.Lock()
		g.calls = append(g.calls, p)
		code := g.answer[p.Hook]
		g.mu.Unlock()
		if code == 0 {
			code = http.StatusOK
		}
		w.WriteHeader(code)
		_, _ = w.Write([]byte("answer from the test gate"))
	}))
	t.Cleanup(g.srv.Close)
	return g
}

func (g *gate) set(h rollout.Hook, code int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.answer[h] = code
}

func (g *gate) called(h rollout.Hook) []rollout.HookPayload {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []rollout.HookPayload
	for _, c := range g.calls {
		if c.Hook == h {
			out = append(out, c)
		}
	}
	return out
}

func TestLifecycleWebhooksGateAndReport(t *testing.T) {
	g := newGate(t)
	g.set(rollout.HookPreRollout, http.StatusServiceUnavailable)
	g.set(rollout.HookConfirmPromotion, http.StatusForbidden)
	f := given(t, "e2e-hooks").app(map[string]string{
		rollout.KeyPreRollout:       g.srv.URL + "/pre",
		rollout.KeyConfirmPromotion: g.srv.URL + "/confirm",
		rollout.KeyPostRollout:      g.srv.URL + "/post",
	}, healthy).audit().canaryd().adopted()

	f.deploy("example.com/web:2.0", healthy)
	f.waitEvent("HookRefused", time.Minute)
	time.Sleep(2 * time.Second)
	if st, _ := f.tryStatus(); st.Step != 0 || st.Weight != 0 {
		t.Fatalf("the canary got traffic while pre-rollout said no: %+v", st)
	}
	g.set(rollout.HookPreRollout, http.StatusOK)
	f.waitPhase(rollout.PhaseWaitingPromotion, 2*time.Minute)
	time.Sleep(2 * time.Second)
	if st, _ := f.tryStatus(); st.Phase != rollout.PhaseWaitingPromotion {
		t.Fatalf("promoted while confirm-promotion said no: %+v", st)
	}
	g.set(rollout.HookConfirmPromotion, http.StatusOK)
	f.waitPhase(rollout.PhaseSucceeded, time.Minute)
	f.waitFor("post-rollout notice", 30*time.Second, func() (bool, error) { return len(g.called(rollout.HookPostRollout)) > 0, nil })

	post := g.called(rollout.HookPostRollout)
	if len(post) != 1 || post[0].Phase != rollout.PhaseSucceeded || post[0].Name != f.name || post[0].Namespace != f.ns {
		t.Errorf("post-rollout calls %+v", post)
	}
	if pre := g.called(rollout.HookPreRollout); len(pre) < 2 || pre[0].Revision == "" {
		t.Errorf("pre-rollout calls %+v", pre)
	}
	f.auditor.check(t, interval)
}
