package heal_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/healtest"
)

// slowSource makes every historical fetch take step of the clock, and
// calls onCall (with the fetch's number) before it answers.
type slowSource struct {
	heal.Source
	clock  *healtest.ManualClock
	step   time.Duration
	n      atomic.Int64
	onCall func(n int)
}

func (s *slowSource) Fetch(ctx context.Context, req heal.Request) (arrow.Record, error) {
	if !req.Live {
		n := s.n.Add(1)
		s.clock.Add(s.step)
		if s.onCall != nil {
			s.onCall(int(n))
		}
	}
	return s.Source.Fetch(ctx, req)
}

// leaseRig is a lake with 20 one-minute holes (5 keys x 4 hours) and its
// window; second heals it with a fresh engine with a 1-minute lease.
func leaseRig(t *testing.T) (*rig, heal.Window) {
	r := newRig(t)
	r.src.drop = func(_ string, t time.Time) bool { return t.Minute() == 17 }
	w := heal.NewWindow(day.Start, day.Start.Add(4*time.Hour))
	r.live(t, r.engine(t), w)
	r.clock.Set(w.End.Add(5 * time.Minute))
	return r, w
}

func (r *rig) second(w heal.Window) (*heal.CycleReport, error) {
	e2, err := heal.New(ticks(), r.src, r.lake, &heal.Options{Keys: keys, Clock: r.clock, Allocator: r.mem, LeaseTTL: time.Minute})
	if err != nil {
		return nil, err
	}
	return e2.Heal(context.Background(), w)
}

// TestLeaseRenewedByLongHeal: a cycle that runs ten times its LeaseTTL
// keeps the lease, renewing it after each repair job, so a second engine
// that tries midway finds it held and does nothing.
func TestLeaseRenewedByLongHeal(t *testing.T) {
	r, w := leaseRig(t)

	var second *heal.CycleReport
	var secondErr error
	slow := &slowSource{Source: r.src, clock: r.clock, step: 30 * time.Second}
	slow.onCall = func(n int) {
		if n == 10 { // 5 minutes in: five times the TTL
			second, secondErr = r.second(w)
		}
	}
	opts := *r.opts
	opts.LeaseTTL, opts.Concurrency = time.Minute, 1
	e1, err := heal.New(ticks(), slow, r.lake, &opts)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := e1.Heal(r.ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Repaired != 20 || rep.Calls != 20 {
		t.Fatalf("the long cycle repaired %d slots in %d calls, want 20 in 20", rep.Repaired, rep.Calls)
	}
	if secondErr != nil || second == nil || second.LeaseHeldBy == "" || second.Calls != 0 {
		t.Fatalf("the second engine, 5 minutes into a cycle with a 1-minute lease: %+v, %v; want it to find the lease held", second, secondErr)
	}
}

// TestLeaseLost: when one repair takes longer than the lease, another
// engine takes the lease and heals; the first stops at its next checkpoint
// with ErrLeaseLost, and the lake ends complete.
func TestLeaseLost(t *testing.T) {
	r, w := leaseRig(t)

	var second *heal.CycleReport
	var secondErr error
	slow := &slowSource{Source: r.src, clock: r.clock, step: 10 * time.Second}
	slow.onCall = func(n int) {
		if n == 3 { // this fetch hangs past the lease's expiry
			r.clock.Add(2 * time.Minute)
			second, secondErr = r.second(w)
		}
	}
	opts := *r.opts
	opts.LeaseTTL, opts.Concurrency = time.Minute, 1
	e1, err := heal.New(ticks(), slow, r.lake, &opts)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := e1.Heal(r.ctx, w)
	if !errors.Is(err, heal.ErrLeaseLost) {
		t.Fatalf("the first engine after losing its lease: %v (report %+v); want ErrLeaseLost", err, rep)
	}
	if secondErr != nil || second == nil || second.LeaseHeldBy != "" || second.Repaired == 0 {
		t.Fatalf("the second engine, after the lease expired: %+v, %v; want it to take the lease and repair", second, secondErr)
	}
	if n := slow.n.Load(); n > 4 {
		t.Fatalf("the first engine made %d fetches; want it to stop at the checkpoint after the 3rd", n)
	}
	audit, err := r.engine(t).Audit(r.ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	if g := gapsOf(audit); len(g) != 0 {
		t.Fatalf("gaps left: %v", g)
	}
}
