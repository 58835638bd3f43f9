package sink

import (
	"encoding/binary"
	"math/bits"
	"sync"
	"time"
	"unsafe"

	"github.com/selfheal/heal"
)

// Presence bitmaps are combined word by word here, in heal.Slots'
// MarshalBinary encoding (start ns, grain ns, length, then the bitmap as
// little-endian words), so that an inventory never walks slot by slot.

// slotEnc is a parsed heal.Slots encoding; words aliases the encoding.
type slotEnc struct {
	start int64 // unix ns of slot 0
	grain int64
	n     int
	words []byte
}

func parseSlotEnc(b []byte) (slotEnc, bool) {
	if len(b) < 24 {
		return slotEnc{}, false
	}
	s := slotEnc{
		start: int64(binary.LittleEndian.Uint64(b)),
		grain: int64(binary.LittleEndian.Uint64(b[8:])),
		n:     int(binary.LittleEndian.Uint64(b[16:])),
	}
	if s.grain <= 0 || s.n < 0 || len(b) != 24+8*((s.n+63)/64) {
		return slotEnc{}, false
	}
	s.words = b[24:]
	return s, true
}

func (s slotEnc) word(i int) uint64 {
	w := binary.LittleEndian.Uint64(s.words[8*i:])
	if i == len(s.words)/8-1 && s.n%64 != 0 {
		w &= 1<<(s.n%64) - 1
	}
	return w
}

// count is the number of slots in the set.
func (s slotEnc) count() int {
	c := 0
	for i := 0; i < len(s.words)/8; i++ {
		c += bits.OnesCount64(s.word(i))
	}
	return c
}

// presence accumulates the slots of several files over one window.
type presence struct {
	start  int64 // unix ns of bit 0: the window's start, floored to the grain
	grain  int64
	n      int      // bits
	lo, hi int      // the bits inside the window: [lo, hi)
	words  []uint64 // the union
	enc    []byte   // scratch for slots
}

// newPresence covers win (not necessarily aligned) at grain. Its buffers
// come from a pool: release it when done.
func newPresence(win heal.Window, grain time.Duration) *presence {
	aw := win.Align(grain)
	p := presencePool.Get().(*presence)
	p.start, p.grain, p.n, p.lo = aw.Start.UnixNano(), int64(grain), aw.Slots(grain), 0
	p.hi = p.n
	if aw.Start.Before(win.Start) {
		p.lo = 1 // the first slot starts before the window
	}
	if p.lo > p.hi {
		p.lo = p.hi
	}
	nw := (p.n + 63) / 64
	if cap(p.words) < nw {
		p.words = make([]uint64, nw)
	}
	p.words = p.words[:nw]
	clear(p.words)
	return p
}

var presencePool = sync.Pool{New: func() any { return new(presence) }}

// release returns p's buffers to the pool.
func (p *presence) release() { presencePool.Put(p) }

// add ORs the slots of s that fall inside the window into the union and
// returns how many of them fall inside: for a file holding one row per
// slot, its rows within the window. s must be at the same grain, aligned.
func (p *presence) add(s slotEnc) int {
	if s.grain != p.grain || (s.start-p.start)%p.grain != 0 {
		return 0
	}
	shift := (s.start - p.start) / p.grain
	if shift >= int64(p.hi) || shift+int64(s.n) <= int64(p.lo) {
		return 0
	}
	sh := int(shift)
	added := 0
	for wi := 0; wi < len(s.words)/8; wi++ {
		w := s.word(wi)
		if w == 0 {
			continue
		}
		base := wi*64 + sh // the bit of the union that bit 0 of w lands on
		if base+64 <= p.lo || base >= p.hi {
			continue
		}
		if base < p.lo {
			w &^= 1<<(p.lo-base) - 1
		}
		if k := p.hi - base; k < 64 {
			w &= 1<<k - 1
		}
		if w == 0 {
			continue
		}
		added += bits.OnesCount64(w)
		if base >= 0 {
			di, off := base/64, base%64
			p.words[di] |= w << off
			if off != 0 && di+1 < len(p.words) {
				p.words[di+1] |= w >> (64 - off)
			}
		} else {
			p.words[0] |= w >> -base
		}
	}
	return added
}

// contains reports whether the slot starting at t (unix ns) is inside the
// window.
func (p *presence) contains(t int64) bool {
	if t < p.start || (t-p.start)%p.grain != 0 {
		return false
	}
	i := (t - p.start) / p.grain
	return i >= int64(p.lo) && i < int64(p.hi)
}

// slots returns the union as a heal.Slots.
func (p *presence) slots() heal.Slots {
	p.enc = append(p.enc[:0], make([]byte, 24)...)
	binary.LittleEndian.PutUint64(p.enc, uint64(p.start))
	binary.LittleEndian.PutUint64(p.enc[8:], uint64(p.grain))
	binary.LittleEndian.PutUint64(p.enc[16:], uint64(p.n))
	for _, w := range p.words {
		p.enc = binary.LittleEndian.AppendUint64(p.enc, w)
	}
	var s heal.Slots
	if err := s.UnmarshalBinary(p.enc); err != nil {
		panic("heal/sink: " + err.Error()) // unreachable: the encoding is well formed
	}
	return s
}

// encodeBits renders the slots [start, start+n*grain) set in words as
// heal.Slots' encoding.
func encodeBits(start, grain int64, n int, words []uint64) []byte {
	b := make([]byte, 24, 24+8*len(words))
	binary.LittleEndian.PutUint64(b, uint64(start))
	binary.LittleEndian.PutUint64(b[8:], uint64(grain))
	binary.LittleEndian.PutUint64(b[16:], uint64(n))
	for _, w := range words {
		b = binary.LittleEndian.AppendUint64(b, w)
	}
	return b
}

func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
