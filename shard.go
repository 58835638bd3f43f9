package heal

import (
	"context"
	"fmt"
	"hash/fnv"
)

// Shard makes an [Engine] one of Count engines that split Options.Keys
// between them, for a key set larger than one process should audit (see
// Options.Shard). The zero Shard, and Count 1, is the whole key set.
//
// Each key belongs to exactly one shard, by a stable hash of the key
// ([ShardOf]), so no two engines of one Count audit, plan or alarm the same
// key. Each shard takes its own heal lease (two engines started for the
// same shard still exclude each other), while the ledger stays one log per
// dataset whose events are per key: every engine folds all of it and acts
// on its own keys.
//
// Changing Count moves keys between shards and loses nothing: a key's
// attempt counts, confirmed-empty slots and alarms are in the shared
// ledger, so its new owner carries on where the old one stopped. While
// engines of the old and the new Count overlap, a key may be audited by two
// of them; the repairs they plan land only rows that fill holes, the lake's
// writes are atomic and idempotent (a slot written twice is read back
// once, and compaction removes the copy), so the worst case is a repair
// fetched twice, never a wrong or duplicated row in a read.
type Shard struct {
	Index int // this engine's shard, 0 <= Index < Count
	Count int // how many shards the keys are split into; 0 or 1: no sharding
}

func (s Shard) sharded() bool { return s.Count > 1 }

// Owns reports whether key belongs to shard s.
func (s Shard) Owns(key string) bool { return !s.sharded() || ShardOf(key, s.Count) == s.Index }

// String is "i-of-n", or "all" when s does not shard.
func (s Shard) String() string {
	if !s.sharded() {
		return "all"
	}
	return fmt.Sprintf("%d-of-%d", s.Index, s.Count)
}

func (s Shard) validate() error {
	if s.Count < 0 || s.Index < 0 || (s.Count > 1 && s.Index >= s.Count) || (s.Count <= 1 && s.Index != 0) {
		return fmt.Errorf("shard %d of %d: want 0 <= Index < Count", s.Index, s.Count)
	}
	return nil
}

// ShardOf returns the shard, in [0, n), that key belongs to when keys are
// split n ways: the jump consistent hash (Lamping and Veach, 2014) of the
// key's 64-bit FNV-1a hash. It is stable across processes, machines and
// releases, and going from n to n+1 shards moves only about 1/(n+1) of the
// keys, all of them to the new shard. n <= 1 gives 0.
func ShardOf(key string, n int) int {
	if n <= 1 {
		return 0
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(key))
	k := h.Sum64()
	b, j := int64(-1), int64(0)
	for j < int64(n) {
		b = j
		k = k*2862933555777941143 + 1
		j = int64(float64(b+1) * (float64(int64(1)<<31) / float64((k>>33)+1)))
	}
	return int(b)
}

// leasePrefix is where this engine's heal lease lives: the dataset's for an
// unsharded engine, its own under it for a shard.
func (e *Engine) leasePrefix() string {
	if e.opts.Shard.sharded() {
		return "lease/" + e.ds.Name + "/shard-" + e.opts.Shard.String() + "/"
	}
	return "lease/" + e.ds.Name + "/"
}

// snapshotGate lets one engine at a time snapshot the shared ledger (shard
// engines, or an unsharded one next to them, hold different heal leases):
// two snapshots made at once could each delete objects the other does not
// cover. It takes a lease of its own, separate from the heal leases.
func (e *Engine) snapshotGate(ctx context.Context) (func(), bool) {
	prefix := "lease/" + e.ds.Name + "/snapshot/"
	gen, ok, _, err := e.acquireLeaseAt(ctx, prefix)
	if err != nil || !ok {
		return nil, false
	}
	return func() { e.releaseLeaseAt(ctx, prefix, gen) }, true
}
