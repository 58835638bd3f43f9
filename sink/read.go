package sink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/apache/arrow/go/v17/parquet"
	"github.com/apache/arrow/go/v17/parquet/file"
	"github.com/apache/arrow/go/v17/parquet/pqarrow"
	"github.com/selfheal/heal"
)

// corruptError says a file cannot be used: it is not valid Parquet, or its
// schema or rows do not match the dataset. Such files are quarantined.
type corruptError struct {
	name string
	err  error
}

func (e *corruptError) Error() string {
	return fmt.Sprintf("heal/sink: unusable file %s: %v", e.name, e.err)
}
func (e *corruptError) Unwrap() error { return e.err }

// trackedObject remembers whether the store failed a read, so that a
// Parquet error caused by I/O (retryable) is not taken for corruption.
type trackedObject struct {
	Object
	mu    sync.Mutex
	ioErr error
}

func (o *trackedObject) note(err error) {
	if err != nil && err != io.EOF {
		o.mu.Lock()
		if o.ioErr == nil {
			o.ioErr = err
		}
		o.mu.Unlock()
	}
}

func (o *trackedObject) failed() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.ioErr
}

func (o *trackedObject) ReadAt(p []byte, off int64) (int, error) {
	n, err := o.Object.ReadAt(p, off)
	o.note(err)
	return n, err
}

func (o *trackedObject) Read(p []byte) (int, error) {
	n, err := o.Object.Read(p)
	o.note(err)
	return n, err
}

func (o *trackedObject) Seek(off int64, whence int) (int64, error) {
	n, err := o.Object.Seek(off, whence)
	o.note(err)
	return n, err
}

// openFile is an open Parquet data file whose schema matches the dataset.
type openFile struct {
	name string
	obj  *trackedObject
	pf   *file.Reader
	fr   *pqarrow.FileReader
	sc   *arrow.Schema // as stored; may differ from the dataset's by fixable units
}

func (f *openFile) close() { f.pf.Close() } // closes obj too

// classify turns an error met while reading f into a context error, a
// store error (the store failed; retryable) or a *corruptError. A
// *KeyError (an encrypted file's key is unavailable) is returned as is:
// the file is not damaged.
func classify(ctx context.Context, name string, obj *trackedObject, err error) error {
	if ke := (*KeyError)(nil); errors.As(err, &ke) {
		return err
	}
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("heal/sink: read %s: %w", name, cerr)
	}
	if ioErr := obj.failed(); ioErr != nil {
		return fmt.Errorf("heal/sink: read %s: %w", name, ioErr)
	}
	return &corruptError{name: name, err: err}
}

// open opens name and checks its schema against ds. A missing file gives
// an error for which errors.Is(err, heal.ErrNotFound) (it vanished since
// it was listed).
func (l *Lake) open(ctx context.Context, ds *heal.Dataset, name string) (f *openFile, err error) {
	obj, err := l.store.Open(ctx, name)
	if err != nil {
		return nil, err
	}
	t := &trackedObject{Object: obj}
	var pf *file.Reader
	defer func() {
		if r := recover(); r != nil {
			err = classify(ctx, name, t, fmt.Errorf("panic reading footer: %v", r))
		}
		if err != nil {
			if pf != nil {
				pf.Close()
			} else {
				t.Close()
			}
		}
	}()
	pf, err = file.NewParquetReader(t, file.WithReadProps(parquet.NewReaderProperties(l.mem)))
	if err != nil {
		pf = nil
		return nil, classify(ctx, name, t, err)
	}
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: 64 << 10}, l.mem)
	if err != nil {
		return nil, classify(ctx, name, t, err)
	}
	sc, err := fr.Schema()
	if err != nil {
		return nil, classify(ctx, name, t, err)
	}
	if err := checkFileSchema(ds, sc); err != nil {
		return nil, &corruptError{name: name, err: err}
	}
	return &openFile{name: name, obj: t, pf: pf, fr: fr, sc: sc}, nil
}

// secondsStoredAsMillis reports whether want is timestamp[s] and got the
// timestamp[ms] (same zone) Parquet stores it as: Parquet has no seconds
// unit, and pqarrow's stored schema does not restore it.
func secondsStoredAsMillis(want, got arrow.DataType) bool {
	w, ok1 := want.(*arrow.TimestampType)
	g, ok2 := got.(*arrow.TimestampType)
	return ok1 && ok2 && w.Unit == arrow.Second && g.Unit == arrow.Millisecond && w.TimeZone == g.TimeZone
}

// checkFileSchema reports whether a file's schema is not the dataset's:
// the same columns by name and type, allowing seconds stored as
// milliseconds and, in a file written before they were added, missing
// nullable columns (see fileColumns).
func checkFileSchema(ds *heal.Dataset, sc *arrow.Schema) error {
	_, err := fileColumns(ds, sc)
	return err
}

// readAll reads every row of f as one record with the dataset's schema and
// checks that each row belongs to p. It also returns the columns f holds
// encrypted (see readTable).
func (l *Lake) readAll(ctx context.Context, ds *heal.Dataset, p heal.Partition, f *openFile) (rec arrow.Record, enc []string, err error) {
	defer func() {
		if r := recover(); r != nil {
			if rec != nil {
				rec.Release()
				rec = nil
			}
			err = classify(ctx, f.name, f.obj, fmt.Errorf("panic decoding: %v", r))
		}
	}()
	tbl, enc, err := l.readTable(ctx, ds, f) // decrypts an encrypted file: encrypt.go
	if err != nil {
		return nil, nil, classify(ctx, f.name, f.obj, err)
	}
	defer tbl.Release()
	raw, err := tableToRecord(l.mem, tbl)
	if err != nil {
		return nil, nil, err
	}
	defer raw.Release()
	rec, err = conform(l.mem, ds, raw)
	if err != nil {
		return nil, nil, &corruptError{name: f.name, err: err}
	}
	if err := checkRows(ds, p, rec.Column(ds.KeyIndex()), rec.Column(ds.TimeIndex()), ds.TimeUnit()); err != nil {
		rec.Release()
		return nil, nil, &corruptError{name: f.name, err: err}
	}
	return rec, enc, nil
}

// readKeyTime reads only the key and time columns of f.
func (l *Lake) readKeyTime(ctx context.Context, ds *heal.Dataset, f *openFile) (keys, times arrow.Array, unit arrow.TimeUnit, err error) {
	defer func() {
		if r := recover(); r != nil {
			if keys != nil {
				keys.Release()
				times.Release()
			}
			keys, times = nil, nil
			err = classify(ctx, f.name, f.obj, fmt.Errorf("panic decoding: %v", r))
		}
	}()
	cols, err := fileColumns(ds, f.sc)
	if err != nil {
		return nil, nil, 0, &corruptError{name: f.name, err: err}
	}
	ki, ti := f.fr.Manifest.Fields[cols[ds.KeyIndex()]].ColIndex, f.fr.Manifest.Fields[cols[ds.TimeIndex()]].ColIndex
	if ki < 0 || ti < 0 {
		return nil, nil, 0, &corruptError{name: f.name, err: errors.New("key or time is not a leaf column")}
	}
	rgs := make([]int, f.pf.NumRowGroups())
	for i := range rgs {
		rgs[i] = i
	}
	tbl, err := f.fr.ReadRowGroups(ctx, []int{ki, ti}, rgs)
	if err != nil {
		return nil, nil, 0, classify(ctx, f.name, f.obj, err)
	}
	defer tbl.Release()
	rec, err := tableToRecord(l.mem, tbl)
	if err != nil {
		return nil, nil, 0, err
	}
	defer rec.Release()
	kcol := rec.Schema().FieldIndices(ds.Key)
	tcol := rec.Schema().FieldIndices(ds.Time)
	if len(kcol) != 1 || len(tcol) != 1 {
		return nil, nil, 0, &corruptError{name: f.name, err: errors.New("key or time column missing")}
	}
	keys, times = rec.Column(kcol[0]), rec.Column(tcol[0])
	keys.Retain()
	times.Retain()
	return keys, times, times.DataType().(*arrow.TimestampType).Unit, nil
}

// checkRows reports the first row that does not belong to p: a null or
// other key, a null time, a time off the grain or outside the period.
// Heal's files always pass; this guards against foreign or misplaced files.
func checkRows(ds *heal.Dataset, p heal.Partition, keys, times arrow.Array, unit arrow.TimeUnit) error {
	k, ok := keys.(*array.String)
	if !ok {
		return fmt.Errorf("key column is %s", keys.DataType())
	}
	ts, ok := times.(*array.Timestamp)
	if !ok {
		return fmt.Errorf("time column is %s", times.DataType())
	}
	pw := p.Window()
	for i := 0; i < k.Len(); i++ {
		switch {
		case k.IsNull(i):
			return fmt.Errorf("row %d: null key", i)
		case k.Value(i) != p.Key:
			return fmt.Errorf("row %d: key %q in the directory of %q", i, k.Value(i), p.Key)
		case ts.IsNull(i):
			return fmt.Errorf("row %d: null time", i)
		}
		t := ts.Value(i).ToTime(unit)
		if !pw.Contains(t) || !t.Equal(ds.Slot(t)) {
			return fmt.Errorf("row %d: time %s is off the grain or outside %s", i, t, p)
		}
	}
	return nil
}

// tableToRecord returns tbl as one record, concatenating chunks if needed.
func tableToRecord(mem memory.Allocator, tbl arrow.Table) (arrow.Record, error) {
	cols := make([]arrow.Array, tbl.NumCols())
	defer func() {
		for _, c := range cols {
			if c != nil {
				c.Release()
			}
		}
	}()
	for i := range cols {
		chunks := tbl.Column(i).Data().Chunks()
		switch len(chunks) {
		case 0:
			cols[i] = array.MakeArrayOfNull(mem, tbl.Schema().Field(i).Type, 0)
		case 1:
			cols[i] = chunks[0]
			cols[i].Retain()
		default:
			c, err := array.Concatenate(chunks, mem)
			if err != nil {
				return nil, fmt.Errorf("heal/sink: concatenate %s: %w", tbl.Schema().Field(i).Name, err)
			}
			cols[i] = c
		}
	}
	return array.NewRecord(tbl.Schema(), cols, tbl.NumRows()), nil
}

// conform returns rec with the dataset's schema, converting columns Parquet
// stored in another unit back and filling columns added since the file
// was written with nulls.
func conform(mem memory.Allocator, ds *heal.Dataset, rec arrow.Record) (arrow.Record, error) {
	at, err := fileColumns(ds, rec.Schema())
	if err != nil {
		return nil, err
	}
	cols := make([]arrow.Array, len(ds.Schema.Fields()))
	defer func() {
		for _, c := range cols {
			if c != nil {
				c.Release()
			}
		}
	}()
	for i, f := range ds.Schema.Fields() {
		if at[i] < 0 {
			cols[i] = array.MakeArrayOfNull(mem, f.Type, int(rec.NumRows()))
			continue
		}
		col := rec.Column(at[i])
		if !secondsStoredAsMillis(f.Type, col.DataType()) {
			col.Retain()
			cols[i] = col
			continue
		}
		c, err := millisToSeconds(mem, f.Type.(*arrow.TimestampType), col.(*array.Timestamp))
		if err != nil {
			return nil, fmt.Errorf("column %s: %w", f.Name, err)
		}
		cols[i] = c
	}
	return array.NewRecord(ds.Schema, cols, rec.NumRows()), nil
}

func millisToSeconds(mem memory.Allocator, typ *arrow.TimestampType, a *array.Timestamp) (arrow.Array, error) {
	b := array.NewTimestampBuilder(mem, typ)
	defer b.Release()
	b.Reserve(a.Len())
	for i := 0; i < a.Len(); i++ {
		if a.IsNull(i) {
			b.AppendNull()
			continue
		}
		v := a.Value(i)
		if v%1000 != 0 {
			return nil, fmt.Errorf("row %d: %d ms is not a whole second", i, v)
		}
		b.Append(v / 1000)
	}
	return b.NewArray(), nil
}

// quarantine moves name aside to _quarantine/<name>: copied, then deleted.
// Failures are logged; the file is then skipped and tried again next time.
func (l *Lake) quarantine(ctx context.Context, ds *heal.Dataset, name string, cause error) {
	to := quarantinePrefix + name
	l.log.Warn("heal/sink: moving unusable file to quarantine", "dataset", ds.Name, "file", name, "to", to, "err", cause)
	obj, err := l.store.Open(ctx, name)
	if err != nil {
		if !errors.Is(err, heal.ErrNotFound) {
			l.log.Error("heal/sink: quarantine failed", "dataset", ds.Name, "file", name, "err", err)
		}
		return
	}
	data, err := io.ReadAll(io.NewSectionReader(obj, 0, obj.Size()))
	obj.Close()
	if err == nil {
		err = l.store.Put(ctx, to, data, false)
	}
	if err == nil {
		// The index forgets the file before it goes, so that an index
		// trusted without a listing never reports it.
		if p, _, ok, _ := parseDataName(ds, name); ok {
			l.logIndex(ctx, ds, []idxEntry{removeEntry(ds, p, name)})
		}
		err = l.store.Delete(ctx, name)
	}
	if err != nil {
		l.log.Error("heal/sink: quarantine failed", "dataset", ds.Name, "file", name, "err", err)
	}
}
