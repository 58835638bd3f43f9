// Package repair plans the re-acquisition of missing data: it coalesces the
// gaps an audit found into the fewest historical requests a Source's
// declared limits allow.
//
// The engine plans with the same algorithm; this package exposes it so that
// a pipeline can preview what a repair will cost (how many source calls)
// before running one, and so the rule is tested in one place.
package repair

import (
	"sort"
	"time"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/internal/span"
)

// Plan returns the fewest historical requests that cover every gap, given
// per key, within the Source's limits: a request covers one or more gaps of
// a key from the first missing slot to the last, spans at most
// lim.MaxWindow, and carries up to lim.MaxKeys keys whose requests cover the
// same window. Gaps are widened to whole grains. The requests are ordered by
// window, then key.
//
// For example, a symbol missing 6 scattered minutes of one hour costs one
// request, not six.
func Plan(gaps map[string][]heal.Window, grain time.Duration, lim heal.Limits) []heal.Request {
	if grain <= 0 {
		return nil
	}
	maxSpan := int64(0)
	if lim.MaxWindow > 0 {
		maxSpan = int64(lim.MaxWindow / grain)
		if maxSpan < 1 {
			maxSpan = 1
		}
	}
	keys := make([]string, 0, len(gaps))
	for k := range gaps {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var ks []span.Keyed
	for _, k := range keys {
		rs := make([]span.Range, 0, len(gaps[k]))
		for _, w := range gaps[k] {
			if w.Empty() {
				continue // holds no instant; Align would widen it to a whole grain
			}
			w = w.Align(grain)
			rs = append(rs, span.Range{Lo: w.Start.UnixNano() / int64(grain), Hi: w.End.UnixNano() / int64(grain)})
		}
		for _, r := range span.Plan(span.Normalize(rs), maxSpan) {
			ks = append(ks, span.Keyed{Key: k, R: r})
		}
	}
	var out []heal.Request
	for _, g := range span.Group(ks, lim.MaxKeys) {
		r := ks[g[0]].R
		req := heal.Request{Window: heal.Window{
			Start: time.Unix(0, r.Lo*int64(grain)).UTC(),
			End:   time.Unix(0, r.Hi*int64(grain)).UTC(),
		}}
		for _, i := range g {
			req.Keys = append(req.Keys, ks[i].Key)
		}
		out = append(out, req)
	}
	return out
}
