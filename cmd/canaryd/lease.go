package main

import (
	"context"
	"errors"
	"net/http"
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

// writeFence refuses, on the controller's own API client, every write made
// when the lease as last renewed has less than margin left. The context
// fence above stops the controller within a tick; this closes the tick: a
// leader frozen (SIGSTOP, a long GC pause, a suspended VM) and woken after
// its lease passed to another replica checks the clock right before the
// request leaves, not a ticker that has not fired yet. The elector itself
// uses a separate client, so renewals are never fenced.
type writeFence struct {
	mu     sync.Mutex
	lock   *fencedLock // nil: no election, nothing to fence
	lease  time.Duration
	margin time.Duration
}

var errFenced = errors.New("write refused: this replica's leader lease has lapsed")

func (f *writeFence) arm(l *fencedLock) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lock = l
}

func (f *writeFence) allows(now time.Time) bool {
	f.mu.Lock()
	l := f.lock
	f.mu.Unlock()
	if l == nil {
		return true
	}
	r := l.lastRenewal()
	return !r.IsZero() && now.Before(r.Add(f.lease-f.margin))
}

func (f *writeFence) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		switch req.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
		default:
			if !f.allows(time.Now()) {
				return nil, errFenced
			}
		}
		return rt.RoundTrip(req)
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
