package sink_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/apache/arrow/go/v17/parquet"
	"github.com/apache/arrow/go/v17/parquet/file"
	"github.com/apache/arrow/go/v17/parquet/pqarrow"
	"github.com/apache/arrow/go/v17/parquet/schema"
	"github.com/selfheal/heal"
	"github.com/selfheal/heal/healtest"
	"github.com/selfheal/heal/sink"
)

var day = time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC)

func minute(m int) time.Time { return day.Add(time.Duration(m) * time.Minute) }

func rowsOf(key string, from, n int, price float64) []healtest.Row {
	out := make([]healtest.Row, n)
	for i := range out {
		out[i] = healtest.Row{Key: key, Time: minute(from + i), Price: price + float64(i)}
	}
	return out
}

func checkedMem(t *testing.T) *memory.CheckedAllocator {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	t.Cleanup(func() { mem.AssertSize(t, 0) })
	return mem
}

func write(t *testing.T, lake heal.Lake, mem memory.Allocator, ds *heal.Dataset, rows ...healtest.Row) {
	t.Helper()
	rec := healtest.Records(mem, ds, rows...)
	defer rec.Release()
	if err := lake.Write(context.Background(), ds, rec); err != nil {
		t.Fatalf("Write: %v", err)
	}
}

func scan(t *testing.T, lake heal.Lake, ds *heal.Dataset, q heal.Query) []healtest.Row {
	t.Helper()
	rows, _, err := healtest.ScanRows(context.Background(), lake, ds, q)
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	return rows
}

func inventory(t *testing.T, lake heal.Lake, ds *heal.Dataset, q heal.Query) []heal.PartitionInfo {
	t.Helper()
	var out []heal.PartitionInfo
	if err := lake.Inventory(context.Background(), ds, q, func(pi heal.PartitionInfo) error {
		out = append(out, pi)
		return nil
	}); err != nil {
		t.Fatalf("Inventory: %v", err)
	}
	return out
}

func listNames(t *testing.T, s sink.Store, prefix string) []string {
	t.Helper()
	var out []string
	if err := s.List(context.Background(), prefix, func(oi sink.ObjectInfo) error {
		out = append(out, oi.Name)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestLayout checks the Hive layout on disk and that a plain pqarrow reader
// reads heal's files with the dataset's types.
func TestLayout(t *testing.T) {
	mem := checkedMem(t)
	dir := t.TempDir()
	lake, err := sink.OpenDir(dir, &sink.Options{Allocator: mem})
	if err != nil {
		t.Fatal(err)
	}
	ds := healtest.QuotesDataset()
	write(t, lake, mem, ds,
		healtest.Row{Key: "AAPL", Time: minute(570), Price: 1},
		healtest.Row{Key: "BINANCE:BTCUSDT", Time: minute(571), Price: 2},
		healtest.Row{Key: "../../etc", Time: minute(572), Price: 3},
		healtest.Row{Key: "AAPL", Time: minute(1440), Price: 4},
	)
	var files []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			if !strings.HasPrefix(rel, "_heal") { // the lake index
				files = append(files, filepath.ToSlash(rel))
			}
		}
		return nil
	})
	slices.Sort(files)
	seq := `[0-9]{20}-[0-9a-f]{8}\.parquet`
	want := []string{
		`quotes/symbol=\.\.%2F\.\.%2Fetc/date=2024-01-02/` + seq,
		`quotes/symbol=AAPL/date=2024-01-02/` + seq,
		`quotes/symbol=AAPL/date=2024-01-03/` + seq,
		`quotes/symbol=BINANCE%3ABTCUSDT/date=2024-01-02/` + seq,
	}
	if len(files) != len(want) {
		t.Fatalf("files on disk: %v", files)
	}
	for i, f := range files {
		if !regexp.MustCompile("^" + want[i] + "$").MatchString(f) {
			t.Fatalf("file %q does not match %s", f, want[i])
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "etc")); !os.IsNotExist(err) {
		t.Fatal("a key escaped the dataset directory")
	}

	// A plain pqarrow reader, knowing nothing of heal.
	pf, err := file.OpenParquetFile(filepath.Join(dir, files[1]), false, file.WithReadProps(parquet.NewReaderProperties(mem)))
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Close()
	ts := pf.MetaData().Schema.Column(1).LogicalType().(*schema.TimestampLogicalType)
	if !ts.IsAdjustedToUTC() || ts.TimeUnit() != schema.TimeUnitMillis {
		t.Fatalf("ts is stored as %s, want a UTC millisecond timestamp", ts)
	}
	kv := pf.MetaData().KeyValueMetadata()
	for _, k := range []string{"heal.slots", "heal.rows", "heal.crc"} {
		if kv.FindValue(k) == nil {
			t.Fatalf("footer lacks %s: %v", k, kv.Keys())
		}
	}
	// The index spans the file's rows, not the whole day: one row, one word.
	if v := *kv.FindValue("heal.slots"); len(v) > 48 {
		t.Fatalf("index of a one-row file is %d bytes: %s", len(v), v)
	}
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{}, mem)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := fr.ReadTable(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer tbl.Release()
	if err := ds.CheckSchema(tbl.Schema()); err != nil {
		t.Fatalf("plain reader sees schema %s: %v", tbl.Schema(), err)
	}
	if tbl.NumRows() != 1 {
		t.Fatalf("plain reader sees %d rows", tbl.NumRows())
	}
}

// TestSecondsRoundTrip: Parquet has no seconds unit and pqarrow's stored
// schema does not bring it back; the lake does.
func TestSecondsRoundTrip(t *testing.T) {
	mem := checkedMem(t)
	lake := sink.NewMemLake(&sink.Options{Allocator: mem})
	ds := healtest.QuotesDataset()
	ds.Name = "secs"
	ds.Schema = arrow.NewSchema([]arrow.Field{
		{Name: "symbol", Type: arrow.BinaryTypes.String},
		{Name: "ts", Type: &arrow.TimestampType{Unit: arrow.Second, TimeZone: "UTC"}},
		{Name: "price", Type: arrow.PrimitiveTypes.Float64},
	}, nil)
	ds.Partition = heal.PeriodMonth
	rows := append(rowsOf("A", 0, 3, 1), rowsOf("A", 60*24*40, 2, 1)...)
	in := healtest.Records(mem, ds, rows...)
	defer in.Release()
	if err := lake.Write(context.Background(), ds, in); err != nil {
		t.Fatal(err)
	}
	rr, err := lake.Scan(context.Background(), ds, heal.Query{})
	if err != nil {
		t.Fatal(err)
	}
	defer rr.Release()
	var got []healtest.Row
	for rr.Next() {
		if !arrow.TypeEqual(rr.Record().Column(1).DataType(), ds.Schema.Field(1).Type) {
			t.Fatalf("scanned ts is %s", rr.Record().Column(1).DataType())
		}
		got = append(got, healtest.RowsOf(ds, rr.Record())...)
	}
	if rr.Err() != nil || !slices.Equal(got, rows) {
		t.Fatalf("round trip of timestamp[s]: %v, %v", got, rr.Err())
	}
	if inv := inventory(t, lake, ds, heal.Query{}); len(inv) != 2 || inv[0].Scanned || inv[0].Present.Count() != 3 {
		t.Fatalf("inventory: %+v", inv)
	}
}

// plainParquet encodes rec as a Parquet file the way another tool would:
// no heal index, with extra key-value metadata.
func plainParquet(t testing.TB, rec arrow.Record, kv map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	fw, err := pqarrow.NewFileWriter(rec.Schema(), &buf, parquet.NewWriterProperties(), pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema()))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range kv {
		fw.AppendKeyValueMetadata(k, v)
	}
	if err := fw.Write(rec); err != nil {
		t.Fatal(err)
	}
	if err := fw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// logBuffer collects a lake's logs.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestQuarantine(t *testing.T) {
	mem := checkedMem(t)
	ctx := context.Background()
	store := sink.NewMemStore()
	var logs logBuffer
	lake := sink.NewLake(store, &sink.Options{Allocator: mem, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	ds := healtest.QuotesDataset()
	good := rowsOf("A", 0, 10, 1)
	write(t, lake, mem, ds, good...)

	dirA := "quotes/symbol=A/date=2024-01-02/"
	other := arrow.NewSchema([]arrow.Field{{Name: "x", Type: arrow.PrimitiveTypes.Int64}}, nil)
	ob := array.NewRecordBuilder(memory.NewGoAllocator(), other)
	ob.Field(0).(*array.Int64Builder).Append(1)
	otherRec := ob.NewRecord()
	ob.Release()
	defer otherRec.Release()
	misplaced := healtest.Records(memory.NewGoAllocator(), ds, healtest.Row{Key: "B", Time: minute(3), Price: 9})
	defer misplaced.Release()
	offGrain := healtest.Records(memory.NewGoAllocator(), ds, healtest.Row{Key: "A", Time: minute(3).Add(time.Second), Price: 9})
	defer offGrain.Release()
	bad := map[string][]byte{
		dirA + "garbage.parquet":                       []byte("this is not parquet at all"),
		dirA + "99999999999999999999-ffffffff.parquet": []byte("PAR1 truncated"),
		dirA + "otherschema.parquet":                   plainParquet(t, otherRec, nil),
		dirA + "misplaced.parquet":                     plainParquet(t, misplaced, nil),
		dirA + "offgrain.parquet":                      plainParquet(t, offGrain, nil),
	}
	for name, data := range bad {
		if err := store.Put(ctx, name, data, true); err != nil {
			t.Fatal(err)
		}
	}
	if got := scan(t, lake, ds, heal.Query{}); !slices.Equal(got, good) {
		t.Fatalf("scan with unusable files: %v", got)
	}
	for name, data := range bad {
		if _, err := store.Open(ctx, name); !errors.Is(err, heal.ErrNotFound) {
			t.Fatalf("%s is still in place: %v", name, err)
		}
		o, err := store.Open(ctx, "_quarantine/"+name)
		if err != nil {
			t.Fatalf("%s not in quarantine: %v", name, err)
		}
		b, _ := io.ReadAll(o)
		o.Close()
		if !bytes.Equal(b, data) {
			t.Fatalf("%s changed in quarantine", name)
		}
		if !strings.Contains(logs.String(), name) {
			t.Fatalf("the log does not name %s:\n%s", name, logs.String())
		}
	}
	// Inventory also moves unusable files aside and carries on.
	store.Put(ctx, dirA+"late-garbage.parquet", []byte("nope"), true)
	inv := inventory(t, lake, ds, heal.Query{})
	if len(inv) != 1 || inv[0].Files != 1 || inv[0].Present.Count() != 10 {
		t.Fatalf("inventory with unusable files: %+v", inv)
	}
	if _, err := store.Open(ctx, "_quarantine/"+dirA+"late-garbage.parquet"); err != nil {
		t.Fatalf("Inventory did not quarantine: %v", err)
	}
	// The quarantine is not data, and Compact leaves it alone.
	if n, err := lake.Compact(ctx, ds, heal.Query{}); err != nil || n != 0 {
		t.Fatalf("Compact = %d, %v", n, err)
	}
	if q := listNames(t, store, "_quarantine/"); len(q) != len(bad)+1 {
		t.Fatalf("quarantine holds %v", q)
	}
}

func TestForeignFiles(t *testing.T) {
	mem := checkedMem(t)
	ctx := context.Background()
	store := sink.NewMemStore()
	lake := sink.NewLake(store, &sink.Options{Allocator: mem})
	ds := healtest.QuotesDataset()
	dirA := "quotes/symbol=A/date=2024-01-02/"

	// A file another tool wrote: no index, a slot stored twice (the last
	// row wins), rows in any order.
	foreign := healtest.Records(memory.NewGoAllocator(), ds,
		healtest.Row{Key: "A", Time: minute(5), Price: 1},
		healtest.Row{Key: "A", Time: minute(1), Price: 2},
		healtest.Row{Key: "A", Time: minute(5), Price: 3},
		healtest.Row{Key: "A", Time: minute(7), Price: 4},
	)
	defer foreign.Release()
	store.Put(ctx, dirA+"part-00000.parquet", plainParquet(t, foreign, nil), true)
	// A forged index: claims slots the file does not hold.
	forged := healtest.Records(memory.NewGoAllocator(), ds, healtest.Row{Key: "A", Time: minute(20), Price: 5})
	defer forged.Release()
	store.Put(ctx, dirA+"part-00001.parquet", plainParquet(t, forged, map[string]string{
		"heal.slots": "AAAA", "heal.rows": "1", "heal.crc": "00000000",
	}), true)

	want := []healtest.Row{{Key: "A", Time: minute(1), Price: 2}, {Key: "A", Time: minute(5), Price: 3}, {Key: "A", Time: minute(7), Price: 4}, {Key: "A", Time: minute(20), Price: 5}}
	if got := scan(t, lake, ds, heal.Query{}); !slices.Equal(got, want) {
		t.Fatalf("scan of foreign files: %v", got)
	}
	inv := inventory(t, lake, ds, heal.Query{})
	if len(inv) != 1 || !inv[0].Scanned || inv[0].Rows != 5 || inv[0].Present.Count() != 4 || inv[0].Files != 2 {
		t.Fatalf("inventory of foreign files: %+v", inv)
	}
	inv = inventory(t, lake, ds, heal.Query{Window: heal.NewWindow(minute(5), minute(6))})
	if len(inv) != 1 || inv[0].Rows != 2 || inv[0].Present.Count() != 1 {
		t.Fatalf("windowed inventory of foreign files: %+v", inv)
	}

	// Heal's writes rank above foreign files.
	write(t, lake, mem, ds, healtest.Row{Key: "A", Time: minute(7), Price: 40})
	want[2].Price = 40
	if got := scan(t, lake, ds, heal.Query{}); !slices.Equal(got, want) {
		t.Fatalf("a write does not win over a foreign file: %v", got)
	}
	if n, err := lake.Compact(ctx, ds, heal.Query{}); err != nil || n != 1 {
		t.Fatalf("Compact = %d, %v", n, err)
	}
	if got := scan(t, lake, ds, heal.Query{}); !slices.Equal(got, want) {
		t.Fatalf("after Compact: %v", got)
	}
	inv = inventory(t, lake, ds, heal.Query{})
	if len(inv) != 1 || inv[0].Scanned || inv[0].Files != 1 || inv[0].Duplicates() != 0 {
		t.Fatalf("inventory after Compact: %+v", inv)
	}
	if names := listNames(t, store, dirA); len(names) != 1 || !regexp.MustCompile(`/[0-9]{20}-[0-9a-f]{8}\.c[0-9a-f]{16}\.parquet$`).MatchString(names[0]) {
		t.Fatalf("after Compact the partition holds %v", names)
	}
	// A single foreign file holding a slot twice is compacted too.
	zrec := healtest.Records(memory.NewGoAllocator(), ds, healtest.Row{Key: "Z", Time: minute(1)}, healtest.Row{Key: "Z", Time: minute(1)})
	defer zrec.Release()
	store.Put(ctx, "quotes/symbol=Z/date=2024-01-02/x.parquet", plainParquet(t, zrec, nil), true)
	if n, err := lake.Compact(ctx, ds, heal.Query{Keys: []string{"Z"}}); err != nil || n != 1 {
		t.Fatalf("Compact of a foreign file with a duplicate = %d, %v", n, err)
	}
}

// countingStore records what the lake asks of its store, and can fail.
type countingStore struct {
	sink.Store
	mu        sync.Mutex
	lists     []string
	opens     []string
	failDel   bool
	failReads error
}

func (s *countingStore) List(ctx context.Context, prefix string, fn func(sink.ObjectInfo) error) error {
	s.mu.Lock()
	s.lists = append(s.lists, prefix)
	s.mu.Unlock()
	return s.Store.List(ctx, prefix, fn)
}

func (s *countingStore) Open(ctx context.Context, name string) (sink.Object, error) {
	s.mu.Lock()
	s.opens = append(s.opens, name)
	fail := s.failReads
	s.mu.Unlock()
	o, err := s.Store.Open(ctx, name)
	if err != nil || fail == nil {
		return o, err
	}
	return failingObject{o, fail}, nil
}

func (s *countingStore) Delete(ctx context.Context, name string) error {
	if s.failDel {
		return errors.New("injected delete failure")
	}
	return s.Store.Delete(ctx, name)
}

func (s *countingStore) reset() {
	s.mu.Lock()
	s.lists, s.opens = nil, nil
	s.mu.Unlock()
}

type failingObject struct {
	sink.Object
	err error
}

func (o failingObject) ReadAt(p []byte, off int64) (int, error) { return 0, o.err }

func TestPruning(t *testing.T) {
	mem := checkedMem(t)
	store := &countingStore{Store: sink.NewMemStore()}
	lake := sink.NewLake(store, &sink.Options{Allocator: mem})
	ds := healtest.QuotesDataset()
	for _, k := range []string{"A", "B", "C"} {
		for d := 0; d < 5; d++ {
			write(t, lake, mem, ds, rowsOf(k, d*1440+600, 10, 1)...)
		}
	}
	store.reset()
	q := heal.Query{Keys: []string{"B"}, Window: heal.NewWindow(minute(1440+605), minute(2*1440+10))}
	got := scan(t, lake, ds, q)
	if len(got) != 5 {
		t.Fatalf("scan returned %d rows", len(got))
	}
	wantLists := []string{"quotes/symbol=B/date=2024-01-03/", "quotes/symbol=B/date=2024-01-04/"}
	slices.Sort(store.lists) // partitions are listed in parallel
	if !slices.Equal(store.lists, wantLists) {
		t.Fatalf("Scan listed %v, want %v", store.lists, wantLists)
	}
	slices.Sort(store.opens)
	if len(store.opens) != 2 || !strings.HasPrefix(store.opens[0], wantLists[0]) || !strings.HasPrefix(store.opens[1], wantLists[1]) {
		t.Fatalf("Scan opened %v", store.opens)
	}
	// Reading footers: without a window, one listing of the key's
	// directory, and its files' footers.
	footers := sink.NewLake(store, &sink.Options{Allocator: mem, Inventory: sink.InventoryFooters})
	store.reset()
	inventory(t, footers, ds, heal.Query{Keys: []string{"C"}})
	if !slices.Equal(store.lists, []string{"quotes/symbol=C/"}) || len(store.opens) != 5 {
		t.Fatalf("Inventory listed %v and opened %d files", store.lists, len(store.opens))
	}
	// Without keys, one listing of the dataset; periods outside the
	// window are not opened.
	store.reset()
	inventory(t, footers, ds, heal.Query{Window: heal.NewWindow(minute(0), minute(1440))})
	if !slices.Equal(store.lists, []string{"quotes/"}) || len(store.opens) != 3 {
		t.Fatalf("Inventory listed %v and opened %v", store.lists, store.opens)
	}
	// With the lake index, the same listings and no data file opened.
	store.reset()
	inventory(t, lake, ds, heal.Query{Keys: []string{"C"}})
	if !slices.Equal(store.lists, []string{"_heal/index/quotes/", "quotes/symbol=C/"}) {
		t.Fatalf("Inventory listed %v", store.lists)
	}
	for _, name := range store.opens {
		if !strings.HasPrefix(name, "_heal/index/quotes/") {
			t.Fatalf("Inventory opened %s; the index holds every file", name)
		}
	}
}

func TestStoreReadErrorIsNotCorruption(t *testing.T) {
	mem := checkedMem(t)
	store := &countingStore{Store: sink.NewMemStore()}
	lake := sink.NewLake(store, &sink.Options{Allocator: mem})
	ds := healtest.QuotesDataset()
	write(t, lake, mem, ds, rowsOf("A", 0, 10, 1)...)
	boom := errors.New("injected read failure")
	store.failReads = boom
	if _, _, err := healtest.ScanRows(context.Background(), lake, ds, heal.Query{}); !errors.Is(err, boom) {
		t.Fatalf("Scan with failing reads: %v, want the store's error", err)
	}
	if err := lake.Inventory(context.Background(), ds, heal.Query{}, func(heal.PartitionInfo) error { return nil }); !errors.Is(err, boom) {
		t.Fatalf("Inventory with failing reads: %v, want the store's error", err)
	}
	store.failReads = nil
	if q := listNames(t, store, "_quarantine/"); len(q) != 0 {
		t.Fatalf("a store failure quarantined %v", q)
	}
	if got := scan(t, lake, ds, heal.Query{}); len(got) != 10 {
		t.Fatalf("data lost after read failures: %d rows", len(got))
	}
}

// TestCompactCrash: a compaction that wrote its merged file but could not
// delete its inputs leaves the data correct, and the next one cleans up.
func TestCompactCrash(t *testing.T) {
	mem := checkedMem(t)
	ctx := context.Background()
	store := &countingStore{Store: sink.NewMemStore()}
	lake := sink.NewLake(store, &sink.Options{Allocator: mem})
	ds := healtest.QuotesDataset()
	write(t, lake, mem, ds, rowsOf("A", 0, 10, 1)...)
	write(t, lake, mem, ds, rowsOf("A", 5, 10, 100)...)
	want := scan(t, lake, ds, heal.Query{})
	store.failDel = true
	if _, err := lake.Compact(ctx, ds, heal.Query{}); err == nil {
		t.Fatal("Compact with failing deletes succeeded")
	}
	if got := scan(t, lake, ds, heal.Query{}); !slices.Equal(got, want) {
		t.Fatalf("after a half-done compaction: %v", got)
	}
	// A write after the crash still wins over the merged copy.
	write(t, lake, mem, ds, healtest.Row{Key: "A", Time: minute(7), Price: -7})
	want[7].Price = -7
	if got := scan(t, lake, ds, heal.Query{}); !slices.Equal(got, want) {
		t.Fatalf("a write after a half-done compaction lost: %v", got)
	}
	if inv := inventory(t, lake, ds, heal.Query{}); inv[0].Files != 4 || inv[0].Duplicates() == 0 {
		t.Fatalf("inventory after a half-done compaction: %+v", inv)
	}
	store.failDel = false
	if n, err := lake.Compact(ctx, ds, heal.Query{}); err != nil || n != 1 {
		t.Fatalf("Compact = %d, %v", n, err)
	}
	if got := scan(t, lake, ds, heal.Query{}); !slices.Equal(got, want) {
		t.Fatalf("after compaction: %v", got)
	}
	if names := listNames(t, store, "quotes/"); len(names) != 1 {
		t.Fatalf("after compaction: %v", names)
	}
}

func TestCompactCleansTemp(t *testing.T) {
	mem := checkedMem(t)
	dir := t.TempDir()
	lake, err := sink.OpenDir(dir, &sink.Options{Allocator: mem})
	if err != nil {
		t.Fatal(err)
	}
	ds := healtest.QuotesDataset()
	write(t, lake, mem, ds, rowsOf("A", 0, 3, 1)...)
	p := filepath.Join(dir, "quotes", "symbol=A", "date=2024-01-02", ".tmp-crashed")
	os.WriteFile(p, []byte("PAR1"), 0o644)
	old := time.Now().Add(-3 * time.Hour)
	os.Chtimes(p, old, old)
	if _, err := lake.Compact(context.Background(), ds, heal.Query{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatalf("Compact left a stale temp file: %v", err)
	}
}

func TestWriteRefusesUnstorableSchema(t *testing.T) {
	mem := checkedMem(t)
	lake := sink.NewMemLake(&sink.Options{Allocator: mem})
	ds := healtest.QuotesDataset()
	ds.Name = "nested"
	ds.Schema = arrow.NewSchema([]arrow.Field{
		{Name: "symbol", Type: arrow.BinaryTypes.String},
		{Name: "ts", Type: &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}},
		{Name: "when", Type: arrow.ListOf(&arrow.TimestampType{Unit: arrow.Second, TimeZone: "UTC"})},
	}, nil)
	rec := healtest.Records(mem, ds, healtest.Row{Key: "A", Time: minute(1)})
	defer rec.Release()
	if err := lake.Write(context.Background(), ds, rec); err == nil || !errors.Is(err, heal.ErrSchemaMismatch) {
		t.Fatalf("Write of a schema Parquet cannot keep: %v", err)
	}
	if got := listNames(t, lake.Store(), ""); len(got) != 0 {
		t.Fatalf("stored %v", got)
	}
}

// TestInventoryStops: an error from fn ends Inventory at once, with every
// footer read released (the checked allocator would catch a straggler).
func TestInventoryStops(t *testing.T) {
	mem := checkedMem(t)
	lake := sink.NewMemLake(&sink.Options{Allocator: mem, Concurrency: 2})
	ds := healtest.QuotesDataset()
	for d := 0; d < 40; d++ {
		write(t, lake, mem, ds, rowsOf("A", d*1440, 3, 1)...)
	}
	stop := errors.New("enough")
	var seen []time.Time
	err := lake.Inventory(context.Background(), ds, heal.Query{}, func(pi heal.PartitionInfo) error {
		seen = append(seen, pi.Partition.Start)
		if len(seen) == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || len(seen) != 3 {
		t.Fatalf("Inventory = %v after %d partitions", err, len(seen))
	}
	if !slices.IsSortedFunc(seen, time.Time.Compare) {
		t.Fatalf("out of order: %v", seen)
	}
}
