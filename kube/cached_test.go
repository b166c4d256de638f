package kube

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/yaml"
)

func replicaSet(name string, owner types.UID, image string, ready int32) *appsv1.ReplicaSet {
	n := int32(3)
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", UID: types.UID(name + "-uid"), ResourceVersion: "7",
			Labels:          map[string]string{appsv1.DefaultDeploymentUniqueLabelKey: name + "-hash"},
			Annotations:     map[string]string{"deployment.kubernetes.io/revision": "4"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: "foo", UID: owner}},
			ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager"}}},
		Spec: appsv1.ReplicaSetSpec{Replicas: &n, Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "app", Image: image}}}}},
		Status: appsv1.ReplicaSetStatus{AvailableReplicas: ready - 1, ReadyReplicas: ready},
	}
}

func TestACachedReplicaSetKeepsWhatObserveReads(t *testing.T) {
	rs := replicaSet("foo-1", "foo-uid", "shop:v2", 2)
	obj, err := stripForCache(rs.DeepCopy())
	if err != nil {
		t.Fatal(err)
	}
	got, ok := obj.(*cachedReplicaSet)
	if !ok {
		t.Fatalf("cached as %T, want *cachedReplicaSet", obj)
	}
	want := &cachedReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "foo-1", Namespace: "shop", UID: "foo-1-uid", ResourceVersion: "7",
			Labels: rs.Labels, OwnerReferences: rs.OwnerReferences},
		Revision: RevisionOf(&rs.Spec.Template), Replicas: 3, Available: 1, Ready: 2,
	}
	if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
		t.Errorf("cached\n%+v\nwant\n%+v", got, want)
	}
	rs.Spec.Replicas = nil // unset means one, as the API server defaults it
	if c, _ := stripForCache(rs); c.(*cachedReplicaSet).Replicas != 1 {
		t.Errorf("unset replicas cached as %d, want 1", c.(*cachedReplicaSet).Replicas)
	}
}

// The indexes answer with one owner's ReplicaSets and one Service's slices,
// whatever else the namespace holds, and follow updates and deletes.
func TestTheCacheIndexesFindOneOwnersReplicaSetsAndOneServicesSlices(t *testing.T) {
	s := &informerSet{
		replicaSets: cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{indexOwner: byOwnerUID}),
		slices:      cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{indexService: byServiceName}),
	}
	add := func(idx cache.Indexer, obj any) {
		t.Helper()
		c, err := stripForCache(obj)
		if err != nil {
			t.Fatal(err)
		}
		if err := idx.Update(c); err != nil {
			t.Fatal(err)
		}
	}
	add(s.replicaSets, replicaSet("foo-1", "foo-uid", "v1", 3))
	add(s.replicaSets, replicaSet("foo-2", "foo-uid", "v2", 1))
	add(s.replicaSets, replicaSet("bar-1", "bar-uid", "v1", 3))
	slice := func(name, ns, svc string) *discoveryv1.EndpointSlice {
		return &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns,
			Labels: map[string]string{discoveryv1.LabelServiceName: svc}}}
	}
	add(s.slices, slice("foo-stable-a", "shop", "foo-stable"))
	add(s.slices, slice("foo-stable-b", "shop", "foo-stable"))
	add(s.slices, slice("foo-canary-a", "shop", "foo-canary"))
	add(s.slices, slice("foo-stable-a", "other", "foo-stable"))

	rsNames := func(uid types.UID) []string {
		got, err := s.replicaSetsOf(uid)
		return keysOf(t, got, err)
	}
	sliceNames := func(ns, svc string) []string {
		got, err := s.endpointSlicesOf(ns, svc)
		return keysOf(t, got, err)
	}
	if got := rsNames("foo-uid"); !slices.Equal(got, []string{"shop/foo-1", "shop/foo-2"}) {
		t.Errorf("foo's ReplicaSets: %v", got)
	}
	if got := sliceNames("shop", "foo-stable"); !slices.Equal(got, []string{"shop/foo-stable-a", "shop/foo-stable-b"}) {
		t.Errorf("shop/foo-stable's slices: %v", got)
	}

	// Adopted by another owner, then deleted: the index follows.
	moved := replicaSet("foo-2", "bar-uid", "v2", 1)
	add(s.replicaSets, moved)
	if got := rsNames("bar-uid"); !slices.Equal(got, []string{"shop/bar-1", "shop/foo-2"}) {
		t.Errorf("bar's ReplicaSets after foo-2 moved: %v", got)
	}
	if err := s.replicaSets.Delete(&cachedReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "foo-1", Namespace: "shop"}}); err != nil {
		t.Fatal(err)
	}
	if got := rsNames("foo-uid"); len(got) != 0 {
		t.Errorf("foo's ReplicaSets after the move and the delete: %v", got)
	}
	if got := sliceNames("shop", "nothing"); len(got) != 0 {
		t.Errorf("an unknown Service's slices: %v", got)
	}
}

// goldenRoute is the HTTPRoute of a weighted step, as kube writes it.
func goldenRoute(b *testing.B) *unstructured.Unstructured {
	raw, err := os.ReadFile("testdata/httproute-weighted-step.yaml")
	if err != nil {
		b.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(raw, &u.Object); err != nil {
		b.Fatal(err)
	}
	return u
}

// keysOf is the sorted namespace/name of objs; err fails the test.
func keysOf[T metav1.Object](t *testing.T, objs []T, err error) []string {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, o := range objs {
		out = append(out, o.GetNamespace()+"/"+o.GetName())
	}
	slices.Sort(out)
	return out
}

// BenchmarkCacheHeapPerObject reports the live heap one cached object takes,
// in the form canaryd caches it now and in the form it did before (a decoded
// object with managedFields dropped; a typed ReplicaSet with its template
// emptied): the HeapAlloc difference, after a collection, of 2,000 of them.
func BenchmarkCacheHeapPerObject(b *testing.B) {
	route := func(b *testing.B) *unstructured.Unstructured {
		u := goldenRoute(b)
		u.SetUID("route-uid")
		u.SetResourceVersion("1234567")
		u.SetCreationTimestamp(metav1.Now())
		return u
	}
	split := func(b *testing.B) *unstructured.Unstructured {
		u := (&smiRouter{version: "v1alpha1"}).backends("foo", 200)
		s := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "split.smi-spec.io/v1alpha1", "kind": "TrafficSplit",
			"spec": map[string]any{"service": "foo", "backends": u}}}
		s.SetName("foo")
		s.SetNamespace("shop")
		s.SetUID("split-uid")
		s.SetResourceVersion("1234567")
		s.SetCreationTimestamp(metav1.Now())
		s.SetLabels(map[string]string{"canaryd.io/managed-by": "foo"})
		s.SetOwnerReferences([]metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: "foo", UID: "foo-uid"}})
		return s
	}
	before := func(u *unstructured.Unstructured) any { u.SetManagedFields(nil); return u }
	templateEmptied := func(rs *appsv1.ReplicaSet) any {
		rs.ManagedFields = nil
		rs.Annotations["canaryd.io/cached-revision"] = RevisionOf(&rs.Spec.Template)
		rs.Spec.Template = corev1.PodTemplateSpec{}
		return rs
	}
	cases := []struct {
		name string
		make func(b *testing.B, i int) any
	}{
		{"TrafficSplit/decoded", func(b *testing.B, _ int) any { return before(split(b)) }},
		{"TrafficSplit/cached", func(b *testing.B, _ int) any { o, _ := stripForCache(split(b)); return o }},
		{"HTTPRoute/decoded", func(b *testing.B, _ int) any { return before(route(b)) }},
		{"HTTPRoute/cached", func(b *testing.B, _ int) any { o, _ := stripForCache(route(b)); return o }},
		{"ReplicaSet/template-emptied", func(_ *testing.B, i int) any {
			return templateEmptied(replicaSet(fmt.Sprint("foo-", i), "foo-uid", "shop:v2", 3))
		}},
		{"ReplicaSet/cached", func(_ *testing.B, i int) any {
			o, _ := stripForCache(replicaSet(fmt.Sprint("foo-", i), "foo-uid", "shop:v2", 3))
			return o
		}},
	}
	const n = 2000
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			var per float64
			for b.Loop() {
				objs := make([]any, n)
				var m0, m1 runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&m0)
				for i := range objs {
					objs[i] = tc.make(b, i)
				}
				runtime.GC()
				runtime.ReadMemStats(&m1)
				runtime.KeepAlive(objs)
				per = float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc)) / n
			}
			b.ReportMetric(per, "B/object")
		})
	}
}

// BenchmarkCachedRouteRead is what a read of a compact route costs: it is
// decoded again each time (observe reads it once per sync).
func BenchmarkCachedRouteRead(b *testing.B) {
	c, err := compactObject(goldenRoute(b))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok, err := asUnstructured(c); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

// BenchmarkObserveInANamespaceOf observes foo in a namespace that also holds
// n other Deployments' ReplicaSets (three each) and EndpointSlices (two
// each): with the indexes the cost does not grow with n.
func BenchmarkObserveInANamespaceOf(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			objs := app(nil)
			yes := true
			for i := range n {
				owner := fmt.Sprintf("app%04d", i)
				for h := range 3 {
					rs := replicaSet(fmt.Sprintf("%s-h%d", owner, h), types.UID(owner+"-uid"), "shop:v1", 1)
					objs = append(objs, rs)
				}
				for _, svc := range []string{owner + "-stable", owner + "-canary"} {
					objs = append(objs, &discoveryv1.EndpointSlice{
						ObjectMeta: metav1.ObjectMeta{Name: svc + "-x", Namespace: "shop",
							Labels: map[string]string{discoveryv1.LabelServiceName: svc, "canaryd.io/managed-by": owner}},
						Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: &yes}}},
					})
				}
			}
			r := newRig(b, objs...)
			foo := r.c.mustCached(b, "foo")
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.c.observe(foo, true); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// The SMI router writes a cached split only when its weight or apex differs,
// and reads the split back from the cache's compact form.
func TestSMIApplyWritesOnlyWhatDiffers(t *testing.T) {
	gvr := smiGVR("v1alpha1")
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(k8sruntime.NewScheme(), map[schema.GroupVersionResource]string{gvr: "TrafficSplitList"})
	r := &smiRouter{dyn: dyn, version: "v1alpha1"}
	foo := fooDeployment(nil)
	ctx := context.Background()
	cached := func() cache.GenericLister {
		u, err := dyn.Resource(gvr).Namespace("shop").Get(ctx, "foo", metav1.GetOptions{})
		if err != nil {
			return lister(t)
		}
		return lister(t, u)
	}
	for i, step := range []struct {
		apex  string
		milli int
		write bool
	}{{"foo", 100, true}, {"foo", 100, false}, {"foo", 500, true}, {"foo", 500, false}, {"foo-apex", 500, true}, {"foo-apex", 500, false}} {
		wrote, err := r.apply(ctx, cached(), foo, parent{Name: step.apex}, step.milli)
		if err != nil || wrote != step.write {
			t.Fatalf("step %d (%s, %dm): wrote %v, %v; want %v", i, step.apex, step.milli, wrote, err, step.write)
		}
		if got, err := r.observe(cached(), "shop", "foo"); err != nil || got == nil || *got != step.milli {
			t.Fatalf("step %d: observed %v, %v after applying %dm", i, got, err, step.milli)
		}
	}
}
