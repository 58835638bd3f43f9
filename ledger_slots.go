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
// A snapshot writes it grouped by state, not one entry per slot: the slots
// a repair filled share their status and time, so each group is written
// once, with its slots as ranges delta-coded from the previous one
// ({"s":"repaired","t":...,"r":[28401217,11,[3,5],...]}: a number d is the
// one slot prev+d, a pair [d,n] the n slots from prev+d, and prev moves to
// the end of each). Scattered one-minute holes then cost a few bytes each
// instead of a JSON object each, and the snapshot an engine encodes every
// 200 ledger objects stays small. Snapshots written before, an object
// keyed by slot index or a list of {"lo","hi",...} runs, are still read.
type slotMap map[int64]*slotState

// slotGroup is the JSON of the slots of one key in one state.
type slotGroup struct {
	slotState
	R []json.RawMessage `json:"r,omitempty"`
	// Lo and Hi are the run form of earlier snapshots: slots [Lo, Hi).
	Lo int64 `json:"lo,omitempty"`
	Hi int64 `json:"hi,omitempty"`
}

type stateKey struct {
	status, err string
	attempts    int
	since       int64
}

// MarshalJSON writes the groups, in order of their first slot.
func (m slotMap) MarshalJSON() ([]byte, error) {
	idx := make([]int64, 0, len(m))
	for i := range m {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	type group struct {
		st    *slotState
		slots []int64
	}
	var order []stateKey
	groups := map[stateKey]*group{}
	for _, i := range idx {
		s := m[i]
		k := stateKey{s.Status, s.Err, s.Attempts, s.Since.UnixNano()}
		g := groups[k]
		if g == nil {
			g = &group{st: s}
			groups[k] = g
			order = append(order, k)
		}
		g.slots = append(g.slots, i)
	}
	var buf bytes.Buffer
	buf.WriteByte('[')
	for gi, k := range order {
		g := groups[k]
		head, err := json.Marshal(g.st)
		if err != nil {
			return nil, err
		}
		if gi > 0 {
			buf.WriteByte(',')
		}
		buf.Write(head[:len(head)-1]) // the state's object, still open
		buf.WriteString(`,"r":[`)
		var prev int64
		for j := 0; j < len(g.slots); {
			lo := g.slots[j]
			hi := lo + 1
			for j++; j < len(g.slots) && g.slots[j] == hi; j++ {
				hi++
			}
			if buf.Bytes()[buf.Len()-1] != '[' {
				buf.WriteByte(',')
			}
			if hi-lo == 1 {
				buf.WriteString(strconv.FormatInt(lo-prev, 10))
			} else {
				fmt.Fprintf(&buf, "[%d,%d]", lo-prev, hi-lo)
			}
			prev = hi
		}
		buf.WriteString("]}")
	}
	buf.WriteByte(']')
	return buf.Bytes(), nil
}

// maxRun bounds one range read back: a year of one-second slots.
const maxRun = int64(366 * 24 * time.Hour / time.Second)

// UnmarshalJSON reads groups, or the forms of older snapshots.
func (m *slotMap) UnmarshalJSON(b []byte) error {
	out := slotMap{}
	b = bytes.TrimSpace(b)
	put := func(lo, n int64, st slotState) error {
		if n < 1 || n > maxRun {
			return fmt.Errorf("ledger slot range at %d of %d slots: out of bounds", lo, n)
		}
		for i := lo; i < lo+n; i++ {
			s := st
			out[i] = &s
		}
		return nil
	}
	switch {
	case bytes.Equal(b, []byte("null")):
	case len(b) > 0 && b[0] == '{': // one entry per slot
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
		var groups []slotGroup
		if err := json.Unmarshal(b, &groups); err != nil {
			return err
		}
		for _, g := range groups {
			if g.R == nil { // a run
				if err := put(g.Lo, g.Hi-g.Lo, g.slotState); err != nil {
					return err
				}
				continue
			}
			var prev int64
			for _, raw := range g.R {
				var d, n int64 = 0, 1
				if len(raw) > 0 && raw[0] == '[' {
					var pair [2]int64
					if err := json.Unmarshal(raw, &pair); err != nil {
						return fmt.Errorf("ledger slot range %s: %w", raw, err)
					}
					d, n = pair[0], pair[1]
				} else if err := json.Unmarshal(raw, &d); err != nil {
					return fmt.Errorf("ledger slot %s: %w", raw, err)
				}
				if d < 0 {
					return fmt.Errorf("ledger slot range %s: out of order", raw)
				}
				if err := put(prev+d, n, g.slotState); err != nil {
					return err
				}
				prev += d + n
			}
		}
	}
	*m = out
	return nil
}
