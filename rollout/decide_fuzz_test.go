package rollout

import (
	"strings"
	"testing"
	"time"

	"github.com/canaryd/canaryd/analysis"
)

// FuzzDecide feeds Decide statuses it did not write (hand-edited, truncated,
// from an older canaryd) with arbitrary observations, commands and verdicts.
// A panic here would crash the controller for every Deployment it manages;
// any decision must keep weights in 0..1000 and write a status that parses.
func FuzzDecide(f *testing.F) {
	// Seeds: the statuses of a real walk through a rollout and a rollback.
	w := adopted(f, nil)
	w.bump("r2")
	for range 60 {
		w.now = w.now.Add(time.Second)
		w.tick()
		f.Add(w.o.Annotations[AnnotationStatus], uint8(0), int16(100), uint8(2), uint8(2), uint8(1), uint8(0), int32(0))
	}
	f.Add(`{"phase":"Held","revision":"r2","step":2,"weight":200,"applied":true}`, uint8(3), int16(200), uint8(0), uint8(4), uint8(1), uint8(1), int32(30))
	f.Add(`{"phase":"Promoting","stage":"RollStable","revision":"r2","weight":1000}`, uint8(1), int16(1000), uint8(4), uint8(0), uint8(4), uint8(2), int32(-5))
	f.Add(`{"phase":"Progressing","step":99,"weight":-7,"steps":[]}`, uint8(5), int16(-1), uint8(1), uint8(1), uint8(0), uint8(3), int32(600))
	f.Add(`{}`, uint8(2), int16(0), uint8(0), uint8(0), uint8(0), uint8(4), int32(0))

	commands := []Command{"", CmdPromote, CmdAbort, CmdRetry, CmdPause, CmdResume, CmdSkipAnalysis}
	verdicts := []analysis.Verdict{"", analysis.Pass, analysis.Fail, analysis.Inconclusive, analysis.Error}
	f.Fuzz(func(t *testing.T, status string, cmd uint8, weight int16, canaryEP, stableEP, ready, verdict uint8, seconds int32) {
		o := newWorld(t, map[string]string{AnnotationStatus: status}).o
		o.Now = o.Now.Add(time.Duration(seconds) * time.Second)
		o.Revision = []string{"r1", "r2", "r3"}[int(cmd)%3]
		if c := commands[int(cmd)%len(commands)]; c != "" {
			o.Annotations[c.Key()] = "true"
		}
		if weight >= -1 {
			v := int(weight)
			o.Weight = &v
		}
		o.CanaryEndpoints, o.StableEndpoints = int(canaryEP%5), int(stableEP%5)
		if ready > 0 {
			o.Canary = &Canary{Revision: []string{"r1", "r2", "r3"}[int(ready)%3], Replicas: int32(ready % 5), Ready: int32(canaryEP % 5), Current: ready%2 == 0}
		}
		switch canaryEP % 3 { // the step-0 scrape probe: not asked, a count, or an error
		case 1:
			n := int(stableEP % 3)
			o.CanaryScraped = &n
		case 2:
			o.ScrapeError = "fuzz: connection refused"
		}
		if v := verdicts[int(verdict)%len(verdicts)]; v != "" {
			o.Check = &analysis.Result{Verdict: v, Final: verdict%2 == 0, NotWorse: verdict%3 == 0, Reason: "fuzz"}
		}
		PlanCheck(o)
		PlanHook(o)
		dec := Decide(o)
		if ds := dec.Desired; ds != nil && (ds.Weight < 0 || ds.Weight > 1000) {
			t.Fatalf("desired weight %d from status %q", ds.Weight, status)
		}
		if _, err := ParseStatus(dec.Status.Encode()); err != nil && !strings.Contains(status, "\x00") {
			t.Fatalf("the status written does not parse: %v\n%s", err, dec.Status.Encode())
		}
	})
}
