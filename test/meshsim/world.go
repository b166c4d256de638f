package meshsim

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
)

// Annotations the simulator reads; see the package documentation.
const (
	annRPS          = "meshsim/rps"
	annHeaders      = "meshsim/headers"
	annErrorRate    = "meshsim/error-rate"
	annStatusCode   = "meshsim/status-code"
	annLatencyMs    = "meshsim/latency-ms"
	annLatencyP99Ms = "meshsim/latency-p99-ms"

	annInject = "linkerd.io/inject"
)

// z99 is the 99th percentile of the standard normal distribution.
const z99 = 2.3263478740

type svcKey struct{ ns, name string }

type podKey struct{ ns, name string }

// parsed is what parseSplit made of one version of a TrafficSplit, with the keys that order it.
type parsed struct {
	apex  string
	split split
	err   error
	uid   types.UID
	order objectOrder
}

// objectOrder orders objects oldest first, ties by namespace and name: the order in which Gateway API gives
// precedence, and a deterministic one.
type objectOrder struct {
	created  time.Time
	ns, name string
}

func orderOf(o *unstructured.Unstructured) objectOrder {
	return objectOrder{o.GetCreationTimestamp().Time, o.GetNamespace(), o.GetName()}
}

func (a objectOrder) compare(b objectOrder) int {
	return cmp.Or(a.created.Compare(b.created), cmp.Compare(a.ns, b.ns), cmp.Compare(a.name, b.name))
}

func (k svcKey) String() string { return k.ns + "/" + k.name }

// world is an immutable snapshot of what the simulator routes over, rebuilt from the caches when they change.
type world struct {
	apexes   []*apex             // sorted by key, so that request generation is deterministic
	backends map[svcKey][]podKey // ready endpoints of each Service an apex with traffic sends to, sorted
	pods     map[podKey]*podInfo // meshed pods
}

type apex struct {
	key     svcKey
	rps     float64
	headers []headerClass
	split   *split      // a TrafficSplit wins over routes
	rules   []routeRule // HTTPRoute rules, oldest route first
}

type podInfo struct {
	key       podKey
	uid       types.UID
	ip        string
	port      int32
	labels    map[string]string // pod labels plus the derived linkerd.io/proxy-<kind> label
	resolved  bool              // the owner chain is known, so the labels are final
	behaviour behaviour
}

// behaviour is how a pod answers, read from its annotations.
type behaviour struct {
	errorRate float64
	errorCode int
	medianMs  float64
	sigma     float64
}

// systemNamespaces are never meshed, as in Linkerd, whose injector skips kube-system and friends.
var systemNamespaces = map[string]bool{"kube-system": true, "kube-public": true, "kube-node-lease": true, "local-path-storage": true}

// buildWorld reads every cache once and assembles a snapshot. Odd objects are logged once and skipped.
//
// It runs on every tick on which a watched object changed, which during a benchmark wave is every tick, so it
// looks objects up in the caches instead of indexing them again, and reads the EndpointSlices of only the
// Services that an apex taking traffic can send to.
func (s *Sim) buildWorld() *world {
	w := &world{backends: map[svcKey][]podKey{}, pods: map[podKey]*podInfo{}}
	w.apexes = s.buildApexes()

	byIP := map[string]podKey{}
	s.podsNext = make(map[*corev1.Pod]*podInfo, len(s.pods))
	defer func() { s.pods, s.podsNext = s.podsNext, nil }()
	for _, o := range s.watch.list(kindPod) {
		pod, ok := o.(*corev1.Pod)
		if !ok {
			continue
		}
		p := s.meshedPod(pod)
		if p == nil {
			continue
		}
		w.pods[p.key] = p
		if p.ip != "" {
			byIP[pod.Namespace+"/"+p.ip] = p.key
		}
	}
	needed := map[svcKey]bool{}
	for _, a := range w.apexes {
		if a.rps <= 0 {
			continue // sends nothing, so its backends' endpoints are never read
		}
		needed[a.key] = true
		if a.split != nil {
			for _, b := range a.split.backends {
				needed[b.svc] = true
			}
		}
		for _, r := range a.rules {
			for _, b := range r.backends {
				needed[b.svc] = true
			}
		}
	}
	for _, o := range s.watch.list(kindEndpointSlice) {
		es, ok := o.(*discoveryv1.EndpointSlice)
		if ok && needed[svcKey{es.Namespace, es.Labels[discoveryv1.LabelServiceName]}] {
			s.addEndpoints(w, es, byIP)
		}
	}
	for k, eps := range w.backends {
		slices.SortFunc(eps, func(a, b podKey) int { return cmp.Compare(a.name, b.name) })
		w.backends[k] = slices.Compact(eps)
	}
	return w
}

// meshedPod is podInfo for a meshed pod, nil for another, remembered for each version of a pod once its
// owner is known: at 2,000 Deployments reading every pod's annotations and labels again on every rebuild was
// a seventh of the simulator's work.
func (s *Sim) meshedPod(pod *corev1.Pod) *podInfo {
	if p, seen := s.pods[pod]; seen {
		s.podsNext[pod] = p
		return p
	}
	if !meshed(pod) {
		s.podsNext[pod] = nil
		return nil
	}
	p := s.podInfo(pod)
	if p.resolved {
		s.podsNext[pod] = p
	}
	return p
}

func meshed(pod *corev1.Pod) bool {
	if systemNamespaces[pod.Namespace] || pod.Annotations[annInject] == "disabled" {
		return false
	}
	return pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed
}

func (s *Sim) podInfo(pod *corev1.Pod) *podInfo {
	p := &podInfo{
		key:    podKey{pod.Namespace, pod.Name},
		uid:    pod.UID,
		ip:     pod.Status.PodIP,
		port:   80,
		labels: make(map[string]string, len(pod.Labels)+1),
	}
	for k, v := range pod.Labels {
		p.labels[k] = v
	}
	for _, c := range pod.Spec.Containers {
		if len(c.Ports) > 0 {
			p.port = c.Ports[0].ContainerPort
			break
		}
	}
	name, value, resolved := proxyOwnerLabel(pod, s.replicaSet)
	p.resolved = resolved
	if name != "" {
		p.labels[name] = value
	}
	p.behaviour = s.readBehaviour(pod)
	return p
}

// proxyOwnerLabel derives the label Linkerd's injector would set from the pod's owner: a ReplicaSet owned by
// a Deployment gives linkerd.io/proxy-deployment=<deployment>. kwok pods have no injector, so the simulator
// plays its part. resolved is false while the owning ReplicaSet is not in the cache yet: publishing the pod
// then would give Prometheus a series without its deployment label.
func proxyOwnerLabel(pod *corev1.Pod, replicaSet func(ns, name string) *appsv1.ReplicaSet) (name, value string, resolved bool) {
	for _, k := range []string{"deployment", "replicaset", "statefulset", "daemonset", "job", "replicationcontroller"} {
		if _, ok := pod.Labels["linkerd.io/proxy-"+k]; ok {
			return "", "", true // already injected (a real cluster): keep what is there
		}
	}
	ctrl := metav1.GetControllerOf(pod)
	if ctrl == nil {
		return "", "", true
	}
	switch ctrl.Kind {
	case "ReplicaSet":
		rs := replicaSet(pod.Namespace, ctrl.Name)
		if rs == nil {
			return "", "", false
		}
		if d := metav1.GetControllerOf(rs); d != nil && d.Kind == "Deployment" {
			return "linkerd.io/proxy-deployment", d.Name, true
		}
		return "linkerd.io/proxy-replicaset", rs.Name, true
	case "StatefulSet", "DaemonSet", "Job", "ReplicationController":
		return "linkerd.io/proxy-" + strings.ToLower(ctrl.Kind), ctrl.Name, true
	}
	return "", "", true
}

// replicaSet is the cached ReplicaSet ns/name, or nil.
func (s *Sim) replicaSet(ns, name string) *appsv1.ReplicaSet {
	rs, _ := s.watch.get(kindReplicaSet, ns, name).(*appsv1.ReplicaSet)
	return rs
}

func (s *Sim) readBehaviour(pod *corev1.Pod) behaviour {
	b := behaviour{errorCode: 500, medianMs: 10}
	warn := func(key string, err error) {
		s.warnOnce("pod/"+string(pod.UID)+"/"+key, "ignoring pod annotation", "pod", pod.Namespace+"/"+pod.Name, "annotation", key, "err", err)
	}
	if v, ok := pod.Annotations[annErrorRate]; ok {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 || f > 1 || math.IsNaN(f) {
			warn(annErrorRate, fmt.Errorf("%q is not a share in [0,1]", v))
		} else {
			b.errorRate = f
		}
	}
	if v, ok := pod.Annotations[annStatusCode]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 100 || n > 599 {
			warn(annStatusCode, fmt.Errorf("%q is not an HTTP status", v))
		} else {
			b.errorCode = n
		}
	}
	if v, ok := pod.Annotations[annLatencyMs]; ok {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || !(f > 0) || math.IsInf(f, 0) {
			warn(annLatencyMs, fmt.Errorf("%q is not a positive number", v))
		} else {
			b.medianMs = f
		}
	}
	p99 := 3 * b.medianMs
	if v, ok := pod.Annotations[annLatencyP99Ms]; ok {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || !(f >= b.medianMs) || math.IsInf(f, 0) {
			warn(annLatencyP99Ms, fmt.Errorf("%q is not a number ≥ the median %v", v, b.medianMs))
		} else {
			p99 = f
		}
	}
	b.sigma = math.Log(p99/b.medianMs) / z99
	return b
}

// addEndpoints records the ready endpoints of one EndpointSlice as pods of its Service.
func (s *Sim) addEndpoints(w *world, es *discoveryv1.EndpointSlice, byIP map[string]podKey) {
	svc := es.Labels[discoveryv1.LabelServiceName]
	if svc == "" {
		return
	}
	key := svcKey{es.Namespace, svc}
	if _, ok := w.backends[key]; !ok {
		w.backends[key] = nil
	}
	for _, ep := range es.Endpoints {
		if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
			continue // nil means ready, per the EndpointSlice API
		}
		pk, ok := podKey{}, false
		if ref := ep.TargetRef; ref != nil && ref.Kind == "Pod" {
			ns := ref.Namespace
			if ns == "" {
				ns = es.Namespace
			}
			pk, ok = podKey{ns, ref.Name}, true
		} else {
			for _, addr := range ep.Addresses {
				if pk, ok = byIP[es.Namespace+"/"+addr]; ok {
					break
				}
			}
		}
		if !ok {
			continue
		}
		if _, meshedPod := w.pods[pk]; !meshedPod {
			// Only a pod the cache lacks is read live: one it holds unmeshed
			// (most of the scale benchmark's) would cost a read per endpoint
			// on every rebuild.
			if pod := s.livePodIfUncached(pk); pod != nil && meshed(pod) {
				w.pods[pk] = s.podInfo(pod)
			} else {
				// A ready endpoint we cannot attribute to a meshed pod: no proxy of ours would count the request.
				s.warnOnce("ep/"+key.String()+"/"+pk.name, "skipping endpoint without a meshed pod", "service", key.String(), "pod", pk.name)
				continue
			}
		}
		w.backends[key] = append(w.backends[key], pk)
	}
}

// livePod reads from the API server a pod that an endpoint names and the
// pod cache lacks. After an API server outage client-go's reflectors
// reconnect with a backoff of up to tens of seconds each, so the slices'
// watch can come back long before the pods': the chaos suite saw every
// request of two apps find "no ready endpoint" for 22 s that way, while
// their pods were ready and their slices said so. nil when it cannot be read.
func (s *Sim) livePodIfUncached(pk podKey) *corev1.Pod {
	if s.watch.get(kindPod, pk.ns, pk.name) != nil {
		return nil
	}
	return s.livePod(pk)
}

func (s *Sim) livePod(pk podKey) *corev1.Pod {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	pod, err := s.watch.kube.CoreV1().Pods(pk.ns).Get(ctx, pk.name, metav1.GetOptions{})
	if err != nil {
		return nil
	}
	return pod
}

// parsedSplit is parseSplit, remembered for each version of a TrafficSplit seen by the last rebuild: at 2,000
// Deployments parsing every split on every rebuild was a tenth of the simulator's work, and reading the keys
// that order them from the unstructured object another tenth.
func (s *Sim) parsedSplit(o *unstructured.Unstructured) parsed {
	p, ok := s.splits[o]
	if !ok {
		p.apex, p.split, p.err = parseSplit(o)
		p.uid, p.order = o.GetUID(), orderOf(o)
	}
	s.splitsNext[o] = p
	return p
}

// buildApexes finds every Service that receives traffic and how it is routed.
func (s *Sim) buildApexes() []*apex {
	s.splitsNext = make(map[*unstructured.Unstructured]parsed, len(s.splits))
	defer func() { s.splits, s.splitsNext = s.splitsNext, nil }()
	apexes := make(map[svcKey]*apex, len(s.splits))
	winner := make(map[svcKey]parsed, len(s.splits)) // the oldest TrafficSplit of each apex
	get := func(k svcKey) *apex {
		a := apexes[k]
		if a == nil {
			a = &apex{key: k}
			apexes[k] = a
		}
		return a
	}
	for _, o := range s.watch.list(kindService) {
		svc, ok := o.(*corev1.Service)
		if !ok {
			continue
		}
		if _, ok := svc.Annotations[annRPS]; ok {
			get(svcKey{svc.Namespace, svc.Name})
		}
	}

	// The oldest split of an apex wins; finding it needs no sort of all of them.
	for _, obj := range s.watch.list(kindTrafficSplit) {
		o, ok := obj.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		p := s.parsedSplit(o)
		if p.err != nil {
			s.warnOnce("ts/"+string(o.GetUID())+o.GetResourceVersion(), "skipping TrafficSplit", "name", o.GetNamespace()+"/"+o.GetName(), "err", p.err)
			continue
		}
		k := svcKey{p.order.ns, p.apex}
		if prev, ok := winner[k]; ok {
			older, younger := prev, p
			if p.order.compare(prev.order) < 0 {
				older, younger = p, prev
			}
			s.warnOnce("ts-dup/"+string(younger.uid), "apex already has an older TrafficSplit; ignoring this one", "name", younger.split.name, "using", older.split.name)
			if older.uid != p.uid {
				continue
			}
		}
		winner[k] = p
	}
	for k, p := range winner {
		get(k).split = &p.split
	}

	routes := append(sortedObjects(s.watch.list(kindGatewayRoute)), sortedObjects(s.watch.list(kindPolicyRoute))...)
	sortObjects(routes)
	for _, o := range routes {
		parents, rules, err := parseRoute(o)
		if err != nil {
			s.warnOnce("rt/"+string(o.GetUID())+o.GetResourceVersion(), "skipping HTTPRoute", "name", o.GetNamespace()+"/"+o.GetName(), "err", err)
			continue
		}
		for _, p := range parents {
			a := get(p)
			a.rules = append(a.rules, rules...)
		}
	}

	var out []*apex
	for k, a := range apexes {
		svc, ok := s.watch.get(kindService, k.ns, k.name).(*corev1.Service)
		if !ok {
			// Clients resolve the apex by its Service name: without the Service nobody can call it.
			continue
		}
		if a.split != nil && len(a.rules) > 0 {
			s.warnOnce("mixed/"+k.String(), "apex has a TrafficSplit and HTTPRoutes; the TrafficSplit wins, as its ServiceProfile overrides routes", "service", k.String())
		}
		a.rps = s.cfg.DefaultRPS
		if v, ok := svc.Annotations[annRPS]; ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f < 0 || math.IsNaN(f) || math.IsInf(f, 0) {
				s.warnOnce("rps/"+k.String()+v, "ignoring meshsim/rps", "service", k.String(), "value", v)
			} else {
				a.rps = f
			}
		}
		if v, ok := svc.Annotations[annHeaders]; ok {
			hc, err := parseHeaderClasses(v)
			if err != nil {
				s.warnOnce("hdr/"+k.String()+v, "ignoring meshsim/headers", "service", k.String(), "err", err)
			} else {
				a.headers = hc
			}
		}
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b *apex) int {
		return cmp.Or(cmp.Compare(a.key.ns, b.key.ns), cmp.Compare(a.key.name, b.key.name))
	})
	return out
}

// sortedObjects keeps the unstructured objects of a list, oldest first (ties by namespace/name): the order in
// which Gateway API gives precedence, and a deterministic one.
func sortedObjects(objs []any) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if u, ok := o.(*unstructured.Unstructured); ok {
			out = append(out, u)
		}
	}
	sortObjects(out)
	return out
}

func sortObjects(objs []*unstructured.Unstructured) {
	// Each key is read once: an unstructured object parses its creation timestamp from a string on every read,
	// and comparing in place did that O(n log n) times per rebuild.
	type keyed struct {
		order objectOrder
		obj   *unstructured.Unstructured
	}
	ks := make([]keyed, len(objs))
	for i, o := range objs {
		ks[i] = keyed{orderOf(o), o}
	}
	slices.SortStableFunc(ks, func(a, b keyed) int { return a.order.compare(b.order) })
	for i, k := range ks {
		objs[i] = k.obj
	}
}
