package kube

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8stesting "k8s.io/client-go/testing"

	"github.com/canaryd/canaryd/rollout"
)

// atStep1 runs the rig through a new revision to step 1 in place.
func atStep1(t *testing.T) *rig {
	t.Helper()
	r := canaryReady(t)
	*r.now = r.now.Add(time.Second)
	r.sync() // step 1: the status (intent), the split, the status (applied)
	*r.now = r.now.Add(time.Second)
	r.sync() // first sight of 100m: nothing more
	st := r.status()
	if st.Step != 1 || !st.Applied || r.weight() != 100 {
		t.Fatalf("not at step 1 in place: weight %d, status %+v", r.weight(), st)
	}
	return r
}

// canaryReady runs the rig through a new revision to a ready foo-canary
// before step 1, playing the Deployment controller and kubelet for it.
func canaryReady(t *testing.T) *rig {
	t.Helper()
	r := newRig(t, app(nil)...)
	r.sync()
	r.sync()
	foo := r.foo()
	foo.Spec.Template.Spec.Containers[0].Image = "shop/foo:2"
	foo.Generation = 2
	if _, err := r.client.AppsV1().Deployments("shop").Update(r.ctx, foo, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	r.sync() // foo-canary created
	canary, err := r.client.AppsV1().Deployments("shop").Get(r.ctx, "foo-canary", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	canary.UID = "canary-uid"
	canary.Status.ObservedGeneration = canary.Generation
	dep := schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	if err := r.client.Tracker().Update(dep, canary, "shop"); err != nil {
		t.Fatal(err)
	}
	one := int32(1)
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "foo-canary-h2", Namespace: "shop", Labels: canary.Spec.Template.Labels,
			OwnerReferences: []metav1.OwnerReference{{Kind: "Deployment", Name: "foo-canary", UID: "canary-uid"}}},
		Spec:   appsv1.ReplicaSetSpec{Replicas: &one, Template: canary.Spec.Template},
		Status: appsv1.ReplicaSetStatus{Replicas: 1, ReadyReplicas: 1, AvailableReplicas: 1},
	}
	yes := true
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: "foo-canary-x", Namespace: "shop",
			Labels: map[string]string{discoveryv1.LabelServiceName: "foo-canary", rollout.LabelManaged: "foo"}},
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.2"}, Conditions: discoveryv1.EndpointConditions{Ready: &yes}}},
	}
	for _, o := range []runtime.Object{rs, slice} {
		if err := r.client.Tracker().Add(o); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(100 * time.Millisecond)
	return r
}

func TestTheFirstStepIsStampedAppliedByTheSyncThatWritesIt(t *testing.T) {
	r := canaryReady(t)
	writes := r.ordered()
	*r.now = r.now.Add(time.Second)
	at := *r.now
	r.sync()
	got := writes()
	if len(got) != 3 || got[0] != "patch deployments/foo" || !strings.HasSuffix(got[1], " trafficsplits/foo") || got[2] != "patch deployments/foo" {
		t.Fatalf("writes of step 1: %v, want the status (intent), the split, the status (applied)", got)
	}
	st := r.status()
	if st.Step != 1 || !st.Applied || st.StepStartedAt == nil || !st.StepStartedAt.Equal(at) || r.weight() != 100 {
		t.Fatalf("after step 1's sync: weight %d, status %+v; want step 1 applied since %s", r.weight(), st, at)
	}
	// The sync that sees 100m in place, however late, changes nothing.
	*r.now = r.now.Add(3 * time.Second)
	r.sync()
	if n := len(writes()); n != 3 {
		t.Errorf("%d writes, want 3: %v", n, writes())
	}
	if st2 := r.status(); !st2.StepStartedAt.Equal(at) {
		t.Errorf("step 1 restamped at %s, want %s", st2.StepStartedAt, at)
	}
}

// ordered records the writes to both clients in the order they were made.
func (r *rig) ordered() func() []string {
	var mu sync.Mutex
	var out []string
	rec := func(a k8stesting.Action) (bool, runtime.Object, error) {
		switch a.GetVerb() {
		case "create", "update", "patch", "delete":
			mu.Lock()
			out = append(out, a.GetVerb()+" "+a.GetResource().Resource+"/"+name(a))
			mu.Unlock()
		}
		return false, nil, nil
	}
	r.client.PrependReactor("*", "*", rec)
	r.dyn.PrependReactor("*", "*", rec)
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(out)
	}
}

func (r *rig) status() rollout.Status {
	r.t.Helper()
	st, err := rollout.ParseStatus(r.foo().Annotations[rollout.AnnotationStatus])
	if err != nil {
		r.t.Fatal(err)
	}
	return st
}

func (r *rig) weight() int {
	r.t.Helper()
	w, err := r.c.routers["smi"].observe(r.c.sets[""].routes[smiGVR("v1alpha1")], "shop", "foo")
	if err != nil || w == nil {
		r.t.Fatalf("no split weight: %v", err)
	}
	return *w
}

func TestAnAnnouncedStepIsWrittenRouteThenStatus(t *testing.T) {
	r := atStep1(t)
	writes := r.ordered()
	*r.now = r.now.Add(10 * time.Second)
	r.sync()
	got := writes()
	want := []string{"update trafficsplits/foo", "patch deployments/foo"}
	if !slices.Equal(got, want) {
		t.Fatalf("writes of the step: %v, want %v", got, want)
	}
	st := r.status()
	if st.Step != 2 || r.weight() != 200 || !st.Applied {
		t.Fatalf("after the step: weight %d, status %+v", r.weight(), st)
	}
	// First sight of 200m writes nothing more: two writes for the step.
	*r.now = r.now.Add(time.Second)
	r.sync()
	if n := len(writes()); n != 2 {
		t.Errorf("%d writes for the step, want 2: %v", n, writes())
	}
}

func TestAFailedRouteWriteLeavesTheIntentInstead(t *testing.T) {
	r := atStep1(t)
	r.dyn.PrependReactor("update", "trafficsplits", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewInternalError(errors.New("etcd timeout"))
	})
	writes := r.ordered()
	*r.now = r.now.Add(10 * time.Second)
	if _, err := r.c.sync(r.ctx, "shop/foo"); err == nil {
		t.Fatal("sync hid the failed route write")
	}
	time.Sleep(100 * time.Millisecond)
	st := r.status()
	if st.Step != 2 || st.Weight != 200 || st.Applied || r.weight() != 100 {
		t.Fatalf("after a failed route write: weight %d, status %+v (want the intent: step 2, not applied)", r.weight(), st)
	}
	if got := writes(); !slices.Equal(got, []string{"update trafficsplits/foo", "patch deployments/foo"}) {
		t.Errorf("writes: %v", got)
	}
}

// ensureFresh needs no live read when the cached foo is the version
// canaryd's own last write produced, and reads (and finds the cache behind)
// when it is not.
func TestOwnLastWriteProvesTheCacheCurrent(t *testing.T) {
	r := newRig(t, app(nil)...)
	r.sync()
	r.sync()
	foo := r.foo()
	foo.Annotations["team"] = "payments"
	foo.ResourceVersion = "999"
	dep := schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	if err := r.client.Tracker().Update(dep, foo, "shop"); err != nil {
		t.Fatal(err)
	}
	gets := func() int {
		n := 0
		for _, a := range r.client.Actions() {
			if a.GetVerb() == "get" && a.GetResource().Resource == "deployments" {
				n++
			}
		}
		return n
	}
	cached := r.c.mustCached(t, "foo")
	cached.ResourceVersion = "7"

	r.c.noteWritten("shop/foo", "7")
	before := gets()
	w := &writer{c: r.c, s: r.c.sets[""], foo: cached}
	if err := w.ensureFresh(r.ctx); err != nil || gets() != before {
		t.Fatalf("cache at our own last write: err %v, %d live reads", err, gets()-before)
	}

	r.c.noteWritten("shop/foo", "6") // our last write is not what the cache holds
	w = &writer{c: r.c, s: r.c.sets[""], foo: cached}
	if err := w.ensureFresh(r.ctx); !errors.Is(err, errStale) || gets() != before+1 {
		t.Fatalf("cache not at our own last write: err %v, %d live reads; want errStale after one", err, gets()-before)
	}
}
