package chaos

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestKillingCanarydAtRandomMomentsLosesNothing runs batches of rollouts,
// good and bad, in one namespace while canaryd is SIGKILLed at random
// moments (every 0.3 to 6 s) and restarted after up to 1.5 s. Every kill
// lands on several rollouts at once, each at its own stage: waiting for
// the canary, mid-step, mid-check, mid-promotion, mid-rollback.
//
// Each rollout must end where it should (good: promoted; bad: rolled back,
// never on a stable pod), walk every step it takes exactly once (the
// auditor's weight timeline), never step early (status and split), and no
// request may find no endpoint. Short run: one batch of 4 rollouts; full
// run: 5 batches of 10, 50 killed rollouts.
func TestKillingCanarydAtRandomMomentsLosesNothing(t *testing.T) {
	if env.skip != "" {
		t.Skip(env.skip)
	}
	t.Parallel()
	batches, size := 1, 4
	if *full {
		batches, size = 5, 10
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("kill timing seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	for b := 0; b < batches; b++ {
		t.Run(fmt.Sprintf("batch-%d", b), func(t *testing.T) { killBatch(t, b, size, rng) })
	}
}

func killBatch(t *testing.T, batch, size int, rng *rand.Rand) {
	sc := begin("SIGKILL canaryd mid-rollout", "restart → first good reconcile", size)
	w := newWorld(t, fmt.Sprintf("chaos-kill-%d", batch))
	apps := make([]*app, size)
	bad := make([]bool, size)
	for i := range apps {
		apps[i] = w.app(fmt.Sprintf("kill-%d", i), 2, nil, healthy, 40)
		bad[i] = i%2 == 1
	}
	w.start()
	for _, a := range apps {
		a.adopted()
	}

	// The killer runs until every rollout has ended; it keeps its own
	// random source so the test goroutine's draws stay independent.
	krng := rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))
	stop := make(chan struct{})
	var (
		mu      sync.Mutex
		kills   int
		worst   time.Duration
		killErr error
	)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(300+krng.IntN(5700)) * time.Millisecond):
			}
			w.stop(syscall.SIGKILL)
			time.Sleep(time.Duration(krng.IntN(1500)) * time.Millisecond)
			if err := w.tryStart(); err != nil {
				mu.Lock()
				killErr = err
				mu.Unlock()
				return
			}
			d, err := w.tryReady(time.Minute)
			mu.Lock()
			kills++
			if err != nil {
				killErr = err
			}
			if d > worst {
				worst = d
			}
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()

	// Rollouts start at random moments over the first 8 s, so the kills
	// find them at different stages.
	offsets := make([]time.Duration, size)
	for i := range offsets {
		offsets[i] = time.Duration(rng.IntN(8000)) * time.Millisecond
	}
	start := time.Now()
	for i, a := range apps {
		time.Sleep(time.Until(start.Add(offsets[i])))
		if bad[i] {
			a.deploy("example.com/"+a.name+":2.0-bad", broken)
		} else {
			a.deploy("example.com/"+a.name+":2.0", healthy)
		}
	}
	ended := poll(6*time.Minute, func() (bool, error) {
		for _, a := range apps {
			if st, err := a.status(); err != nil || !final(st.Phase) {
				return false, err
			}
		}
		return true, nil
	})
	close(stop)
	wg.Wait()
	if !w.alive() {
		w.start() // the last kill may have left it down; the end checks want it up
	}
	mu.Lock()
	defer mu.Unlock()
	if killErr != nil {
		t.Errorf("restarting canaryd: %v", killErr)
	}
	converged, violations := 0, 0
	for i, a := range apps {
		var why string
		if bad[i] {
			why = a.endedRolledBack()
		} else {
			why = a.endedPromoted("example.com/" + a.name + ":2.0")
		}
		if why == "" {
			converged++
		} else {
			t.Errorf("%s (bad %v): %s", a.name, bad[i], why)
		}
		violations += a.violations()
	}
	if !ended {
		t.Errorf("not every rollout ended within 6 minutes")
	}
	t.Logf("batch %d: %d rollouts (%d bad), %d kills, worst restart→reconciling %s, %d converged, %d violations",
		batch, size, size/2, kills, worst.Round(time.Millisecond), converged, violations)
	if kills == 0 {
		t.Errorf("canaryd was never killed: the scenario tested nothing")
	}
	sc.end(converged, violations, worst)
}
