package heal_test

import (
	"testing"
	"time"

	"github.com/selfheal/heal"
)

// TestLiveReserve: after a repair backlog of 20 calls under a limit of 10
// calls a minute, a live tick of the 5 keys still goes out at once, because
// repairs left 5 calls of every minute free; with NoLiveReserve the
// repairs fill the minute and the tick waits for the limiter.
func TestLiveReserve(t *testing.T) {
	for _, noReserve := range []bool{false, true} {
		r := newRig(t)
		r.src.limits = heal.Limits{MaxWindow: time.Hour, Rates: []heal.Rate{{Calls: 10, Per: time.Minute}}}
		r.src.drop = func(_ string, t time.Time) bool { return t.Minute() == 17 }
		r.opts.NoLiveReserve = noReserve
		e := r.engine(t)
		w := heal.NewWindow(day.Start, day.Start.Add(4*time.Hour))
		r.live(t, e, w)
		r.clock.Set(w.End.Add(5 * time.Minute))
		rep, err := e.Heal(r.ctx, w)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Calls != 20 || rep.Repaired != 20 {
			t.Fatalf("heal: %d calls, %d repaired; want 20 and 20 (5 keys x 4 hours)", rep.Calls, rep.Repaired)
		}
		before := r.clock.Now()
		if _, err := e.Acquire(r.ctx, before); err != nil {
			t.Fatal(err)
		}
		waited := r.clock.Now().Sub(before)
		if !noReserve && waited != 0 {
			t.Errorf("the live tick after the repairs waited %s for the limiter; want none", waited)
		}
		if noReserve && waited == 0 {
			t.Errorf("with NoLiveReserve the repairs left room for the tick: the test shows nothing")
		}
	}
}
