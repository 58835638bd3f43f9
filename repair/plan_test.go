package repair_test

import (
	"fmt"
	"math/rand"
	"testing"
	"time"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/repair"
)

var t0 = time.Date(2024, 3, 4, 14, 0, 0, 0, time.UTC)

func mins(ms ...int) []heal.Window {
	var ws []heal.Window
	for _, m := range ms {
		s := t0.Add(time.Duration(m) * time.Minute)
		ws = append(ws, heal.Window{Start: s, End: s.Add(time.Minute)})
	}
	return ws
}

func TestPlanCalls(t *testing.T) {
	tests := []struct {
		name  string
		gaps  map[string][]heal.Window
		lim   heal.Limits
		calls int
		first heal.Window // window of the first request
	}{
		{"no gaps", nil, heal.Limits{}, 0, heal.Window{}},
		{"six scattered minutes in one hour cost one call",
			map[string][]heal.Window{"AAPL": mins(3, 9, 17, 30, 44, 58)}, heal.Limits{MaxWindow: time.Hour}, 1,
			heal.Window{Start: t0.Add(3 * time.Minute), End: t0.Add(59 * time.Minute)}},
		{"unlimited window covers a whole day in one call",
			map[string][]heal.Window{"AAPL": mins(0, 400, 1000)}, heal.Limits{}, 1,
			heal.Window{Start: t0, End: t0.Add(1001 * time.Minute)}},
		{"the window limit splits",
			map[string][]heal.Window{"AAPL": mins(0, 30, 60, 61, 125)}, heal.Limits{MaxWindow: time.Hour}, 3,
			heal.Window{Start: t0, End: t0.Add(31 * time.Minute)}},
		{"adjacent gaps coalesce",
			map[string][]heal.Window{"AAPL": mins(5, 6, 7, 8)}, heal.Limits{MaxWindow: time.Minute * 2}, 2,
			heal.Window{Start: t0.Add(5 * time.Minute), End: t0.Add(7 * time.Minute)}},
		{"one call per key when the source takes one key",
			map[string][]heal.Window{"AAPL": mins(1), "MSFT": mins(1), "V": mins(2)}, heal.Limits{}, 3,
			heal.Window{Start: t0.Add(time.Minute), End: t0.Add(2 * time.Minute)}},
		{"keys with the same window share a call up to MaxKeys",
			map[string][]heal.Window{"A": mins(1), "B": mins(1), "C": mins(1), "D": mins(2)}, heal.Limits{MaxKeys: 2}, 3,
			heal.Window{Start: t0.Add(time.Minute), End: t0.Add(2 * time.Minute)}},
		{"a gap longer than the window limit is cut",
			map[string][]heal.Window{"AAPL": {{Start: t0, End: t0.Add(150 * time.Minute)}}}, heal.Limits{MaxWindow: time.Hour}, 3,
			heal.Window{Start: t0, End: t0.Add(time.Hour)}},
		{"an off-grain gap is widened to whole slots",
			map[string][]heal.Window{"AAPL": {{Start: t0.Add(90 * time.Second), End: t0.Add(150 * time.Second)}}}, heal.Limits{}, 1,
			heal.Window{Start: t0.Add(time.Minute), End: t0.Add(3 * time.Minute)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := repair.Plan(tc.gaps, time.Minute, tc.lim)
			if len(got) != tc.calls {
				t.Fatalf("Plan made %d requests, want %d: %v", len(got), tc.calls, got)
			}
			if tc.calls > 0 && got[0].Window != tc.first {
				t.Errorf("first request covers %v, want %v", got[0].Window, tc.first)
			}
		})
	}
}

// TestPlanInvariants checks on random gap patterns that a plan covers every
// gap, never exceeds the window or key limits, never requests a slot of a
// key twice, and starts and ends every request on a gap.
func TestPlanInvariants(t *testing.T) {
	r := rand.New(rand.NewSource(7))
	for iter := 0; iter < 300; iter++ {
		lim := heal.Limits{MaxWindow: time.Duration(1+r.Intn(90)) * time.Minute, MaxKeys: 1 + r.Intn(3)}
		gaps := map[string][]heal.Window{}
		missing := map[string]map[int]bool{}
		for k := 0; k < 1+r.Intn(4); k++ {
			key := fmt.Sprintf("K%d", k)
			missing[key] = map[int]bool{}
			var ms []int
			for m := 0; m < 400; m++ {
				if r.Intn(9) == 0 {
					ms = append(ms, m)
					missing[key][m] = true
				}
			}
			gaps[key] = mins(ms...)
		}
		covered := map[string]map[int]bool{}
		for _, req := range repair.Plan(gaps, time.Minute, lim) {
			if req.Window.Duration() > lim.MaxWindow {
				t.Fatalf("request %v longer than %s", req.Window, lim.MaxWindow)
			}
			if len(req.Keys) > lim.MaxKeys {
				t.Fatalf("request with %d keys, limit %d", len(req.Keys), lim.MaxKeys)
			}
			lo := int(req.Window.Start.Sub(t0) / time.Minute)
			hi := int(req.Window.End.Sub(t0) / time.Minute)
			for _, k := range req.Keys {
				if !missing[k][lo] || !missing[k][hi-1] {
					t.Fatalf("request %v for %s does not start and end on a gap", req.Window, k)
				}
				if covered[k] == nil {
					covered[k] = map[int]bool{}
				}
				for m := lo; m < hi; m++ {
					if covered[k][m] {
						t.Fatalf("slot %d of %s requested twice", m, k)
					}
					covered[k][m] = true
				}
			}
		}
		for k, ms := range missing {
			for m := range ms {
				if !covered[k][m] {
					t.Fatalf("gap %d of %s not covered", m, k)
				}
			}
		}
	}
}

func ExamplePlan() {
	// AAPL lost six scattered minutes of the 14:00 hour; MSFT lost two
	// minutes far apart. Finnhub's candles take one symbol per call.
	gaps := map[string][]heal.Window{
		"AAPL": mins(3, 9, 17, 30, 44, 58),
		"MSFT": mins(5, 50),
	}
	for _, req := range repair.Plan(gaps, time.Minute, heal.Limits{MaxWindow: 24 * time.Hour}) {
		fmt.Println(req.Keys, req.Window.Start.Format("15:04"), "-", req.Window.End.Format("15:04"))
	}
	// Output:
	// [AAPL] 14:03 - 14:59
	// [MSFT] 14:05 - 14:51
}
