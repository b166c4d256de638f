package meshsim

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// The kinds of object the simulator keeps caches of.
const (
	kindService       = "services"
	kindEndpointSlice = "endpointslices"
	kindPod           = "pods"
	kindReplicaSet    = "replicasets"
	kindTrafficSplit  = "trafficsplits"
	kindGatewayRoute  = "httproutes.gateway"
	kindPolicyRoute   = "httproutes.policy"
)

// crdCandidate is a custom resource the simulator watches if the API server serves it. Versions are in order
// of preference; only one is watched, because every served version is a view of the same stored objects and
// watching two would count each split twice. The parsers accept what any of the versions may hold (for
// TrafficSplit, read through v1alpha2 without a conversion webhook, a v1alpha1 object still says "900m").
type crdCandidate struct {
	kind     string
	group    string
	resource string
	versions []string
}

var crdCandidates = []crdCandidate{
	{kindTrafficSplit, "split.smi-spec.io", "trafficsplits", []string{"v1alpha1", "v1alpha2", "v1alpha3", "v1alpha4"}},
	{kindGatewayRoute, "gateway.networking.k8s.io", "httproutes", []string{"v1", "v1beta1"}},
	{kindPolicyRoute, "policy.linkerd.io", "httproutes", []string{"v1beta3", "v1beta2", "v1beta1"}},
}

// watcher owns the informers. Its stores are read by world building; gen counts changes so that the world is
// rebuilt only when something changed.
type watcher struct {
	kube       kubernetes.Interface
	dyn        dynamic.Interface
	disc       discovery.DiscoveryInterface
	namespaces []string
	log        *slog.Logger

	gen atomic.Uint64

	mu      sync.Mutex
	stores  map[string][]cache.Store
	watched map[string]schema.GroupVersionResource
	dynFact []dynamicinformer.DynamicSharedInformerFactory
}

func newWatcher(kube kubernetes.Interface, dyn dynamic.Interface, disc discovery.DiscoveryInterface, namespaces []string, log *slog.Logger) *watcher {
	ns := slices.Clone(namespaces)
	if len(ns) == 0 {
		ns = []string{metav1.NamespaceAll}
	}
	return &watcher{
		kube: kube, dyn: dyn, disc: disc, namespaces: ns, log: log,
		stores:  map[string][]cache.Store{},
		watched: map[string]schema.GroupVersionResource{},
	}
}

// start starts the core informers, discovers the CRDs and waits for every cache to sync.
func (w *watcher) start(ctx context.Context) error {
	w.mu.Lock()
	var synced []cache.InformerSynced
	for _, ns := range w.namespaces {
		f := informers.NewSharedInformerFactoryWithOptions(w.kube, 0, informers.WithNamespace(ns))
		for kind, inf := range map[string]cache.SharedIndexInformer{
			kindService:       f.Core().V1().Services().Informer(),
			kindEndpointSlice: f.Discovery().V1().EndpointSlices().Informer(),
			kindPod:           f.Core().V1().Pods().Informer(),
			kindReplicaSet:    f.Apps().V1().ReplicaSets().Informer(),
		} {
			if err := w.track(kind, inf); err != nil {
				w.mu.Unlock()
				return err
			}
			synced = append(synced, inf.HasSynced)
		}
		f.Start(ctx.Done())
		w.dynFact = append(w.dynFact, dynamicinformer.NewFilteredDynamicSharedInformerFactory(w.dyn, 0, ns, nil))
	}
	w.mu.Unlock()
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return fmt.Errorf("meshsim: core caches did not sync: %w", context.Cause(ctx))
	}
	w.discover(ctx)
	return nil
}

func (w *watcher) track(kind string, inf cache.SharedIndexInformer) error {
	bump := func() { w.gen.Add(1) }
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { bump() },
		UpdateFunc: func(any, any) { bump() },
		DeleteFunc: func(any) { bump() },
	})
	if err != nil {
		return fmt.Errorf("meshsim: watch %s: %w", kind, err)
	}
	w.stores[kind] = append(w.stores[kind], inf.GetStore())
	return nil
}

// discover starts an informer for each candidate CRD that is served and not yet watched. Absent CRDs are
// normal (a cluster may have only TrafficSplit, or only HTTPRoute); discovery errors are logged and retried on
// the next call.
func (w *watcher) discover(ctx context.Context) {
	for _, c := range crdCandidates {
		w.mu.Lock()
		_, done := w.watched[c.kind]
		w.mu.Unlock()
		if done {
			continue
		}
		gvr, ok := w.servedVersion(c)
		if !ok {
			continue
		}
		if err := w.watchDynamic(ctx, c.kind, gvr); err != nil {
			w.log.Warn("cannot watch custom resource", "gvr", gvr.String(), "err", err)
		}
	}
}

func (w *watcher) servedVersion(c crdCandidate) (schema.GroupVersionResource, bool) {
	for _, v := range c.versions {
		gv := schema.GroupVersion{Group: c.group, Version: v}
		list, err := w.disc.ServerResourcesForGroupVersion(gv.String())
		if err != nil || list == nil {
			continue // not served (NotFound) or not reachable now; either way, try the next version
		}
		for _, r := range list.APIResources {
			if r.Name == c.resource {
				return gv.WithResource(c.resource), true
			}
		}
	}
	return schema.GroupVersionResource{}, false
}

func (w *watcher) watchDynamic(ctx context.Context, kind string, gvr schema.GroupVersionResource) error {
	w.mu.Lock()
	var synced []cache.InformerSynced
	for _, f := range w.dynFact {
		inf := f.ForResource(gvr).Informer()
		if err := w.track(kind, inf); err != nil {
			w.mu.Unlock()
			return err
		}
		synced = append(synced, inf.HasSynced)
		f.Start(ctx.Done())
	}
	w.watched[kind] = gvr
	w.mu.Unlock()
	w.log.Info("watching custom resource", "gvr", gvr.String())

	waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if !cache.WaitForCacheSync(waitCtx.Done(), synced...) {
		return fmt.Errorf("cache of %s did not sync: %w", gvr.String(), context.Cause(waitCtx))
	}
	w.gen.Add(1)
	return nil
}

// list returns every cached object of a kind, across the watched namespaces.
// get is the cached object of kind ns/name, from whichever namespace's store holds it, or nil.
func (w *watcher) get(kind, ns, name string) any {
	w.mu.Lock()
	stores := w.stores[kind]
	w.mu.Unlock()
	for _, st := range stores {
		if o, ok, _ := st.GetByKey(ns + "/" + name); ok {
			return o
		}
	}
	return nil
}

func (w *watcher) list(kind string) []any {
	w.mu.Lock()
	stores := slices.Clone(w.stores[kind])
	w.mu.Unlock()
	var out []any
	for _, st := range stores {
		out = append(out, st.List()...)
	}
	return out
}
