package kube

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	fakediscovery "k8s.io/client-go/discovery/fake"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/rollout"
)

// rig is a Controller on fake clients whose informers run, so a test can
// sync a key, let the caches catch up, and look at what was written.
type rig struct {
	t      testing.TB
	c      *Controller
	client *fake.Clientset
	dyn    *dynamicfake.FakeDynamicClient
	rec    *record.FakeRecorder
	ctx    context.Context
	now    *time.Time // the controller's clock
}

type passAnalyzer struct{}

func (passAnalyzer) Analyze(context.Context, analysis.Target) analysis.Result {
	return analysis.Result{Verdict: analysis.Pass, Reason: "fine"}
}

func newRig(t testing.TB, objs ...runtime.Object) *rig {
	t.Helper()
	client := fake.NewSimpleClientset(objs...)
	client.Discovery().(*fakediscovery.FakeDiscovery).Resources = []*metav1.APIResourceList{{
		GroupVersion: "split.smi-spec.io/v1alpha1",
		APIResources: []metav1.APIResource{{Name: "trafficsplits", Namespaced: true, Kind: "TrafficSplit"}},
	}}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{smiGVR("v1alpha1"): "TrafficSplitList"})
	rec := record.NewFakeRecorder(100)
	defaults := rollout.DefaultSpec()
	defaults.Interval = 10 * time.Second
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	c, err := New(Config{Client: client, Dynamic: dyn, Analyzer: passAnalyzer{}, Defaults: defaults, Recorder: rec,
		Clock: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s := c.sets[""]
	s.start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), s.synced...) {
		t.Fatal("caches did not sync")
	}
	return &rig{t: t, c: c, client: client, dyn: dyn, rec: rec, ctx: ctx, now: &now}
}

// sync reconciles foo and waits until the caches have seen the writes.
func (r *rig) sync() time.Duration {
	r.t.Helper()
	before := len(r.client.Actions()) + len(r.dyn.Actions())
	requeue, err := r.c.sync(r.ctx, "shop/foo")
	if err != nil {
		r.t.Fatalf("sync: %v", err)
	}
	if len(r.client.Actions())+len(r.dyn.Actions()) > before {
		time.Sleep(100 * time.Millisecond) // fake watches deliver asynchronously
	}
	return requeue
}

func (r *rig) writes() []string {
	var out []string
	for _, a := range append(r.client.Actions(), r.dyn.Actions()...) {
		switch a.GetVerb() {
		case "create", "update", "patch", "delete":
			out = append(out, a.GetVerb()+" "+a.GetResource().Resource+"/"+name(a))
		}
	}
	return out
}

func name(a k8stesting.Action) string {
	switch x := a.(type) {
	case k8stesting.CreateAction: // also matches updates: both carry the object
		if m, ok := x.GetObject().(metav1.Object); ok {
			return m.GetName()
		}
	case k8stesting.PatchAction:
		return x.GetName()
	case k8stesting.DeleteAction:
		return x.GetName()
	}
	return ""
}

func (r *rig) foo() *appsv1.Deployment {
	d, err := r.client.AppsV1().Deployments("shop").Get(r.ctx, "foo", metav1.GetOptions{})
	if err != nil {
		r.t.Fatal(err)
	}
	return d
}

func (r *rig) events() string {
	var out []string
	for {
		select {
		case e := <-r.rec.Events:
			out = append(out, e)
		default:
			return strings.Join(out, "\n")
		}
	}
}

// app is an opted-in Deployment whose own rollout is complete, its
// ReplicaSet, its apex Service and an EndpointSlice for foo-stable.
func app(annotations map[string]string) []runtime.Object {
	two := int32(2)
	labels := map[string]string{"app": "foo"}
	tpl := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "shop/foo:1", Ports: []corev1.ContainerPort{{ContainerPort: 8080}}}}},
	}
	foo := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "foo", Namespace: "shop", UID: "foo-uid", Generation: 1,
			Labels: map[string]string{rollout.LabelEnabled: "true"}, Annotations: annotations},
		Spec:   appsv1.DeploymentSpec{Replicas: &two, Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: tpl},
		Status: appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 2, UpdatedReplicas: 2, AvailableReplicas: 2, ReadyReplicas: 2},
	}
	rsTpl := tpl.DeepCopy()
	rsTpl.Labels = map[string]string{"app": "foo", appsv1.DefaultDeploymentUniqueLabelKey: "h1"}
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "foo-h1", Namespace: "shop", Labels: rsTpl.Labels,
			OwnerReferences: []metav1.OwnerReference{{Kind: "Deployment", Name: "foo", UID: "foo-uid"}}},
		Spec:   appsv1.ReplicaSetSpec{Replicas: &two, Template: *rsTpl},
		Status: appsv1.ReplicaSetStatus{Replicas: 2, ReadyReplicas: 2, AvailableReplicas: 2},
	}
	apex := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "foo", Namespace: "shop"},
		Spec: corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}}}}
	yes := true
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: "foo-stable-x", Namespace: "shop",
			Labels: map[string]string{discoveryv1.LabelServiceName: "foo-stable", rollout.LabelManaged: "foo"}},
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: &yes}}},
	}
	return []runtime.Object{foo, rs, apex, slice}
}

func TestAdoptionCreatesServicesAndSplitAndPausesTheDeployment(t *testing.T) {
	r := newRig(t, app(nil)...)
	r.sync() // adopt: status, pause, Services (the split waits for the stable Service's endpoints)
	r.sync() // endpoints are there: the split at stable 100 %

	foo := r.foo()
	st, err := rollout.ParseStatus(foo.Annotations[rollout.AnnotationStatus])
	if err != nil || st.Phase != rollout.PhaseIdle || st.StableHash != "h1" {
		t.Fatalf("status %+v (%v)", st, err)
	}
	if !foo.Spec.Paused {
		t.Error("foo not paused")
	}
	stable, err := r.client.CoreV1().Services("shop").Get(r.ctx, "foo-stable", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if stable.Spec.Selector["pod-template-hash"] != "h1" || stable.Spec.Selector["app"] != "foo" || stable.Spec.Ports[0].Port != 80 {
		t.Errorf("foo-stable: selector %v ports %v", stable.Spec.Selector, stable.Spec.Ports)
	}
	canary, err := r.client.CoreV1().Services("shop").Get(r.ctx, "foo-canary", metav1.GetOptions{})
	if err != nil || canary.Spec.Selector[rollout.LabelRole] != rollout.RoleCanary {
		t.Fatalf("foo-canary: %v %v", canary, err)
	}
	split, err := r.dyn.Resource(smiGVR("v1alpha1")).Namespace("shop").Get(r.ctx, "foo", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	backends, _, _ := unstructured.NestedSlice(split.Object, "spec", "backends")
	if got := backends[0].(map[string]any)["weight"]; got != "1000m" {
		t.Errorf("stable weight %v, want 1000m (backends %v)", got, backends)
	}
	if svc, _, _ := unstructured.NestedString(split.Object, "spec", "service"); svc != "foo" {
		t.Errorf("split root %q", svc)
	}
	if ev := r.events(); !strings.Contains(ev, "Normal Adopted") {
		t.Errorf("events: %s", ev)
	}
}

func TestASecondSyncOfTheSameStateWritesNothing(t *testing.T) {
	r := newRig(t, app(nil)...)
	r.sync()
	r.sync()
	before := len(r.writes())
	r.sync()
	if after := r.writes(); len(after) != before {
		t.Fatalf("third sync wrote: %v", after[before:])
	}
}

func TestAnInvalidAnnotationWritesNoObjectAndWarns(t *testing.T) {
	r := newRig(t, app(map[string]string{rollout.KeyRouter: "istio"})...)
	r.sync()
	for _, w := range r.writes() {
		if !strings.HasPrefix(w, "patch deployments/foo") {
			t.Errorf("wrote %s despite an invalid configuration", w)
		}
	}
	if ev := r.events(); !strings.Contains(ev, "Warning InvalidConfig") || !strings.Contains(ev, rollout.KeyRouter) {
		t.Errorf("events: %s", ev)
	}
	if r.foo().Spec.Paused {
		t.Error("paused despite the invalid configuration")
	}
}

func TestANewRevisionBringsUpTheCanary(t *testing.T) {
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
	r.sync()
	canary, err := r.client.AppsV1().Deployments("shop").Get(r.ctx, "foo-canary", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if canary.Spec.Template.Spec.Containers[0].Image != "shop/foo:2" || *canary.Spec.Replicas != 1 ||
		canary.Spec.Selector.MatchLabels[rollout.LabelRole] != rollout.RoleCanary || canary.OwnerReferences[0].UID != "foo-uid" {
		t.Errorf("canary: image %s replicas %d selector %v", canary.Spec.Template.Spec.Containers[0].Image, *canary.Spec.Replicas, canary.Spec.Selector)
	}
	if canary.Annotations[rollout.AnnotationRevision] != RevisionOf(&r.foo().Spec.Template) {
		t.Error("canary revision annotation does not match foo's template")
	}
	st, _ := rollout.ParseStatus(r.foo().Annotations[rollout.AnnotationStatus])
	if st.Phase != rollout.PhaseProgressing || st.Step != 0 {
		t.Errorf("status %+v", st)
	}
}

func TestAStaleCacheNeverUndoesANewerDecision(t *testing.T) {
	r := newRig(t, app(nil)...)
	r.sync()
	r.sync()
	// Someone (another canaryd, a person) changes foo behind our cache's back.
	foo := r.foo()
	foo.Annotations["team"] = "payments"
	foo.ResourceVersion = "999"
	if err := r.client.Tracker().Update(schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}, foo, "shop"); err != nil {
		t.Fatal(err)
	}
	w := &writer{c: r.c, s: r.c.sets[""], foo: r.c.mustCached(t, "foo")}
	w.foo.ResourceVersion = "1"
	if err := w.ensureFresh(r.ctx); !errors.Is(err, errStale) {
		t.Fatalf("ensureFresh with a stale cache: %v, want errStale", err)
	}
}

func (c *Controller) mustCached(t testing.TB, name string) *appsv1.Deployment {
	d, err := c.sets[""].deployments.Deployments("shop").Get(name)
	if err != nil {
		t.Fatal(err)
	}
	return d.DeepCopy()
}

func TestRevisionIgnoresTheLabelsThatOnlyTellReplicaSetsApart(t *testing.T) {
	tpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "foo"}}}
	withHash := tpl.DeepCopy()
	withHash.Labels[appsv1.DefaultDeploymentUniqueLabelKey] = "abc"
	withRole := tpl.DeepCopy()
	withRole.Labels[rollout.LabelRole] = rollout.RoleCanary
	if RevisionOf(&tpl) != RevisionOf(withHash) || RevisionOf(&tpl) != RevisionOf(withRole) {
		t.Error("hash or role label changed the revision")
	}
	other := tpl.DeepCopy()
	other.Labels["version"] = "2"
	if RevisionOf(&tpl) == RevisionOf(other) {
		t.Error("a template change kept the revision")
	}
}

func TestSMIRouterWeightsPerVersion(t *testing.T) {
	for _, tc := range []struct {
		version        string
		milli          int
		stable, canary any
	}{
		{"v1alpha1", 100, "900m", "100m"},
		{"v1alpha1", 1000, "0m", "1000m"},
		{"v1alpha2", 100, int64(90), int64(10)},
		{"v1alpha2", 250, int64(75), int64(25)},
	} {
		r := &smiRouter{version: tc.version}
		b := r.backends("foo", tc.milli)
		if got := b[0].(map[string]any)["weight"]; got != tc.stable {
			t.Errorf("%s %dm: stable weight %v (%T), want %v", tc.version, tc.milli, got, got, tc.stable)
		}
		if got := b[1].(map[string]any)["weight"]; got != tc.canary {
			t.Errorf("%s %dm: canary weight %v, want %v", tc.version, tc.milli, got, tc.canary)
		}
		// And back: what the router writes, it reads as the same weight.
		for _, v := range []any{tc.canary} {
			w, ok := r.weight(v)
			if !ok || int(w*1000/r.total()) != tc.milli {
				t.Errorf("%s: reading %v gave %d (%v)", tc.version, v, w, ok)
			}
		}
	}
	// A bare integer in v1alpha1 is a whole quantity: 1 = 1000m.
	if w, ok := (&smiRouter{version: "v1alpha1"}).weight(int64(1)); !ok || w != 1000 {
		t.Errorf("v1alpha1 weight 1 read as %d", w)
	}
}

func TestAForeignObjectInTheWayIsReportedNotOverwritten(t *testing.T) {
	objs := app(nil)
	foreign := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "foo-stable", Namespace: "shop"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "other"}, Ports: []corev1.ServicePort{{Port: 1}}}}
	r := newRig(t, append(objs, foreign)...)
	requeue := r.sync()
	svc, err := r.client.CoreV1().Services("shop").Get(r.ctx, "foo-stable", metav1.GetOptions{})
	if err != nil || svc.Spec.Selector["app"] != "other" {
		t.Fatalf("the foreign Service was changed: %v %v", svc.Spec.Selector, err)
	}
	if ev := r.events(); !strings.Contains(ev, "Warning Blocked") || !strings.Contains(ev, "not canaryd's") {
		t.Errorf("events: %s", ev)
	}
	if requeue < 10*time.Second {
		t.Errorf("requeue after %s: a problem retrying cannot fix should not be retried hot", requeue)
	}
}

// A panic in one Deployment's reconcile is that Deployment's error, retried
// with backoff: the process and every other rollout go on.
func TestAPanicInOneReconcileIsContainedAndRetried(t *testing.T) {
	r := newRig(t, app(nil)...)
	notified := 0
	r.c.cfg.Notify = func(_, _ string, e rollout.Event, _ rollout.Status) {
		notified++
		panic("boom on " + e.Reason)
	}
	r.c.queue.Add("shop/foo")
	if !r.c.next(r.ctx) {
		t.Fatal("the worker stopped")
	}
	if notified == 0 {
		t.Fatal("the rig raised no event, so nothing panicked: the test proves nothing")
	}
	if n := r.c.queue.NumRequeues("shop/foo"); n != 1 {
		t.Errorf("requeues after the panic: %d, want 1 (rate-limited retry)", n)
	}

	r2 := newRig(t, app(nil)...)
	r2.c.cfg.Notify = r.c.cfg.Notify
	if _, err := r2.c.syncContained(r2.ctx, "shop/foo"); err == nil || !strings.Contains(err.Error(), "reconcile panicked: boom on") {
		t.Errorf("error %v", err)
	}
}

func TestLookingAgainAfterACacheBehindIsPromptThenBacksOff(t *testing.T) {
	for _, tc := range []struct {
		inARow int
		want   time.Duration
	}{
		{1, 5 * time.Millisecond},
		{2, 10 * time.Millisecond},
		{3, 20 * time.Millisecond},
		{8, 640 * time.Millisecond},
		{9, time.Second},
		{1000, time.Second},
	} {
		if got := behindDelay(tc.inARow); got != tc.want {
			t.Errorf("behind %d in a row: wait %s, want %s", tc.inARow, got, tc.want)
		}
	}
}
