package sink

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/selfheal/heal"
	"golang.org/x/sync/errgroup"
)

// tempCleaner is implemented by stores that leave temporary files behind
// when a process dies mid-Put ([DirStore]).
type tempCleaner interface {
	CleanTemp(olderThan time.Duration) (int, error)
}

// Compact implements [heal.Compactor]: every partition of ds matching q
// (whole partitions overlapping q.Window) that is stored in more than one
// file, or whose single file holds a (key, time) twice, is rewritten as one
// file (newest wins), then its inputs are deleted. It reports how many
// partitions it rewrote. Up to Options.Concurrency partitions are merged at
// once, so memory is bounded by that many partitions.
//
// The merged file carries the greatest seq of its inputs, so a write that
// lands during the compaction keeps its rank, and it is never among the
// deleted inputs. Compaction is safe while others scan: a reader that
// finds a file gone lists the partition again and finds the merged file,
// which holds the same rows. A crash between writing the merged file and
// deleting the inputs leaves the data correct (the copies are ranked by
// seq); the next compaction removes them. The lake index learns of the
// merged files and the deleted inputs before the inputs are deleted, in
// batches, and Compact then merges the index if it has grown.
//
// Two processes compacting the same files at once leave one merged file:
// it is named after its inputs, and the create-only commit lets one of
// them store it; the other deletes the inputs only after checking that the
// stored file holds all of their slots.
//
// The merged file keeps encrypted every column encrypted in its inputs,
// besides those Encryption.Columns names; a partition with encrypted files
// needs their key (Encryption.Keys), and without it is left as it is and
// reported with a [*KeyError] (see [Encryption]).
//
// Compact also removes temporary files older than an hour from stores that
// leave them behind when a process dies ([DirStore.CleanTemp]).
func (l *Lake) Compact(ctx context.Context, ds *heal.Dataset, q heal.Query) (int, error) {
	if c, ok := l.store.(tempCleaner); ok {
		if n, err := c.CleanTemp(time.Hour); err != nil {
			l.log.Warn("heal/sink: cleaning temporary files", "err", err)
		} else if n > 0 {
			l.log.Info("heal/sink: removed stale temporary files", "count", n)
		}
	}
	st, err := l.loadIndex(ctx, ds)
	if err != nil {
		return 0, fmt.Errorf("heal/sink: compact %s: %w", ds.Name, err)
	}
	parts, err := l.list(ctx, ds, q)
	if err != nil {
		return 0, fmt.Errorf("heal/sink: compact %s: %w", ds.Name, err)
	}
	// With a key, merged files encrypt what the lake's encryption policy
	// declares too (a clear partition from before encryption comes out
	// encrypted). Without one, a clear partition is merged in clear, as it
	// was: no value it holds is exposed further.
	var declared []string
	if l.enc != nil && l.enc.Keys != nil {
		if declared, err = l.declaredColumns(ctx, ds); err != nil {
			return 0, fmt.Errorf("heal/sink: compact %s: %w", ds.Name, err)
		}
	}
	var n atomic.Int64
	lim := newLimiter(l.conc)
	var errs []error
	for len(parts) > 0 {
		batch := parts[:min(len(parts), compactBatch)]
		parts = parts[len(batch):]
		done, err := l.compactBatch(ctx, ds, st, batch, lim, declared)
		n.Add(int64(done))
		if err != nil {
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
		}
	}
	if n.Load() > 0 && ctx.Err() == nil {
		if err := l.mergeIndex(ctx, ds); err != nil {
			l.log.Warn("heal/sink: merging the index", "dataset", ds.Name, "err", err)
		}
	}
	return int(n.Load()), errors.Join(errs...)
}

// compactBatch is the number of partitions whose merged files are recorded
// in the index in one object, before their inputs are deleted.
const compactBatch = 256

// compacted is one partition rewritten: its merged file and its inputs.
type compacted struct {
	p      heal.Partition
	merged idxEntry
	inputs []fileRef
}

// compactBatch compacts parts: merges and stores the files of each, records
// the merged files and the removal of their inputs in the index, then
// deletes the inputs.
func (l *Lake) compactBatch(ctx context.Context, ds *heal.Dataset, st *indexState, parts []*partFiles, lim limiter, declared []string) (int, error) {
	var (
		mu   sync.Mutex
		done []compacted
	)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(l.conc)
	for _, pf := range parts {
		g.Go(func() error {
			if len(pf.files) == 1 {
				dup, err := l.hasDuplicates(gctx, ds, st, pf, lim)
				if err != nil {
					return fmt.Errorf("heal/sink: compact %s: %w", pf.p, err)
				}
				if !dup {
					return nil
				}
			}
			c, ok, err := l.compactPartition(gctx, ds, pf, declared)
			if err != nil {
				return fmt.Errorf("heal/sink: compact %s: %w", pf.p, err)
			}
			if ok {
				mu.Lock()
				done = append(done, c)
				mu.Unlock()
			}
			return nil
		})
	}
	err := g.Wait()
	if len(done) == 0 {
		return 0, err
	}
	var entries []idxEntry
	for _, c := range done {
		entries = append(entries, c.merged)
		for _, f := range c.inputs {
			entries = append(entries, removeEntry(ds, c.p, f.name))
		}
	}
	l.logIndex(ctx, ds, entries)
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	for _, c := range done {
		for _, f := range c.inputs {
			if err := l.store.Delete(ctx, f.name); err != nil {
				// The data is correct; the copies left are merged next time.
				errs = append(errs, fmt.Errorf("heal/sink: compact %s: deleting compacted input: %w", c.p, err))
			}
		}
		l.log.Debug("heal/sink: compacted partition", "dataset", ds.Name, "partition", c.p.String(), "files", len(c.inputs), "file", c.merged.name)
	}
	return len(done), errors.Join(errs...)
}

// hasDuplicates reports whether the single file of pf holds a slot twice.
// Files heal wrote never do, and a file the index knows does not: only
// files without an entry and without a valid footer index are read.
func (l *Lake) hasDuplicates(ctx context.Context, ds *heal.Dataset, st *indexState, pf *partFiles, lim limiter) (bool, error) {
	fr := pf.files[0]
	if f, ok := st.files[relName(ds, fr.name)]; ok && f.e.size == fr.size {
		if _, ok := f.e.fileInv(ds); ok {
			return false, nil
		}
	}
	info, err := l.inventoryPartition(ctx, ds, pf, nil, heal.Window{}, true, lim, nil)
	if err != nil {
		return false, err
	}
	return info.Duplicates() > 0, nil
}

// compactPartition merges the files of pf into one new file and returns
// it with the inputs to delete; ok is false when no usable row was left.
//
// The merged file encrypts the columns Encryption.Columns names and every
// column encrypted in any input, so that a lake configured otherwise (the
// heal command names no columns) never rewrites a sensitive column in
// clear. Reading an encrypted input needs its key: without it the
// compaction fails with a *KeyError before anything is written.
func (l *Lake) compactPartition(ctx context.Context, ds *heal.Dataset, pf *partFiles, declared []string) (compacted, bool, error) {
	rec, used, enc, err := l.loadPartition(ctx, ds, pf, heal.Window{})
	if err != nil {
		return compacted{}, false, err
	}
	if rec == nil {
		return compacted{}, false, nil // nothing usable was left
	}
	defer rec.Release()
	seq := zeroSeq
	for _, f := range used {
		if f.seq > seq {
			seq = f.seq
		}
	}
	data, slots, err := l.encode(ctx, ds, pf.p, rec, union(enc, declared))
	if err != nil {
		return compacted{}, false, err
	}
	name := partitionDir(ds, pf.p) + seq + ".c" + inputsHash(used) + fileExt
	if err := l.store.Put(ctx, name, data, true); err != nil {
		if !errors.Is(err, heal.ErrExist) {
			return compacted{}, false, err
		}
		// Another compaction merged the same inputs first (two engines, or
		// shards being re-balanced): its file holds their rows, so the
		// inputs go, and no second merged copy is left. Checked, not
		// assumed: the inputs are deleted only if that file holds every
		// slot of ours.
		e, ok := l.storedEntry(ctx, ds, pf.p, name)
		var theirs heal.Slots
		if !ok || theirs.UnmarshalBinary(e.slots) != nil || !covers(theirs, slots) {
			return compacted{}, false, fmt.Errorf("%s exists and does not hold the rows of the files it is named after: %w", name, err)
		}
		return compacted{p: pf.p, merged: e, inputs: used}, true, nil
	}
	return compacted{p: pf.p, merged: addEntry(ds, pf.p, name, int64(len(data)), slots), inputs: used}, true, nil
}

// inputsHash names a compaction's output after its inputs: 16 hex digits
// of the SHA-256 of their names. Two compactions of the same files name
// the same file, and the create-only Put lets one of them store it.
func inputsHash(used []fileRef) string {
	names := make([]string, len(used))
	for i, f := range used {
		names[i] = f.name
	}
	slices.Sort(names)
	h := sha256.Sum256([]byte(strings.Join(names, "\x00")))
	return hex.EncodeToString(h[:8])
}

// covers reports whether a holds every slot b holds.
func covers(a, b heal.Slots) bool {
	for t := range b.All() {
		if !a.Has(t) {
			return false
		}
	}
	return true
}
