package repair_test

import (
	"sort"
	"testing"
	"time"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/repair"
)

// dayDivisors are the grains a heal.Dataset allows: those dividing 24h.
var dayDivisors = func() []time.Duration {
	var out []time.Duration
	for s := 1; s <= 86400; s++ {
		if 86400%s == 0 {
			out = append(out, time.Duration(s)*time.Second)
		}
	}
	return out
}()

// FuzzPlan checks repair.Plan on arbitrary gaps (unaligned, overlapping,
// empty), grains (those a Dataset allows: dividing 24h) and limits: every missing slot of a key is covered by a
// request carrying the key; no request is longer than MaxWindow (or one
// grain, when MaxWindow is shorter) or carries more than MaxKeys keys, or
// a key twice; no (key, slot) is requested twice; each request starts and
// ends on a missing slot of each of its keys; requests are ordered by
// window. Seed corpora are in testdata/fuzz; CI runs the target briefly
// (scripts/fuzz).
func FuzzPlan(f *testing.F) {
	f.Add([]byte{0, 3, 0, 1, 0, 9, 0, 1, 1, 5, 0, 1, 0, 200, 0, 4}, uint32(60), uint32(3600), int8(1))
	f.Add([]byte{0, 0, 0, 0, 1, 0, 0, 0}, uint32(60), uint32(0), int8(0))                                             // empty gaps
	f.Add([]byte{0, 1, 0, 50, 0, 10, 0, 50, 1, 1, 0, 50, 2, 1, 0, 50, 3, 1, 0, 50}, uint32(60), uint32(600), int8(3)) // overlaps, shared windows
	f.Add([]byte{0, 7, 1, 3, 2, 8, 1, 9}, uint32(7), uint32(5), int8(-2))                                             // MaxWindow below the grain
	f.Fuzz(func(t *testing.T, data []byte, grainSec, maxWindowSec uint32, maxKeys int8) {
		grain := dayDivisors[int(grainSec)%len(dayDivisors)]
		lim := heal.Limits{MaxWindow: time.Duration(maxWindowSec%(48*3600)) * time.Second, MaxKeys: int(maxKeys)}
		t0 := time.Date(2024, 3, 4, 0, 0, 0, 0, time.UTC)
		keys := []string{"A", "B", "C", "D"}
		gaps := map[string][]heal.Window{}
		missing := map[string]map[int64]bool{}
		for i := 0; i+4 <= len(data) && i < 4*64; i += 4 {
			k := keys[int(data[i])%len(keys)]
			start := t0.Add(time.Duration(int(data[i+1])|int(data[i+2])<<8) * 13 * time.Second)
			w := heal.Window{Start: start, End: start.Add(time.Duration(data[i+3]) * 11 * time.Second)}
			gaps[k] = append(gaps[k], w)
			if missing[k] == nil {
				missing[k] = map[int64]bool{}
			}
			if !w.Empty() {
				a := w.Align(grain)
				for s := a.Start; s.Before(a.End); s = s.Add(grain) {
					missing[k][s.UnixNano()/int64(grain)] = true
				}
			}
		}
		reqs := repair.Plan(gaps, grain, lim)
		maxSpan := lim.MaxWindow
		if maxSpan > 0 && maxSpan < grain {
			maxSpan = grain
		}
		keyLimit := max(1, lim.MaxKeys)
		covered := map[string]map[int64]bool{}
		for i, r := range reqs {
			if !r.Window.Start.Before(r.Window.End) || !r.Window.Start.Equal(r.Window.Start.Truncate(grain)) || !r.Window.End.Equal(r.Window.End.Truncate(grain)) {
				t.Fatalf("request %v: empty or not aligned to %s", r.Window, grain)
			}
			if maxSpan > 0 && r.Window.Duration() > maxSpan {
				t.Fatalf("request %v is %s long, limit %s", r.Window, r.Window.Duration(), maxSpan)
			}
			if len(r.Keys) == 0 || len(r.Keys) > keyLimit || !sort.StringsAreSorted(r.Keys) {
				t.Fatalf("request %v carries keys %v (limit %d)", r.Window, r.Keys, keyLimit)
			}
			if i > 0 && r.Window.Start.Before(reqs[i-1].Window.Start) {
				t.Fatalf("requests out of order: %v after %v", r.Window, reqs[i-1].Window)
			}
			lo, hi := r.Window.Start.UnixNano()/int64(grain), r.Window.End.UnixNano()/int64(grain)
			for j, k := range r.Keys {
				if j > 0 && r.Keys[j-1] == k {
					t.Fatalf("request %v carries %s twice", r.Window, k)
				}
				if !missing[k][lo] || !missing[k][hi-1] {
					t.Fatalf("request %v for %s does not start and end on a missing slot", r.Window, k)
				}
				if covered[k] == nil {
					covered[k] = map[int64]bool{}
				}
				for s := lo; s < hi; s++ {
					if covered[k][s] {
						t.Fatalf("slot %d of %s requested twice", s, k)
					}
					covered[k][s] = true
				}
			}
		}
		for k, ms := range missing {
			for s := range ms {
				if !covered[k][s] {
					t.Fatalf("missing slot %d of %s not requested (plan %v)", s, k, reqs)
				}
			}
		}
	})
}
