package main

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

type fakeLock struct {
	resourcelock.Interface
	fail bool
}

func (f *fakeLock) Identity() string { return "me" }
func (f *fakeLock) Update(context.Context, resourcelock.LeaderElectionRecord) error {
	if f.fail {
		return errors.New("partitioned")
	}
	return nil
}

func TestTheFenceEndsTheContextBeforeTheLeaseCouldPass(t *testing.T) {
	inner := &fakeLock{}
	l := &fencedLock{Interface: inner}
	lease, margin := 2*time.Second, time.Second // a second of slack for a loaded machine
	if err := l.Update(context.Background(), resourcelock.LeaderElectionRecord{HolderIdentity: "me"}); err != nil {
		t.Fatal(err)
	}
	renewed := l.lastRenewal()
	ctx, cancel := l.fence(context.Background(), lease, margin, 5*time.Millisecond)
	defer cancel()

	// Renewals keep it alive.
	for i := 0; i < 6; i++ {
		time.Sleep(500 * time.Millisecond)
		_ = l.Update(context.Background(), resourcelock.LeaderElectionRecord{HolderIdentity: "me"})
	}
	if ctx.Err() != nil {
		t.Fatal("fenced while renewing")
	}
	// A partition: renewals fail; the context must end before the lease does.
	inner.fail = true
	last := l.lastRenewal()
	if !last.After(renewed) {
		t.Fatal("renewals were not recorded")
	}
	for ctx.Err() == nil {
		_ = l.Update(context.Background(), resourcelock.LeaderElectionRecord{HolderIdentity: "me"})
		time.Sleep(5 * time.Millisecond)
	}
	if ended := time.Now(); !ended.Before(last.Add(lease)) {
		t.Fatalf("fenced %s after the last renewal: the lease (%s) had already expired", ended.Sub(last), lease)
	}
	// A record naming someone else is not our renewal.
	inner.fail = false
	before := l.lastRenewal()
	_ = l.Update(context.Background(), resourcelock.LeaderElectionRecord{HolderIdentity: "other"})
	if !l.lastRenewal().Equal(before) {
		t.Fatal("another holder's record counted as our renewal")
	}
}

func TestTheWriteFenceRefusesWritesOnceTheLeaseLapsed(t *testing.T) {
	sent := 0
	next := roundTripFunc(func(*http.Request) (*http.Response, error) {
		sent++
		return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody}, nil
	})
	l := &fencedLock{Interface: &fakeLock{}}
	f := &writeFence{lease: 15 * time.Second, margin: 2 * time.Second}
	rt := f.wrap(next)
	do := func(method string) error {
		req, _ := http.NewRequest(method, "https://127.0.0.1:6443/apis/apps/v1/namespaces/shop/deployments/foo", nil)
		resp, err := rt.RoundTrip(req)
		if resp != nil {
			resp.Body.Close()
		}
		return err
	}
	if err := do(http.MethodPatch); err != nil {
		t.Fatalf("without an election nothing is fenced: %v", err)
	}
	f.arm(l)
	if err := do(http.MethodPatch); !errors.Is(err, errFenced) {
		t.Fatalf("armed but never renewed: %v, want errFenced", err)
	}
	l.mark(time.Now(), resourcelock.LeaderElectionRecord{HolderIdentity: "me"}, nil)
	if err := do(http.MethodPatch); err != nil {
		t.Fatalf("fresh lease: %v", err)
	}
	// The process was frozen: the last renewal is now 14 s old (of 15).
	l.mark(time.Now().Add(-14*time.Second), resourcelock.LeaderElectionRecord{HolderIdentity: "me"}, nil)
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		if err := do(m); !errors.Is(err, errFenced) {
			t.Errorf("%s with a lapsing lease: %v, want errFenced", m, err)
		}
	}
	if err := do(http.MethodGet); err != nil {
		t.Errorf("reads are not fenced: %v", err)
	}
	if sent != 3 {
		t.Errorf("%d requests reached the server, want 3 (two allowed writes, one read)", sent)
	}
}
