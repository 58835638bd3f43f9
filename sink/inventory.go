package sink

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/selfheal/heal"
	"golang.org/x/sync/errgroup"
)

// Inventory implements [heal.Lake]. It calls fn for each stored partition
// of ds matching q that holds rows in q.Window, in the order of Scan. For
// each file it reads only the footer and uses the presence index heal
// wrote there; a file without a valid index (written by another tool, or
// tampered with) has its key and time columns read instead, and the
// partition is reported Scanned. The footers of one partition are read in
// parallel, up to Options.Concurrency at once.
func (l *Lake) Inventory(ctx context.Context, ds *heal.Dataset, q heal.Query, fn func(heal.PartitionInfo) error) error {
	parts, err := l.list(ctx, ds, q)
	if err != nil {
		return fmt.Errorf("heal/sink: inventory %s: %w", ds.Name, err)
	}
	for _, pf := range parts {
		info, err := l.inventoryPartition(ctx, ds, pf, q.Window)
		if err != nil {
			return fmt.Errorf("heal/sink: inventory %s: %w", pf.p, err)
		}
		if info.Files == 0 || info.Rows == 0 {
			continue
		}
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

// fileInv is what one file holds.
type fileInv struct {
	slots   heal.Slots // over the partition's window at the grain
	slotOf  []int      // when scanned: the slot of every row, copies included
	scanned bool
}

// rowsIn counts the rows of the file in slots [lo, hi).
func (fi *fileInv) rowsIn(lo, hi int) int64 {
	var n int64
	if fi.scanned {
		for _, s := range fi.slotOf {
			if s >= lo && s < hi {
				n++
			}
		}
		return n
	}
	// An indexed file holds one row per slot.
	if lo == 0 && hi >= fi.slots.Len() {
		return int64(fi.slots.Count())
	}
	start, grain := fi.slots.Window().Start, fi.slots.Grain()
	for t := range fi.slots.All() {
		if s := int(t.Sub(start) / grain); s >= lo && s < hi {
			n++
		}
	}
	return n
}

func (l *Lake) inventoryPartition(ctx context.Context, ds *heal.Dataset, pf *partFiles, w heal.Window) (heal.PartitionInfo, error) {
	files := pf.files
	for attempt := 0; ; attempt++ {
		info, err := l.inventoryFiles(ctx, ds, pf.p, files, w)
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

func (l *Lake) inventoryFiles(ctx context.Context, ds *heal.Dataset, p heal.Partition, files []fileRef, w heal.Window) (heal.PartitionInfo, error) {
	info := heal.PartitionInfo{Partition: p}
	invs := make([]*fileInv, len(files))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(l.conc)
	for i, fr := range files {
		g.Go(func() error {
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
	// Slot s (at pw.Start+s*grain) is in win iff lo <= s < hi.
	lo, hi := ceilDiv(win.Start.Sub(pw.Start), ds.Grain), ceilDiv(win.End.Sub(pw.Start), ds.Grain)
	whole := lo == 0 && hi == pw.Slots(ds.Grain)
	for _, fi := range invs {
		if fi == nil {
			continue
		}
		info.Files++
		info.Scanned = info.Scanned || fi.scanned
		info.Rows += fi.rowsIn(lo, hi)
		if whole {
			info.Present.Union(fi.slots)
			continue
		}
		for t := range fi.slots.All() {
			if s := int(t.Sub(pw.Start) / ds.Grain); s >= lo && s < hi {
				info.Present.Add(t)
			}
		}
	}
	return info, nil
}

func ceilDiv(d, grain time.Duration) int {
	if d <= 0 {
		return 0
	}
	return int((d + grain - 1) / grain)
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
	kv := md.KeyValueMetadata()
	if s, ok := decodeIndex(ds, p, kv.FindValue, md.GetNumRows()); ok {
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
	pw := p.Window()
	fi := &fileInv{slots: heal.NewSlots(pw, ds.Grain), scanned: true}
	ts := times.(*array.Timestamp)
	fi.slotOf = make([]int, ts.Len())
	for i := range fi.slotOf {
		s := int(ts.Value(i).ToTime(unit).Sub(pw.Start) / ds.Grain)
		fi.slotOf[i] = s
		fi.slots.AddIndex(s)
	}
	return fi, nil
}
