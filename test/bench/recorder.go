package bench

import (
	"context"
	"fmt"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/canaryd/canaryd/rollout"
)

var splitGVR = schema.GroupVersionResource{Group: "split.smi-spec.io", Version: "v1alpha1", Resource: "trafficsplits"}

// WeightChange is a canary weight (milli) as the API server reported it,
// stamped when this process heard of it; -1 is "no split".
type WeightChange struct {
	At     time.Time
	Weight int
}

// StatusSeen is a status annotation as the API server reported it.
type StatusSeen struct {
	At     time.Time
	Status rollout.Status
}

// Recorder watches every opted-in Deployment's status and every
// TrafficSplit canaryd manages, cluster-wide, and keeps their histories:
// the witness for step lag, convergence and the moment of a rollback.
type Recorder struct {
	mu       sync.Mutex
	weights  map[string][]WeightChange // by namespace/name of the app
	statuses map[string][]StatusSeen
	onWeight func(key string, w WeightChange)
	stop     context.CancelFunc
}

// StartRecorder starts the watches and returns once they have synced.
// onWeight, if set, hears every weight change as it arrives.
func StartRecorder(ctx context.Context, client kubernetes.Interface, dyn dynamic.Interface, onWeight func(key string, w WeightChange)) (*Recorder, error) {
	ctx, cancel := context.WithCancel(ctx)
	r := &Recorder{weights: map[string][]WeightChange{}, statuses: map[string][]StatusSeen{}, onWeight: onWeight, stop: cancel}
	deps := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.LabelSelector = rollout.LabelEnabled + "=true"
	}))
	dinf := deps.Apps().V1().Deployments().Informer()
	_, _ = dinf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { r.deployment(obj) },
		UpdateFunc: func(_, obj any) { r.deployment(obj) },
	})
	splits := dynamicinformer.NewFilteredDynamicSharedInformerFactory(dyn, 0, metav1.NamespaceAll, func(o *metav1.ListOptions) {
		o.LabelSelector = rollout.LabelManaged
	})
	sinf := splits.ForResource(splitGVR).Informer()
	_, _ = sinf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { r.split(obj, false) },
		UpdateFunc: func(_, obj any) { r.split(obj, false) },
		DeleteFunc: func(obj any) { r.split(obj, true) },
	})
	deps.Start(ctx.Done())
	splits.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), dinf.HasSynced, sinf.HasSynced) {
		cancel()
		return nil, fmt.Errorf("recorder: caches did not sync: %w", ctx.Err())
	}
	return r, nil
}

// Stop ends the watches.
func (r *Recorder) Stop() { r.stop() }

func (r *Recorder) deployment(obj any) {
	d, ok := obj.(*appsv1.Deployment)
	if !ok {
		return
	}
	v, ok := d.Annotations[rollout.AnnotationStatus]
	if !ok {
		return
	}
	st, err := rollout.ParseStatus(v)
	if err != nil {
		return
	}
	now := time.Now()
	key := d.Namespace + "/" + d.Name
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.statuses[key]
	if n := len(h); n > 0 && h[n-1].Status.Encode() == st.Encode() {
		return // another field of the Deployment changed
	}
	r.statuses[key] = append(h, StatusSeen{At: now, Status: st})
}

func (r *Recorder) split(obj any, deleted bool) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	w := canaryWeight(u)
	if deleted {
		w = -1
	}
	change := WeightChange{At: time.Now(), Weight: w}
	key := u.GetNamespace() + "/" + u.GetName()
	r.mu.Lock()
	h := r.weights[key]
	if n := len(h); n > 0 && h[n-1].Weight == w {
		r.mu.Unlock()
		return
	}
	r.weights[key] = append(h, change)
	r.mu.Unlock()
	if r.onWeight != nil {
		r.onWeight(key, change)
	}
}

// canaryWeight reads the <app>-canary backend's weight in milli (v1alpha1
// quantities such as "100m"); -1 when the split has no such backend.
func canaryWeight(u *unstructured.Unstructured) int {
	backends, _, _ := unstructured.NestedSlice(u.Object, "spec", "backends")
	for _, b := range backends {
		m, _ := b.(map[string]any)
		if m["service"] != u.GetName()+"-canary" {
			continue
		}
		q, err := resource.ParseQuantity(fmt.Sprint(m["weight"]))
		if err != nil {
			return -1
		}
		return int(q.MilliValue())
	}
	return -1
}

// Weights is the weight history of one app.
func (r *Recorder) Weights(key string) []WeightChange {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]WeightChange(nil), r.weights[key]...)
}

// Statuses is the status history of one app.
func (r *Recorder) Statuses(key string) []StatusSeen {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]StatusSeen(nil), r.statuses[key]...)
}

// Status is the latest status of one app (zero if none yet).
func (r *Recorder) Status(key string) rollout.Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.statuses[key]
	if len(h) == 0 {
		return rollout.Status{}
	}
	return h[len(h)-1].Status
}

// Count is how many of keys satisfy cond on their latest status.
func (r *Recorder) Count(keys []string, cond func(rollout.Status) bool) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, k := range keys {
		h := r.statuses[k]
		var st rollout.Status
		if len(h) > 0 {
			st = h[len(h)-1].Status
		}
		if cond(st) {
			n++
		}
	}
	return n
}

// Weight is the latest canary weight of one app (-1: no split).
func (r *Recorder) Weight(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.weights[key]
	if len(h) == 0 {
		return -1
	}
	return h[len(h)-1].Weight
}
