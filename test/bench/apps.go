package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/canaryd/canaryd/rollout"
)

// App is one opted-in Deployment with its apex Service.
type App struct {
	Namespace, Name string
	Replicas        int32
	// Annotations configure canaryd for this Deployment (canaryd.io/*).
	Annotations map[string]string
	// Behaviour is the pods' meshsim annotations (error rate, latency);
	// Unmeshed pods get linkerd.io/inject: disabled, so the simulator keeps
	// no proxy for them and Prometheus scrapes nothing of theirs.
	Behaviour map[string]string
	Unmeshed  bool
	// RPS is the apex's simulated request rate (meshsim/rps); 0 sends none.
	RPS float64
}

// Key is namespace/name, as canaryd's workqueue and the Recorder name it.
func (a App) Key() string { return a.Namespace + "/" + a.Name }

// Create makes the apex Service and the Deployment. An existing one is left
// alone (a run resumed on a cluster that has it), but an apex without its
// traffic annotation gets it.
func (a App) Create(ctx context.Context, c kubernetes.Interface) error {
	labels := map[string]string{"app": a.Name}
	ann := map[string]string{}
	for k, v := range a.Behaviour {
		ann[k] = v
	}
	if a.Unmeshed {
		ann["linkerd.io/inject"] = "disabled"
	}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: a.Name, Namespace: a.Namespace, Labels: map[string]string{rollout.LabelEnabled: "true"},
			Annotations: a.Annotations},
		Spec: appsv1.DeploymentSpec{
			Replicas: &a.Replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: ann},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "app", Image: "example.com/" + a.Name + ":1",
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
				}}},
			},
		},
	}
	// The Service goes first: canaryd creates a missing apex itself as soon
	// as it adopts the Deployment, and then ours would exist already,
	// without its traffic annotation.
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: a.Name, Namespace: a.Namespace},
		Spec:       corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}},
	}
	if a.RPS > 0 {
		svc.Annotations = map[string]string{"meshsim/rps": fmt.Sprint(a.RPS)}
	}
	_, err := c.CoreV1().Services(a.Namespace).Create(ctx, svc, metav1.CreateOptions{})
	switch {
	case apierrors.IsAlreadyExists(err) && a.RPS > 0:
		if err := a.SetRPS(ctx, c, a.RPS); err != nil {
			return err
		}
	case err != nil && !apierrors.IsAlreadyExists(err):
		return fmt.Errorf("creating Service %s: %w", a.Key(), err)
	}
	if _, err := c.AppsV1().Deployments(a.Namespace).Create(ctx, d, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating Deployment %s: %w", a.Key(), err)
	}
	return nil
}

// Deploy changes the image and the pods' behaviour: a new revision.
func (a App) Deploy(ctx context.Context, c kubernetes.Interface, image string, behaviour map[string]string) error {
	ann := map[string]any{}
	for k, v := range behaviour {
		ann[k] = v
	}
	patch := map[string]any{"spec": map[string]any{"template": map[string]any{
		"metadata": map[string]any{"annotations": ann},
		"spec":     map[string]any{"containers": []any{map[string]any{"name": "app", "image": image}}},
	}}}
	b, err := json.Marshal(patch)
	if err != nil {
		return fmt.Errorf("encoding the patch of %s: %w", a.Key(), err)
	}
	if _, err := c.AppsV1().Deployments(a.Namespace).Patch(ctx, a.Name, types.StrategicMergePatchType, b, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("deploying %s to %s: %w", image, a.Key(), err)
	}
	return nil
}

// SetRPS changes the apex's simulated request rate.
func (a App) SetRPS(ctx context.Context, c kubernetes.Interface, rps float64) error {
	b, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{"meshsim/rps": fmt.Sprint(rps)}}})
	if _, err := c.CoreV1().Services(a.Namespace).Patch(ctx, a.Name, types.MergePatchType, b, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("setting the traffic of %s: %w", a.Key(), err)
	}
	return nil
}

// EnsureNamespace creates a namespace if it does not exist.
func EnsureNamespace(ctx context.Context, c kubernetes.Interface, name string) error {
	_, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", name, err)
	}
	return nil
}

// parallel runs f on every item with n workers and returns every error.
func parallel[T any](items []T, n int, f func(T) error) error {
	ch := make(chan T)
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range ch {
				if err := f(it); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	for _, it := range items {
		ch <- it
	}
	close(ch)
	wg.Wait()
	if len(errs) > 3 {
		errs = append(errs[:3], fmt.Errorf("and %d more errors", len(errs)-3))
	}
	return errors.Join(errs...)
}
