// Package source holds ready-made heal Sources and Source decorators.
package source

import (
	"context"
	"hash/fnv"
	"math/rand/v2"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/selfheal/heal"
)

// Glitcher is the Source [Glitch] returns.
type Glitcher struct {
	src  heal.Source
	ds   *heal.Dataset
	keys []string
	drop int
	seed int64
}

// Glitch wraps src so that, for every live slot, drop of keys (chosen
// pseudo-randomly but deterministically from seed and the slot) are not
// polled: the live request answers with a zero-row record of ds's schema,
// without calling src, exactly as if the poller had forgotten them. It is
// the fault the original Finnhub pipeline injected on purpose (it polled a
// random 10 of 11 symbols each minute), reusable for any test of healing.
//
// A live request for several keys polls src for the keys kept only.
// Historical requests, which repairs make, pass through untouched. Keys
// not in keys are never dropped; drop <= 0 drops nothing and drop >=
// len(keys) drops every key. keys' order is part of the choice: the same
// (keys, drop, seed) drop the same keys at the same slot, in any process.
func Glitch(src heal.Source, ds *heal.Dataset, keys []string, drop int, seed int64) *Glitcher {
	return &Glitcher{src: src, ds: ds, keys: append([]string(nil), keys...), drop: max(drop, 0), seed: seed}
}

// Dropped returns the keys dropped at the slot holding t, in keys' order.
func (g *Glitcher) Dropped(t time.Time) []string {
	if g.drop == 0 || len(g.keys) == 0 {
		return nil
	}
	slot := g.ds.Slot(t)
	h := fnv.New64a()
	var b [16]byte
	for i := 0; i < 8; i++ {
		b[i] = byte(g.seed >> (8 * i))
		b[8+i] = byte(slot.UnixNano() >> (8 * i))
	}
	h.Write(b[:])
	rng := rand.New(rand.NewPCG(h.Sum64(), uint64(g.seed)))
	perm := rng.Perm(len(g.keys))
	chosen := make([]bool, len(g.keys))
	for _, i := range perm[:min(g.drop, len(g.keys))] {
		chosen[i] = true
	}
	var out []string
	for i, k := range g.keys {
		if chosen[i] {
			out = append(out, k)
		}
	}
	return out
}

// Fetch implements [heal.Source].
func (g *Glitcher) Fetch(ctx context.Context, req heal.Request) (arrow.Record, error) {
	if !req.Live || g.drop == 0 {
		return g.src.Fetch(ctx, req)
	}
	dropped := g.Dropped(req.Window.Start)
	var kept []string
	for _, k := range req.Keys {
		if !has(dropped, k) {
			kept = append(kept, k)
		}
	}
	if len(kept) == len(req.Keys) {
		return g.src.Fetch(ctx, req)
	}
	if len(kept) > 0 {
		req.Keys = kept
		return g.src.Fetch(ctx, req)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cols := emptyColumns(g.ds.Schema)
	rec := array.NewRecord(g.ds.Schema, cols, 0)
	for _, c := range cols {
		c.Release()
	}
	return rec, nil
}

// emptyColumns builds zero-length columns; they hold no buffers, so the
// allocator is never asked for memory.
func emptyColumns(s *arrow.Schema) []arrow.Array {
	cols := make([]arrow.Array, s.NumFields())
	for i, f := range s.Fields() {
		b := array.NewBuilder(memory.DefaultAllocator, f.Type)
		cols[i] = b.NewArray()
		b.Release()
	}
	return cols
}

// Limits implements [heal.Source]: the wrapped source's.
func (g *Glitcher) Limits() heal.Limits { return g.src.Limits() }

// Unwrap returns the wrapped source.
func (g *Glitcher) Unwrap() heal.Source { return g.src }

func has(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}
