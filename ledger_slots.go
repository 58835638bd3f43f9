package heal

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"
)

// slotMap is one key's slot states in the ledger, by slot index.
//
// A snapshot writes it as runs of consecutive slots in the same state,
// [{"lo":..,"hi":..,"s":..,...}], not one entry per slot: a repair fills a
// window of slots with one event, so a key repaired every hour for the
// 90 days of retention is a few thousand runs rather than a hundred thousand
// entries, and the snapshot an engine encodes every 200 ledger objects
// stays proportional to the episodes, not to the slots. Snapshots written
// before, an object keyed by slot index, are still read.
type slotMap map[int64]*slotState

// slotRun is the JSON of a run: slots [Lo, Hi) in one state.
type slotRun struct {
	Lo int64 `json:"lo"`
	Hi int64 `json:"hi"`
	slotState
}

func sameState(a, b *slotState) bool {
	return a.Status == b.Status && a.Attempts == b.Attempts && a.Err == b.Err && a.Since.Equal(b.Since)
}

// MarshalJSON writes the runs in slot order.
func (m slotMap) MarshalJSON() ([]byte, error) {
	idx := make([]int64, 0, len(m))
	for i := range m {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	var runs []slotRun
	for _, i := range idx {
		s := m[i]
		if n := len(runs); n > 0 && runs[n-1].Hi == i && sameState(&runs[n-1].slotState, s) {
			runs[n-1].Hi++
			continue
		}
		runs = append(runs, slotRun{Lo: i, Hi: i + 1, slotState: *s})
	}
	if runs == nil {
		return []byte("[]"), nil
	}
	return json.Marshal(runs)
}

// UnmarshalJSON reads runs, or the per-slot object of older snapshots.
func (m *slotMap) UnmarshalJSON(b []byte) error {
	out := slotMap{}
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
	case len(b) > 0 && b[0] == '{':
		var old map[string]*slotState
		if err := json.Unmarshal(b, &old); err != nil {
			return err
		}
		for k, s := range old {
			i, err := strconv.ParseInt(k, 10, 64)
			if err != nil {
				return fmt.Errorf("ledger slot %q: %w", k, err)
			}
			if s != nil {
				out[i] = s
			}
		}
	default:
		var runs []slotRun
		if err := json.Unmarshal(b, &runs); err != nil {
			return err
		}
		for _, r := range runs {
			if r.Hi < r.Lo || r.Hi-r.Lo > int64(366*24*time.Hour/time.Second) {
				return fmt.Errorf("ledger slot run [%d, %d): out of bounds", r.Lo, r.Hi)
			}
			for i := r.Lo; i < r.Hi; i++ {
				s := r.slotState
				out[i] = &s
			}
		}
	}
	*m = out
	return nil
}
