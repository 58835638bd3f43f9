package cost

import (
	"testing"
	"time"

	"github.com/selfheal/heal"
)

// CPU is shared by busy time on the wall clock: event durations measured
// on a clock running 1000 times faster count a thousandth.
func TestApportionCPU(t *testing.T) {
	r := &Record{CPU: 4 * time.Second, ClockRate: 1000, Stages: map[heal.Stage]*Usage{
		heal.StageAcquire: {SourceTime: 1000 * time.Second},                        // 1s of wall time
		heal.StageRepair:  {LakeTime: time.Second, DeriveTime: 2000 * time.Second}, // 1s + 2s
		heal.StageAudit:   {},
	}}
	apportionCPU(r)
	if a, p, au := r.Stages[heal.StageAcquire].CPU, r.Stages[heal.StageRepair].CPU, r.Stages[heal.StageAudit].CPU; a != time.Second || p != 3*time.Second || au != 0 {
		t.Errorf("CPU acquire %s (want 1s), repair %s (want 3s), audit %s (want 0)", a, p, au)
	}
	if w := r.Stages[heal.StageRepair].WallBusy; w != 3*time.Second {
		t.Errorf("repair busy %s on the wall clock, want 3s", w)
	}
	// Nothing busy: all to "other".
	r = &Record{CPU: time.Second, Stages: map[heal.Stage]*Usage{heal.StageAudit: {}}}
	apportionCPU(r)
	if r.Stages[StageOther].CPU != time.Second {
		t.Errorf("idle CPU went to %v", r.Stages)
	}
	if got := clockRate(time.Hour, 1800*time.Millisecond); got != 2000 {
		t.Errorf("clockRate = %g, want 2000", got)
	}
}
