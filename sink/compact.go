package sink

import (
	"context"
	"errors"
	"fmt"
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
// seq); the next compaction removes them.
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
	parts, err := l.list(ctx, ds, q)
	if err != nil {
		return 0, fmt.Errorf("heal/sink: compact %s: %w", ds.Name, err)
	}
	var n atomic.Int64
	lim := newLimiter(l.conc)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(l.conc)
	for _, pf := range parts {
		g.Go(func() error {
			if len(pf.files) == 1 {
				dup, err := l.hasDuplicates(gctx, ds, pf, lim)
				if err != nil {
					return fmt.Errorf("heal/sink: compact %s: %w", pf.p, err)
				}
				if !dup {
					return nil
				}
			}
			done, err := l.compactPartition(gctx, ds, pf)
			if done {
				n.Add(1)
			}
			if err != nil {
				return fmt.Errorf("heal/sink: compact %s: %w", pf.p, err)
			}
			return nil
		})
	}
	err = g.Wait()
	return int(n.Load()), err
}

// hasDuplicates reports whether the single file of pf holds a slot twice.
// Files heal wrote never do; only files without a valid index are read.
func (l *Lake) hasDuplicates(ctx context.Context, ds *heal.Dataset, pf *partFiles, lim limiter) (bool, error) {
	info, err := l.inventoryPartition(ctx, ds, pf, heal.Window{}, lim)
	if err != nil {
		return false, err
	}
	return info.Duplicates() > 0, nil
}

// compactPartition merges the files of pf into one and deletes them.
func (l *Lake) compactPartition(ctx context.Context, ds *heal.Dataset, pf *partFiles) (bool, error) {
	rec, used, err := l.loadPartition(ctx, ds, pf, heal.Window{})
	if err != nil {
		return false, err
	}
	if rec == nil {
		return false, nil // nothing usable was left
	}
	defer rec.Release()
	seq := zeroSeq
	for _, f := range used {
		if f.seq > seq {
			seq = f.seq
		}
	}
	data, err := l.encode(ds, pf.p, rec)
	if err != nil {
		return false, err
	}
	name := partitionDir(ds, pf.p) + seq + ".c" + randHex() + fileExt
	if err := l.store.Put(ctx, name, data, true); err != nil {
		return false, err
	}
	var errs []error
	for _, f := range used {
		if err := l.store.Delete(ctx, f.name); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		// The data is correct; the copies left are merged next time.
		return true, fmt.Errorf("deleting compacted inputs: %w", err)
	}
	l.log.Debug("heal/sink: compacted partition", "dataset", ds.Name, "partition", pf.p.String(), "files", len(used), "rows", rec.NumRows(), "file", name)
	return true, nil
}
