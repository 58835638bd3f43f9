package sink

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/selfheal/heal"
	"golang.org/x/sync/errgroup"
)

// Inventory implements [heal.Lake]. It calls fn for each stored partition
// of ds matching q that holds rows in q.Window, in the order of Scan, from
// one goroutine. For each file it reads only the footer and uses the
// presence index heal wrote there; a file without a valid index (written by
// another tool, or tampered with) has its key and time columns read
// instead, and its partition is reported Scanned. Footers are read in
// parallel, up to Options.Concurrency at once, across files and partitions
// (results are still delivered in order).
func (l *Lake) Inventory(ctx context.Context, ds *heal.Dataset, q heal.Query, fn func(heal.PartitionInfo) error) error {
	parts, err := l.list(ctx, ds, q)
	if err != nil {
		return fmt.Errorf("heal/sink: inventory %s: %w", ds.Name, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait() // no goroutine outlives the call (nor its allocations)
	defer cancel()
	type result struct {
		info heal.PartitionInfo
		err  error
	}
	lim := newLimiter(l.conc)
	results := make([]chan result, len(parts))
	start := func(i int) {
		results[i] = make(chan result, 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			info, err := l.inventoryPartition(ctx, ds, parts[i], q.Window, lim)
			results[i] <- result{info, err}
		}()
	}
	// Work ahead of the partition being delivered, but not unboundedly.
	ahead := 4 * l.conc
	for i := 0; i < len(parts) && i < ahead; i++ {
		start(i)
	}
	for i, pf := range parts {
		r := <-results[i]
		results[i] = nil
		if i+ahead < len(parts) {
			start(i + ahead)
		}
		if r.err != nil {
			return fmt.Errorf("heal/sink: inventory %s: %w", pf.p, r.err)
		}
		if r.info.Files == 0 || r.info.Rows == 0 {
			continue
		}
		if err := fn(r.info); err != nil {
			return err
		}
	}
	return nil
}

// limiter bounds the files read at once, across partitions.
type limiter chan struct{}

func newLimiter(n int) limiter { return make(limiter, n) }

func (l limiter) acquire(ctx context.Context) error {
	select {
	case l <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l limiter) release() { <-l }

// fileInv is what one file holds.
type fileInv struct {
	slots   heal.Slots  // at the grain, within the partition
	times   []time.Time // when scanned: the time of every row, copies included
	scanned bool
}

// rowsIn counts the rows of the file within win.
func (fi *fileInv) rowsIn(win heal.Window) int64 {
	var n int64
	if fi.scanned {
		for _, t := range fi.times {
			if win.Contains(t) {
				n++
			}
		}
		return n
	}
	// An indexed file holds one row per slot.
	if sw := fi.slots.Window(); !sw.Start.Before(win.Start) && !sw.End.After(win.End) {
		return int64(fi.slots.Count())
	}
	for t := range fi.slots.All() {
		if win.Contains(t) {
			n++
		}
	}
	return n
}

func (l *Lake) inventoryPartition(ctx context.Context, ds *heal.Dataset, pf *partFiles, w heal.Window, lim limiter) (heal.PartitionInfo, error) {
	files := pf.files
	for attempt := 0; ; attempt++ {
		info, err := l.inventoryFiles(ctx, ds, pf.p, files, w, lim)
		if err == nil || !errors.Is(err, heal.ErrNotFound) || ctx.Err() != nil {
			return info, err
		}
		if attempt == maxRelists {
			return info, fmt.Errorf("files keep vanishing: %w", err)
		}
		if files, err = l.relist(ctx, ds, pf.p); err != nil {
			return info, err
		}
	}
}

func (l *Lake) inventoryFiles(ctx context.Context, ds *heal.Dataset, p heal.Partition, files []fileRef, w heal.Window, lim limiter) (heal.PartitionInfo, error) {
	info := heal.PartitionInfo{Partition: p}
	invs := make([]*fileInv, len(files))
	g, gctx := errgroup.WithContext(ctx)
	for i, fr := range files {
		g.Go(func() error {
			if err := lim.acquire(gctx); err != nil {
				return err
			}
			defer lim.release()
			fi, err := l.inventoryFile(gctx, ds, p, fr.name)
			if err != nil {
				var ce *corruptError
				if errors.As(err, &ce) {
					l.quarantine(gctx, ds, fr.name, err)
					return nil
				}
				return err
			}
			invs[i] = fi
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return info, err
	}
	pw := p.Window()
	win := pw
	if !w.IsZero() {
		win = pw.Intersect(w)
	}
	info.Present = heal.NewSlots(win, ds.Grain)
	// Present's window is win aligned outward; when win is not aligned, its
	// edge slots are only partly in win and must be filtered.
	aw := win.Align(ds.Grain)
	aligned := aw.Start.Equal(win.Start) && aw.End.Equal(win.End)
	for _, fi := range invs {
		if fi == nil {
			continue
		}
		info.Files++
		info.Scanned = info.Scanned || fi.scanned
		info.Rows += fi.rowsIn(win)
		if aligned {
			info.Present.Union(fi.slots) // adds what falls in Present's window
			continue
		}
		for t := range fi.slots.All() {
			if win.Contains(t) {
				info.Present.Add(t)
			}
		}
	}
	return info, nil
}

// inventoryFile reads the presence index of one file, or its key and time
// columns when it has no valid index.
func (l *Lake) inventoryFile(ctx context.Context, ds *heal.Dataset, p heal.Partition, name string) (*fileInv, error) {
	f, err := l.open(ctx, ds, name)
	if err != nil {
		return nil, err
	}
	defer f.close()
	md := f.pf.MetaData()
	if s, ok := decodeIndex(ds, p, md.KeyValueMetadata().FindValue, md.GetNumRows()); ok {
		return &fileInv{slots: s}, nil
	}
	keys, times, unit, err := l.readKeyTime(ctx, ds, f)
	if err != nil {
		return nil, err
	}
	defer keys.Release()
	defer times.Release()
	if err := checkRows(ds, p, keys, times, unit); err != nil {
		return nil, &corruptError{name: name, err: err}
	}
	ts := times.(*array.Timestamp)
	fi := &fileInv{scanned: true, times: make([]time.Time, ts.Len())}
	var span heal.Window
	for i := range fi.times {
		t := ts.Value(i).ToTime(unit).UTC()
		fi.times[i] = t
		if i == 0 || t.Before(span.Start) {
			span.Start = t
		}
		if i == 0 || !t.Before(span.End) {
			span.End = t.Add(ds.Grain)
		}
	}
	fi.slots = heal.NewSlots(span, ds.Grain)
	for _, t := range fi.times {
		fi.slots.Add(t)
	}
	return fi, nil
}
