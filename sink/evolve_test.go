package sink_test

import (
	"context"
	"errors"
	"testing"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/healtest"
	"github.com/selfheal/heal/sink"
)

// withVolume is QuotesDataset after an additive change: a nullable int64
// column, placed before price, so that columns also move.
func withVolume(nullable bool) *heal.Dataset {
	ds := healtest.QuotesDataset()
	f := ds.Schema.Fields()
	ds.Schema = arrow.NewSchema([]arrow.Field{f[0], f[1], {Name: "volume", Type: arrow.PrimitiveTypes.Int64, Nullable: nullable}, f[2]}, nil)
	return ds
}

// TestAdditiveColumnReadsOldFiles writes files before and after a nullable
// column was added and reads them as one dataset: the old rows with the
// column null, every path (Scan, each Inventory mode, Compact) agreeing,
// and nothing quarantined.
func TestAdditiveColumnReadsOldFiles(t *testing.T) {
	ctx := context.Background()
	mem := checkedMem(t)
	store := sink.NewMemStore()
	lake := sink.NewLake(store, &sink.Options{Allocator: mem})
	old, cur := healtest.QuotesDataset(), withVolume(true)
	write(t, lake, mem, old, rowsOf("A", 0, 5, 1)...) // minutes 0-4, without volume

	b := array.NewRecordBuilder(mem, cur.Schema)
	for i := 3; i < 8; i++ { // minutes 3-7: 3 and 4 overwrite old rows
		b.Field(0).(*array.StringBuilder).Append("A")
		b.Field(1).(*array.TimestampBuilder).Append(arrow.Timestamp(minute(i).UnixMilli()))
		b.Field(2).(*array.Int64Builder).Append(int64(100 * i))
		b.Field(3).(*array.Float64Builder).Append(float64(50 + i))
	}
	rec := b.NewRecord()
	b.Release()
	err := lake.Write(ctx, cur, rec)
	rec.Release()
	if err != nil {
		t.Fatal(err)
	}

	check := func(when string) {
		t.Helper()
		rd, err := lake.Scan(ctx, cur, heal.Query{})
		if err != nil {
			t.Fatal(err)
		}
		defer rd.Release()
		var vols []any
		var prices []float64
		for rd.Next() {
			r := rd.Record()
			if !r.Schema().Equal(cur.Schema) {
				t.Fatalf("%s: scan schema %s", when, r.Schema())
			}
			for i := 0; i < int(r.NumRows()); i++ {
				vols = append(vols, r.Column(2).GetOneForMarshal(i))
				prices = append(prices, r.Column(3).(*array.Float64).Value(i))
			}
		}
		if err := rd.Err(); err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		wantVols := []any{nil, nil, nil, int64(300), int64(400), int64(500), int64(600), int64(700)}
		wantPrices := []float64{1, 2, 3, 53, 54, 55, 56, 57}
		if len(vols) != len(wantVols) {
			t.Fatalf("%s: %d rows, want %d: %v", when, len(vols), len(wantVols), vols)
		}
		for i := range vols {
			if vols[i] != wantVols[i] || prices[i] != wantPrices[i] {
				t.Errorf("%s: row %d: volume %v price %g, want %v %g", when, i, vols[i], prices[i], wantVols[i], wantPrices[i])
			}
		}
		for _, mode := range []sink.InventoryMode{sink.InventoryListed, sink.InventoryFooters, sink.InventoryScan} {
			n := 0
			l := sink.NewLake(store, &sink.Options{Allocator: mem, Inventory: mode})
			if err := l.Inventory(ctx, cur, heal.Query{}, func(p heal.PartitionInfo) error {
				n += p.Present.Count()
				return nil
			}); err != nil || n != 8 {
				t.Errorf("%s: inventory %s: %d slots, %v; want 8", when, mode, n, err)
			}
		}
	}
	check("before compaction")
	if n, err := lake.Compact(ctx, cur, heal.Query{}); err != nil || n != 1 {
		t.Fatalf("compact: %d, %v", n, err)
	}
	check("after compaction")
	if err := store.List(ctx, "_quarantine/", func(o sink.ObjectInfo) error {
		t.Errorf("quarantined: %s", o.Name)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestBreakingChangeIsNotRead: a column added as non-nullable, or a
// column retyped, is a breaking change; files written before it are not
// read as the new schema.
func TestBreakingChangeIsNotRead(t *testing.T) {
	retyped := healtest.QuotesDataset()
	f := retyped.Schema.Fields()
	f[2].Type = arrow.PrimitiveTypes.Float32
	retyped.Schema = arrow.NewSchema(f, nil)
	for name, ds := range map[string]*heal.Dataset{"required column added": withVolume(false), "retyped": retyped} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			mem := checkedMem(t)
			lake := sink.NewLake(sink.NewMemStore(), &sink.Options{Allocator: mem})
			write(t, lake, mem, healtest.QuotesDataset(), rowsOf("A", 0, 3, 1)...)
			rows, _, err := healtest.ScanRows(ctx, lake, ds, heal.Query{})
			if err != nil || len(rows) != 0 {
				t.Errorf("scan under a breaking change: %v, %v; want no rows", rows, err)
			}
			// The schema mismatch is why: the old schema reads nothing now either (quarantined).
			rows, _, err = healtest.ScanRows(ctx, lake, healtest.QuotesDataset(), heal.Query{})
			if err != nil || len(rows) != 0 || errors.Is(err, heal.ErrNotFound) {
				t.Errorf("scan after quarantine: %v, %v", rows, err)
			}
		})
	}
}
