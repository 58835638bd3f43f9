package healtest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/selfheal/heal"
)

// RunLakeBenchmarks runs the shared benchmarks against lake, which should
// be empty: Write of one-row micro-batches (the live path: one file per
// tick), Write of a day of minutes in one record (a backfill), Scan of a
// day of minutes, and Inventory of a month of days. Each uses its own
// dataset name, so they do not disturb one another.
func RunLakeBenchmarks(b *testing.B, lake heal.Lake) {
	ctx := context.Background()
	mem := memory.NewGoAllocator()
	dataset := func(name string) *heal.Dataset {
		ds := QuotesDataset()
		ds.Name = name
		return ds
	}
	b.Run("WriteMicroBatch", func(b *testing.B) {
		ds := dataset("bench_micro")
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			rec := Records(mem, ds, Row{Key: fmt.Sprintf("K%d", i%8), Time: day0.Add(time.Duration(i/8) * time.Minute), Price: float64(i)})
			err := lake.Write(ctx, ds, rec)
			rec.Release()
			if err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("WriteDay", func(b *testing.B) {
		ds := dataset("bench_day")
		rec := Records(mem, ds, series("K", day0, 1440, 1)...)
		defer rec.Release()
		b.ReportAllocs()
		for b.Loop() {
			if err := lake.Write(ctx, ds, rec); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ScanDay", func(b *testing.B) {
		ds := dataset("bench_scan")
		rec := Records(mem, ds, series("K", day0, 1440, 1)...)
		err := lake.Write(ctx, ds, rec)
		rec.Release()
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			rows, _, err := ScanRows(ctx, lake, ds, heal.Query{})
			if err != nil || len(rows) != 1440 {
				b.Fatalf("scan: %d rows, %v", len(rows), err)
			}
		}
	})
	b.Run("InventoryMonth", func(b *testing.B) {
		ds := dataset("bench_inventory")
		for d := 0; d < 30; d++ {
			rec := Records(mem, ds, series("K", day0.AddDate(0, 0, d), 390, 1)...)
			err := lake.Write(ctx, ds, rec)
			rec.Release()
			if err != nil {
				b.Fatal(err)
			}
		}
		b.ReportAllocs()
		for b.Loop() {
			n := 0
			err := lake.Inventory(ctx, ds, heal.Query{}, func(heal.PartitionInfo) error { n++; return nil })
			if err != nil || n != 30 {
				b.Fatalf("inventory: %d partitions, %v", n, err)
			}
		}
	})
}
