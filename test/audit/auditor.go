package audit

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/canaryd/canaryd/rollout"
)

// SplitGVR is the SMI TrafficSplit version canaryd writes by default, whose
// weights are milli quantities summing to 1000m.
var SplitGVR = schema.GroupVersionResource{Group: "split.smi-spec.io", Version: "v1alpha1", Resource: "trafficsplits"}

// Config says what to audit and how. Client, Dynamic, Namespace and App are
// required.
type Config struct {
	// Client and Dynamic read the cluster. Point them at the API server
	// directly, not through a fault-injecting proxy: the auditor is the
	// witness, not the suspect.
	Client  kubernetes.Interface
	Dynamic dynamic.Interface
	// Namespace and App name the Deployment; its split is App, its backends
	// App-stable and App-canary.
	Namespace, App string
	// Interval is the app's step interval (canaryd.io/interval); 0 turns the
	// pacing rules off.
	Interval time.Duration
	// Period is the sampling period (default 100ms).
	Period time.Duration
	// Lag is how much shorter than Interval a step may look in the split
	// (default 100ms; see NewRules).
	Lag time.Duration
}

// Auditor samples one app until stopped.
type Auditor struct {
	cfg    Config
	rules  *Rules
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	samples int
	blind   int
	lastErr error
	// relists counts the times the split watch had to start over from a
	// list, having lost its place (events may have been missed then).
	relists int
}

// Start begins sampling at once and keeps going until Stop or ctx ends.
func Start(ctx context.Context, cfg Config) (*Auditor, error) {
	if cfg.Client == nil || cfg.Dynamic == nil {
		return nil, errors.New("audit: Config.Client and Config.Dynamic are required")
	}
	if cfg.Namespace == "" || cfg.App == "" {
		return nil, fmt.Errorf("audit: Config.Namespace (%q) and Config.App (%q) are required", cfg.Namespace, cfg.App)
	}
	if cfg.Interval < 0 {
		return nil, fmt.Errorf("audit: Config.Interval %s: want 0 (no pacing rules) or more", cfg.Interval)
	}
	if cfg.Period <= 0 {
		cfg.Period = 100 * time.Millisecond
	}
	if cfg.Lag <= 0 {
		cfg.Lag = 100 * time.Millisecond
	}
	ctx, cancel := context.WithCancel(ctx)
	a := &Auditor{cfg: cfg, rules: NewRules(cfg.App+"-canary", 1000, cfg.Interval, cfg.Lag), cancel: cancel, done: make(chan struct{})}
	a.rules.WatchWeights()
	watched := make(chan struct{})
	go func() { defer close(watched); a.watchSplit(ctx) }()
	go func() { a.loop(ctx); <-watched; close(a.done) }()
	return a, nil
}

// watchSplit feeds the weight timeline from a watch of the split: every
// version the API server stored, in order, so a weight that lasted less than
// the sampling period is still seen. It lists to learn the state and a
// resourceVersion, watches from there, and lists again only when the API
// server no longer has that version (counted in relists).
func (a *Auditor) watchSplit(ctx context.Context) {
	res := a.cfg.Dynamic.Resource(SplitGVR).Namespace(a.cfg.Namespace)
	sel := fields.OneTermEqualSelector("metadata.name", a.cfg.App).String()
	pause := func() {
		select {
		case <-ctx.Done():
		case <-time.After(a.cfg.Period):
		}
	}
	rv, listed := "", false
	for ctx.Err() == nil {
		if rv == "" {
			list, err := res.List(ctx, metav1.ListOptions{FieldSelector: sel})
			if err != nil {
				a.blinded(ctx, fmt.Errorf("listing TrafficSplit %s/%s: %w", a.cfg.Namespace, a.cfg.App, err))
				pause()
				continue
			}
			canary := -1
			for i := range list.Items {
				canary = a.canaryWeight(ctx, &list.Items[i])
			}
			a.mu.Lock()
			if listed {
				a.relists++
			}
			a.mu.Unlock()
			listed = true
			a.rules.Weight(time.Now(), canary)
			rv = list.GetResourceVersion()
		}
		w, err := res.Watch(ctx, metav1.ListOptions{FieldSelector: sel, ResourceVersion: rv, AllowWatchBookmarks: true})
		if err != nil {
			if apierrors.IsGone(err) || apierrors.IsResourceExpired(err) {
				rv = ""
			}
			a.blinded(ctx, fmt.Errorf("watching TrafficSplit %s/%s: %w", a.cfg.Namespace, a.cfg.App, err))
			pause()
			continue
		}
		rv = a.follow(ctx, w, rv)
		w.Stop()
	}
}

// follow records the weights a watch delivers until it ends, and returns the
// resourceVersion to resume from ("" to list again).
func (a *Auditor) follow(ctx context.Context, w watch.Interface, rv string) string {
	for ev := range w.ResultChan() {
		switch ev.Type {
		case watch.Added, watch.Modified, watch.Deleted:
			u, ok := ev.Object.(*unstructured.Unstructured)
			if !ok {
				continue
			}
			rv = u.GetResourceVersion()
			canary := -1
			if ev.Type != watch.Deleted {
				canary = a.canaryWeight(ctx, u)
			}
			a.rules.Weight(time.Now(), canary)
		case watch.Bookmark:
			if u, ok := ev.Object.(*unstructured.Unstructured); ok {
				rv = u.GetResourceVersion()
			}
		case watch.Error:
			err := apierrors.FromObject(ev.Object)
			if apierrors.IsGone(err) || apierrors.IsResourceExpired(err) {
				return ""
			}
			a.blinded(ctx, fmt.Errorf("watching TrafficSplit %s/%s: %w", a.cfg.Namespace, a.cfg.App, err))
			return rv
		}
	}
	return rv
}

// canaryWeight is the split's canary weight in milli; a split whose weights
// do not parse counts as unseen (blind), and as weight 0.
func (a *Auditor) canaryWeight(ctx context.Context, u *unstructured.Unstructured) int {
	weights, err := splitWeights(u)
	if err != nil {
		a.blinded(ctx, err)
		return 0
	}
	return int(weights[a.cfg.App+"-canary"])
}

func (a *Auditor) blinded(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.blind++
	a.lastErr = err
}

func (a *Auditor) loop(ctx context.Context) {
	tick := time.NewTicker(a.cfg.Period)
	defer tick.Stop()
	for {
		a.sampleOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Stop ends sampling and waits for the last sample. Idempotent.
func (a *Auditor) Stop() {
	a.cancel()
	<-a.done
}

func (a *Auditor) sampleOnce(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	s, err := a.read(rctx)
	a.mu.Lock()
	a.samples++
	if err != nil {
		if ctx.Err() == nil {
			a.blind++
			a.lastErr = err
		}
		a.mu.Unlock()
		return
	}
	a.mu.Unlock()
	a.rules.Observe(s)
}

// read takes one sample: endpoints, split, endpoints again, Deployment.
func (a *Auditor) read(ctx context.Context) (Sample, error) {
	ns, app := a.cfg.Namespace, a.cfg.App
	backends := []string{app + "-stable", app + "-canary"}
	before, err := ReadyCounts(ctx, a.cfg.Client, ns, backends)
	if err != nil {
		return Sample{}, err
	}
	s := Sample{Empty: map[string]bool{}}
	u, err := a.cfg.Dynamic.Resource(SplitGVR).Namespace(ns).Get(ctx, app, metav1.GetOptions{})
	// The weights were true at some moment of that GET: its end is the
	// closest time to them the sample has.
	s.At = time.Now()
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return Sample{}, fmt.Errorf("reading TrafficSplit %s/%s: %w", ns, app, err)
	default:
		s.Split = true
		if s.Weights, err = splitWeights(u); err != nil {
			return Sample{}, err
		}
		for b := range s.Weights {
			if _, ok := before[b]; !ok {
				backends = append(backends, b)
			}
		}
	}
	after, err := ReadyCounts(ctx, a.cfg.Client, ns, backends)
	if err != nil {
		return Sample{}, err
	}
	for b := range s.Weights {
		if before[b] == 0 && after[b] == 0 {
			s.Empty[b] = true
		}
	}
	d, err := a.cfg.Client.AppsV1().Deployments(ns).Get(ctx, app, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return Sample{}, fmt.Errorf("reading Deployment %s/%s: %w", ns, app, err)
	default:
		if v := d.Annotations[rollout.AnnotationStatus]; v != "" {
			// canaryd writes this annotation whole; a value that does not
			// parse is a fact worth keeping, but not a routing one.
			if st, err := rollout.ParseStatus(v); err == nil {
				s.Status = &st
			}
		}
	}
	return s, nil
}

// splitWeights reads a v1alpha1 TrafficSplit's backends as milli weights.
func splitWeights(u *unstructured.Unstructured) (map[string]int64, error) {
	backends, _, err := unstructured.NestedSlice(u.Object, "spec", "backends")
	if err != nil {
		return nil, fmt.Errorf("TrafficSplit %s: spec.backends: %w", u.GetName(), err)
	}
	out := map[string]int64{}
	for i, b := range backends {
		m, _ := b.(map[string]any)
		svc, _ := m["service"].(string)
		q, err := resource.ParseQuantity(fmt.Sprint(m["weight"]))
		if err != nil {
			return nil, fmt.Errorf("TrafficSplit %s: spec.backends[%d].weight %v: %w", u.GetName(), i, m["weight"], err)
		}
		out[svc] += q.MilliValue()
	}
	return out, nil
}

// ReadyCounts counts the ready endpoints behind each named Service in one
// list call. A Service with no EndpointSlice counts 0.
func ReadyCounts(ctx context.Context, client kubernetes.Interface, ns string, services []string) (map[string]int, error) {
	sel := discoveryv1.LabelServiceName + " in (" + strings.Join(services, ",") + ")"
	list, err := client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, fmt.Errorf("listing EndpointSlices of %v in %s: %w", services, ns, err)
	}
	out := make(map[string]int, len(services))
	for _, s := range services {
		out[s] = 0
	}
	for _, s := range list.Items {
		svc := s.Labels[discoveryv1.LabelServiceName]
		for _, e := range s.Endpoints {
			if e.Conditions.Ready == nil || *e.Conditions.Ready {
				out[svc]++
			}
		}
	}
	return out, nil
}

// ReadyEndpoints counts the ready endpoints behind one Service.
func ReadyEndpoints(ctx context.Context, client kubernetes.Interface, ns, svc string) (int, error) {
	m, err := ReadyCounts(ctx, client, ns, []string{svc})
	if err != nil {
		return 0, err
	}
	return m[svc], nil
}

// Violations are the breaches seen so far, in order.
func (a *Auditor) Violations() []Violation { return a.rules.Violations() }

// Changes is the canary weight timeline (-1: no split).
func (a *Auditor) Changes() []WeightChange { return a.rules.Changes() }

// Weights is the sequence of canary weights seen, in milli (no split: -1).
func (a *Auditor) Weights() []int {
	var out []int
	for _, c := range a.rules.Changes() {
		out = append(out, c.Canary)
	}
	return out
}

// FirstTraffic is when the canary first had weight, and when it next went
// back to 0 after that (zero times if not yet).
func (a *Auditor) FirstTraffic() (on, off time.Time) {
	for _, c := range a.rules.Changes() {
		if on.IsZero() && c.Canary > 0 {
			on = c.At
		} else if !on.IsZero() && c.Canary == 0 {
			return on, c.At
		}
	}
	return on, off
}

// Stats are how many samples were taken and how many reads the API server
// could not answer (blind: samples, and the split watch's lists and
// watches), with the last such error.
func (a *Auditor) Stats() (samples, blind int, lastErr error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.samples, a.blind, a.lastErr
}

// Relists is how many times the split watch lost its place and listed again;
// weight changes in such a gap may be missing from Weights.
func (a *Auditor) Relists() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.relists
}
