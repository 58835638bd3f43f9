package reliability

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/sink"
)

// TestTwoEnginesTwoProcesses runs two engines at once, in two processes, on
// one DirStore lake: both poll live, audit, repair, resynthesize and
// compact for two simulated hours, then each heals once more. The heal
// lease must keep them from repairing the same gap twice (at most one
// request may be wasted in all), and the lake must end with every slot the
// source has, each once, right, with derived hours equal to a
// recomputation.
func TestTwoEnginesTwoProcesses(t *testing.T) {
	dir := t.TempDir()
	start, stop := origin, origin.Add(2*time.Hour)
	// The lease is released at the end of every heal; a long TTL keeps it
	// from expiring under a heal that a busy machine slows down.
	const lease = 12 * time.Hour
	var kids []*child
	for i := 0; i < 2; i++ {
		c, err := startChild(dir, start, stop, lease)
		if err != nil {
			t.Fatal(err)
		}
		kids = append(kids, c)
	}
	errs := make(chan error, len(kids))
	for _, c := range kids {
		go func() { errs <- c.wait(3 * time.Minute) }()
	}
	for range kids {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}

	// Every historical request of both engines, slot by slot.
	type use struct {
		engine, request int
	}
	covered := map[slotKey][]use{}
	requests := 0
	for e, c := range kids {
		for i, r := range c.historical() {
			requests++
			for _, k := range r.Keys {
				for s := r.Window.Start; s.Before(r.Window.End); s = s.Add(time.Minute) {
					covered[slotKey{k, s.Unix()}] = append(covered[slotKey{k, s.Unix()}], use{e, i})
				}
			}
		}
	}
	wasted := map[use]bool{} // requests that asked again for a slot already asked for
	var twice []string
	for k, us := range covered {
		if len(us) > 1 {
			for _, u := range us[1:] {
				wasted[u] = true
			}
			twice = append(twice, fmt.Sprintf("%s %s by %v", k.key, k.time().Format("15:04"), us))
		}
	}
	sort.Strings(twice)
	if len(wasted) > 1 {
		t.Errorf("%d requests asked again for slots already requested (at most one may be wasted): %v", len(wasted), twice[:min(10, len(twice))])
	}

	ctx := context.Background()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	lake, err := sink.OpenDir(dir, &sink.Options{Allocator: mem})
	if err != nil {
		t.Fatal(err)
	}
	st := &crashState{dir: dir}
	v := st.check(t, ctx, lake, "after both engines")
	if v == nil {
		return
	}
	missing := 0
	for _, k := range childKeys {
		for s := start; s.Before(stop); s = s.Add(time.Minute) {
			if _, held := v.raw[slotKey{k, s.Unix()}]; held == noData(k, s) {
				missing++
				if missing <= 10 {
					t.Errorf("%s %s held=%v, the source has data=%v", k, s.Format("15:04"), held, !noData(k, s))
				}
			}
		}
	}
	want := recompute(v.raw)
	hours := 0
	for k, w := range want {
		if k.time().Add(time.Hour).After(stop) {
			continue
		}
		hours++
		if got, ok := v.derived[k]; !ok || !sameAgg(got, w) {
			t.Errorf("derived %s %s = %+v (held %v), a recomputation gives %+v", k.key, k.time().Format("15:04"), got, ok, w)
		}
	}
	st.checkLedger(t, v.raw)
	for _, ds := range []*heal.Dataset{ticks(), hourlyDataset()} {
		if _, err := lake.Compact(ctx, ds, heal.Query{}); err != nil {
			t.Fatal(err)
		}
		if err := lake.Inventory(ctx, ds, heal.Query{}, func(p heal.PartitionInfo) error {
			if p.Files != 1 || p.Duplicates() != 0 {
				t.Errorf("%s after compaction: %d files, %d duplicates", p.Partition, p.Files, p.Duplicates())
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	var leases []int
	for _, c := range kids {
		c.mu.Lock()
		leases = append(leases, c.kinds["lease-put"])
		c.mu.Unlock()
	}
	t.Logf("reliability: two-processes: historical-requests=%d (engine 0: %d, engine 1: %d) slots-requested-twice=%d wasted-requests=%d lease-puts=%v rows=%d missing=%d derived-hours-checked=%d",
		requests, len(kids[0].historical()), len(kids[1].historical()), len(twice), len(wasted), leases, len(v.raw), missing, hours)
}
