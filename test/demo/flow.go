package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/canaryd/canaryd/rollout"
	"github.com/canaryd/canaryd/test/meshsim"
)

const (
	namespace = "demo"
	app       = "podinfo"
	canary    = app + "-canary" // canaryd's canary Deployment, and the `deployment` label of its pods' series
	replicas  = 3
	rps       = "40"
	interval  = 5 * time.Second // --default-interval: the time at each step and the analysis window
	imageRepo = "example.com/podinfo"
	container = "podinfo"
)

// Time limits of the demo's waits: generous against a busy 2-core machine,
// yet bounded so that a stuck rollout ends the demo with an explanation.
const (
	readyTimeout   = time.Minute
	rolloutTimeout = 3 * time.Minute
)

// version is one release of the sample app. Nothing runs it: the mesh
// simulator answers for its pods by their template's meshsim annotations,
// so "a bad image" is a template whose pods fail 5 % of requests.
type version struct {
	tag       string
	errorRate string // meshsim/error-rate
	good      bool   // what canaryd is expected to conclude
}

var (
	initial     = version{tag: "1.0", errorRate: "0.001", good: true}
	goodVersion = version{tag: "2.0", errorRate: "0.001", good: true}
	badVersion  = version{tag: "3.0", errorRate: "0.05", good: false}
)

func (v version) image() string { return imageRepo + ":" + v.tag }

func (v version) behaviour() map[string]string {
	return map[string]string{"meshsim/error-rate": v.errorRate, "meshsim/latency-ms": "10"}
}

func (v version) describe() string {
	quality := "a good version"
	if !v.good {
		quality = "a bad version"
	}
	return fmt.Sprintf("pods fail %s of requests: %s", percent(v.errorRate), quality)
}

func percent(share string) string {
	var f float64
	if _, err := fmt.Sscanf(share, "%g", &f); err != nil {
		return share
	}
	return fmt.Sprintf("%g%%", f*100)
}

// outcome is one rollout as the summary reports it.
type outcome struct {
	Name   string
	Good   bool          // expected: promoted (true) or rolled back
	Phase  rollout.Phase // the phase it ended in; "" if it did not end in time
	OK     bool          // ended as expected, and the cluster agrees with the status
	Took   time.Duration // image bump to Succeeded or Failed
	Reason string

	// From the mesh simulator's counters (what clients saw), over the rollout.
	CanaryRequests uint64 // requests routed to podinfo-canary
	CanaryFailures uint64 // of those, 5xx answers or no ready endpoint
	AllFailures    uint64 // failed requests to podinfo, all backends
}

func (o outcome) want() string {
	if o.Good {
		return "promoted"
	}
	return "rolled back"
}

func (o outcome) result() string {
	switch o.Phase {
	case rollout.PhaseSucceeded:
		return "promoted"
	case rollout.PhaseFailed:
		return "rolled back"
	case "":
		return "timed out"
	}
	return strings.ToLower(string(o.Phase))
}

// runDemo is the demo's story on a running env: deploy podinfo, wait for
// canaryd to adopt it, roll out a good version, then a bad one. It returns
// the outcomes of the rollouts it got to; an error means the story could
// not be told (a wait timed out before any rollout, canaryd died, Ctrl-C).
func runDemo(ctx context.Context, e *env, p *printer) ([]outcome, error) {
	w := newWatcher(e, p)
	p.heading(fmt.Sprintf("Deploy %s %s: %d replicas opted in to canaryd, %s requests/s from the mesh",
		app, initial.tag, replicas, rps))
	if err := deployApp(ctx, e); err != nil {
		return nil, err
	}
	if err := w.adoption(ctx); err != nil {
		return nil, err
	}
	var outs []outcome
	from := initial
	for _, to := range []version{goodVersion, badVersion} {
		o, err := w.rollout(ctx, from, to)
		if err != nil {
			return outs, err
		}
		outs = append(outs, o)
		if o.Phase == "" {
			// Still in progress: a second bump would supersede it and tell a different story.
			break
		}
		if o.Phase == rollout.PhaseSucceeded {
			from = to
		}
	}
	return outs, nil
}

// deployApp creates namespace demo, the Deployment and its Service, and
// starts traffic once the pods are ready behind the Service, as for an app
// that was already serving when its team opted it in.
func deployApp(ctx context.Context, e *env) error {
	c := e.client
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}},
		metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating namespace %s: %w", namespace, err)
	}
	n := int32(replicas)
	labels := map[string]string{"app": app}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: namespace, Labels: map[string]string{rollout.LabelEnabled: "true"}},
		Spec: appsv1.DeploymentSpec{
			Replicas: &n,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: initial.behaviour()},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: container, Image: initial.image(),
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 9898}},
				}}},
			},
		},
	}
	if _, err := c.AppsV1().Deployments(namespace).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating Deployment %s: %w", app, err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: namespace},
		Spec: corev1.ServiceSpec{Selector: labels,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}},
	}
	if _, err := c.CoreV1().Services(namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating Service %s: %w", app, err)
	}
	if err := poll(ctx, readyTimeout, "podinfo's endpoints to be ready", func() (bool, error) {
		n, err := readyEndpoints(ctx, e, app)
		return n == replicas, err
	}); err != nil {
		return err
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{"meshsim/rps": rps}}})
	if _, err := c.CoreV1().Services(namespace).Patch(ctx, app, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("starting traffic to Service %s: %w", app, err)
	}
	return nil
}

func readyEndpoints(ctx context.Context, e *env, svc string) (int, error) {
	list, err := e.client.DiscoveryV1().EndpointSlices(namespace).List(ctx,
		metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	if err != nil {
		return 0, fmt.Errorf("listing EndpointSlices of %s: %w", svc, err)
	}
	n := 0
	for _, s := range list.Items {
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready == nil || *ep.Conditions.Ready {
				n++
			}
		}
	}
	return n, nil
}

// bump changes podinfo's image and behaviour: a new revision, as a CI
// pipeline or a GitOps tool would apply it.
func bump(ctx context.Context, e *env, v version) error {
	patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"template": map[string]any{
		"metadata": map[string]any{"annotations": v.behaviour()},
		"spec":     map[string]any{"containers": []any{map[string]any{"name": container, "image": v.image()}}},
	}}})
	_, err := e.client.AppsV1().Deployments(namespace).Patch(ctx, app, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
	if err != nil {
		return fmt.Errorf("bumping %s to %s: %w", app, v.image(), err)
	}
	return nil
}

// verify checks that the cluster agrees with the status canaryd wrote: a
// promoted revision runs in the user's Deployment; a rolled back one stays
// pending in its paused template with no traffic and no updated pods. It
// returns what disagrees, or "".
func verify(s snapshot, v version) string {
	var bad []string
	st, d := s.st, s.d
	img := ""
	if cs := d.Spec.Template.Spec.Containers; len(cs) > 0 {
		img = cs[0].Image
	}
	if img != v.image() {
		bad = append(bad, fmt.Sprintf("the Deployment's image is %s, not %s", img, v.image()))
	}
	if s.weight != 0 {
		bad = append(bad, fmt.Sprintf("canary weight is %dm, not 0", s.weight))
	}
	switch {
	case v.good && st.StableRevision != st.Revision:
		bad = append(bad, fmt.Sprintf("stable revision %q is not the promoted %q", st.StableRevision, st.Revision))
	case !v.good && st.FailedRevision != st.Revision:
		bad = append(bad, fmt.Sprintf("failed revision %q is not the rolled back %q", st.FailedRevision, st.Revision))
	case !v.good && d.Status.UpdatedReplicas != 0:
		bad = append(bad, fmt.Sprintf("%d pods of the rolled back revision run in %s", d.Status.UpdatedReplicas, app))
	}
	return strings.Join(bad, "; ")
}

// traffic sums the simulator's counters for podinfo: the canary backend's,
// and the failures over all backends.
func traffic(stats map[meshsim.Route]meshsim.Counts) (canaryReq, canaryFail, allFail uint64) {
	for r, c := range stats {
		if r.Namespace != namespace || r.Service != app {
			continue
		}
		allFail += c.Failures + c.NoEndpoint
		if r.Backend == canary {
			canaryReq += c.Requests
			canaryFail += c.Failures + c.NoEndpoint
		}
	}
	return canaryReq, canaryFail, allFail
}

var errTimeout = errors.New("timed out")

// poll checks cond every 200 ms until it holds, ctx ends or timeout passes.
func poll(ctx context.Context, timeout time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waiting for %s: %w after %s (last error: %w)", what, errTimeout, timeout, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
