package main

import (
	"context"
	"errors"
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
