package heal

import (
	"encoding/binary"
	"errors"
	"iter"
	"math/bits"
	"time"

	"github.com/selfheal/heal/internal/span"
)

// Slots is a set of grain-aligned instants within a window: which minutes of
// a day a partition holds, say. It is a bitmap, one bit per slot, so a
// trading day of minutes costs 49 bytes. The zero Slots is empty and covers
// nothing.
type Slots struct {
	start time.Time
	grain time.Duration
	n     int
	bits  []uint64
}

// NewSlots returns an empty set covering w (aligned to grain).
func NewSlots(w Window, grain time.Duration) Slots {
	w = w.Align(grain)
	n := w.Slots(grain)
	return Slots{start: w.Start, grain: grain, n: n, bits: make([]uint64, (n+63)/64)}
}

// Window is the span the set covers.
func (s Slots) Window() Window {
	return Window{s.start, s.start.Add(time.Duration(s.n) * s.grain)}
}

// Grain is the width of one slot.
func (s Slots) Grain() time.Duration { return s.grain }

// Len is the number of slots covered.
func (s Slots) Len() int { return s.n }

func (s Slots) index(t time.Time) (int, bool) {
	if s.n == 0 || t.Before(s.start) {
		return 0, false
	}
	i := int(t.Sub(s.start) / s.grain)
	return i, i < s.n
}

// Add puts the slot holding t in the set and reports whether it was absent.
// A time outside the window is ignored and reports false.
func (s *Slots) Add(t time.Time) bool {
	i, ok := s.index(t)
	if !ok {
		return false
	}
	m := uint64(1) << (i % 64)
	if s.bits[i/64]&m != 0 {
		return false
	}
	s.bits[i/64] |= m
	return true
}

// AddIndex sets slot i; it is the fast path for callers that computed i.
func (s *Slots) AddIndex(i int) bool {
	if i < 0 || i >= s.n {
		return false
	}
	m := uint64(1) << (i % 64)
	old := s.bits[i/64]
	s.bits[i/64] = old | m
	return old&m == 0
}

// Has reports whether the slot holding t is in the set.
func (s Slots) Has(t time.Time) bool {
	i, ok := s.index(t)
	return ok && s.bits[i/64]&(1<<(i%64)) != 0
}

// Count is the number of slots in the set.
func (s Slots) Count() int {
	c := 0
	for _, w := range s.bits {
		c += bits.OnesCount64(w)
	}
	return c
}

// Union adds the slots of o that fall in s's window.
func (s *Slots) Union(o Slots) {
	if o.grain == s.grain && o.start.Equal(s.start) && o.n == s.n {
		for i := range s.bits {
			s.bits[i] |= o.bits[i]
		}
		return
	}
	for t := range o.All() {
		s.Add(t)
	}
}

// All yields the instants in the set, in order.
func (s Slots) All() iter.Seq[time.Time] {
	return func(yield func(time.Time) bool) {
		for wi, w := range s.bits {
			for w != 0 {
				b := bits.TrailingZeros64(w)
				w &^= 1 << b
				if !yield(s.start.Add(time.Duration(wi*64+b) * s.grain)) {
					return
				}
			}
		}
	}
}

// appendRuns appends the runs of consecutive slots in the set to rs, as
// ranges of slot indices (instant / grain), word by word rather than slot
// by slot; a run that touches the last range of rs extends it.
func (s Slots) appendRuns(rs []span.Range) []span.Range {
	if s.grain <= 0 {
		return rs
	}
	base := s.start.UnixNano() / int64(s.grain)
	for wi, w := range s.bits {
		for w != 0 {
			tz := bits.TrailingZeros64(w)
			ones := bits.TrailingZeros64(^(w >> tz))
			w &^= (1<<ones - 1) << tz
			lo := base + int64(wi*64+tz)
			hi := lo + int64(ones)
			if n := len(rs); n > 0 && rs[n-1].Hi == lo {
				rs[n-1].Hi = hi
				continue
			}
			rs = append(rs, span.Range{Lo: lo, Hi: hi})
		}
	}
	return rs
}

// Clone returns an independent copy.
func (s Slots) Clone() Slots {
	c := s
	c.bits = append([]uint64(nil), s.bits...)
	return c
}

// MarshalBinary encodes the set: start (unix ns), grain (ns), length, bitmap.
func (s Slots) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, 24+8*len(s.bits))
	b = binary.LittleEndian.AppendUint64(b, uint64(s.start.UnixNano()))
	b = binary.LittleEndian.AppendUint64(b, uint64(s.grain))
	b = binary.LittleEndian.AppendUint64(b, uint64(s.n))
	for _, w := range s.bits {
		b = binary.LittleEndian.AppendUint64(b, w)
	}
	return b, nil
}

// UnmarshalBinary decodes what MarshalBinary wrote.
func (s *Slots) UnmarshalBinary(b []byte) error {
	if len(b) < 24 {
		return errors.New("heal: slots: short encoding")
	}
	start := int64(binary.LittleEndian.Uint64(b))
	grain := time.Duration(binary.LittleEndian.Uint64(b[8:]))
	n := int(binary.LittleEndian.Uint64(b[16:]))
	if grain <= 0 || n < 0 || len(b) != 24+8*((n+63)/64) {
		return errors.New("heal: slots: corrupt encoding")
	}
	s.start, s.grain, s.n = time.Unix(0, start).UTC(), grain, n
	s.bits = make([]uint64, (n+63)/64)
	for i := range s.bits {
		s.bits[i] = binary.LittleEndian.Uint64(b[24+8*i:])
	}
	return nil
}
