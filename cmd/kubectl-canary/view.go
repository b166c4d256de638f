package main

import (
	"context"
	"fmt"
	"sort"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/canaryd/canaryd/kube"
	"github.com/canaryd/canaryd/rollout"
)

// view is what list and status show of one Deployment: canaryd's status
// and configuration as read from its annotations, and what the cluster says.
type view struct {
	Namespace, Name string
	Created         time.Time
	Enabled         bool // carries canaryd.io/enabled=true

	Status    rollout.Status
	StatusErr error // the annotation is not canaryd's JSON
	Adopted   bool  // canaryd has written a status
	Spec      rollout.Spec
	SpecErr   error

	// Template is canaryd's revision of the Deployment's template now: the
	// revision a rollout, once detected, is about.
	Template string
	Replicas int32
	Ready    int32 // the Deployment's available replicas
	// Canary is foo-canary's ready/desired replicas; nil when absent.
	Canary *[2]int32
	// Pending are command annotations canaryd has not carried out yet.
	Pending []rollout.Command

	Events []event
}

// event is one Event on the Deployment, oldest first.
type event struct {
	Last    time.Time
	Warning bool
	Reason  string
	Message string
	Count   int32
}

var allCommands = []rollout.Command{rollout.CmdPromote, rollout.CmdAbort, rollout.CmdRetry,
	rollout.CmdPause, rollout.CmdResume, rollout.CmdSkipAnalysis}

// viewOf reads a Deployment; it never fails, it records what it could not read.
func viewOf(d *appsv1.Deployment) view {
	v := view{
		Namespace: d.Namespace, Name: d.Name, Created: d.CreationTimestamp.Time,
		Enabled:  d.Labels[rollout.LabelEnabled] == "true",
		Template: kube.RevisionOf(&d.Spec.Template),
		Replicas: 1,
		Ready:    d.Status.AvailableReplicas,
	}
	if d.Spec.Replicas != nil {
		v.Replicas = *d.Spec.Replicas
	}
	raw, adopted := d.Annotations[rollout.AnnotationStatus]
	v.Adopted = adopted && raw != ""
	v.Status, v.StatusErr = rollout.ParseStatus(raw)
	v.Spec, v.SpecErr = rollout.ParseSpec(d.Annotations, rollout.DefaultSpec())
	// The status carries the steps and interval canaryd really uses (its
	// --default-* flags may differ from DESIGN's defaults the CLI knows).
	if len(v.Status.Steps) > 0 {
		v.Spec.Steps = v.Status.Steps
	}
	if d, err := time.ParseDuration(v.Status.Interval); err == nil {
		v.Spec.Interval = d
	}
	for _, c := range allCommands {
		if _, ok := d.Annotations[c.Key()]; ok {
			v.Pending = append(v.Pending, c)
		}
	}
	return v
}

// notFound turns a missing Deployment into an error that says where we looked.
func notFound(err error, ns, name string) error {
	if apierrors.IsNotFound(err) {
		return &exitError{code: exitUnknown, err: fmt.Errorf("deployment %s not found in namespace %s: %w", name, ns, err)}
	}
	return &exitError{code: exitUnknown, err: fmt.Errorf("reading deployment %s/%s: %w", ns, name, err)}
}

// load reads one Deployment with its canary and events.
func (a *app) load(ctx context.Context, ns, name string, events int) (*appsv1.Deployment, view, error) {
	d, err := a.client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, view{}, notFound(err, ns, name)
	}
	v := viewOf(d)
	if c, err := a.client.AppsV1().Deployments(ns).Get(ctx, name+"-canary", metav1.GetOptions{}); err == nil &&
		c.Labels[rollout.LabelManaged] == name {
		want := int32(1)
		if c.Spec.Replicas != nil {
			want = *c.Spec.Replicas
		}
		v.Canary = &[2]int32{c.Status.ReadyReplicas, want}
	}
	if events > 0 {
		if v.Events, err = a.events(ctx, d, events); err != nil {
			return nil, view{}, err
		}
	}
	return d, v, nil
}

// events returns the last n Events on the Deployment, oldest first.
func (a *app) events(ctx context.Context, d *appsv1.Deployment, n int) ([]event, error) {
	sel := fields.Set{"involvedObject.name": d.Name, "involvedObject.kind": "Deployment"}.AsSelector().String()
	list, err := a.client.CoreV1().Events(d.Namespace).List(ctx, metav1.ListOptions{FieldSelector: sel})
	if err != nil {
		return nil, fmt.Errorf("listing events of %s/%s: %w", d.Namespace, d.Name, err)
	}
	var out []event
	for _, e := range list.Items {
		if e.InvolvedObject.UID != "" && e.InvolvedObject.UID != d.UID {
			continue // an earlier Deployment of the same name
		}
		out = append(out, event{Last: eventTime(e), Warning: e.Type == corev1.EventTypeWarning,
			Reason: e.Reason, Message: e.Message, Count: e.Count})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Last.Before(out[j].Last) })
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return out, nil
}

func eventTime(e corev1.Event) time.Time {
	switch {
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case e.Series != nil:
		return e.Series.LastObservedTime.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	}
	return e.CreationTimestamp.Time
}
