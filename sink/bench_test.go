package sink_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/apache/arrow/go/v17/parquet/compress"
	"github.com/klauspost/compress/zstd"
	"github.com/selfheal/heal"
	"github.com/selfheal/heal/healtest"
	"github.com/selfheal/heal/sink"
)

// reuseZstd is a zstd codec that keeps one encoder per level. arrow/go
// v17's codec builds a new encoder for every page it compresses at a level
// (EncodeLevel, which the page writer always calls); building one costs
// more than compressing a small page.
type reuseZstd struct {
	compress.Codec // arrow's, for decoding and streams
	mu             sync.Mutex
	encs           map[int]*zstd.Encoder
}

func (z *reuseZstd) EncodeLevel(dst, src []byte, level int) []byte {
	z.mu.Lock()
	enc := z.encs[level]
	if enc == nil {
		l := zstd.SpeedDefault
		if level != compress.DefaultCompressionLevel {
			l = zstd.EncoderLevelFromZstd(level)
		}
		enc, _ = zstd.NewWriter(nil, zstd.WithZeroFrames(true), zstd.WithEncoderLevel(l))
		z.encs[level] = enc
	}
	z.mu.Unlock()
	return enc.EncodeAll(src, dst[:0]) // EncodeAll is safe for concurrent use
}

// withReuseZstd registers reuseZstd for the duration of fn. RegisterCodec
// writes a global map without locking, so nothing may encode meanwhile.
func withReuseZstd(fn func()) {
	orig, err := compress.GetCodec(compress.Codecs.Zstd)
	if err != nil {
		panic(err)
	}
	compress.RegisterCodec(compress.Codecs.Zstd, &reuseZstd{Codec: orig, encs: map[int]*zstd.Encoder{}})
	defer compress.RegisterCodec(compress.Codecs.Zstd, orig)
	fn()
}

var codecs = []struct {
	name  string
	codec compress.Compression
	reuse bool
}{
	{"snappy", compress.Codecs.Snappy, false},
	{"zstd", compress.Codecs.Zstd, false},
	{"zstd-reuse", compress.Codecs.Zstd, true},
	{"gzip", compress.Codecs.Gzip, false},
}

// storedBytes is the total size of the objects in s.
func storedBytes(b *testing.B, s sink.Store) (files, size int64) {
	err := s.List(context.Background(), "", func(oi sink.ObjectInfo) error {
		files++
		size += oi.Size
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return files, size
}

// BenchmarkWrite compares the codecs side by side on the live path: each
// operation is one micro-batch of one row for each of 8 symbols, so 8 new
// files of one row. Day writes one file of a full day of minutes, where
// compression ratio shows. B/file is the average stored file size.
func BenchmarkWrite(b *testing.B) {
	ctx := context.Background()
	mem := memory.NewGoAllocator()
	ds := healtest.QuotesDataset()
	for _, c := range codecs {
		run := func(name string, bench func(b *testing.B, lake *sink.Lake)) {
			b.Run(name+"/"+c.name, func(b *testing.B) {
				store := sink.NewMemStore()
				lake := sink.NewLake(store, &sink.Options{Compression: c.codec})
				f := func() { bench(b, lake) }
				if c.reuse {
					withReuseZstd(f)
				} else {
					f()
				}
				files, size := storedBytes(b, store)
				if files > 0 {
					b.ReportMetric(float64(size)/float64(files), "B/file")
				}
			})
		}
		run("MicroBatch", func(b *testing.B, lake *sink.Lake) {
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
		run("Day", func(b *testing.B, lake *sink.Lake) {
			rows := make([]healtest.Row, 1440)
			for i := range rows {
				rows[i] = healtest.Row{Key: "SYM", Time: minute(i), Price: 100 + float64(i%97)/7}
			}
			rec := healtest.Records(mem, ds, rows...)
			defer rec.Release()
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if err := lake.Write(ctx, ds, rec); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	// The same micro-batches on local disk, where fsync dominates.
	b.Run("MicroBatch/snappy-dirstore", func(b *testing.B) {
		lake, err := sink.OpenDir(b.TempDir(), nil)
		if err != nil {
			b.Fatal(err)
		}
		for i := 0; b.Loop(); i++ {
			rows := make([]healtest.Row, 8)
			for k := range rows {
				rows[k] = healtest.Row{Key: fmt.Sprintf("SYM%d", k), Time: minute(i), Price: float64(i)}
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
}

// BenchmarkInventory compares the ways Inventory learns what files hold,
// on one lake of 20 symbols x 20 days of 390 minutes written by heal
// (400 files): the lake index checked against a listing (Listed, the
// default), the index alone (Trusted), each file's footer (Footers), each
// file's key and time columns (Scan); and Foreign, a month of one symbol
// written by another tool (no index at all, so every file is read).
func BenchmarkInventory(b *testing.B) {
	ctx := context.Background()
	mem := memory.NewGoAllocator()
	ds := healtest.QuotesDataset()
	for _, store := range []string{"MemStore", "DirStore"} {
		var st sink.Store = sink.NewMemStore()
		if store == "DirStore" {
			var err error
			if st, err = sink.NewDirStore(b.TempDir()); err != nil {
				b.Fatal(err)
			}
		}
		writer := sink.NewLake(st, nil)
		for d := 0; d < 20; d++ {
			var rows []healtest.Row
			for k := 0; k < 20; k++ {
				for i := 0; i < 390; i++ {
					rows = append(rows, healtest.Row{Key: fmt.Sprintf("S%02d", k), Time: minute(d*1440 + 870 + i), Price: float64(i)})
				}
			}
			rec := healtest.Records(mem, ds, rows...)
			if err := writer.Write(ctx, ds, rec); err != nil {
				b.Fatal(err)
			}
			rec.Release()
		}
		if _, err := writer.Verify(ctx, ds, heal.Query{}); err != nil {
			b.Fatal(err)
		}
		for _, mode := range []sink.InventoryMode{sink.InventoryListed, sink.InventoryTrusted, sink.InventoryFooters, sink.InventoryScan} {
			b.Run(store+"/"+mode.String(), func(b *testing.B) {
				lake := sink.NewLake(st, &sink.Options{Inventory: mode})
				b.ReportAllocs()
				for b.Loop() {
					n := 0
					err := lake.Inventory(ctx, ds, heal.Query{}, func(pi heal.PartitionInfo) error {
						if pi.Present.Count() != 390 {
							b.Fatalf("unexpected %+v", pi)
						}
						n++
						return nil
					})
					if err != nil || n != 400 {
						b.Fatalf("%d partitions, %v", n, err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(400*b.N), "ns/file")
			})
		}
	}
	b.Run("MemStore/foreign", func(b *testing.B) {
		store := sink.NewMemStore()
		lake := sink.NewLake(store, nil)
		for d := 0; d < 30; d++ {
			rows := make([]healtest.Row, 390)
			for i := range rows {
				rows[i] = healtest.Row{Key: "SYM", Time: minute(d*1440 + 870 + i), Price: float64(i)}
			}
			rec := healtest.Records(mem, ds, rows...)
			p := ds.PartitionOf("SYM", rows[0].Time)
			if err := store.Put(ctx, sink.PartitionPath(ds, p)+"part-0.parquet", plainParquet(b, rec, nil), true); err != nil {
				b.Fatal(err)
			}
			rec.Release()
		}
		b.ReportAllocs()
		for b.Loop() {
			n := 0
			err := lake.Inventory(ctx, ds, heal.Query{}, func(pi heal.PartitionInfo) error {
				if !pi.Scanned || pi.Present.Count() != 390 {
					b.Fatalf("unexpected %+v", pi)
				}
				n++
				return nil
			})
			if err != nil || n != 30 {
				b.Fatalf("%d partitions, %v", n, err)
			}
		}
	})
}

// BenchmarkScanMerge reads two partitions stored in three overlapping
// files, so that every read deduplicates (newest wins) and merges, and
// compacts them.
func BenchmarkScanMerge(b *testing.B) {
	ctx := context.Background()
	mem := memory.NewGoAllocator()
	ds := healtest.QuotesDataset()
	write3 := func(lake *sink.Lake) {
		for i := 0; i < 3; i++ {
			rec := healtest.Records(mem, ds, rowsOf("SYM", i*300, 900, float64(i))...)
			if err := lake.Write(ctx, ds, rec); err != nil {
				b.Fatal(err)
			}
			rec.Release()
		}
	}
	b.Run("Scan", func(b *testing.B) {
		lake := sink.NewMemLake(nil)
		write3(lake)
		b.ReportAllocs()
		for b.Loop() {
			rows, _, err := healtest.ScanRows(ctx, lake, ds, heal.Query{})
			if err != nil || len(rows) != 1500 {
				b.Fatalf("%d rows, %v", len(rows), err)
			}
		}
	})
	b.Run("Compact", func(b *testing.B) {
		lake := sink.NewMemLake(nil)
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			write3(lake)
			b.StartTimer()
			if n, err := lake.Compact(ctx, ds, heal.Query{}); err != nil || n != 1 {
				b.Fatalf("Compact = %d, %v", n, err)
			}
		}
	})
}

// BenchmarkLake runs the shared healtest benchmarks on both stores.
func BenchmarkLake(b *testing.B) {
	b.Run("MemStore", func(b *testing.B) { healtest.RunLakeBenchmarks(b, sink.NewMemLake(nil)) })
	b.Run("DirStore", func(b *testing.B) {
		lake, err := sink.OpenDir(b.TempDir(), nil)
		if err != nil {
			b.Fatal(err)
		}
		healtest.RunLakeBenchmarks(b, lake)
	})
}
