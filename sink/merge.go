package sink

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/selfheal/heal"
)

// maxRelists is how many times a read lists a partition again after one of
// its files vanished (a concurrent compaction replaced it).
const maxRelists = 5

// loadPartition reads and merges the files of pf: newest wins, rows
// restricted to w (zero: the whole partition), sorted by time. Files that
// cannot be used are quarantined and skipped. If a file vanished since the
// listing, the partition is listed again and read again. rec is nil when no
// row remains; used are the files the rows came from, and enc the columns
// any of them holds encrypted (sorted), which a rewrite must keep
// encrypted.
func (l *Lake) loadPartition(ctx context.Context, ds *heal.Dataset, pf *partFiles, w heal.Window) (rec arrow.Record, used []fileRef, enc []string, err error) {
	files := pf.files
	for attempt := 0; ; attempt++ {
		rec, used, enc, err = l.mergeFiles(ctx, ds, pf.p, files, w)
		if err == nil || !errors.Is(err, heal.ErrNotFound) || ctx.Err() != nil {
			return rec, used, enc, err
		}
		if attempt == maxRelists {
			return nil, nil, nil, fmt.Errorf("heal/sink: read %s: files keep vanishing: %w", pf.p, err)
		}
		l.log.Debug("heal/sink: file vanished; listing the partition again", "dataset", ds.Name, "partition", pf.p.String(), "err", err)
		if files, err = l.relist(ctx, ds, pf.p); err != nil {
			return nil, nil, nil, err
		}
	}
}

type slotRow struct {
	slot int // slot index in the partition
	row  int // row in the concatenation of the files' records
}

func (l *Lake) mergeFiles(ctx context.Context, ds *heal.Dataset, p heal.Partition, files []fileRef, w heal.Window) (arrow.Record, []fileRef, []string, error) {
	recs := make([]arrow.Record, 0, len(files))
	defer func() {
		for _, r := range recs {
			r.Release()
		}
	}()
	var used []fileRef
	var enc []string
	for _, fr := range files {
		rec, fenc, err := l.readFile(ctx, ds, p, fr.name)
		if err != nil {
			var ce *corruptError
			if errors.As(err, &ce) {
				l.quarantine(ctx, ds, fr.name, err)
				continue
			}
			return nil, nil, nil, err
		}
		recs = append(recs, rec)
		used = append(used, fr)
		for _, c := range fenc {
			if !slices.Contains(enc, c) {
				enc = append(enc, c)
			}
		}
	}
	slices.Sort(enc)
	if len(recs) == 0 {
		return nil, used, enc, nil
	}
	pw := p.Window()
	win := pw
	if !w.IsZero() {
		win = pw.Intersect(w)
	}
	unit := ds.TimeUnit()
	var entries []slotRow
	base := 0
	for _, rec := range recs {
		ts := rec.Column(ds.TimeIndex()).(*array.Timestamp)
		for i := 0; i < ts.Len(); i++ {
			t := ts.Value(i).ToTime(unit)
			if win.Contains(t) {
				entries = append(entries, slotRow{slot: int(t.Sub(pw.Start) / ds.Grain), row: base + i})
			}
		}
		base += ts.Len()
	}
	// Files are in ascending precedence and rows in file order, so after a
	// stable sort by slot the last entry of each slot is the newest.
	slices.SortStableFunc(entries, func(a, b slotRow) int { return a.slot - b.slot })
	rows := make([]int, 0, len(entries))
	for i, e := range entries {
		if i+1 < len(entries) && entries[i+1].slot == e.slot {
			continue
		}
		rows = append(rows, e.row)
	}
	if len(rows) == 0 {
		return nil, used, enc, nil
	}
	out, err := takeRows(ctx, l.mem, ds, recs, rows)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("heal/sink: read %s: %w", p, err)
	}
	return out, used, enc, nil
}

// readFile reads every row of one data file of p, and returns the columns
// it holds encrypted.
func (l *Lake) readFile(ctx context.Context, ds *heal.Dataset, p heal.Partition, name string) (arrow.Record, []string, error) {
	f, err := l.open(ctx, ds, name)
	if err != nil {
		return nil, nil, err
	}
	defer f.close()
	return l.readAll(ctx, ds, p, f)
}
