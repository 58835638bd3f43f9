package sink_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/selfheal/heal"
	"github.com/selfheal/heal/sink"
)

// Write quotes to a lake on local disk, write a correction, and scan them
// back: one record per partition, newest value first served.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "heal-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	lake, err := sink.OpenDir(dir, nil)
	if err != nil {
		log.Fatal(err)
	}

	ds := &heal.Dataset{
		Name: "quotes",
		Schema: arrow.NewSchema([]arrow.Field{
			{Name: "symbol", Type: arrow.BinaryTypes.String},
			{Name: "ts", Type: &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}},
			{Name: "price", Type: arrow.PrimitiveTypes.Float64},
		}, nil),
		Key: "symbol", Time: "ts", Grain: time.Minute, Partition: heal.PeriodDay,
	}
	t0 := time.Date(2024, 1, 2, 14, 30, 0, 0, time.UTC)
	quotes := func(sym string, prices ...float64) arrow.Record {
		b := array.NewRecordBuilder(memory.DefaultAllocator, ds.Schema)
		defer b.Release()
		for i, p := range prices {
			b.Field(0).(*array.StringBuilder).Append(sym)
			b.Field(1).(*array.TimestampBuilder).Append(arrow.Timestamp(t0.Add(time.Duration(i) * time.Minute).UnixMilli()))
			b.Field(2).(*array.Float64Builder).Append(p)
		}
		return b.NewRecord()
	}
	for _, rec := range []arrow.Record{
		quotes("MSFT", 370.1, 370.4),
		quotes("AAPL", 185.2, 185.0, 185.3),
		quotes("AAPL", 185.25), // a correction of 14:30: the newest write wins
	} {
		err := lake.Write(ctx, ds, rec)
		rec.Release()
		if err != nil {
			log.Fatal(err)
		}
	}

	rr, err := lake.Scan(ctx, ds, heal.Query{})
	if err != nil {
		log.Fatal(err)
	}
	defer rr.Release()
	for rr.Next() {
		rec := rr.Record()
		sym := rec.Column(0).(*array.String)
		ts := rec.Column(1).(*array.Timestamp)
		px := rec.Column(2).(*array.Float64)
		fmt.Printf("partition %s=%s:\n", ds.Key, sym.Value(0))
		for i := 0; i < int(rec.NumRows()); i++ {
			fmt.Printf("  %s %s %.2f\n", sym.Value(i), ts.Value(i).ToTime(arrow.Millisecond).Format("15:04"), px.Value(i))
		}
	}
	if err := rr.Err(); err != nil {
		log.Fatal(err)
	}
	// Output:
	// partition symbol=AAPL:
	//   AAPL 14:30 185.25
	//   AAPL 14:31 185.00
	//   AAPL 14:32 185.30
	// partition symbol=MSFT:
	//   MSFT 14:30 370.10
	//   MSFT 14:31 370.40
}

// Inventory answers "which minutes does each partition hold?" from the
// lake index, without opening the data files.
func ExampleLake_Inventory() {
	ctx := context.Background()
	lake := sink.NewMemLake(nil)
	ds := &heal.Dataset{
		Name: "quotes",
		Schema: arrow.NewSchema([]arrow.Field{
			{Name: "symbol", Type: arrow.BinaryTypes.String},
			{Name: "ts", Type: &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}},
			{Name: "price", Type: arrow.PrimitiveTypes.Float64},
		}, nil),
		Key: "symbol", Time: "ts", Grain: time.Minute,
	}
	b := array.NewRecordBuilder(memory.DefaultAllocator, ds.Schema)
	t0 := time.Date(2024, 1, 2, 14, 30, 0, 0, time.UTC)
	for _, m := range []int{0, 1, 2, 5} {
		b.Field(0).(*array.StringBuilder).Append("AAPL")
		b.Field(1).(*array.TimestampBuilder).Append(arrow.Timestamp(t0.Add(time.Duration(m) * time.Minute).UnixMilli()))
		b.Field(2).(*array.Float64Builder).Append(185)
	}
	rec := b.NewRecord()
	b.Release()
	defer rec.Release()
	if err := lake.Write(ctx, ds, rec); err != nil {
		log.Fatal(err)
	}
	w := heal.NewWindow(t0, t0.Add(10*time.Minute))
	err := lake.Inventory(ctx, ds, heal.Query{Window: w}, func(pi heal.PartitionInfo) error {
		fmt.Printf("%s: %d of %d minutes, %d file(s), scanned=%v\n", pi.Partition, pi.Present.Count(), pi.Present.Len(), pi.Files, pi.Scanned)
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	// Output:
	// quotes/AAPL/2024-01-02: 4 of 10 minutes, 1 file(s), scanned=false
}

// An audit that runs every hour asks only for the partitions written since
// the previous one, with the mark InventorySince returned then.
func ExampleLake_InventorySince() {
	ctx := context.Background()
	lake := sink.NewMemLake(nil)
	ds := &heal.Dataset{
		Name: "quotes",
		Schema: arrow.NewSchema([]arrow.Field{
			{Name: "symbol", Type: arrow.BinaryTypes.String},
			{Name: "ts", Type: &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}},
			{Name: "price", Type: arrow.PrimitiveTypes.Float64},
		}, nil),
		Key: "symbol", Time: "ts", Grain: time.Minute,
	}
	t0 := time.Date(2024, 1, 2, 14, 30, 0, 0, time.UTC)
	write := func(sym string, day int) {
		b := array.NewRecordBuilder(memory.DefaultAllocator, ds.Schema)
		defer b.Release()
		b.Field(0).(*array.StringBuilder).Append(sym)
		b.Field(1).(*array.TimestampBuilder).Append(arrow.Timestamp(t0.AddDate(0, 0, day).UnixMilli()))
		b.Field(2).(*array.Float64Builder).Append(185)
		rec := b.NewRecord()
		defer rec.Release()
		if err := lake.Write(ctx, ds, rec); err != nil {
			log.Fatal(err)
		}
	}
	write("AAPL", 0)
	write("MSFT", 0)
	audit := func(mark string) string {
		next, err := lake.InventorySince(ctx, ds, heal.Query{}, mark, func(pi heal.PartitionInfo) error {
			fmt.Println("  audit", pi.Partition)
			return nil
		})
		if err != nil {
			log.Fatal(err)
		}
		return next
	}
	fmt.Println("first audit:")
	mark := audit("") // the first audit visits every partition
	// An hour later, audit(mark) visits only the partitions written,
	// repaired or compacted since (and within a minute before the mark, for
	// writers whose clocks run behind), and returns the next mark.
	_ = mark
	// Output:
	// first audit:
	//   audit quotes/AAPL/2024-01-02
	//   audit quotes/MSFT/2024-01-02
}
