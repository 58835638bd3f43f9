package heal

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/selfheal/heal/internal/span"
)

// TestSlotsAppendRuns checks the word-level run extraction the audit uses
// against the slot-by-slot definition, on random sets and at word edges.
func TestSlotsAppendRuns(t *testing.T) {
	day := time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC)
	rng := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 300; n++ {
		w := Window{day.Add(time.Duration(rng.IntN(100)) * time.Minute), day.Add(time.Duration(100+rng.IntN(300)) * time.Minute)}
		s := NewSlots(w, time.Minute)
		density := rng.Float64()
		for i := 0; i < s.Len(); i++ {
			if n%7 == 0 || rng.Float64() < density { // every 7th set is full: runs across every word
				s.AddIndex(i)
			}
		}
		var want []int64
		for t := range s.All() {
			want = append(want, t.UnixNano()/int64(time.Minute))
		}
		prev := []span.Range{{Lo: -5, Hi: -3}}
		got := s.appendRuns(prev)
		if got[0] != prev[0] {
			t.Fatalf("appendRuns changed the ranges it was given: %v", got[0])
		}
		if ws := span.FromSorted(want); !equalRanges(got[1:], ws) {
			t.Fatalf("set %d: appendRuns = %v, want %v", n, got[1:], ws)
		}
	}
	// A run touching the last range given extends it.
	s := NewSlots(Window{day, day.Add(3 * time.Minute)}, time.Minute)
	s.AddIndex(0)
	s.AddIndex(1)
	lo := day.UnixNano() / int64(time.Minute)
	if got := s.appendRuns([]span.Range{{Lo: lo - 2, Hi: lo}}); len(got) != 1 || got[0] != (span.Range{Lo: lo - 2, Hi: lo + 2}) {
		t.Fatalf("touching run not merged: %v", got)
	}
	if got := (Slots{}).appendRuns(nil); got != nil {
		t.Fatalf("empty Slots: %v", got)
	}
}

func equalRanges(a, b []span.Range) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
