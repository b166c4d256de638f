package kube

import (
	"fmt"
	"maps"
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/canaryd/canaryd/rollout"
)

const fieldManager = "canaryd"

func ownerRef(foo *appsv1.Deployment) metav1.OwnerReference {
	yes := true
	return metav1.OwnerReference{
		APIVersion: "apps/v1", Kind: "Deployment", Name: foo.Name, UID: foo.UID,
		BlockOwnerDeletion: &yes,
	}
}

func managedMeta(foo *appsv1.Deployment, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:            name,
		Namespace:       foo.Namespace,
		Labels:          map[string]string{rollout.LabelManaged: foo.Name},
		OwnerReferences: []metav1.OwnerReference{ownerRef(foo)},
	}
}

// podSelector is foo's selector as a Service selector. A Service selects by
// labels only, so matchExpressions cannot be carried over.
func podSelector(foo *appsv1.Deployment) (map[string]string, error) {
	if foo.Spec.Selector == nil || len(foo.Spec.Selector.MatchLabels) == 0 {
		return nil, fmt.Errorf("spec.selector.matchLabels of %s is empty: canaryd needs label selectors to build its Services", foo.Name)
	}
	if len(foo.Spec.Selector.MatchExpressions) > 0 {
		return nil, fmt.Errorf("spec.selector.matchExpressions of %s cannot be expressed in a Service selector: use matchLabels", foo.Name)
	}
	return maps.Clone(foo.Spec.Selector.MatchLabels), nil
}

// canaryDeployment is foo-canary for foo's current template: the user's pod
// template and labels plus canaryd.io/role=canary, which also extends the
// selector so the two Deployments never adopt each other's pods.
func canaryDeployment(foo *appsv1.Deployment, replicas int32, revision string) *appsv1.Deployment {
	d := &appsv1.Deployment{ObjectMeta: managedMeta(foo, canaryName(foo.Name))}
	d.Annotations = map[string]string{rollout.AnnotationRevision: revision}
	sel := foo.Spec.Selector.DeepCopy()
	if sel.MatchLabels == nil {
		sel.MatchLabels = map[string]string{}
	}
	sel.MatchLabels[rollout.LabelRole] = rollout.RoleCanary
	tpl := foo.Spec.Template.DeepCopy()
	if tpl.Labels == nil {
		tpl.Labels = map[string]string{}
	}
	tpl.Labels[rollout.LabelRole] = rollout.RoleCanary
	history := int32(2)
	d.Spec = appsv1.DeploymentSpec{
		Replicas:             &replicas,
		Selector:             sel,
		Template:             *tpl,
		Strategy:             foo.Spec.Strategy,
		MinReadySeconds:      foo.Spec.MinReadySeconds,
		RevisionHistoryLimit: &history,
	}
	return d
}

// servicePorts copies the apex Service's ports; without an apex they come
// from foo's container ports.
func servicePorts(foo *appsv1.Deployment, apex *corev1.Service) ([]corev1.ServicePort, error) {
	var ports []corev1.ServicePort
	if apex != nil {
		for _, p := range apex.Spec.Ports {
			ports = append(ports, corev1.ServicePort{Name: p.Name, Protocol: p.Protocol, AppProtocol: p.AppProtocol, Port: p.Port, TargetPort: p.TargetPort})
		}
		return ports, nil
	}
	for _, c := range foo.Spec.Template.Spec.Containers {
		for _, p := range c.Ports {
			name := p.Name
			ports = append(ports, corev1.ServicePort{Name: name, Protocol: p.Protocol, Port: p.ContainerPort, TargetPort: intstr.FromInt32(p.ContainerPort)})
		}
	}
	if len(ports) == 0 {
		return nil, fmt.Errorf("service %s does not exist and %s declares no container ports to build it from", foo.Name, foo.Name)
	}
	if len(ports) > 1 {
		for i := range ports {
			if ports[i].Name == "" {
				ports[i].Name = fmt.Sprintf("port-%d", ports[i].Port)
			}
		}
	}
	sort.SliceStable(ports, func(i, j int) bool { return ports[i].Port < ports[j].Port })
	return ports, nil
}

func service(foo *appsv1.Deployment, name string, selector map[string]string, ports []corev1.ServicePort) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: managedMeta(foo, name),
		Spec:       corev1.ServiceSpec{Selector: selector, Ports: ports, Type: corev1.ServiceTypeClusterIP},
	}
}

// samePorts compares what canaryd sets of a port (the API server fills in
// defaults such as the protocol).
func samePorts(a, b []corev1.ServicePort) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.Name != y.Name || x.Port != y.Port || x.TargetPort != y.TargetPort || proto(x.Protocol) != proto(y.Protocol) {
			return false
		}
	}
	return true
}

func proto(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
}
