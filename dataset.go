package heal

import (
	"errors"
	"fmt"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"
)

// Dataset describes a dataset once: its name, its Arrow schema, which column
// is the entity key, which is the event time, the grain of that time, and how
// it is partitioned on disk.
//
// On disk a dataset is laid out Hive-style, one directory per key and
// period, e.g. quotes/symbol=AAPL/date=2024-01-02/*.parquet, which DuckDB,
// Spark, Athena and Glue read as they are.
type Dataset struct {
	// Name is the dataset's directory in the lake: lower-case letters,
	// digits, '_' and '-'.
	Name string
	// Schema is the Arrow schema of every record.
	Schema *arrow.Schema
	// Key is the entity key column (e.g. "symbol"). It must be a
	// non-nullable-in-practice utf8 column; a row with a null key is refused.
	Key string
	// Time is the event time column, an Arrow timestamp (UTC). Every stored
	// time is aligned to Grain.
	Time string
	// Grain is the spacing of slots: time.Minute for minute bars. It must
	// divide 24 hours.
	Grain time.Duration
	// Partition is the time span of one partition directory. Zero: a day.
	Partition Period
	// Version is the major version of the schema: 0 or 1 for the first.
	// Additive changes (a new nullable column) keep the version, and the
	// lake reads files written before them with the new column null. A
	// breaking change (a column renamed, retyped or removed) is a new
	// major: a Dataset of its own, with its own Name (its own raw zone),
	// tied to the earlier majors by [github.com/selfheal/heal/evolve].
	Version int
}

// Major is the schema's major version: Version, or 1 when Version is 0.
func (d *Dataset) Major() int { return max(d.Version, 1) }

// Validate reports what is wrong with the description, naming the field.
func (d *Dataset) Validate() error {
	if d == nil {
		return errors.New("heal: nil dataset")
	}
	if !validName(d.Name) {
		return fmt.Errorf("heal: dataset name %q: want lower-case letters, digits, '_' or '-'", d.Name)
	}
	if d.Schema == nil {
		return fmt.Errorf("heal: dataset %q: nil Schema", d.Name)
	}
	if d.Grain <= 0 || (24*time.Hour)%d.Grain != 0 {
		return fmt.Errorf("heal: dataset %q: Grain %s must be positive and divide 24h", d.Name, d.Grain)
	}
	if d.Version < 0 {
		return fmt.Errorf("heal: dataset %q: Version %d is negative", d.Name, d.Version)
	}
	if d.Partition < PeriodDay || d.Partition > PeriodYear {
		return fmt.Errorf("heal: dataset %q: unknown Partition %d", d.Name, d.Partition)
	}
	ki := d.Schema.FieldIndices(d.Key)
	if len(ki) != 1 || d.Schema.Field(ki[0]).Type.ID() != arrow.STRING {
		return fmt.Errorf("heal: dataset %q: Key %q must name one utf8 column", d.Name, d.Key)
	}
	ti := d.Schema.FieldIndices(d.Time)
	if len(ti) != 1 || d.Schema.Field(ti[0]).Type.ID() != arrow.TIMESTAMP {
		return fmt.Errorf("heal: dataset %q: Time %q must name one timestamp column", d.Name, d.Time)
	}
	return nil
}

func validName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// KeyIndex is the position of the key column.
func (d *Dataset) KeyIndex() int { return d.Schema.FieldIndices(d.Key)[0] }

// TimeIndex is the position of the time column.
func (d *Dataset) TimeIndex() int { return d.Schema.FieldIndices(d.Time)[0] }

// TimeUnit is the unit of the time column.
func (d *Dataset) TimeUnit() arrow.TimeUnit {
	return d.Schema.Field(d.TimeIndex()).Type.(*arrow.TimestampType).Unit
}

// Slot returns the slot holding t: t floored to the grain, in UTC.
func (d *Dataset) Slot(t time.Time) time.Time { return t.UTC().Truncate(d.Grain) }

// PartitionOf returns the partition holding key at t.
func (d *Dataset) PartitionOf(key string, t time.Time) Partition {
	return Partition{Dataset: d.Name, Key: key, Start: d.Partition.Floor(t), Period: d.Partition}
}

// CheckSchema reports, as an *InputError, whether s is not the dataset's
// schema (names, types and order; nullability and metadata are not
// compared). The error's Field is the first column at fault, and it wraps
// a *[SchemaError] naming every column that differs.
func (d *Dataset) CheckSchema(s *arrow.Schema) error {
	if e := DiffSchema(d.Schema, s); e != nil {
		return &InputError{Dataset: d.Name, Field: e.First(), Row: -1, Err: e}
	}
	return nil
}

// Check validates rec strictly, as a Lake's Write does: the dataset's
// schema, a non-null, valid key and a non-null time aligned to the grain in
// every row. The error is an *InputError naming the field and the row.
func (d *Dataset) Check(rec arrow.Record) error {
	if err := d.CheckSchema(rec.Schema()); err != nil {
		return err
	}
	keys := rec.Column(d.KeyIndex()).(*array.String)
	ts := rec.Column(d.TimeIndex()).(*array.Timestamp)
	unit := d.TimeUnit()
	for i := 0; i < int(rec.NumRows()); i++ {
		if keys.IsNull(i) {
			return &InputError{Dataset: d.Name, Field: d.Key, Row: i, Err: errors.New("null key")}
		}
		if err := ValidKey(keys.Value(i)); err != nil {
			return &InputError{Dataset: d.Name, Field: d.Key, Row: i, Err: err}
		}
		if ts.IsNull(i) {
			return &InputError{Dataset: d.Name, Field: d.Time, Row: i, Err: errors.New("null time")}
		}
		t := ts.Value(i).ToTime(unit)
		if !t.Equal(d.Slot(t)) {
			return &InputError{Dataset: d.Name, Field: d.Time, Row: i,
				Err: fmt.Errorf("time %s is not aligned to the %s grain", t.Format(time.RFC3339Nano), d.Grain)}
		}
	}
	return nil
}

// ValidKey reports whether k can name a partition: non-empty, at most 256
// bytes, valid UTF-8 without control characters, and not "." or "..".
// Other characters ('/', '=', '%', ...) are escaped in paths, so a key can
// never address anything outside its dataset's directory.
func ValidKey(k string) error {
	switch {
	case k == "":
		return errors.New("empty key")
	case len(k) > 256:
		return fmt.Errorf("key of %d bytes is longer than 256", len(k))
	case k == "." || k == "..":
		return fmt.Errorf("key %q is reserved", k)
	}
	for _, r := range k {
		if r < 0x20 || r == 0x7f || r == 0xfffd {
			return fmt.Errorf("key %q holds a control or invalid character", k)
		}
	}
	return nil
}

// Align returns a copy of rec with every time floored to the grain, the one
// documented rule for times off the grain (a quote polled at 14:03:27
// belongs to the 14:03 slot). It refuses, as Check does, a schema that does
// not match and rows with a null or invalid key or time. The caller owns the
// result.
func (d *Dataset) Align(mem memory.Allocator, rec arrow.Record) (arrow.Record, error) {
	if err := d.CheckSchema(rec.Schema()); err != nil {
		return nil, err
	}
	keys := rec.Column(d.KeyIndex()).(*array.String)
	ts := rec.Column(d.TimeIndex()).(*array.Timestamp)
	unit := d.TimeUnit()
	b := array.NewTimestampBuilder(mem, d.Schema.Field(d.TimeIndex()).Type.(*arrow.TimestampType))
	defer b.Release()
	b.Reserve(int(rec.NumRows()))
	for i := 0; i < int(rec.NumRows()); i++ {
		if keys.IsNull(i) {
			return nil, &InputError{Dataset: d.Name, Field: d.Key, Row: i, Err: errors.New("null key")}
		}
		if err := ValidKey(keys.Value(i)); err != nil {
			return nil, &InputError{Dataset: d.Name, Field: d.Key, Row: i, Err: err}
		}
		if ts.IsNull(i) {
			return nil, &InputError{Dataset: d.Name, Field: d.Time, Row: i, Err: errors.New("null time")}
		}
		v, err := arrow.TimestampFromTime(d.Slot(ts.Value(i).ToTime(unit)), unit)
		if err != nil {
			return nil, &InputError{Dataset: d.Name, Field: d.Time, Row: i, Err: err}
		}
		b.Append(v)
	}
	col := b.NewArray()
	defer col.Release()
	cols := make([]arrow.Array, rec.NumCols())
	copy(cols, rec.Columns())
	cols[d.TimeIndex()] = col
	return array.NewRecord(d.Schema, cols, rec.NumRows()), nil
}
