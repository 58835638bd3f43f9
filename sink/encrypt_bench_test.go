package sink_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/selfheal/heal"
	"github.com/selfheal/heal/healtest"
	"github.com/selfheal/heal/sink"
)

// BenchmarkEncryption measures what encryption at rest adds, side by side
// with the same path in clear, on MemStore so that neither disk nor
// network hides it: the quotes dataset with its price column encrypted, a
// local KEK (a KMS key adds one KMS request per file written and per file
// read). MicroBatch writes 8 one-row files per operation (the live path),
// Day one file of 1440 rows; Scan reads a partition of 1440 rows back.
func BenchmarkEncryption(b *testing.B) {
	ctx := context.Background()
	mem := memory.NewGoAllocator()
	ds := healtest.QuotesDataset()
	kek := newKEK(b)
	day := make([]healtest.Row, 1440)
	for i := range day {
		day[i] = healtest.Row{Key: "SYM", Time: minute(i), Price: 100 + float64(i%97)/7}
	}
	for _, mode := range []string{"clear", "encrypted"} {
		newLake := func() *sink.Lake {
			o := &sink.Options{Allocator: mem}
			if mode == "encrypted" {
				o.Encryption = &sink.Encryption{Keys: kek, Columns: map[string][]string{ds.Name: {"price"}}}
			}
			return sink.NewLake(sink.NewMemStore(), o)
		}
		b.Run("Write/MicroBatch/"+mode, func(b *testing.B) {
			lake := newLake()
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				rows := make([]healtest.Row, 8)
				for k := range rows {
					rows[k] = healtest.Row{Key: fmt.Sprintf("SYM%d", k), Time: minute(i), Price: 100 + float64(i%97)/7}
				}
				rec := healtest.Records(mem, ds, rows...)
				err := lake.Write(ctx, ds, rec)
				rec.Release()
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(8*b.N), "ns/file")
		})
		b.Run("Write/Day/"+mode, func(b *testing.B) {
			lake := newLake()
			rec := healtest.Records(mem, ds, day...)
			defer rec.Release()
			b.ReportAllocs()
			for b.Loop() {
				if err := lake.Write(ctx, ds, rec); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("Scan/Day/"+mode, func(b *testing.B) {
			lake := newLake()
			rec := healtest.Records(mem, ds, day...)
			err := lake.Write(ctx, ds, rec)
			rec.Release()
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				rows, _, err := healtest.ScanRows(ctx, lake, ds, heal.Query{})
				if err != nil || len(rows) != len(day) {
					b.Fatalf("%d rows, %v", len(rows), err)
				}
			}
		})
	}
}
