package rollout

import "fmt"

func (d *decider) beginPromotion(why string) {
	d.st.Phase, d.st.Stage, d.st.HeldSince = PhasePromoting, StageScaleCanary, nil
	d.event("Promoting", "promoting revision %s: %s", d.st.Revision, why)
}

func (d *decider) beginRollBack(why string, failed bool) {
	d.st.Phase, d.st.Stage, d.st.HeldSince = PhaseRollingBack, "", nil
	if failed {
		d.st.FailedRevision = d.st.Revision
	}
	d.st.Message = why
	d.warn("RollingBack", "rolling back revision %s: %s", d.st.Revision, why)
}

// promote walks the promotion stages. Each waits until the cluster shows the
// previous one done, so no backend ever has weight without ready pods:
//
//	ScaleCanary   foo-canary to foo's replica count R; wait for R ready.
//	ShiftCanary   1000m to the canary; wait until the split shows it.
//	RollStable    unpause foo: the Deployment controller rolls it to the new
//	              revision while it has no traffic; wait until complete.
//	ReturnStable  foo-stable selects the new ReplicaSet; once its endpoints
//	              are ready, 1000m back to stable; then Succeeded, and
//	              foo-canary goes to 0 and foo is paused again.
func (d *decider) promote() {
	o := d.o
	r := max(o.Replicas, 1)
	switch d.st.Stage {
	case StageScaleCanary, StageShiftCanary:
		if o.Revision != d.st.Revision {
			// foo is still paused at the old stable: starting over is safe.
			d.supersede()
			return
		}
	case StageRollStable, StageReturnStable:
		if o.Revision != d.st.Revision {
			msg := fmt.Sprintf("the Deployment changed to %s while being promoted to %s: holding with all traffic on the canary; revert the change to finish", o.Revision, d.st.Revision)
			if d.prev.Message != msg {
				d.warn("ChangedDuringPromotion", "%s", msg)
			}
			d.st.Message = msg
			return
		}
	}
	switch d.st.Stage {
	case StageScaleCanary:
		c := o.Canary
		if c != nil && c.Revision == d.st.Revision && c.Current && c.Ready >= r && o.CanaryEndpoints >= int(r) {
			d.st.Stage, d.st.Weight = StageShiftCanary, 1000
			return
		}
		ready := int32(0)
		if c != nil && c.Revision == d.st.Revision {
			ready = c.Ready
		}
		d.st.Message = fmt.Sprintf("promotion: scaling the canary to %d replicas (%d ready)", r, ready)
	case StageShiftCanary:
		if o.Weight != nil && *o.Weight == 1000 {
			d.st.Stage = StageRollStable
			d.event("RollingStable", "all traffic on the canary; %s rolls to revision %s", o.Name, d.st.Revision)
			return
		}
		d.st.Message = "promotion: shifting all traffic to the canary"
	case StageRollStable:
		if rs := d.completeReplicaSet(d.st.Revision); rs != nil {
			d.st.Stage, d.st.StableHash, d.st.StableRevision = StageReturnStable, rs.Hash, d.st.Revision
			return
		}
		d.st.Message = fmt.Sprintf("promotion: %s rolling to revision %s (%d/%d updated, %d available)",
			o.Name, d.st.Revision, o.Rollout.Updated, r, o.Rollout.Available)
	case StageReturnStable:
		if o.Weight != nil && *o.Weight == 0 {
			d.st.Phase, d.st.Stage, d.st.Step, d.st.Weight = PhaseSucceeded, "", 0, 0
			d.event("Promoted", "revision %s is stable; canary scaled to 0", d.st.Revision)
			return
		}
		d.st.Message = fmt.Sprintf("promotion: returning traffic to %s-stable", o.Name)
	default:
		d.warn("InvalidStatus", "unknown promotion stage %q; restarting the promotion", d.st.Stage)
		d.st.Stage = StageScaleCanary
	}
}

// stableReturnable: foo-stable selects the new ReplicaSet and all of its
// replicas are ready behind it.
func (d *decider) stableReturnable() bool {
	return d.o.StableServiceHash == d.st.StableHash && d.o.StableEndpoints >= int(max(d.o.Replicas, 1))
}

// rollBack shifts all traffic to stable; once the split shows it, the
// rollout rests (Failed for a failed revision) and the canary goes to 0.
func (d *decider) rollBack() {
	o := d.o
	why := d.st.Message // set by beginRollBack when the roll-back began in this decision
	if why == "" {
		why = d.prev.Message
	}
	if o.Weight != nil && *o.Weight == 0 {
		d.st.Phase, d.st.Stage, d.st.Step, d.st.Weight, d.st.HeldSince = PhaseIdle, "", 0, 0, nil
		if d.st.FailedRevision == d.st.Revision {
			d.warn("RolledBack", "revision %s rolled back: %s", d.st.Revision, why)
		} else {
			d.event("RolledBack", "revision %s withdrawn: %s", d.st.Revision, why)
		}
		d.rest()
		return
	}
	d.st.Message = why
	if d.st.Message == "" {
		d.st.Message = "rolling back: shifting all traffic to stable"
	}
}
