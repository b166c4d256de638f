package main

import (
	"context"
	"sync"
	"time"

	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// fencedLock records when this process last wrote the Lease successfully.
// client-go's elector notices a lost lease only when a renewal gives up
// (RenewDeadline) and then spends up to another RenewDeadline releasing it,
// so on its own a partitioned leader may go on writing past the moment the
// others may take over: last renewal + LeaseDuration. The fence ends the
// controller's context before that moment instead.
type fencedLock struct {
	resourcelock.Interface
	mu      sync.Mutex
	renewed time.Time
}

func (l *fencedLock) Create(ctx context.Context, ler resourcelock.LeaderElectionRecord) error {
	start := time.Now()
	err := l.Interface.Create(ctx, ler)
	l.mark(start, ler, err)
	return err
}

func (l *fencedLock) Update(ctx context.Context, ler resourcelock.LeaderElectionRecord) error {
	start := time.Now()
	err := l.Interface.Update(ctx, ler)
	l.mark(start, ler, err)
	return err
}

// mark counts a renewal from when it was sent, not when it was answered:
// the others start their wait from when they see the record change, which
// is no earlier than that.
func (l *fencedLock) mark(start time.Time, ler resourcelock.LeaderElectionRecord, err error) {
	if err != nil || ler.HolderIdentity != l.Identity() {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.renewed = start
}

func (l *fencedLock) lastRenewal() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.renewed
}

// fence returns a context that ends when the lease, as last renewed, has
// less than margin left; it is checked every tick.
func (l *fencedLock) fence(ctx context.Context, lease, margin, tick time.Duration) (context.Context, context.CancelFunc) {
	fenced, cancel := context.WithCancel(ctx)
	go func() {
		t := time.NewTicker(tick)
		defer t.Stop()
		for {
			select {
			case <-fenced.Done():
				return
			case now := <-t.C:
				if r := l.lastRenewal(); !r.IsZero() && now.After(r.Add(lease-margin)) {
					cancel()
					return
				}
			}
		}
	}()
	return fenced, cancel
}
