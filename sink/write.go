package sink

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/compute"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/apache/arrow/go/v17/parquet"
	"github.com/apache/arrow/go/v17/parquet/compress"
	"github.com/apache/arrow/go/v17/parquet/file"
	"github.com/apache/arrow/go/v17/parquet/pqarrow"
	"github.com/selfheal/heal"
	"golang.org/x/sync/errgroup"
)

// Write implements [heal.Lake]. It checks rec with [heal.Dataset.Check]
// first, so bad input stores nothing and the *heal.InputError names the
// field and row. Then it splits the rows by partition, keeps the last row of
// each (key, time), sorts them by time and stores each partition's rows as
// one new Parquet file.
//
// Each file appears atomically. A Write spanning several partitions is
// atomic per partition, not overall: if it fails, some partitions may hold
// the rows and others not. Retrying the same Write converges: the copies it
// leaves behind are identical, read once, and merged by [Lake.Compact].
// Under a key of [heal.WithIdempotencyKey] it leaves no copy: each
// partition's file is named by the key, and a partition a Write under the
// same key already stored is skipped (its rows there are dropped).
// Once its files are stored, Write records them in the lake index, in one
// object (see [InventoryMode]); a file whose entry is lost to a crash is
// read from its footer instead.
func (l *Lake) Write(ctx context.Context, ds *heal.Dataset, rec arrow.Record) error {
	if err := ds.Validate(); err != nil {
		return err
	}
	if err := ds.Check(rec); err != nil {
		return fmt.Errorf("heal/sink: write %s: %w", ds.Name, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("heal/sink: write %s: %w", ds.Name, err)
	}
	if rec.NumRows() == 0 {
		return nil
	}
	if err := l.checkStorable(ds); err != nil {
		return err
	}
	declared, err := l.declaredColumns(ctx, ds)
	if err != nil {
		return err
	}
	groups := splitRows(ds, rec)
	if err := nameable(ds, groups); err != nil {
		return fmt.Errorf("heal/sink: write %s: %w", ds.Name, err)
	}
	seq, once := writeSeq(ctx)
	entries := make([]idxEntry, len(groups))
	// Encoding is bounded by the concurrency; storing, which mostly waits
	// (for fsync, for the network), overlaps more files than that.
	encoders := newLimiter(l.conc)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(putsPerEncoder * l.conc)
	for i, grp := range groups {
		g.Go(func() error {
			name := partitionDir(ds, grp.p) + seq + once + fileExt
			if err := encoders.acquire(gctx); err != nil {
				return err
			}
			data, slots, err := l.encodeRows(gctx, ds, grp.p, rec, grp.rows, declared)
			encoders.release()
			if err != nil {
				return fmt.Errorf("heal/sink: write %s: %w", grp.p, err)
			}
			if err := l.store.Put(gctx, name, data, true); err != nil {
				if once != "" && errors.Is(err, heal.ErrExist) {
					// Stored by an earlier Write under the same key, which
					// may have died before recording it in the lake index:
					// record it again, from its footer, or an index-only
					// inventory would never see it and the same work would
					// be planned, and skipped, forever.
					if e, ok := l.storedEntry(gctx, ds, grp.p, name); ok {
						entries[i] = e
					}
					return nil
				}
				return fmt.Errorf("heal/sink: write %s: %w", grp.p, err)
			}
			entries[i] = addEntry(ds, grp.p, name, int64(len(data)), slots)
			return nil
		})
	}
	err = g.Wait()
	// Record what was stored, even after a failure elsewhere: those files
	// are committed.
	entries = slices.DeleteFunc(entries, func(e idxEntry) bool { return e.op == 0 })
	l.logIndex(ctx, ds, entries)
	if len(entries) > 0 {
		if derr := l.declare(ctx, ds); derr != nil {
			// The rows are stored: failing the Write would have them
			// written again. The next Write records the policy.
			l.log.Warn("heal/sink: could not record the encryption policy; the next write tries again", "dataset", ds.Name, "err", derr)
		}
	}
	return err
}

// storedEntry returns the index entry of the stored file name of p, read
// from its footer, or false when it cannot be read as one of heal's.
func (l *Lake) storedEntry(ctx context.Context, ds *heal.Dataset, p heal.Partition, name string) (idxEntry, bool) {
	obj, err := l.store.Open(ctx, name)
	if err != nil {
		return idxEntry{}, false
	}
	size := obj.Size()
	obj.Close()
	fi, err := l.inspectFile(ctx, ds, p, name, true)
	if err != nil || !fi.footer {
		return idxEntry{}, false
	}
	return idxEntry{op: opAdd, name: relName(ds, name), key: p.Key, start: p.Start.Unix(), size: size, slots: fi.enc}, true
}

// writeSeq returns the seq of the files a Write stores and the suffix that
// follows it. Under a [heal.WithIdempotencyKey] key both are functions of
// the key and its time: the seq is the time and the first 32 bits of the
// key's SHA-256, the suffix ".w" and the next 64, so that a repeated Write
// names the same file in each partition and its create-only Put finds it
// there. Otherwise the seq is new and there is no suffix.
func writeSeq(ctx context.Context) (seq, once string) {
	key, at, ok := heal.IdempotencyKeyFrom(ctx)
	if !ok {
		return nextSeq(), ""
	}
	h := sha256.Sum256([]byte(key))
	x := hex.EncodeToString(h[:12])
	return fmt.Sprintf("%020d-%s", max(at.UnixNano(), 0), x[:8]), onceMark + x[8:]
}

// putsPerEncoder is how many files a Write or Compact stores at once per
// file it encodes at once.
const putsPerEncoder = 4

// maxElement is the longest path element the layout writes: what common
// filesystems allow (ext4, XFS, APFS, NTFS: 255 bytes), so that a lake
// written to S3 can be copied to a disk and read there.
const maxElement = 255

// The instants the lake can hold: its presence index and its reads count
// time in int64 nanoseconds (time.UnixNano), from 1677-09-21 to 2262-04-11.
var (
	minTime = time.Unix(0, math.MinInt64).UTC()
	maxTime = time.Unix(0, math.MaxInt64).UTC()
)

// nameable reports, as an *heal.InputError naming the first row concerned,
// a partition the lake cannot store so that it reads back: a key longer
// than a path element once escaped (heal.ValidKey allows 256 bytes, which
// escaping can triple), or a period reaching outside the instants the lake
// can count. Such rows used to be written and then never seen again.
func nameable(ds *heal.Dataset, groups []rowGroup) error {
	for _, g := range groups {
		if n := len(ds.Key) + 1 + len(EscapeKey(g.p.Key)); n > maxElement {
			return &heal.InputError{Dataset: ds.Name, Field: ds.Key, Row: g.rows[0],
				Err: fmt.Errorf("key of %d bytes makes a directory name of %d bytes once escaped; at most %d fit", len(g.p.Key), n, maxElement)}
		}
		if w := g.p.Window(); w.Start.Before(minTime) || w.End.After(maxTime) {
			return &heal.InputError{Dataset: ds.Name, Field: ds.Time, Row: g.rows[0],
				Err: fmt.Errorf("time in the %s partition %s, outside %s..%s, the instants the lake can hold",
					g.p.Period.Name(), g.p.Period.Format(g.p.Start), minTime.Format(time.DateOnly), maxTime.Format(time.DateOnly))}
		}
	}
	return nil
}

type rowGroup struct {
	p    heal.Partition
	rows []int // indices into the record, sorted by time, one per slot
}

// splitRows groups the rows of a checked record by partition, keeping the
// last row of each (key, time), sorted by time; partitions by key, then time.
// Rows that arrive grouped by partition and in time order (a backfill, a
// derivation, one tick of many keys) cost a comparison each; only a
// partition whose rows are out of order or repeat a time is deduplicated
// and sorted.
func splitRows(ds *heal.Dataset, rec arrow.Record) []rowGroup {
	keys := rec.Column(ds.KeyIndex()).(*array.String)
	ts := rec.Column(ds.TimeIndex()).(*array.Timestamp)
	unit := ds.TimeUnit()
	type pkey struct {
		key   string
		start int64
	}
	type acc struct {
		p      heal.Partition
		rows   []int
		sorted bool // strictly increasing times so far
	}
	byPart := make(map[pkey]*acc)
	var (
		order        []*acc
		cur          *acc
		curKey       string
		curLo, curHi arrow.Timestamp // cur's period, in the time column's unit
	)
	for i := 0; i < int(rec.NumRows()); i++ {
		k, v := keys.Value(i), ts.Value(i)
		if cur == nil || k != curKey || v < curLo || v >= curHi {
			p := ds.PartitionOf(k, v.ToTime(unit))
			pk := pkey{k, p.Start.UnixNano()}
			cur = byPart[pk]
			if cur == nil {
				cur = &acc{p: p, sorted: true}
				byPart[pk] = cur
				order = append(order, cur)
			}
			curKey = k
			w := p.Window()
			lo, err1 := arrow.TimestampFromTime(w.Start, unit)
			hi, err2 := arrow.TimestampFromTime(w.End, unit)
			if err1 != nil || err2 != nil {
				lo, hi = v, v // out of the unit's range: look the partition up for every row
			}
			curLo, curHi = lo, hi
		}
		if n := len(cur.rows); n > 0 && ts.Value(cur.rows[n-1]) >= v {
			cur.sorted = false
		}
		cur.rows = append(cur.rows, i)
	}
	slices.SortFunc(order, func(a, b *acc) int {
		if c := strings.Compare(a.p.Key, b.p.Key); c != 0 {
			return c
		}
		return a.p.Start.Compare(b.p.Start)
	})
	out := make([]rowGroup, len(order))
	for i, a := range order {
		if !a.sorted {
			a.rows = lastPerTime(ts, a.rows)
		}
		out[i] = rowGroup{p: a.p, rows: a.rows}
	}
	return out
}

// lastPerTime keeps, of rows (ascending indices into ts), the last of each
// time, sorted by time.
func lastPerTime(ts *array.Timestamp, rows []int) []int {
	// A stable sort by time keeps equal times in row order; the last of each
	// run of equal times is the one that wins.
	slices.SortStableFunc(rows, func(x, y int) int {
		vx, vy := ts.Value(x), ts.Value(y)
		switch {
		case vx < vy:
			return -1
		case vx > vy:
			return 1
		}
		return 0
	})
	out := rows[:0]
	for j, r := range rows {
		if j+1 < len(rows) && ts.Value(rows[j+1]) == ts.Value(r) {
			continue
		}
		out = append(out, r)
	}
	return out
}

// encodeRows encodes rows (indices into rec) as the Parquet file of p.
func (l *Lake) encodeRows(ctx context.Context, ds *heal.Dataset, p heal.Partition, rec arrow.Record, rows []int, alsoEncrypt []string) ([]byte, heal.Slots, error) {
	part, err := takeRows(ctx, l.mem, ds, []arrow.Record{rec}, rows)
	if err != nil {
		return nil, heal.Slots{}, err
	}
	defer part.Release()
	return l.encode(ctx, ds, p, part, alsoEncrypt)
}

// takeRows gathers rows of recs (which have ds's columns) into one record
// with ds.Schema. rows index into the concatenation of recs. A record that
// already is the result is shared rather than copied.
func takeRows(ctx context.Context, mem memory.Allocator, ds *heal.Dataset, recs []arrow.Record, rows []int) (arrow.Record, error) {
	if len(recs) == 1 && len(rows) > 0 && isRun(rows) {
		// A run of consecutive rows (a whole record, or one partition of a
		// micro-batch) is a zero-copy slice.
		lo, hi := int64(rows[0]), int64(rows[0]+len(rows))
		if lo == 0 && hi == recs[0].NumRows() {
			return array.NewRecord(ds.Schema, recs[0].Columns(), hi), nil
		}
		sl := recs[0].NewSlice(lo, hi)
		defer sl.Release()
		return array.NewRecord(ds.Schema, sl.Columns(), hi-lo), nil
	}
	ib := array.NewInt64Builder(mem)
	defer ib.Release()
	ib.Reserve(len(rows))
	for _, r := range rows {
		ib.UnsafeAppend(int64(r))
	}
	idx := ib.NewInt64Array()
	defer idx.Release()
	cctx := compute.WithAllocator(ctx, mem)
	cols := make([]arrow.Array, len(ds.Schema.Fields()))
	defer func() {
		for _, c := range cols {
			if c != nil {
				c.Release()
			}
		}
	}()
	for c := range cols {
		var src arrow.Array
		if len(recs) == 1 {
			src = recs[0].Column(c)
			src.Retain()
		} else {
			parts := make([]arrow.Array, len(recs))
			for i, r := range recs {
				parts[i] = r.Column(c)
			}
			var err error
			if src, err = array.Concatenate(parts, mem); err != nil {
				return nil, fmt.Errorf("concatenate %s: %w", ds.Schema.Field(c).Name, err)
			}
		}
		out, err := compute.TakeArray(cctx, src, idx)
		src.Release()
		if err != nil {
			return nil, fmt.Errorf("take %s: %w", ds.Schema.Field(c).Name, err)
		}
		cols[c] = out
	}
	return array.NewRecord(ds.Schema, cols, int64(len(rows))), nil
}

// isRun reports whether rows are consecutive and ascending.
func isRun(rows []int) bool {
	for i, r := range rows {
		if r != rows[0]+i {
			return false
		}
	}
	return true
}

// encode writes rec, the sorted, deduplicated rows of p, as a Parquet file
// with the presence index in its metadata, and returns the slots it holds.
// The sensitive columns of an encrypted dataset are encrypted (see
// Encryption), and so are the columns alsoEncrypt names.
func (l *Lake) encode(ctx context.Context, ds *heal.Dataset, p heal.Partition, rec arrow.Record, alsoEncrypt []string) ([]byte, heal.Slots, error) {
	// The index covers the span of the rows, not the whole partition, so
	// a one-row micro-batch carries a few bytes of index, not a bitmap of
	// every second of a year. rec is sorted by time.
	ts := rec.Column(ds.TimeIndex()).(*array.Timestamp)
	unit := ds.TimeUnit()
	var slots heal.Slots
	if n := ts.Len(); n > 0 {
		first, last := ts.Value(0).ToTime(unit), ts.Value(n-1).ToTime(unit)
		slots = heal.NewSlots(heal.Window{Start: first, End: last.Add(ds.Grain)}, ds.Grain)
	}
	for i := 0; i < ts.Len(); i++ {
		slots.Add(ts.Value(i).ToTime(unit))
	}
	sv, rv, cv, err := encodeIndex(slots, rec.NumRows())
	if err != nil {
		return nil, slots, err
	}
	sc := writeSchema(ds, rec)
	props := l.writerProps()
	encrypt, err := l.encryptionProps(ctx, ds, sc, alsoEncrypt)
	if err != nil {
		return nil, slots, err
	}
	if encrypt != nil {
		props = l.writerProps(encrypt)
	}
	var buf bytes.Buffer
	fw, err := pqarrow.NewFileWriter(sc, &buf, props, l.arrowProps())
	if err != nil {
		return nil, slots, fmt.Errorf("parquet writer: %w", err)
	}
	for _, kv := range [][2]string{{mdSlots, sv}, {mdRows, rv}, {mdCRC, cv}} {
		if err := fw.AppendKeyValueMetadata(kv[0], kv[1]); err != nil {
			fw.Close()
			return nil, slots, err
		}
	}
	if err := fw.Write(rec); err != nil {
		fw.Close()
		return nil, slots, fmt.Errorf("parquet write: %w", err)
	}
	if err := fw.Close(); err != nil {
		return nil, slots, fmt.Errorf("parquet close: %w", err)
	}
	return buf.Bytes(), slots, nil
}

func (l *Lake) writerProps(extra ...parquet.WriterProperty) *parquet.WriterProperties {
	return parquet.NewWriterProperties(append([]parquet.WriterProperty{
		parquet.WithAllocator(l.mem),
		parquet.WithCompression(l.codec),
		parquet.WithCreatedBy("heal (github.com/selfheal/heal)"),
	}, extra...)...)
}

func (l *Lake) arrowProps() pqarrow.ArrowWriterProperties {
	return pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema(), pqarrow.WithAllocator(l.mem))
}

// writeSchema is ds.Schema, with fields the dataset declares non-nullable
// but rec holds nulls in made nullable (Parquet cannot store a null in a
// required column; heal compares names and types only).
func writeSchema(ds *heal.Dataset, rec arrow.Record) *arrow.Schema {
	var fields []arrow.Field
	for i, f := range ds.Schema.Fields() {
		if !f.Nullable && rec.Column(i).NullN() > 0 {
			if fields == nil {
				fields = ds.Schema.Fields()
			}
			fields[i].Nullable = true
		}
	}
	if fields == nil {
		return ds.Schema
	}
	md := ds.Schema.Metadata()
	return arrow.NewSchema(fields, &md)
}

// checkStorable reports whether ds's schema survives a Parquet round trip
// as the dataset's schema (the one exception heal repairs, timestamp[s]
// stored as milliseconds, included), and whether the codec is available,
// so that Write never stores a file its reads would quarantine. The answer
// is remembered per schema.
func (l *Lake) checkStorable(ds *heal.Dataset) error {
	key := ds.Schema.Fingerprint()
	if v, ok := l.storable.Load(key); ok {
		if v == nil {
			return nil
		}
		return v.(error)
	}
	err := l.probeStorable(ds)
	if err != nil {
		err = fmt.Errorf("heal/sink: dataset %q cannot be stored as Parquet: %w", ds.Name, err)
	}
	l.storable.Store(key, err)
	return err
}

func (l *Lake) probeStorable(ds *heal.Dataset) error {
	if _, err := compress.GetCodec(l.codec); err != nil {
		return err
	}
	mem := l.mem
	b := array.NewRecordBuilder(mem, ds.Schema)
	defer b.Release()
	rec := b.NewRecord()
	defer rec.Release()
	var buf bytes.Buffer
	fw, err := pqarrow.NewFileWriter(ds.Schema, &buf, parquet.NewWriterProperties(parquet.WithAllocator(mem), parquet.WithCompression(l.codec)),
		pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema(), pqarrow.WithAllocator(mem)))
	if err != nil {
		return err
	}
	if err := fw.Write(rec); err != nil {
		fw.Close()
		return err
	}
	if err := fw.Close(); err != nil {
		return err
	}
	pf, err := file.NewParquetReader(bytes.NewReader(buf.Bytes()), file.WithReadProps(parquet.NewReaderProperties(mem)))
	if err != nil {
		return err
	}
	defer pf.Close()
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{}, mem)
	if err != nil {
		return err
	}
	sc, err := fr.Schema()
	if err != nil {
		return err
	}
	return checkFileSchema(ds, sc)
}
