package bench

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/canaryd/canaryd/rollout"
	"github.com/canaryd/canaryd/test/meshsim"
)

// Scenario is one kind of detection trial.
type Scenario struct {
	Name string
	// Canary is the new revision's pod behaviour (meshsim annotations);
	// stable's is Stable.
	Canary, Stable map[string]string
	// WantRollback: the canary is bad; a promotion is a miss. Otherwise a
	// rollback is a false rollback.
	WantRollback bool
	Interval     time.Duration // canaryd.io/interval
}

// The scenarios of issue 8. Stable fails 0.1 % of requests with a 10 ms
// median (p99 30 ms).
var (
	stableBehaviour = map[string]string{"meshsim/error-rate": "0.001", "meshsim/latency-ms": "10"}
	BadCanary       = Scenario{Name: "bad canary (5 % errors)", WantRollback: true, Stable: stableBehaviour,
		Canary: map[string]string{"meshsim/error-rate": "0.05", "meshsim/latency-ms": "10"}}
	SlowCanary = Scenario{Name: "latency regression (p99 3x)", WantRollback: true, Stable: stableBehaviour,
		Canary: map[string]string{"meshsim/error-rate": "0.001", "meshsim/latency-ms": "30"}}
	GoodCanary = Scenario{Name: "good canary", Stable: stableBehaviour,
		Canary: map[string]string{"meshsim/error-rate": "0.001", "meshsim/latency-ms": "10"}}
)

// DetectConfig runs trials of one scenario on Lanes apps at once.
type DetectConfig struct {
	Namespace string
	Lanes     int
	Trials    int
	ApexRPS   float64 // the canary gets ApexRPS × first step
	Steps     string  // canaryd.io/steps
	Timeout   time.Duration
	Logf      func(format string, args ...any) `json:"-"`
}

// Trial is one rollout of one scenario.
type Trial struct {
	Lane int
	// FirstRequest is the canary's first request (the simulator's counter
	// moved), polled every 20 ms.
	FirstRequest, WeightUp, WeightZero, Done time.Time
	Outcome                                  rollout.Phase // Succeeded or Failed; "" on timeout
	// CanaryRequests is what the canary had served when weight 0 was seen;
	// JudgeRequests what the deciding check counted in its window.
	CanaryRequests, JudgeRequests float64
	Reason                        string
}

// Detect is the time from the canary's first request to its weight 0.
func (t Trial) Detect() float64 { return t.WeightZero.Sub(t.FirstRequest).Seconds() }

// Promote is the time from the canary's first request to Succeeded.
func (t Trial) Promote() float64 { return t.Done.Sub(t.FirstRequest).Seconds() }

// DetectResult is a scenario's trials.
type DetectResult struct {
	Scenario Scenario
	Config   DetectConfig
	Trials   []Trial
}

type lane struct {
	app  App
	zero chan WeightChange // weight changes of this lane's split
}

// RunDetect runs cfg.Trials rollouts of sc against canaryd already watching
// cfg.Namespace, cfg.Lanes at a time.
func RunDetect(ctx context.Context, env *Env, sc Scenario, cfg DetectConfig) (DetectResult, error) {
	res := DetectResult{Scenario: sc, Config: cfg}
	lanes := make([]*lane, cfg.Lanes)
	byKey := map[string]*lane{}
	for i := range lanes {
		a := App{Namespace: cfg.Namespace, Name: "lane-" + strconv.Itoa(i), Replicas: 2, RPS: cfg.ApexRPS,
			Annotations: map[string]string{rollout.KeyInterval: sc.Interval.String(), rollout.KeySteps: cfg.Steps},
			Behaviour:   sc.Stable}
		lanes[i] = &lane{app: a, zero: make(chan WeightChange, 64)}
		byKey[a.Key()] = lanes[i]
	}
	rec, err := StartRecorder(ctx, env.Client, env.Dyn, func(key string, w WeightChange) {
		if l := byKey[key]; l != nil {
			select {
			case l.zero <- w:
			default:
			}
		}
	})
	if err != nil {
		return res, err
	}
	defer rec.Stop()
	if err := EnsureNamespace(ctx, env.Client, cfg.Namespace); err != nil {
		return res, err
	}
	for _, l := range lanes {
		if err := l.app.Create(ctx, env.Client); err != nil {
			return res, err
		}
	}
	for _, l := range lanes {
		if err := waitFor(ctx, 3*time.Minute, func() bool {
			st := rec.Status(l.app.Key())
			return (st.Phase == rollout.PhaseIdle || st.Phase == rollout.PhaseSucceeded || st.Phase == rollout.PhaseFailed) && rec.Weight(l.app.Key()) == 0
		}); err != nil {
			return res, fmt.Errorf("%s not adopted: %w (status %+v)", l.app.Key(), err, rec.Status(l.app.Key()))
		}
	}
	var next atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	var firstErr error
	for i, l := range lanes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k := next.Add(1)
				if int(k) > cfg.Trials || ctx.Err() != nil {
					return
				}
				tr, err := runTrial(ctx, env, rec, l, sc, cfg, fmt.Sprintf("t%d", k))
				tr.Lane = i
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				res.Trials = append(res.Trials, tr)
				mu.Unlock()
				if err != nil {
					return
				}
				cfg.Logf("detect: %s trial %d (lane %d): %s after %.2f s, %.0f canary requests (judge %.0f): %s",
					sc.Name, k, i, tr.Outcome, tr.Detect(), tr.CanaryRequests, tr.JudgeRequests, tr.Reason)
			}
		}()
	}
	wg.Wait()
	return res, firstErr
}

// canaryServed is how many requests the simulator sent to the lane's canary.
func canaryServed(sim *meshsim.Sim, a App) float64 {
	c := sim.Stats()[meshsim.Route{Namespace: a.Namespace, Service: a.Name, Backend: a.Name + "-canary"}]
	return float64(c.Requests - c.NoEndpoint)
}

func runTrial(ctx context.Context, env *Env, rec *Recorder, l *lane, sc Scenario, cfg DetectConfig, tag string) (Trial, error) {
	var tr Trial
	key := l.app.Key()
	// Forget weight changes of the last trial.
	for len(l.zero) > 0 {
		<-l.zero
	}
	base := canaryServed(env.Sim, l.app)
	bump := time.Now()
	if err := l.app.Deploy(ctx, env.Client, "example.com/"+l.app.Name+":"+tag, sc.Canary); err != nil {
		return tr, err
	}
	deadline := time.NewTimer(cfg.Timeout)
	defer deadline.Stop()
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return tr, ctx.Err()
		case <-deadline.C:
			tr.Reason = fmt.Sprintf("timeout after %s: status %+v", cfg.Timeout, rec.Status(key))
			return tr, nil
		case w := <-l.zero:
			if w.At.Before(bump) {
				continue
			}
			switch {
			case w.Weight > 0 && tr.WeightUp.IsZero():
				tr.WeightUp = w.At
			case w.Weight == 0 && !tr.WeightUp.IsZero() && tr.WeightZero.IsZero():
				tr.WeightZero = w.At
				tr.CanaryRequests = canaryServed(env.Sim, l.app) - base
			}
		case <-poll.C:
			if tr.FirstRequest.IsZero() && canaryServed(env.Sim, l.app) > base {
				tr.FirstRequest = time.Now()
			}
			st := rec.Status(key)
			if st.StartedAt == nil || st.StartedAt.Before(bump) {
				continue
			}
			if st.Phase != rollout.PhaseSucceeded && st.Phase != rollout.PhaseFailed {
				continue
			}
			if st.Phase == rollout.PhaseFailed && tr.WeightZero.IsZero() {
				continue // the weight-0 event is on its way
			}
			tr.Outcome, tr.Done = st.Phase, time.Now()
			if c := st.LastCheck; c != nil {
				tr.Reason = c.Reason
				if c.Requests != nil {
					tr.JudgeRequests = *c.Requests
				}
			}
			// The rollout is over; let the canary's scale-down land before
			// the next trial starts.
			return tr, waitFor(ctx, time.Minute, func() bool { return rec.Weight(key) == 0 })
		}
	}
}

// waitFor polls cond every 200 ms.
func waitFor(ctx context.Context, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return nil
}
