package kube

import (
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/canaryd/canaryd/rollout"
)

// informerSet is the cache for one namespace ("" for all). Memory follows the
// managed set, not the cluster: Deployments and EndpointSlices are watched by
// label; ReplicaSets and Services are watched whole but stripped to what
// canaryd reads (a ReplicaSet keeps no pod template, only its revision hash).
type informerSet struct {
	factories []interface{ Start(<-chan struct{}) }
	synced    []cache.InformerSynced

	deployments appslisters.DeploymentLister // opted-in (label)
	owned       appslisters.DeploymentLister // foo-canary (managed-by label)
	replicaSets appslisters.ReplicaSetLister
	services    corelisters.ServiceLister
	slices      discoverylisters.EndpointSliceLister // of canaryd's Services
	// routes are the listers of the routers' resources that are served.
	routes map[schema.GroupVersionResource]cache.GenericLister
	// profiles are Linkerd ServiceProfiles, when served (httproute_block.go).
	profiles cache.GenericLister
}

const annotationRSRevision = "canaryd.io/cached-revision"

func newInformerSet(client kubernetes.Interface, dyn dynamic.Interface, ns string, resync time.Duration, served map[schema.GroupVersionResource]bool, enqueue func(ns, name string)) *informerSet {
	byLabel := func(sel string) informers.SharedInformerOption {
		return informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = sel })
	}
	opts := func(extra ...informers.SharedInformerOption) []informers.SharedInformerOption {
		return append([]informers.SharedInformerOption{informers.WithNamespace(ns), informers.WithTransform(stripManagedFields)}, extra...)
	}
	enabled := informers.NewSharedInformerFactoryWithOptions(client, resync, opts(byLabel(rollout.LabelEnabled+"=true"))...)
	managed := informers.NewSharedInformerFactoryWithOptions(client, resync, opts(byLabel(rollout.LabelManaged))...)
	all := informers.NewSharedInformerFactoryWithOptions(client, resync, informers.WithNamespace(ns), informers.WithTransform(stripForCache))
	splits := dynamicinformer.NewFilteredDynamicSharedInformerFactory(dyn, resync, ns, func(o *metav1.ListOptions) { o.LabelSelector = rollout.LabelManaged })

	s := &informerSet{factories: []interface{ Start(<-chan struct{}) }{enabled, managed, all, splits},
		routes: map[schema.GroupVersionResource]cache.GenericLister{}}

	deps := enabled.Apps().V1().Deployments()
	s.deployments = deps.Lister()
	onObject(deps.Informer(), func(obj metav1.Object) { enqueue(obj.GetNamespace(), obj.GetName()) })

	ownedDeps := managed.Apps().V1().Deployments()
	s.owned = ownedDeps.Lister()
	onObject(ownedDeps.Informer(), byManagedLabel(enqueue))

	rs := all.Apps().V1().ReplicaSets()
	s.replicaSets = rs.Lister()
	onObject(rs.Informer(), func(obj metav1.Object) {
		// foo's ReplicaSets are owned by foo; foo-canary's by foo-canary,
		// which carries the managed-by label naming foo.
		for _, ref := range obj.GetOwnerReferences() {
			if ref.Kind != "Deployment" {
				continue
			}
			if owner, ok := obj.GetLabels()[rollout.LabelRole]; ok && owner == rollout.RoleCanary {
				if d, err := s.owned.Deployments(obj.GetNamespace()).Get(ref.Name); err == nil {
					byManagedLabel(enqueue)(d)
				}
				continue
			}
			if _, err := s.deployments.Deployments(obj.GetNamespace()).Get(ref.Name); err == nil {
				enqueue(obj.GetNamespace(), ref.Name)
			}
		}
	})

	svcs := all.Core().V1().Services()
	s.services = svcs.Lister()
	onObject(svcs.Informer(), byManagedLabel(enqueue))

	slices := managed.Discovery().V1().EndpointSlices()
	// canaryd only counts ready endpoints (observe.go): a cached slice keeps
	// its metadata and each endpoint's conditions. Slices were 10 % of the
	// live heap at 2,000 Deployments of one pod each (test/bench), and an
	// endpoint's address, target reference and zone grow with replicas.
	// SetTransform fails only on a started informer; this one is new.
	_ = slices.Informer().SetTransform(stripForCache)
	s.slices = slices.Lister()
	onObject(slices.Informer(), byManagedLabel(enqueue))

	s.synced = []cache.InformerSynced{deps.Informer().HasSynced, ownedDeps.Informer().HasSynced, rs.Informer().HasSynced,
		svcs.Informer().HasSynced, slices.Informer().HasSynced}
	for gvr := range served {
		inf := splits.ForResource(gvr)
		// Unstructured objects are maps of maps: a TrafficSplit's
		// managedFields alone cost more than the rest of it. Without this
		// transform the splits were 36 % of the live heap at 2,000 managed
		// Deployments (test/bench heap profile, ~10 KB per split).
		// SetTransform fails only on a started informer; this one is new.
		_ = inf.Informer().SetTransform(stripForCache)
		s.routes[gvr] = inf.Lister()
		onObject(inf.Informer(), byManagedLabel(enqueue))
		s.synced = append(s.synced, inf.Informer().HasSynced)
	}
	return s
}

func (s *informerSet) start(stop <-chan struct{}) {
	for _, f := range s.factories {
		f.Start(stop)
	}
}

func byManagedLabel(enqueue func(ns, name string)) func(metav1.Object) {
	return func(obj metav1.Object) {
		if name, ok := obj.GetLabels()[rollout.LabelManaged]; ok && name != "" {
			enqueue(obj.GetNamespace(), name)
		}
	}
}

// onObject calls f for every add, update and delete (tombstones unwrapped).
func onObject(inf cache.SharedIndexInformer, f func(metav1.Object)) {
	call := func(obj any) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		if m, ok := obj.(metav1.Object); ok {
			f(m)
		}
	}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    call,
		UpdateFunc: func(_, obj any) { call(obj) },
		DeleteFunc: call,
	})
}

func stripManagedFields(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

// stripForCache keeps what canaryd reads of objects it watches cluster-wide:
// a ReplicaSet's template is replaced by its revision hash, a Service loses
// its annotations (last-applied configurations can be large), an
// EndpointSlice keeps only its endpoints' conditions (canaryd never writes a
// slice, so a partial copy is safe). Unstructured objects lose managedFields.
func stripForCache(obj any) (any, error) {
	switch o := obj.(type) {
	case *appsv1.ReplicaSet:
		o.SetManagedFields(nil)
		if o.Annotations == nil {
			o.Annotations = map[string]string{}
		}
		if _, done := o.Annotations[annotationRSRevision]; !done {
			o.Annotations[annotationRSRevision] = RevisionOf(&o.Spec.Template)
			o.Spec.Template = corev1.PodTemplateSpec{}
		}
	case *corev1.Service:
		o.SetManagedFields(nil)
		if _, ours := o.Labels[rollout.LabelManaged]; !ours {
			o.Annotations = nil
		}
	case *unstructured.Unstructured:
		o.SetManagedFields(nil)
	case *discoveryv1.EndpointSlice:
		o.SetManagedFields(nil)
		o.Ports = nil
		for i := range o.Endpoints {
			o.Endpoints[i] = discoveryv1.Endpoint{Conditions: o.Endpoints[i].Conditions}
		}
	}
	return obj, nil
}
