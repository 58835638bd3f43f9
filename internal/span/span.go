// Package span is the range algebra behind audits and repair plans: sets of
// slot indices (instant / grain) kept as sorted, disjoint, half-open ranges.
package span

import "sort"

// Range is the half-open run of slot indices [Lo, Hi).
type Range struct{ Lo, Hi int64 }

// Len is Hi-Lo.
func (r Range) Len() int64 { return r.Hi - r.Lo }

// Set is a sorted list of disjoint, non-adjacent, non-empty ranges.
type Set []Range

// Normalize sorts rs and merges overlapping or adjacent ranges, dropping
// empty ones. It reuses rs's storage.
func Normalize(rs []Range) Set {
	out := rs[:0]
	for _, r := range rs {
		if r.Hi > r.Lo {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Lo < out[j].Lo })
	n := 0
	for _, r := range out {
		if n > 0 && r.Lo <= out[n-1].Hi {
			if r.Hi > out[n-1].Hi {
				out[n-1].Hi = r.Hi
			}
			continue
		}
		out[n] = r
		n++
	}
	return Set(out[:n])
}

// FromSorted builds a Set from increasing slot indices (duplicates allowed).
func FromSorted(idx []int64) Set {
	var s Set
	for _, i := range idx {
		if n := len(s); n > 0 && i <= s[n-1].Hi {
			if i == s[n-1].Hi {
				s[n-1].Hi++
			}
			continue
		}
		s = append(s, Range{i, i + 1})
	}
	return s
}

// Count is the number of slots in s.
func (s Set) Count() int64 {
	var c int64
	for _, r := range s {
		c += r.Len()
	}
	return c
}

// Contains reports whether slot i is in s.
func (s Set) Contains(i int64) bool {
	k := sort.Search(len(s), func(k int) bool { return s[k].Hi > i })
	return k < len(s) && s[k].Lo <= i
}

// Union returns the slots in a or b.
func Union(a, b Set) Set {
	out := make([]Range, 0, len(a)+len(b))
	out = append(out, a...)
	out = append(out, b...)
	return Normalize(out)
}

// Subtract returns the slots of a that are not in b.
func Subtract(a, b Set) Set {
	var out Set
	j := 0
	for _, r := range a {
		lo := r.Lo
		for j < len(b) && b[j].Hi <= lo {
			j++
		}
		k := j
		for k < len(b) && b[k].Lo < r.Hi {
			if b[k].Lo > lo {
				out = append(out, Range{lo, b[k].Lo})
			}
			if b[k].Hi > lo {
				lo = b[k].Hi
			}
			k++
		}
		if lo < r.Hi {
			out = append(out, Range{lo, r.Hi})
		}
	}
	return out
}

// Intersect returns the slots in both a and b.
func Intersect(a, b Set) Set {
	var out Set
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		lo, hi := max(a[i].Lo, b[j].Lo), min(a[i].Hi, b[j].Hi)
		if lo < hi {
			out = append(out, Range{lo, hi})
		}
		if a[i].Hi < b[j].Hi {
			i++
		} else {
			j++
		}
	}
	return out
}

// Clip returns the slots of s within r.
func (s Set) Clip(r Range) Set { return Intersect(s, Set{r}) }

// Plan covers the slots of gaps with the fewest requests of at most
// maxSpan slots each (maxSpan <= 0: unlimited). Each request starts at a
// missing slot and ends just after one, so no request fetches slots beyond
// the first and last hole it serves; the slots between holes inside a
// request are fetched but are not holes. Greedy from the left is optimal
// for covering points on a line with intervals of bounded length.
func Plan(gaps Set, maxSpan int64) []Range {
	var out []Range
	for _, g := range gaps {
		lo := g.Lo
		for lo < g.Hi {
			if n := len(out); n > 0 && (maxSpan <= 0 || lo+1-out[n-1].Lo <= maxSpan) {
				// extend the open request to cover as much as fits
				hi := g.Hi
				if maxSpan > 0 && hi-out[n-1].Lo > maxSpan {
					hi = out[n-1].Lo + maxSpan
				}
				out[n-1].Hi = hi
				lo = hi
				continue
			}
			hi := g.Hi
			if maxSpan > 0 && hi-lo > maxSpan {
				hi = lo + maxSpan
			}
			out = append(out, Range{lo, hi})
			lo = hi
		}
	}
	return out
}

// Keyed is a planned request range for one key.
type Keyed struct {
	Key string
	R   Range
}

// Group orders ks by range and puts keys whose requests cover the same
// range into shared requests of at most maxKeys keys (maxKeys <= 0: 1).
// It returns the groups as index lists into the sorted ks.
func Group(ks []Keyed, maxKeys int) [][]int {
	if maxKeys <= 0 {
		maxKeys = 1
	}
	sort.SliceStable(ks, func(i, j int) bool {
		return ks[i].R.Lo < ks[j].R.Lo || ks[i].R.Lo == ks[j].R.Lo && ks[i].R.Hi < ks[j].R.Hi
	})
	var out [][]int
	for i := 0; i < len(ks); {
		g := []int{i}
		j := i + 1
		for j < len(ks) && ks[j].R == ks[i].R && len(g) < maxKeys {
			g = append(g, j)
			j++
		}
		out = append(out, g)
		i = j
	}
	return out
}
