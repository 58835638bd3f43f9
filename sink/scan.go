package sink

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/selfheal/heal"
)

// Scan implements [heal.Lake]. It lists the matching partitions first (only
// the directories of q.Keys when set, and of the periods overlapping
// q.Window when few), then reads one partition per call to Next: the
// reader yields one record per partition holding rows, partitions ordered
// by key, then time, rows deduplicated (newest wins), restricted to
// q.Window and sorted by time. Memory is bounded by one partition.
//
// The reader uses ctx until it is released; when ctx ends, Next returns
// false and Err reports why. If a file vanishes between the listing and its
// reading (a concurrent compaction replaced it), the partition is listed
// and read again.
func (l *Lake) Scan(ctx context.Context, ds *heal.Dataset, q heal.Query) (array.RecordReader, error) {
	parts, err := l.list(ctx, ds, q)
	if err != nil {
		return nil, fmt.Errorf("heal/sink: scan %s: %w", ds.Name, err)
	}
	return &scanReader{refs: 1, lake: l, ctx: ctx, ds: ds, w: q.Window, parts: parts}, nil
}

// scanReader is the array.RecordReader Scan returns.
type scanReader struct {
	refs  int64
	lake  *Lake
	ctx   context.Context
	ds    *heal.Dataset
	w     heal.Window
	parts []*partFiles
	next  int
	cur   arrow.Record
	err   error
}

func (r *scanReader) Retain() { atomic.AddInt64(&r.refs, 1) }

func (r *scanReader) Release() {
	if atomic.AddInt64(&r.refs, -1) == 0 && r.cur != nil {
		r.cur.Release()
		r.cur = nil
	}
}

func (r *scanReader) Schema() *arrow.Schema { return r.ds.Schema }

func (r *scanReader) Record() arrow.Record { return r.cur }

func (r *scanReader) Err() error { return r.err }

func (r *scanReader) Next() bool {
	if r.cur != nil {
		r.cur.Release()
		r.cur = nil
	}
	for r.err == nil && r.next < len(r.parts) {
		if err := r.ctx.Err(); err != nil {
			r.err = fmt.Errorf("heal/sink: scan %s: %w", r.ds.Name, err)
			return false
		}
		pf := r.parts[r.next]
		r.parts[r.next] = nil
		r.next++
		rec, _, _, err := r.lake.loadPartition(r.ctx, r.ds, pf, r.w)
		if err != nil {
			r.err = fmt.Errorf("heal/sink: scan %s: %w", pf.p, err)
			return false
		}
		if rec != nil {
			r.cur = rec
			return true
		}
	}
	return false
}
