package kube

import (
	"fmt"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// eventWrites is an Event sink that holds every write until released, and
// records how many were in flight at once, overall and per object. (A fake
// clientset's reactor cannot hold: the fake runs reactors under one lock.)
type eventWrites struct {
	mu        sync.Mutex
	inFlight  map[string]int
	total     int
	maxTotal  int
	maxOneObj int
	messages  map[string][]string // by object, in the order written
	release   chan struct{}
}

func (w *eventWrites) Create(ev *corev1.Event) (*corev1.Event, error) { return w.write(ev) }
func (w *eventWrites) Update(ev *corev1.Event) (*corev1.Event, error) { return w.write(ev) }
func (w *eventWrites) Patch(ev *corev1.Event, _ []byte) (*corev1.Event, error) {
	return w.write(ev)
}

func (w *eventWrites) write(ev *corev1.Event) (*corev1.Event, error) {
	obj := ev.InvolvedObject.Namespace + "/" + ev.InvolvedObject.Name
	w.mu.Lock()
	w.inFlight[obj]++
	w.total++
	w.maxTotal = max(w.maxTotal, w.total)
	w.maxOneObj = max(w.maxOneObj, w.inFlight[obj])
	w.messages[obj] = append(w.messages[obj], ev.Message)
	w.mu.Unlock()
	<-w.release
	w.mu.Lock()
	w.inFlight[obj]--
	w.total--
	w.mu.Unlock()
	return ev, nil
}

func (w *eventWrites) written() (n int, maxTotal, maxOneObj int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, m := range w.messages {
		n += len(m)
	}
	return n, w.maxTotal, w.maxOneObj
}

func TestEventsOfDifferentDeploymentsAreWrittenSideBySideAndOfOneInOrder(t *testing.T) {
	w := &eventWrites{inFlight: map[string]int{}, messages: map[string][]string{}, release: make(chan struct{})}
	rec, stop := newEventRecorder(t.Context(), w, eventWriters)
	defer stop()

	deploy := func(i int) *appsv1.Deployment {
		return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: fmt.Sprintf("web-%d", i), UID: "uid"}}
	}
	const apps, each = 32, 3
	for step := range each {
		for i := range apps {
			rec.Event(deploy(i), corev1.EventTypeNormal, "Advanced", fmt.Sprintf("step %d", step))
		}
	}
	// With every write held, the writers fill up: one per shard that has
	// work. Then let them all through.
	deadline := time.Now().Add(3 * time.Second)
	for {
		_, inFlight, _ := w.written()
		if inFlight >= eventWriters/2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(w.release)
	deadline = time.Now().Add(10 * time.Second)
	for {
		n, _, _ := w.written()
		if n == apps*each || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}

	n, maxTotal, maxOneObj := w.written()
	if n != apps*each {
		t.Fatalf("%d Events written, want %d", n, apps*each)
	}
	if maxTotal < eventWriters/2 || maxTotal > eventWriters {
		t.Errorf("at most %d Event writes at once, want between %d and %d writers' worth", maxTotal, eventWriters/2, eventWriters)
	}
	if maxOneObj != 1 {
		t.Errorf("one Deployment had %d Event writes at once, want 1: its Events must keep their order", maxOneObj)
	}
	for obj, msgs := range w.messages {
		want := []string{"step 0", "step 1", "step 2"}
		if fmt.Sprint(msgs) != fmt.Sprint(want) {
			t.Errorf("%s: Events written as %q, want %q", obj, msgs, want)
		}
	}
}
