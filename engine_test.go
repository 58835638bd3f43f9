package heal_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/healtest"
	"github.com/selfheal/heal/repair"
	"github.com/selfheal/heal/sink"
)

var (
	day   = heal.Window{Start: time.Date(2024, 3, 4, 14, 0, 0, 0, time.UTC), End: time.Date(2024, 3, 4, 20, 0, 0, 0, time.UTC)}
	after = day.End.Add(5 * time.Minute)
	keys  = []string{"AAPL", "MSFT", "NVDA", "TSLA", "V"}
)

type rig struct {
	ctx   context.Context
	mem   *memory.CheckedAllocator
	lake  *sink.Lake
	src   *synth
	clock *healtest.ManualClock
	al    *healtest.Alarms
	opts  *heal.Options
}

func newRig(t *testing.T) *rig {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	t.Cleanup(func() { mem.AssertSize(t, 0) })
	r := &rig{ctx: context.Background(), mem: mem, src: newSynth(mem), clock: healtest.NewManualClock(day.Start), al: &healtest.Alarms{}}
	var err error
	r.lake, err = sink.OpenDir(t.TempDir(), &sink.Options{Allocator: mem})
	if err != nil {
		t.Fatal(err)
	}
	r.opts = &heal.Options{
		Keys: keys, Clock: r.clock, Allocator: mem, Alarmer: r.al,
		Transformers: []heal.Transformer{hourly{mem}},
		Retry:        heal.RetryPolicy{MaxAttempts: 3},
	}
	return r
}

func (r *rig) engine(t *testing.T) *heal.Engine {
	t.Helper()
	e, err := heal.New(ticks(), r.src, r.lake, r.opts)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// live runs the live path over w, one Acquire per minute.
func (r *rig) live(t *testing.T, e *heal.Engine, w heal.Window) {
	t.Helper()
	for s := w.Start; s.Before(w.End); s = s.Add(time.Minute) {
		r.clock.Set(s.Add(time.Second))
		if _, err := e.Acquire(r.ctx, s); err != nil {
			t.Fatal(err)
		}
	}
}

func gapsOf(rep *heal.AuditReport) map[string][]heal.Window {
	g := map[string][]heal.Window{}
	for _, k := range rep.Keys {
		if len(k.Gaps) > 0 {
			g[k.Key] = k.Gaps
		}
	}
	return g
}

// TestHealEndToEnd drops one random symbol per minute (the glitch), gives the
// source a few minutes it truly has no data for and one key whose history is
// denied, then heals once and checks every promise of the cycle.
func TestHealEndToEnd(t *testing.T) {
	r := newRig(t)
	rng := rand.New(rand.NewSource(42))
	dropped := map[rowKey]bool{}
	for s := day.Start; s.Before(day.End); s = s.Add(time.Minute) {
		dropped[rowKey{keys[rng.Intn(len(keys)-1)], s}] = true // the glitch spares V...
	}
	vGap := heal.Window{Start: day.Start.Add(100 * time.Minute), End: day.Start.Add(104 * time.Minute)}
	for s := vGap.Start; s.Before(vGap.End); s = s.Add(time.Minute) {
		dropped[rowKey{"V", s}] = true // ...but for one gap episode whose history is denied
	}
	r.src.drop = func(k string, s time.Time) bool { return dropped[rowKey{k, s}] }
	noData := 0
	for i := 0; i < 12; i++ {
		k, s := keys[rng.Intn(len(keys)-1)], day.Start.Add(time.Duration(rng.Intn(360))*time.Minute) // V has one episode only
		if r.src.noData[k] == nil {
			r.src.noData[k] = map[time.Time]bool{}
		}
		if !r.src.noData[k][s] {
			noData++
		}
		r.src.noData[k][s] = true
	}
	r.src.broken["V"] = heal.Permanent(errors.New("403 no access to history"))

	e := r.engine(t)
	r.live(t, e, day)
	r.clock.Set(after)

	before, err := e.Audit(r.ctx, day)
	if err != nil {
		t.Fatal(err)
	}
	gaps := gapsOf(before)
	wantCalls := len(repair.Plan(gaps, time.Minute, r.src.Limits()))
	vMissing := 0
	for _, k := range before.Keys {
		if k.Key == "V" {
			vMissing = k.Missing
		}
	}

	rep, err := e.Heal(r.ctx, day)
	if err != nil {
		t.Fatal(err)
	}
	if got := int(r.src.calls.Load()); got != wantCalls || rep.Calls != wantCalls {
		t.Errorf("source calls = %d (report %d), want the planner's minimum %d", got, rep.Calls, wantCalls)
	}
	if rep.Empty != noData {
		t.Errorf("confirmed empty = %d, want %d", rep.Empty, noData)
	}
	if rep.Unrepairable != vMissing {
		t.Errorf("unrepairable = %d, want V's %d missing slots", rep.Unrepairable, vMissing)
	}

	after, err := e.Audit(r.ctx, day)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range after.Keys {
		if k.Key == "V" {
			if k.Missing != vMissing {
				t.Errorf("V missing %d after heal, want %d (history denied)", k.Missing, vMissing)
			}
			continue
		}
		if k.Missing != 0 || k.Completeness() != 1 {
			t.Errorf("%s: %d missing, completeness %.4f after heal; want 0 and 1", k.Key, k.Missing, k.Completeness())
		}
	}

	// zero duplicate (key, time) stored, and the scan holds exactly what the source has
	raw, rows, err := scanAll(r.ctx, r.lake, ticks())
	if err != nil {
		t.Fatal(err)
	}
	if rows != len(raw) {
		t.Errorf("scan returned %d rows for %d distinct (key, time)", rows, len(raw))
	}
	err = r.lake.Inventory(r.ctx, ticks(), heal.Query{}, func(p heal.PartitionInfo) error {
		if p.Duplicates() != 0 || p.Files != 1 {
			t.Errorf("%s: %d duplicates in %d files after heal; want 0 in 1", p.Partition, p.Duplicates(), p.Files)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for k, vals := range raw {
		if vals[2].(float64) != value(k.key, k.t) {
			t.Fatalf("%s %s holds %v, want %v", k.key, k.t, vals[2], value(k.key, k.t))
		}
	}

	// every derived window equals a full recompute from raw
	want := map[rowKey][2]float64{}
	for k, vals := range raw {
		h := rowKey{k.key, k.t.Truncate(time.Hour)}
		w := want[h]
		w[0]++
		w[1] += vals[2].(float64)
		want[h] = w
	}
	derived, _, err := scanAll(r.ctx, r.lake, hourly{}.Output())
	if err != nil {
		t.Fatal(err)
	}
	if len(derived) != len(want) {
		t.Errorf("%d derived windows, want %d", len(derived), len(want))
	}
	for k, w := range want {
		d, ok := derived[k]
		if !ok || float64(d[2].(int64)) != w[0] || fmt.Sprintf("%.3f", d[3].(float64)) != fmt.Sprintf("%.3f", w[1]) {
			t.Errorf("derived %s %s = %v, want n=%v sum=%.3f", k.key, k.t, d, w[0], w[1])
		}
	}

	// exactly one alarm: V's history is denied for its one gap episode
	if n := r.al.Count(false); n != 1 {
		t.Errorf("%d alarms, want 1: %+v", n, r.al.List())
	} else if a := r.al.List()[0]; a.Key != "V" || a.Window.Start.Before(vGap.Start) || a.Window.End.After(vGap.End) || a.Attempts != 1 {
		t.Errorf("alarm %+v, want V within %v after 1 attempt (a permanent error is not retried)", a, vGap)
	}
	if rep.Alarms != r.al.Count(false) {
		t.Errorf("report says %d alarms, alarmer got %d", rep.Alarms, r.al.Count(false))
	}

	// a second cycle has nothing left to do: no calls, no new alarm
	calls := r.src.calls.Load()
	rep2, err := e.Heal(r.ctx, day)
	if err != nil {
		t.Fatal(err)
	}
	if r.src.calls.Load() != calls || rep2.Alarms != 0 || rep2.Repaired != 0 {
		t.Errorf("second heal made %d calls, %d alarms, %d repairs; want none", r.src.calls.Load()-calls, rep2.Alarms, rep2.Repaired)
	}
}

// TestAttemptBudgetAlarmOnceThenResolve: a key whose history keeps failing
// costs exactly the budget, alarms once (even across a restart), is not
// retried until ReprobeAfter, and sends a resolved notice when it heals.
func TestAttemptBudgetAlarmOnceThenResolve(t *testing.T) {
	r := newRig(t)
	r.opts.Keys = []string{"AAPL"}
	r.opts.ReprobeAfter = 2 * time.Hour
	gap := heal.Window{Start: day.Start.Add(10 * time.Minute), End: day.Start.Add(13 * time.Minute)}
	r.src.drop = func(_ string, s time.Time) bool { return gap.Contains(s) }
	r.src.broken["AAPL"] = errFlaky
	e := r.engine(t)
	r.live(t, e, heal.Window{Start: day.Start, End: day.Start.Add(time.Hour)})
	w := heal.Window{Start: day.Start, End: day.Start.Add(time.Hour)}
	r.clock.Set(w.End.Add(time.Minute))

	rep, err := e.Heal(r.ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.src.calls.Load(); got != 3 {
		t.Errorf("%d calls for one gap with a budget of 3", got)
	}
	if rep.Unrepairable != 3 || r.al.Count(false) != 1 {
		t.Fatalf("unrepairable %d, alarms %d; want 3 and 1", rep.Unrepairable, r.al.Count(false))
	}
	a := r.al.List()[0]
	if a.Key != "AAPL" || a.Window != gap || a.Attempts != 3 || a.Stage != heal.StageRepair || a.LastError == "" {
		t.Errorf("alarm = %+v, want AAPL %v after 3 attempts with the last error", a, gap)
	}

	// a new engine on the same lake remembers: no calls, no second alarm
	e2 := r.engine(t)
	if _, err := e2.Heal(r.ctx, w); err != nil {
		t.Fatal(err)
	}
	if r.src.calls.Load() != 3 || r.al.Count(false) != 1 {
		t.Errorf("after restart: %d calls, %d alarms; want 3 and 1", r.src.calls.Load(), r.al.Count(false))
	}

	// the source recovers; after ReprobeAfter the gap is tried once more and heals
	r.src.mu.Lock()
	delete(r.src.broken, "AAPL")
	r.src.mu.Unlock()
	r.clock.Set(r.clock.Now().Add(3 * time.Hour))
	rep, err = e2.Heal(r.ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Repaired != 3 || rep.Resolved != 1 || r.al.Count(true) != 1 {
		t.Errorf("after recovery: repaired %d, resolved %d, notices %d; want 3, 1, 1", rep.Repaired, rep.Resolved, r.al.Count(true))
	}
	st, err := e2.Status(r.ctx, w, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 1 || st[0].Expected != 60 || st[0].Present != 60 || st[0].Repaired != 3 || st[0].Unrepairable != 0 {
		t.Errorf("status = %+v, want 60 expected, 60 present, 3 repaired", st)
	}
	if _, err := e2.Heal(r.ctx, w); err != nil {
		t.Fatal(err)
	}
	if r.al.Count(true) != 1 || r.al.Count(false) != 1 {
		t.Errorf("a healed episode alarmed again: %d alarms, %d notices", r.al.Count(false), r.al.Count(true))
	}
}

// TestRestartMidRepair stops an engine in the middle of a repair and starts a
// new one on the same lake: it converges, refetching only what the first
// did not finish.
func TestRestartMidRepair(t *testing.T) {
	r := newRig(t)
	r.opts.Concurrency = 1
	r.opts.Keys = []string{"A", "B", "C"}
	hour := heal.Window{Start: day.Start, End: day.Start.Add(time.Hour)}
	r.src.drop = func(_ string, s time.Time) bool { return s.Minute()%7 == 3 }
	e := r.engine(t)
	r.live(t, e, hour)
	r.clock.Set(hour.End.Add(time.Minute))

	r.src.block["B"] = make(chan struct{})
	ctx, cancel := context.WithCancel(r.ctx)
	done := make(chan error, 1)
	go func() { _, err := e.Heal(ctx, hour); done <- err }()
	for len(r.src.requests()) < 2 { // A finished, B is in flight
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted Heal = %v, want context.Canceled", err)
	}
	first := r.src.requests()

	delete(r.src.block, "B")
	e2 := r.engine(t)
	rep, err := e2.Heal(r.ctx, hour)
	if err != nil {
		t.Fatal(err)
	}
	second := r.src.requests()[len(first):]
	var keysSecond []string
	for _, q := range second {
		keysSecond = append(keysSecond, q.Keys...)
	}
	if fmt.Sprint(keysSecond) != "[B C]" {
		t.Errorf("the restarted engine fetched %v; want only the interrupted B and the unstarted C", keysSecond)
	}
	a, err := e2.Audit(r.ctx, hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range a.Keys {
		if k.Missing != 0 {
			t.Errorf("%s still misses %d slots", k.Key, k.Missing)
		}
	}
	if rep.Resynthesized == 0 {
		t.Error("no derived window recomputed after the repair")
	}
	raw, rows, err := scanAll(r.ctx, r.lake, ticks())
	if err != nil {
		t.Fatal(err)
	}
	if rows != len(raw) || rows != 180 {
		t.Errorf("%d rows, %d distinct; want 180 of each", rows, len(raw))
	}
}

// TestAlignAndRefuse: live times off the grain are floored; a source that
// sends a record of the wrong schema is refused with an error naming the
// field, and nothing is stored.
func TestAlignAndRefuse(t *testing.T) {
	ds := ticks()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	src := newSynth(mem)
	rec, err := src.Fetch(context.Background(), heal.Request{Keys: []string{"AAPL"}, Window: heal.Window{Start: day.Start, End: day.Start.Add(time.Minute)}, Live: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Release()
	if err := ds.Check(rec); err == nil {
		t.Fatal("Check accepted a time off the grain")
	} else {
		var ie *heal.InputError
		if !errors.As(err, &ie) || ie.Field != "ts" || ie.Row != 0 {
			t.Errorf("Check error = %v, want an InputError on field ts row 0", err)
		}
	}
	al, err := ds.Align(mem, rec)
	if err != nil {
		t.Fatal(err)
	}
	defer al.Release()
	if err := ds.Check(al); err != nil {
		t.Errorf("aligned record refused: %v", err)
	}
	other := hourly{mem}.Output()
	if err := ds.CheckSchema(other.Schema); err == nil {
		t.Error("CheckSchema accepted another dataset's schema")
	} else if ie := new(heal.InputError); !errors.As(err, &ie) || ie.Field != "ts" || !errors.Is(err, heal.ErrSchemaMismatch) {
		t.Errorf("CheckSchema error = %v, want ErrSchemaMismatch naming ts", err)
	}
}

// TestRun drives the continuous loop on an accelerated clock: ticks land
// live data, the periodic audit repairs the glitch, cancel stops it.
func TestRun(t *testing.T) {
	r := newRig(t)
	start := day.Start.Add(-30 * time.Second)
	clock := heal.NewScaledClock(start, 1200) // a minute every 50ms
	r.opts.Clock = clock
	r.opts.AuditEvery = 30 * time.Minute
	r.opts.Settle = 2 * time.Minute
	r.opts.Lookback = 2 * time.Hour
	r.src.drop = func(k string, s time.Time) bool { return keys[s.Minute()%len(keys)] == k }
	e := r.engine(t)
	ctx, cancel := context.WithCancel(r.ctx)
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	// Wait, in real time and however loaded the machine is, for a periodic
	// audit to have healed the first half hour; the clock runs on.
	first := heal.Window{Start: day.Start, End: day.Start.Add(30 * time.Minute)}
	deadline := time.Now().Add(2 * time.Minute)
	for healed := false; !healed; {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("no periodic audit covered %v within 2 minutes", first)
		}
		time.Sleep(10 * time.Millisecond)
		audits, err := e.Audits(r.ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range audits {
			healed = healed || (!a.Window.End.Before(first.End) && !a.Window.Start.After(first.Start) && a.Repaired > 0)
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	st := e.Stats()
	if st.LiveCalls == 0 || st.Repaired == 0 || st.RepairCalls == 0 {
		t.Errorf("stats: %+v; want live polls and repairs", st)
	}
	a, err := e.Audit(r.ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range a.Keys {
		if k.Missing != 0 {
			t.Errorf("%s misses %d slots of the first half hour after its periodic audit: %v", k.Key, k.Missing, k.Gaps)
		}
	}
}

func TestNewValidates(t *testing.T) {
	mem := memory.NewGoAllocator()
	lake := sink.NewMemLake(nil)
	src := newSynth(mem)
	bad := ticks()
	bad.Key = "nope"
	cases := []struct {
		name string
		ds   *heal.Dataset
		src  heal.Source
		lake heal.Lake
		opts *heal.Options
	}{
		{"bad key column", bad, src, lake, nil},
		{"nil lake", ticks(), src, nil, nil},
		{"invalid key", ticks(), src, lake, &heal.Options{Keys: []string{"ok", ""}}},
		{"transformer into its own input", ticks(), src, lake, &heal.Options{Transformers: []heal.Transformer{selfT{}}}},
	}
	for _, tc := range cases {
		if _, err := heal.New(tc.ds, tc.src, tc.lake, tc.opts); err == nil {
			t.Errorf("%s: New accepted it", tc.name)
		}
	}
	if _, err := heal.New(ticks(), src, lake, nil); err != nil {
		t.Errorf("New with nil options: %v", err)
	}
}

type selfT struct{ hourly }

func (selfT) Output() *heal.Dataset { return ticks() }

// TestDescriptorsAndReadOnlyEngine: a heal records its datasets in the
// lake, and an engine with no Source rebuilt from them audits the same
// lake (what the heal command does) but refuses to repair.
func TestDescriptorsAndReadOnlyEngine(t *testing.T) {
	r := newRig(t)
	r.src.drop = func(_ string, s time.Time) bool { return s.Minute()%30 == 9 }
	e := r.engine(t)
	hour := heal.Window{Start: day.Start, End: day.Start.Add(time.Hour)}
	r.live(t, e, hour)
	r.clock.Set(hour.End.Add(time.Hour))
	if _, err := e.Heal(r.ctx, heal.Window{Start: hour.Start, End: hour.End.Add(-30 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	ds, err := heal.Descriptors(r.ctx, r.lake)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 2 || ds[0].Name != "hourly" || ds[0].DerivedFrom != "ticks" || ds[1].Name != "ticks" || fmt.Sprint(ds[1].Derived) != "[hourly]" {
		t.Fatalf("descriptors = %+v", ds)
	}
	got, err := ds[1].Dataset()
	if err != nil {
		t.Fatal(err)
	}
	if !got.Schema.Equal(ticks().Schema) || got.Grain != time.Minute || got.Key != "symbol" {
		t.Errorf("rebuilt dataset %+v differs from the original", got)
	}
	ro, err := heal.New(got, nil, r.lake, &heal.Options{Keys: ds[1].Keys, Clock: r.clock})
	if err != nil {
		t.Fatal(err)
	}
	a, err := ro.Audit(r.ctx, hour)
	if err != nil {
		t.Fatal(err)
	}
	missing := 0
	for _, k := range a.Keys {
		missing += k.Missing
	}
	if missing != len(keys) { // :09 was healed, :39 is outside the healed half hour
		t.Errorf("read-only audit finds %d missing, want %d (the minute :39 not healed yet)", missing, len(keys))
	}
	if _, err := ro.Heal(r.ctx, hour); err == nil {
		t.Error("an engine without a Source healed")
	}
}

// TestTwoEnginesOneLake: while one engine holds the heal lease, a second
// engine on the same lake skips its cycle instead of repairing the same
// gaps; once the first is done, the second finds nothing left to do.
func TestTwoEnginesOneLake(t *testing.T) {
	r := newRig(t)
	r.opts.Keys = []string{"A"}
	hour := heal.Window{Start: day.Start, End: day.Start.Add(time.Hour)}
	r.src.drop = func(_ string, s time.Time) bool { return s.Minute()%10 == 0 }
	e1, e2 := r.engine(t), r.engine(t)
	r.live(t, e1, hour)
	r.clock.Set(hour.End.Add(time.Minute))

	r.src.block["A"] = make(chan struct{})
	done := make(chan *heal.CycleReport, 1)
	go func() {
		rep, err := e1.Heal(r.ctx, hour)
		if err != nil {
			t.Error(err)
		}
		done <- rep
	}()
	for len(r.src.requests()) < 1 { // e1 holds the lease and is repairing
		time.Sleep(time.Millisecond)
	}
	rep2, err := e2.Heal(r.ctx, hour)
	if err != nil {
		t.Fatal(err)
	}
	if rep2.LeaseHeldBy == "" || rep2.Calls != 0 {
		t.Errorf("second engine: lease holder %q, %d calls; want it to skip while the first heals", rep2.LeaseHeldBy, rep2.Calls)
	}
	close(r.src.block["A"])
	rep1 := <-done
	if rep1.Repaired != 6 {
		t.Errorf("first engine repaired %d, want 6", rep1.Repaired)
	}
	rep2, err = e2.Heal(r.ctx, hour)
	if err != nil {
		t.Fatal(err)
	}
	if rep2.LeaseHeldBy != "" || rep2.Calls != 0 || rep2.Missing != 0 {
		t.Errorf("second engine after release: %+v; want a cycle with nothing to do", rep2)
	}
	if n := len(r.src.requests()); n != 1 {
		t.Errorf("%d historical requests in all; want 1", n)
	}
}
