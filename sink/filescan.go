package sink

import (
	"context"
	"fmt"
	"sync"

	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/parquet"
	"github.com/apache/arrow/go/v17/parquet/file"
	"github.com/apache/arrow/go/v17/parquet/metadata"
	"github.com/apache/arrow/go/v17/parquet/pqarrow"
	"github.com/apache/arrow/go/v17/parquet/schema"
	"github.com/selfheal/heal"
)

// fileInv is what one data file holds.
type fileInv struct {
	enc       []byte  // heal.Slots.MarshalBinary of the distinct slots held, at the grain
	extra     []int64 // a file holding a slot more than once: the slot (unix ns) of each extra copy
	scanned   bool    // read from the data, not from an index
	footer    bool    // taken from the file's footer index
	footerEnc []byte  // when scanned: what the footer index says, nil if it has none
}

// inspectFile learns what one data file of p holds: from the presence
// index in its footer when useFooter (heal's files), otherwise, or when the
// footer holds none, from its key and time columns. Only the footer and
// those columns are read. A file that cannot be used gives a *corruptError.
func (l *Lake) inspectFile(ctx context.Context, ds *heal.Dataset, p heal.Partition, name string, useFooter bool) (fi *fileInv, err error) {
	obj, err := l.store.Open(ctx, name)
	if err != nil {
		return nil, err
	}
	t := &trackedObject{Object: obj}
	var pf *file.Reader
	closed := false
	defer func() {
		if r := recover(); r != nil {
			fi, err = nil, classify(ctx, name, t, fmt.Errorf("panic reading: %v", r))
		}
		switch {
		case closed:
		case pf != nil:
			pf.Close() // closes t
		default:
			t.Close()
		}
	}()
	pf, err = file.NewParquetReader(t, file.WithReadProps(parquet.NewReaderProperties(l.mem)))
	if err != nil {
		pf = nil
		return nil, classify(ctx, name, t, err)
	}
	md := pf.MetaData()
	if err := l.checkParquetSchema(ds, md); err != nil {
		return nil, &corruptError{name: name, err: err}
	}
	_, footer, hasFooter := decodeIndex(ds, p, md.KeyValueMetadata().FindValue, md.GetNumRows())
	if useFooter && hasFooter {
		return &fileInv{enc: footer, footer: true}, nil
	}
	fi, ok, err := l.scanTimes(ctx, ds, p, name, t, pf)
	if ok {
		if fi != nil {
			fi.footerEnc = footer
		}
		return fi, err
	}
	// An unusual encoding of the key or the time (INT96, nested): the
	// general Arrow path.
	pf.Close()
	closed = true
	fi, err = l.inspectFileArrow(ctx, ds, p, name)
	if fi != nil {
		fi.footerEnc = footer
	}
	return fi, err
}

// checkParquetSchema checks a file's schema against the dataset's, as
// [Lake.open] does. The answer is remembered per stored Arrow schema, which
// heal's files of one dataset all share.
func (l *Lake) checkParquetSchema(ds *heal.Dataset, md *metadata.FileMetaData) error {
	kv := md.KeyValueMetadata()
	var key string
	if v := kv.FindValue("ARROW:schema"); v != nil {
		key = ds.Name + "\x00" + ds.Schema.String() + "\x00" + *v
		if r, ok := l.schemas.Load(key); ok {
			return r.(schemaCheck).err
		}
	}
	sc, err := pqarrow.FromParquet(md.Schema, &pqarrow.ArrowReadProperties{}, kv)
	if err == nil {
		err = checkFileSchema(ds, sc)
	}
	if key != "" && l.schemaCount.Add(1) <= maxSchemaCache {
		l.schemas.Store(key, schemaCheck{err})
	}
	return err
}

type schemaCheck struct{ err error }

const maxSchemaCache = 256

// scanBuf is reused across files: the time column of a small file fits.
type scanBuf struct {
	vals []int64
	defs []int16
	keys []parquet.ByteArray
	bits []uint64
}

var scanBufs = sync.Pool{New: func() any { return new(scanBuf) }}

// scanTimes reads the time column of pf (and its key column only when the
// column statistics do not already prove every key is p's) with the plain
// Parquet reader. ok is false when the columns are not the usual flat
// INT64 timestamp and UTF-8 key, for the Arrow path to handle.
func (l *Lake) scanTimes(ctx context.Context, ds *heal.Dataset, p heal.Partition, name string, t *trackedObject, pf *file.Reader) (*fileInv, bool, error) {
	md := pf.MetaData()
	ki, ti := md.Schema.ColumnIndexByName(ds.Key), md.Schema.ColumnIndexByName(ds.Time)
	if ki < 0 || ti < 0 {
		return nil, false, nil
	}
	tcol, kcol := md.Schema.Column(ti), md.Schema.Column(ki)
	lt, ok := tcol.LogicalType().(*schema.TimestampLogicalType)
	if !ok || tcol.PhysicalType() != parquet.Types.Int64 || tcol.MaxRepetitionLevel() != 0 ||
		kcol.PhysicalType() != parquet.Types.ByteArray || kcol.MaxRepetitionLevel() != 0 {
		return nil, false, nil
	}
	var unit int64
	switch lt.TimeUnit() {
	case schema.TimeUnitMillis:
		unit = 1e6
	case schema.TimeUnitMicros:
		unit = 1e3
	case schema.TimeUnitNanos:
		unit = 1
	default:
		return nil, false, nil
	}
	buf := scanBufs.Get().(*scanBuf)
	defer scanBufs.Put(buf)

	pw := p.Window()
	start, grain := pw.Start.UnixNano(), int64(ds.Grain)
	nslots := pw.Slots(ds.Grain)
	nw := (nslots + 63) / 64
	if cap(buf.bits) < nw {
		buf.bits = make([]uint64, nw)
	}
	words := buf.bits[:nw]
	clear(words)
	fi := &fileInv{scanned: true}
	row := 0
	for rg := 0; rg < pf.NumRowGroups(); rg++ {
		rgr := pf.RowGroup(rg)
		n := rgr.NumRows()
		if n == 0 {
			continue
		}
		if !keysProven(md, rg, ki, p.Key) {
			if err := l.checkKeys(ctx, name, t, rgr, ki, kcol, n, p.Key, row, buf); err != nil {
				return nil, true, err
			}
		}
		cr, err := rgr.Column(ti)
		if err != nil {
			return nil, true, classify(ctx, name, t, err)
		}
		tr, ok := cr.(*file.Int64ColumnChunkReader)
		if !ok {
			return nil, false, nil
		}
		if cap(buf.vals) < int(n) {
			buf.vals = make([]int64, n)
			buf.defs = make([]int16, n)
		}
		vals, defs := buf.vals[:n], buf.defs[:n]
		var got int64
		nullable := tcol.MaxDefinitionLevel() > 0
		for got < n {
			var d []int16
			if nullable {
				d = defs[got:]
			}
			total, read, err := tr.ReadBatch(n-got, vals[got:], d, nil)
			if err != nil {
				return nil, true, classify(ctx, name, t, err)
			}
			if total == 0 {
				break
			}
			if int64(read) != total {
				return nil, true, &corruptError{name: name, err: fmt.Errorf("row %d: null time", row+int(got))}
			}
			got += total
		}
		if got != n {
			return nil, true, &corruptError{name: name, err: fmt.Errorf("time column holds %d of %d rows", got, n)}
		}
		for i, v := range vals {
			ns := v * unit
			off := ns - start
			if off < 0 || off%grain != 0 || off/grain >= int64(nslots) || v != ns/unit {
				return nil, true, &corruptError{name: name, err: fmt.Errorf("row %d: time %d is off the grain or outside %s", row+i, v, p)}
			}
			s := off / grain
			m := uint64(1) << (s % 64)
			if words[s/64]&m != 0 {
				fi.extra = append(fi.extra, ns)
			}
			words[s/64] |= m
		}
		row += int(n)
	}
	fi.enc = encodeBits(start, grain, nslots, words)
	return fi, true, nil
}

// keysProven reports whether the statistics of the key column of row group
// rg say every key is key: no nulls, min and max equal to it.
func keysProven(md *metadata.FileMetaData, rg, ki int, key string) bool {
	rgm := md.RowGroup(rg)
	cc, err := rgm.ColumnChunk(ki)
	if err != nil {
		return false
	}
	st, err := cc.Statistics()
	if err != nil || st == nil || !st.HasMinMax() || !st.HasNullCount() || st.NullCount() != 0 {
		return false
	}
	bs, ok := st.(*metadata.ByteArrayStatistics)
	return ok && string(bs.Min()) == key && string(bs.Max()) == key
}

// checkKeys reads the key column of one row group and checks every key is
// key.
func (l *Lake) checkKeys(ctx context.Context, name string, t *trackedObject, rgr *file.RowGroupReader, ki int, kcol *schema.Column, n int64, key string, row int, buf *scanBuf) error {
	cr, err := rgr.Column(ki)
	if err != nil {
		return classify(ctx, name, t, err)
	}
	kr, ok := cr.(*file.ByteArrayColumnChunkReader)
	if !ok {
		return &corruptError{name: name, err: fmt.Errorf("key column is %s", kcol.PhysicalType())}
	}
	if cap(buf.keys) < int(n) {
		buf.keys = make([]parquet.ByteArray, n)
	}
	if cap(buf.defs) < int(n) {
		buf.defs = make([]int16, n)
	}
	vals, defs := buf.keys[:n], buf.defs[:n]
	var got int64
	for got < n {
		var d []int16
		if kcol.MaxDefinitionLevel() > 0 {
			d = defs[got:]
		}
		total, read, err := kr.ReadBatch(n-got, vals[got:], d, nil)
		if err != nil {
			return classify(ctx, name, t, err)
		}
		if total == 0 {
			break
		}
		if int64(read) != total {
			return &corruptError{name: name, err: fmt.Errorf("row %d: null key", row+int(got))}
		}
		for i := got; i < got+total; i++ {
			if string(vals[i]) != key {
				return &corruptError{name: name, err: fmt.Errorf("row %d: key %q in the directory of %q", row+int(i), vals[i], key)}
			}
		}
		got += total
	}
	clear(vals) // do not keep the file's pages alive
	if got != n {
		return &corruptError{name: name, err: fmt.Errorf("key column holds %d of %d rows", got, n)}
	}
	return nil
}

// inspectFileArrow reads the key and time columns through Arrow: the
// general path, for encodings scanTimes does not handle.
func (l *Lake) inspectFileArrow(ctx context.Context, ds *heal.Dataset, p heal.Partition, name string) (*fileInv, error) {
	f, err := l.open(ctx, ds, name)
	if err != nil {
		return nil, err
	}
	defer f.close()
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
	pw := p.Window()
	start, grain := pw.Start.UnixNano(), int64(ds.Grain)
	nslots := pw.Slots(ds.Grain)
	words := make([]uint64, (nslots+63)/64)
	fi := &fileInv{scanned: true}
	for i := 0; i < ts.Len(); i++ {
		ns := ts.Value(i).ToTime(unit).UnixNano()
		s := (ns - start) / grain
		m := uint64(1) << (s % 64)
		if words[s/64]&m != 0 {
			fi.extra = append(fi.extra, ns)
		}
		words[s/64] |= m
	}
	fi.enc = encodeBits(start, grain, nslots, words)
	return fi, nil
}

// partitionInfo combines what the files of p hold, restricted to w (zero:
// the whole partition).
func partitionInfo(ds *heal.Dataset, p heal.Partition, w heal.Window, invs []*fileInv) heal.PartitionInfo {
	info := heal.PartitionInfo{Partition: p}
	win := p.Window()
	if !w.IsZero() {
		win = win.Intersect(w)
	}
	pr := newPresence(win, ds.Grain)
	defer pr.release()
	for _, fi := range invs {
		if fi == nil {
			continue
		}
		info.Files++
		info.Scanned = info.Scanned || fi.scanned
		s, ok := parseSlotEnc(fi.enc)
		if !ok {
			continue
		}
		info.Rows += int64(pr.add(s))
		for _, t := range fi.extra {
			if pr.contains(t) {
				info.Rows++
			}
		}
	}
	info.Present = pr.slots()
	return info
}

// rows is the number of rows an inventoried file holds.
func (fi *fileInv) rows() int64 {
	s, ok := parseSlotEnc(fi.enc)
	if !ok {
		return 0
	}
	return int64(s.count() + len(fi.extra))
}
