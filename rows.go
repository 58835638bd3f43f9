package heal

import (
	"context"
	"fmt"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/compute"
	"github.com/apache/arrow/go/v17/arrow/memory"
)

// keepRows aligns rec to the grain (the documented flooring rule) and keeps
// the rows within w whose key and slot satisfy keep. The caller owns the
// result.
func (e *Engine) keepRows(rec arrow.Record, w Window, keep func(key string, slot int64) bool) (arrow.Record, error) {
	return e.keepRowsOf(e.ds, rec, w, func(k string, t time.Time) bool { return keep(k, e.idx(t)) })
}

// keepRowsOf is keepRows for any dataset.
func (e *Engine) keepRowsOf(ds *Dataset, rec arrow.Record, w Window, keep func(key string, t time.Time) bool) (arrow.Record, error) {
	al, err := ds.Align(e.mem, rec)
	if err != nil {
		return nil, err
	}
	defer al.Release()
	keys := al.Column(ds.KeyIndex()).(*array.String)
	ts := al.Column(ds.TimeIndex()).(*array.Timestamp)
	unit := ds.TimeUnit()
	idx := make([]int64, 0, al.NumRows())
	for i := 0; i < int(al.NumRows()); i++ {
		t := ts.Value(i).ToTime(unit)
		if w.Contains(t) && keep(keys.Value(i), t) {
			idx = append(idx, int64(i))
		}
	}
	if dropped := int(al.NumRows()) - len(idx); dropped > 0 {
		e.log.Debug("rows outside the request dropped", "dataset", ds.Name, "rows", dropped, "window", w.String())
	}
	return takeRows(e.mem, al, idx)
}

// takeRows returns the rows of rec at idx, in that order. The caller owns
// the result.
func takeRows(mem memory.Allocator, rec arrow.Record, idx []int64) (arrow.Record, error) {
	if len(idx) == int(rec.NumRows()) {
		same := true
		for i, v := range idx {
			if v != int64(i) {
				same = false
				break
			}
		}
		if same {
			rec.Retain()
			return rec, nil
		}
	}
	b := array.NewInt64Builder(mem)
	defer b.Release()
	b.AppendValues(idx, nil)
	ia := b.NewInt64Array()
	defer ia.Release()
	ctx := compute.WithAllocator(context.Background(), mem)
	cols := make([]arrow.Array, rec.NumCols())
	defer func() {
		for _, c := range cols {
			if c != nil {
				c.Release()
			}
		}
	}()
	for i, c := range rec.Columns() {
		out, err := compute.TakeArray(ctx, c, ia)
		if err != nil {
			return nil, fmt.Errorf("heal: take rows: %w", err)
		}
		cols[i] = out
	}
	return array.NewRecord(rec.Schema(), cols, int64(len(idx))), nil
}

// concatRecords joins recs (all of schema s) into one record; with no
// records it returns a zero-row record. The caller owns the result.
func concatRecords(mem memory.Allocator, s *arrow.Schema, recs []arrow.Record) (arrow.Record, error) {
	if len(recs) == 1 {
		recs[0].Retain()
		return recs[0], nil
	}
	if len(recs) == 0 {
		b := array.NewRecordBuilder(mem, s)
		defer b.Release()
		return b.NewRecord(), nil
	}
	cols := make([]arrow.Array, s.NumFields())
	defer func() {
		for _, c := range cols {
			if c != nil {
				c.Release()
			}
		}
	}()
	var n int64
	for _, r := range recs {
		n += r.NumRows()
	}
	parts := make([]arrow.Array, len(recs))
	for i := range cols {
		for j, r := range recs {
			parts[j] = r.Column(i)
		}
		c, err := array.Concatenate(parts, mem)
		if err != nil {
			return nil, fmt.Errorf("heal: concatenate: %w", err)
		}
		cols[i] = c
	}
	return array.NewRecord(s, cols, n), nil
}
