package kube

import (
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	appsinformers "k8s.io/client-go/informers/apps/v1"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
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
	replicaSets cache.Indexer                // *cachedReplicaSet, indexed by owner (replicaSetsOf)
	services    corelisters.ServiceLister
	slices      cache.Indexer // *discoveryv1.EndpointSlice of canaryd's Services, indexed by Service (endpointSlicesOf)
	// routes are the listers of the routers' resources that are served.
	routes map[schema.GroupVersionResource]cache.GenericLister
	// profiles are Linkerd ServiceProfiles, when served (httproute_block.go).
	profiles cache.GenericLister
}

// Cache indexes: a sync reads one Deployment's ReplicaSets and one
// Service's EndpointSlices, and a namespace may hold thousands of each.
const (
	indexOwner   = "owner"   // a ReplicaSet's owners' UIDs
	indexService = "service" // an EndpointSlice's namespace/Service
)

// cachedReplicaSet is what canaryd keeps of a ReplicaSet: who owns it, its
// pod-template hash (a label), the revision of its template (computed
// once, as observe compares it with a Deployment's), and its counts: 0.8 KB
// of heap, where a typed ReplicaSet with its template emptied took 2.0 KB,
// mostly the template's zero-valued structs (BenchmarkCacheHeapPerObject).
// A namespace keeps up to ten per Deployment (revisionHistoryLimit).
type cachedReplicaSet struct {
	metav1.ObjectMeta // name, namespace, uid, resourceVersion, labels, ownerReferences; no annotations
	Revision          string
	Replicas          int32 // spec.replicas (1 when unset)
	Available         int32
	Ready             int32
}

func compactReplicaSet(rs *appsv1.ReplicaSet) *cachedReplicaSet {
	return &cachedReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: rs.Name, Namespace: rs.Namespace, UID: rs.UID, ResourceVersion: rs.ResourceVersion,
			Labels: rs.Labels, OwnerReferences: rs.OwnerReferences},
		Revision:  RevisionOf(&rs.Spec.Template),
		Replicas:  replicas(rs.Spec.Replicas),
		Available: rs.Status.AvailableReplicas,
		Ready:     rs.Status.ReadyReplicas,
	}
}

// replicaSetsOf lists the cached ReplicaSets owned by uid.
func (s *informerSet) replicaSetsOf(uid types.UID) ([]*cachedReplicaSet, error) {
	objs, err := s.replicaSets.ByIndex(indexOwner, string(uid))
	out := make([]*cachedReplicaSet, 0, len(objs))
	for _, o := range objs {
		if rs, ok := o.(*cachedReplicaSet); ok {
			out = append(out, rs)
		}
	}
	return out, err
}

// endpointSlicesOf lists the cached EndpointSlices of Service ns/name.
func (s *informerSet) endpointSlicesOf(ns, name string) ([]*discoveryv1.EndpointSlice, error) {
	objs, err := s.slices.ByIndex(indexService, ns+"/"+name)
	out := make([]*discoveryv1.EndpointSlice, 0, len(objs))
	for _, o := range objs {
		if sl, ok := o.(*discoveryv1.EndpointSlice); ok {
			out = append(out, sl)
		}
	}
	return out, err
}

func byOwnerUID(obj any) ([]string, error) {
	m, ok := obj.(metav1.Object)
	if !ok {
		return nil, nil
	}
	var uids []string
	for _, ref := range m.GetOwnerReferences() {
		uids = append(uids, string(ref.UID))
	}
	return uids, nil
}

func byServiceName(obj any) ([]string, error) {
	m, ok := obj.(metav1.Object)
	if !ok {
		return nil, nil
	}
	if svc := m.GetLabels()[discoveryv1.LabelServiceName]; svc != "" {
		return []string{m.GetNamespace() + "/" + svc}, nil
	}
	return nil, nil
}

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

	// The factory's transform (stripForCache) turns each into a cachedReplicaSet.
	rs := all.InformerFor(&appsv1.ReplicaSet{}, func(c kubernetes.Interface, resync time.Duration) cache.SharedIndexInformer {
		return appsinformers.NewReplicaSetInformer(c, ns, resync, cache.Indexers{indexOwner: byOwnerUID})
	})
	s.replicaSets = rs.GetIndexer()
	onObject(rs, func(obj metav1.Object) {
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
	// AddIndexers fails only on a started informer; this one is new.
	_ = slices.Informer().AddIndexers(cache.Indexers{indexService: byServiceName})
	s.slices = slices.Informer().GetIndexer()
	onObject(slices.Informer(), byManagedLabel(enqueue))

	s.synced = []cache.InformerSynced{deps.Informer().HasSynced, ownedDeps.Informer().HasSynced, rs.HasSynced,
		svcs.Informer().HasSynced, slices.Informer().HasSynced}
	for gvr := range served {
		inf := splits.ForResource(gvr)
		// Unstructured objects are maps of maps: a TrafficSplit's
		// managedFields alone cost more than the rest of it. Without this
		// transform the splits were 36 % of the live heap at 2,000 managed
		// Deployments (test/bench heap profile, ~10 KB per split); it keeps
		// them compact (cached.go).
		// SetTransform fails only on a started informer; this one is new.
		_ = inf.Informer().SetTransform(stripForCache)
		// The dynamic lister would insist on unstructured entries.
		s.routes[gvr] = cache.NewGenericLister(inf.Informer().GetIndexer(), gvr.GroupResource())
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
// a ReplicaSet becomes a cachedReplicaSet (its template's revision, not the
// template), a Service loses its annotations (last-applied configurations
// can be large), an EndpointSlice keeps only its endpoints' conditions
// (canaryd never writes a slice, so a partial copy is safe). Custom
// resources, decoded unstructured, are cached compact (cachedObject) and
// without managedFields.
func stripForCache(obj any) (any, error) {
	switch o := obj.(type) {
	case *appsv1.ReplicaSet:
		return compactReplicaSet(o), nil
	case *corev1.Service:
		o.SetManagedFields(nil)
		if _, ours := o.Labels[rollout.LabelManaged]; !ours {
			o.Annotations = nil
		}
	case *unstructured.Unstructured:
		o.SetManagedFields(nil)
		if c, err := compactObject(o); err == nil {
			return c, nil
		} // else cached as decoded: an API server's object always converts, and a relist would only meet it again
	case *discoveryv1.EndpointSlice:
		o.SetManagedFields(nil)
		o.Ports = nil
		for i := range o.Endpoints {
			o.Endpoints[i] = discoveryv1.Endpoint{Conditions: o.Endpoints[i].Conditions}
		}
	}
	return obj, nil
}
