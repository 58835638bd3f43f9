package healtest

import (
	"context"
	"fmt"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/selfheal/heal"
)

// QuotesDataset returns the dataset the suites use, a fresh value on each
// call: "quotes", with columns symbol (utf8, the key), ts (timestamp[ms,
// UTC], the time) and price (float64), a grain of one minute, partitioned
// by day.
func QuotesDataset() *heal.Dataset {
	return &heal.Dataset{
		Name: "quotes",
		Schema: arrow.NewSchema([]arrow.Field{
			{Name: "symbol", Type: arrow.BinaryTypes.String},
			{Name: "ts", Type: &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}},
			{Name: "price", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		}, nil),
		Key:       "symbol",
		Time:      "ts",
		Grain:     time.Minute,
		Partition: heal.PeriodDay,
	}
}

// Row is one row of a quotes-shaped dataset: a key, a time and a price.
type Row struct {
	Key   string
	Time  time.Time // the zero Time stands for a null time
	Price float64
}

func (r Row) String() string {
	return fmt.Sprintf("%s@%s=%g", r.Key, r.Time.UTC().Format(time.RFC3339), r.Price)
}

// Records builds a record of ds holding rows, in order: the key column gets
// Key, the time column gets Time in the column's unit (null for the zero
// Time), every float64 column gets Price and any other column null. It
// works for [QuotesDataset] and any dataset of the same shape (other names,
// another time unit or period). The caller releases the record.
func Records(mem memory.Allocator, ds *heal.Dataset, rows ...Row) arrow.Record {
	b := array.NewRecordBuilder(mem, ds.Schema)
	defer b.Release()
	ki, ti := ds.KeyIndex(), ds.TimeIndex()
	unit := ds.TimeUnit()
	for _, r := range rows {
		for i, f := range ds.Schema.Fields() {
			fb := b.Field(i)
			switch {
			case i == ki:
				fb.(*array.StringBuilder).Append(r.Key)
			case i == ti:
				if r.Time.IsZero() {
					fb.AppendNull()
					continue
				}
				v, err := arrow.TimestampFromTime(r.Time, unit)
				if err != nil {
					panic(fmt.Sprintf("healtest: %v", err))
				}
				fb.(*array.TimestampBuilder).Append(v)
			case f.Type.ID() == arrow.FLOAT64:
				fb.(*array.Float64Builder).Append(r.Price)
			default:
				fb.AppendNull()
			}
		}
	}
	return b.NewRecord()
}

// RowsOf decodes rec, a record of a quotes-shaped ds: key, time and the
// first float64 column (0 when null or absent). A null time decodes as the
// zero Time.
func RowsOf(ds *heal.Dataset, rec arrow.Record) []Row {
	keys := rec.Column(ds.KeyIndex()).(*array.String)
	ts := rec.Column(ds.TimeIndex()).(*array.Timestamp)
	unit := ds.TimeUnit()
	var prices *array.Float64
	for i, f := range rec.Schema().Fields() {
		if f.Type.ID() == arrow.FLOAT64 {
			prices = rec.Column(i).(*array.Float64)
			break
		}
	}
	out := make([]Row, rec.NumRows())
	for i := range out {
		if !keys.IsNull(i) {
			out[i].Key = keys.Value(i)
		}
		if !ts.IsNull(i) {
			out[i].Time = ts.Value(i).ToTime(unit).UTC()
		}
		if prices != nil && !prices.IsNull(i) {
			out[i].Price = prices.Value(i)
		}
	}
	return out
}

// ScanRows scans lake and returns the rows of ds matching q, in the order
// of the scan, with the records' boundaries: parts[i] holds the rows of the
// i-th record.
func ScanRows(ctx context.Context, lake heal.Lake, ds *heal.Dataset, q heal.Query) (rows []Row, parts [][]Row, err error) {
	rr, err := lake.Scan(ctx, ds, q)
	if err != nil {
		return nil, nil, err
	}
	defer rr.Release()
	for rr.Next() {
		p := RowsOf(ds, rr.Record())
		parts = append(parts, p)
		rows = append(rows, p...)
	}
	return rows, parts, rr.Err()
}
