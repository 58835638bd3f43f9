package healtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/selfheal/heal"
)

// LakeHarness gives the suite lakes to test.
type LakeHarness interface {
	// MakeLake returns a Lake that allocates with mem. The first call
	// returns a lake over empty storage; later calls on the same harness
	// return lakes over the same storage, as another process would see it.
	MakeLake(ctx context.Context, mem memory.Allocator) (heal.Lake, error)
	// Close releases the harness's resources.
	Close()
}

// LakeHarnessMaker returns a new harness; it is called once per test case.
type LakeHarnessMaker func(ctx context.Context, t *testing.T) (LakeHarness, error)

// RunLakeTests runs the conformance suite for a [heal.Lake], one subtest
// per behaviour, through the public heal API only. Every case allocates
// through a memory.CheckedAllocator passed to MakeLake and fails if a byte
// is still allocated when it ends. Cases for optional interfaces
// ([heal.Compactor], [heal.MetaStore]) are skipped when the lake does not
// implement them.
//
//	func TestConformance(t *testing.T) {
//		healtest.RunLakeTests(t, func(ctx context.Context, t *testing.T) (healtest.LakeHarness, error) {
//			return &myHarness{dir: t.TempDir()}, nil
//		})
//	}
func RunLakeTests(t *testing.T, newHarness LakeHarnessMaker) {
	cases := []struct {
		name string
		fn   func(*env)
	}{
		{"EmptyLake", testEmptyLake},
		{"RoundTrip", testRoundTrip},
		{"ScanOrder", testScanOrder},
		{"PruneByKeys", testPruneByKeys},
		{"PruneByWindow", testPruneByWindow},
		{"IdempotentRewrite", testIdempotentRewrite},
		{"NewestWinsAcrossWrites", testNewestWinsAcrossWrites},
		{"LastRowWinsWithinWrite", testLastRowWinsWithinWrite},
		{"BadInputStoresNothing", testBadInput},
		{"HostileKeys", testHostileKeys},
		{"InventoryMatchesScan", testInventoryMatchesScan},
		{"InventoryAcrossLakes", testInventoryAcrossLakes},
		{"ConcurrentWrites", testConcurrentWrites},
		{"ConcurrentScansDuringCompaction", testScansDuringCompaction},
		{"CanceledContext", testCanceledContext},
		{"MetaStore", testMetaStore},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			h, err := newHarness(ctx, t)
			if err != nil {
				t.Fatalf("making harness: %v", err)
			}
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			t.Cleanup(func() { mem.AssertSize(t, 0) })
			t.Cleanup(h.Close)
			lake, err := h.MakeLake(ctx, mem)
			if err != nil {
				t.Fatalf("making lake: %v", err)
			}
			c.fn(&env{t: t, ctx: ctx, h: h, mem: mem, lake: lake, ds: QuotesDataset()})
		})
	}
}

// env is one test case's world.
type env struct {
	t    *testing.T
	ctx  context.Context
	h    LakeHarness
	mem  *memory.CheckedAllocator
	lake heal.Lake
	ds   *heal.Dataset
}

// day0 is the first day the suite writes.
var day0 = time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC)

// at is minute m of day d after day0.
func at(d, m int) time.Time { return day0.AddDate(0, 0, d).Add(time.Duration(m) * time.Minute) }

func (e *env) write(rows ...Row) {
	e.t.Helper()
	if err := e.writeErr(e.lake, rows...); err != nil {
		e.t.Fatalf("Write: %v", err)
	}
}

func (e *env) writeErr(lake heal.Lake, rows ...Row) error {
	rec := Records(e.mem, e.ds, rows...)
	defer rec.Release()
	return lake.Write(e.ctx, e.ds, rec)
}

// model is the reference semantics: newest wins.
type model map[string]map[int64]Row

func (m model) apply(rows ...Row) {
	for _, r := range rows {
		if m[r.Key] == nil {
			m[r.Key] = make(map[int64]Row)
		}
		m[r.Key][r.Time.UnixNano()] = Row{Key: r.Key, Time: r.Time.UTC(), Price: r.Price}
	}
}

// rows returns what a scan with q must return, in order.
func (m model) rows(q heal.Query) []Row {
	var out []Row
	for k, byTime := range m {
		if q.Keys != nil && !slices.Contains(q.Keys, k) {
			continue
		}
		for _, r := range byTime {
			if q.Window.IsZero() || q.Window.Contains(r.Time) {
				out = append(out, r)
			}
		}
	}
	slices.SortFunc(out, func(a, b Row) int {
		if c := strings.Compare(a.Key, b.Key); c != 0 {
			return c
		}
		return a.Time.Compare(b.Time)
	})
	return out
}

// checkScan scans with q and compares with want, checking the shape of the
// records: one partition each, in key then time order, sorted by time.
func (e *env) checkScan(lake heal.Lake, q heal.Query, want []Row) {
	e.t.Helper()
	got, parts, err := ScanRows(e.ctx, lake, e.ds, q)
	if err != nil {
		e.t.Fatalf("Scan(%+v): %v", q, err)
	}
	if !slices.Equal(got, want) {
		e.t.Fatalf("Scan(%+v) returned %d rows, want %d\n got: %v\nwant: %v", q, len(got), len(want), clip(got), clip(want))
	}
	var prev *heal.Partition
	for i, part := range parts {
		if len(part) == 0 {
			e.t.Fatalf("Scan(%+v): record %d is empty", q, i)
		}
		p := e.ds.PartitionOf(part[0].Key, part[0].Time)
		for j, r := range part {
			if q := e.ds.PartitionOf(r.Key, r.Time); q.Key != p.Key || !q.Start.Equal(p.Start) {
				e.t.Fatalf("record %d mixes partitions %s and %s", i, p, q)
			}
			if j > 0 && !r.Time.After(part[j-1].Time) {
				e.t.Fatalf("record %d not strictly sorted by time at row %d", i, j)
			}
		}
		if prev != nil && (prev.Key > p.Key || prev.Key == p.Key && !prev.Start.Before(p.Start)) {
			e.t.Fatalf("record %d (%s) comes after %s: want key, then time order", i, p, prev)
		}
		prev = &p
	}
}

func clip(rows []Row) []Row {
	if len(rows) > 20 {
		return rows[:20]
	}
	return rows
}

// inventory collects the lake's inventory.
func (e *env) inventory(q heal.Query) []heal.PartitionInfo {
	e.t.Helper()
	var out []heal.PartitionInfo
	err := e.lake.Inventory(e.ctx, e.ds, q, func(pi heal.PartitionInfo) error {
		out = append(out, pi)
		return nil
	})
	if err != nil {
		e.t.Fatalf("Inventory(%+v): %v", q, err)
	}
	return out
}

func (e *env) compact(q heal.Query) (int, bool) {
	e.t.Helper()
	c, ok := e.lake.(heal.Compactor)
	if !ok {
		return 0, false
	}
	n, err := c.Compact(e.ctx, e.ds, q)
	if err != nil {
		e.t.Fatalf("Compact: %v", err)
	}
	return n, true
}

// series returns n rows of key, one per minute from t0, priced base+i.
func series(key string, t0 time.Time, n int, base float64) []Row {
	rows := make([]Row, n)
	for i := range rows {
		rows[i] = Row{Key: key, Time: t0.Add(time.Duration(i) * time.Minute), Price: base + float64(i)}
	}
	return rows
}

func testEmptyLake(e *env) {
	e.checkScan(e.lake, heal.Query{}, nil)
	if inv := e.inventory(heal.Query{}); len(inv) != 0 {
		e.t.Fatalf("Inventory of an empty lake: %d partitions", len(inv))
	}
	e.write() // zero rows: nothing stored, no error
	e.checkScan(e.lake, heal.Query{}, nil)
	if n, ok := e.compact(heal.Query{}); ok && n != 0 {
		e.t.Fatalf("Compact of an empty lake rewrote %d partitions", n)
	}
}

func testRoundTrip(e *env) {
	m := model{}
	var rows []Row
	for _, k := range []string{"MSFT", "AAPL", "BINANCE:BTCUSDT"} {
		for d := 0; d < 3; d++ {
			rows = append(rows, series(k, at(d, 570), 30, float64(100*d))...)
		}
		rows = append(rows, series(k, at(3, 1430), 20, 7)...) // crosses midnight
	}
	m.apply(rows...)
	e.write(rows...)
	want := m.rows(heal.Query{})
	e.checkScan(e.lake, heal.Query{}, want)

	// Each record equals, array by array, the record built from its rows.
	rr, err := e.lake.Scan(e.ctx, e.ds, heal.Query{})
	if err != nil {
		e.t.Fatal(err)
	}
	defer rr.Release()
	if !rr.Schema().Equal(e.ds.Schema) && e.ds.CheckSchema(rr.Schema()) != nil {
		e.t.Fatalf("Scan schema %s, want %s", rr.Schema(), e.ds.Schema)
	}
	off := 0
	for rr.Next() {
		got := rr.Record()
		n := int(got.NumRows())
		exp := Records(e.mem, e.ds, want[off:off+n]...)
		ok := array.RecordEqual(got, exp)
		exp.Release()
		if !ok {
			e.t.Fatalf("record at row %d differs from what was written", off)
		}
		off += n
	}
	if err := rr.Err(); err != nil {
		e.t.Fatal(err)
	}
	if off != len(want) {
		e.t.Fatalf("scanned %d rows, want %d", off, len(want))
	}
}

func testScanOrder(e *env) {
	// Keys whose escaped forms sort differently from the keys themselves.
	keys := []string{"a/b", "b", "a.b", "A", "a-b", "a", "a%b", "日本"}
	m := model{}
	for i, k := range keys {
		for _, d := range []int{2, 0, 1} {
			rows := series(k, at(d, 600+i), 3, float64(i))
			slices.Reverse(rows)
			m.apply(rows...)
			e.write(rows...)
		}
	}
	e.checkScan(e.lake, heal.Query{}, m.rows(heal.Query{}))
}

func testPruneByKeys(e *env) {
	m := model{}
	for _, k := range []string{"A", "B", "C", "D"} {
		rows := append(series(k, at(0, 0), 10, 1), series(k, at(1, 0), 10, 2)...)
		m.apply(rows...)
		e.write(rows...)
	}
	for _, q := range []heal.Query{
		{Keys: []string{"B"}},
		{Keys: []string{"D", "A"}},
		{Keys: []string{"Z"}},
		{Keys: []string{"B", "B"}},
		{Keys: []string{"C"}, Window: heal.NewWindow(at(1, 0), at(2, 0))},
		{Keys: []string{}},
	} {
		e.checkScan(e.lake, q, m.rows(q))
	}
}

func testPruneByWindow(e *env) {
	m := model{}
	for _, k := range []string{"A", "B"} {
		for d := 0; d < 4; d++ {
			rows := series(k, at(d, 600), 60, float64(d))
			m.apply(rows...)
			e.write(rows...)
		}
	}
	for _, w := range []heal.Window{
		heal.NewWindow(at(1, 0), at(2, 0)),                                            // one whole day
		heal.NewWindow(at(1, 610), at(1, 620)),                                        // within a day
		heal.NewWindow(at(1, 610).Add(30*time.Second), at(2, 620)),                    // unaligned start, across days
		heal.NewWindow(at(0, 0).Add(-time.Hour), at(0, 601)),                          // starts before the data
		heal.NewWindow(at(9, 0), at(10, 0)),                                           // after the data
		heal.NewWindow(at(2, 630), at(2, 630)),                                        // empty
		heal.NewWindow(at(-400, 0), at(400, 0)),                                       // long
		heal.NewWindow(at(3, 659), at(3, 659).Add(time.Nanosecond)),                   // one instant
		heal.NewWindow(at(1, 0).Add(-time.Nanosecond), at(1, 0).Add(time.Nanosecond)), // around midnight
	} {
		for _, keys := range [][]string{nil, {"B"}} {
			q := heal.Query{Keys: keys, Window: w}
			e.checkScan(e.lake, q, m.rows(q))
		}
	}
}

func testIdempotentRewrite(e *env) {
	rows := append(series("A", at(0, 0), 50, 1), series("A", at(1, 0), 50, 1)...)
	m := model{}
	m.apply(rows...)
	e.write(rows...)
	e.write(rows...)
	want := m.rows(heal.Query{})
	e.checkScan(e.lake, heal.Query{}, want)
	if _, ok := e.lake.(heal.Compactor); !ok {
		return
	}
	// A Compactor appends on Write and merges on Compact, so the second
	// copy is visible to Inventory until compaction.
	var dups int64
	for _, pi := range e.inventory(heal.Query{}) {
		dups += pi.Duplicates()
	}
	if dups == 0 {
		e.t.Fatalf("Inventory shows no duplicates after writing the same record twice")
	}
	n, _ := e.compact(heal.Query{})
	if n != 2 {
		e.t.Fatalf("Compact rewrote %d partitions, want 2", n)
	}
	for _, pi := range e.inventory(heal.Query{}) {
		if pi.Duplicates() != 0 || pi.Present.Count() != 50 {
			e.t.Fatalf("after Compact, %s holds %d rows in %d slots, want 50 and 50", pi.Partition, pi.Rows, pi.Present.Count())
		}
	}
	e.checkScan(e.lake, heal.Query{}, want)
	if n, _ := e.compact(heal.Query{}); n != 0 {
		e.t.Fatalf("a second Compact rewrote %d partitions, want 0", n)
	}
}

func testNewestWinsAcrossWrites(e *env) {
	m := model{}
	first := series("A", at(0, 1430), 20, 1) // crosses midnight
	second := series("A", at(0, 1435), 20, 100)
	third := series("A", at(1, 0), 2, 1000)
	for _, w := range [][]Row{first, second, third} {
		m.apply(w...)
		e.write(w...)
	}
	want := m.rows(heal.Query{})
	e.checkScan(e.lake, heal.Query{}, want)
	if _, ok := e.compact(heal.Query{}); ok {
		e.checkScan(e.lake, heal.Query{}, want)
		late := []Row{{Key: "A", Time: at(0, 1430), Price: -1}}
		m.apply(late...)
		e.write(late...)
		e.checkScan(e.lake, heal.Query{}, m.rows(heal.Query{}))
		e.compact(heal.Query{})
		e.checkScan(e.lake, heal.Query{}, m.rows(heal.Query{}))
	}
}

func testLastRowWinsWithinWrite(e *env) {
	rows := []Row{
		{"A", at(0, 1), 1}, {"A", at(0, 0), 2}, {"A", at(0, 1), 3},
		{"B", at(0, 1), 4}, {"A", at(0, 1), 5}, {"A", at(0, 0), 6},
	}
	e.write(rows...)
	e.checkScan(e.lake, heal.Query{}, []Row{{"A", at(0, 0), 6}, {"A", at(0, 1), 5}, {"B", at(0, 1), 4}})
	if _, ok := e.lake.(heal.Compactor); ok {
		for _, pi := range e.inventory(heal.Query{}) {
			if pi.Duplicates() != 0 {
				e.t.Fatalf("%s: %d duplicates from one write; a write must store one row per slot", pi.Partition, pi.Duplicates())
			}
		}
	}
}

// build makes a record of schema sc with one row per call of appendRow.
func build(mem memory.Allocator, sc *arrow.Schema, rows int, appendRow func(b *array.RecordBuilder, i int)) arrow.Record {
	b := array.NewRecordBuilder(mem, sc)
	defer b.Release()
	for i := 0; i < rows; i++ {
		appendRow(b, i)
	}
	return b.NewRecord()
}

func testBadInput(e *env) {
	before := []Row{{"A", at(0, 0), 1}}
	e.write(before...)
	good := Row{"A", at(0, 5), 2}
	msTime := func(t time.Time) arrow.Timestamp { v, _ := arrow.TimestampFromTime(t, arrow.Millisecond); return v }

	wrongSchema := arrow.NewSchema([]arrow.Field{
		{Name: "symbol", Type: arrow.BinaryTypes.String},
		{Name: "ts", Type: &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}},
		{Name: "price", Type: arrow.PrimitiveTypes.Int64},
	}, nil)
	cases := []struct {
		name  string
		field string
		row   int
		make  func() arrow.Record
	}{
		{"SchemaMismatch", "price", -1, func() arrow.Record {
			return build(e.mem, wrongSchema, 1, func(b *array.RecordBuilder, i int) {
				b.Field(0).(*array.StringBuilder).Append("A")
				b.Field(1).(*array.TimestampBuilder).Append(msTime(at(0, 9)))
				b.Field(2).(*array.Int64Builder).Append(1)
			})
		}},
		{"NullKey", "symbol", 1, func() arrow.Record {
			return build(e.mem, e.ds.Schema, 2, func(b *array.RecordBuilder, i int) {
				if i == 1 {
					b.Field(0).AppendNull()
				} else {
					b.Field(0).(*array.StringBuilder).Append(good.Key)
				}
				b.Field(1).(*array.TimestampBuilder).Append(msTime(good.Time))
				b.Field(2).(*array.Float64Builder).Append(1)
			})
		}},
		{"NullTime", "ts", 1, func() arrow.Record { return Records(e.mem, e.ds, good, Row{Key: "A", Price: 1}) }},
		{"OffGrainTime", "ts", 1, func() arrow.Record {
			return Records(e.mem, e.ds, good, Row{"A", at(0, 7).Add(30 * time.Second), 1})
		}},
		{"InvalidKey", "symbol", 1, func() arrow.Record { return Records(e.mem, e.ds, good, Row{"..", at(0, 7), 1}) }},
		{"EmptyKey", "symbol", 1, func() arrow.Record { return Records(e.mem, e.ds, good, Row{"", at(0, 7), 1}) }},
		{"ControlCharKey", "symbol", 1, func() arrow.Record { return Records(e.mem, e.ds, good, Row{"a\nb", at(0, 7), 1}) }},
	}
	for _, c := range cases {
		rec := c.make()
		err := e.lake.Write(e.ctx, e.ds, rec)
		rec.Release()
		var ie *heal.InputError
		if !errors.As(err, &ie) {
			e.t.Fatalf("%s: Write returned %v, want an *heal.InputError", c.name, err)
		}
		if ie.Field != c.field || ie.Row != c.row {
			e.t.Fatalf("%s: InputError names field %q row %d, want %q row %d (%v)", c.name, ie.Field, ie.Row, c.field, c.row, err)
		}
		if c.name == "SchemaMismatch" && !errors.Is(err, heal.ErrSchemaMismatch) {
			e.t.Fatalf("%s: errors.Is(err, heal.ErrSchemaMismatch) is false: %v", c.name, err)
		}
		e.checkScan(e.lake, heal.Query{}, before)
	}
	inv := e.inventory(heal.Query{})
	if len(inv) != 1 || inv[0].Rows != 1 {
		e.t.Fatalf("after refused writes, Inventory shows %+v, want one partition with one row", inv)
	}
}

func testHostileKeys(e *env) {
	keys := []string{"a/b", "../../etc", "x=y", "%2F", "a%2Fb", "a b", "date=2024-01-02", "_heal", ".hidden", "BINANCE:BTCUSDT", "a\\b", "日本", "..."}
	m := model{}
	for i, k := range keys {
		rows := series(k, at(0, 60*i), 3, float64(i))
		m.apply(rows...)
		e.write(rows...)
	}
	e.checkScan(e.lake, heal.Query{}, m.rows(heal.Query{}))
	for _, k := range keys {
		q := heal.Query{Keys: []string{k}}
		want := m.rows(q)
		if len(want) != 3 {
			e.t.Fatalf("model broken for %q", k)
		}
		e.checkScan(e.lake, q, want)
	}
	inv := e.inventory(heal.Query{})
	if len(inv) != len(keys) {
		e.t.Fatalf("Inventory shows %d partitions, want %d (one per key)", len(inv), len(keys))
	}
	for _, pi := range inv {
		if !slices.Contains(keys, pi.Partition.Key) || pi.Present.Count() != 3 {
			e.t.Fatalf("Inventory partition %q holds %d slots, want a written key with 3", pi.Partition.Key, pi.Present.Count())
		}
	}
	if ms, ok := e.lake.(heal.MetaStore); ok {
		names, err := ms.ListMeta(e.ctx, "")
		if err != nil || len(names) != 0 {
			e.t.Fatalf("keys leaked into the ledger: %v, %v", names, err)
		}
	}
}

func testInventoryMatchesScan(e *env) {
	m := model{}
	write := func(rows ...Row) {
		m.apply(rows...)
		e.write(rows...)
	}
	write(series("A", at(0, 0), 100, 1)...)
	write(series("A", at(0, 50), 100, 2)...) // overlaps: duplicates until compaction
	write(series("A", at(0, 1000), 5, 3)...)
	write(series("B", at(1, 1435), 10, 4)...) // crosses midnight
	write(Row{"C", at(2, 7), 5}, Row{"C", at(2, 9), 6})
	queries := []heal.Query{
		{},
		{Keys: []string{"A"}},
		{Window: heal.NewWindow(at(0, 60), at(0, 120))},
		{Window: heal.NewWindow(at(0, 60).Add(time.Second), at(2, 8))},
		{Keys: []string{"B", "C"}, Window: heal.NewWindow(at(1, 1439), at(2, 8).Add(-time.Second))},
	}
	check := func() {
		for _, q := range queries {
			want := m.rows(q)
			e.checkScan(e.lake, q, want)
			var slots []time.Time
			var parts []heal.Partition
			for _, pi := range e.inventory(q) {
				if pi.Rows < int64(pi.Present.Count()) || pi.Files < 1 {
					e.t.Fatalf("Inventory(%+v): %s: %d rows in %d files for %d slots", q, pi.Partition, pi.Rows, pi.Files, pi.Present.Count())
				}
				if !q.Window.IsZero() {
					pw := pi.Present.Window()
					if pw.Start.Before(q.Window.Align(e.ds.Grain).Start) || pw.End.After(q.Window.Align(e.ds.Grain).End) {
						e.t.Fatalf("Inventory(%+v): %s: Present covers %s, beyond the query", q, pi.Partition, pw)
					}
				}
				parts = append(parts, pi.Partition)
				for t := range pi.Present.All() {
					slots = append(slots, t)
					if p := e.ds.PartitionOf(pi.Partition.Key, t); !p.Start.Equal(pi.Partition.Start) {
						e.t.Fatalf("Inventory: %s holds %s, outside it", pi.Partition, t)
					}
				}
			}
			var wantSlots []time.Time
			var wantParts []heal.Partition
			for _, r := range want {
				wantSlots = append(wantSlots, r.Time)
				p := e.ds.PartitionOf(r.Key, r.Time)
				if n := len(wantParts); n == 0 || !samePartition(wantParts[n-1], p) {
					wantParts = append(wantParts, p)
				}
			}
			if !slices.EqualFunc(slots, wantSlots, time.Time.Equal) {
				e.t.Fatalf("Inventory(%+v) shows %d slots, a scan %d rows", q, len(slots), len(wantSlots))
			}
			if !slices.EqualFunc(parts, wantParts, samePartition) {
				e.t.Fatalf("Inventory(%+v) partitions %v, scan order %v", q, parts, wantParts)
			}
		}
	}
	check()
	if _, ok := e.compact(heal.Query{}); ok {
		check()
	}
}

// testInventoryAcrossLakes: what one lake writes and compacts, another over
// the same storage (another process) inventories exactly, and the other way
// round: a lake that keeps an index of what it wrote must not trust it for
// what others wrote or removed.
func testInventoryAcrossLakes(e *env) {
	other, err := e.h.MakeLake(e.ctx, e.mem)
	if err != nil {
		e.t.Fatal(err)
	}
	m := model{}
	write := func(lake heal.Lake, rows ...Row) {
		e.t.Helper()
		if err := e.writeErr(lake, rows...); err != nil {
			e.t.Fatalf("Write: %v", err)
		}
		m.apply(rows...)
	}
	check := func(q heal.Query) {
		e.t.Helper()
		want := m.rows(q)
		for i, lake := range []heal.Lake{e.lake, other} {
			var got []time.Time
			err := lake.Inventory(e.ctx, e.ds, q, func(pi heal.PartitionInfo) error {
				for t := range pi.Present.All() {
					got = append(got, t)
				}
				return nil
			})
			if err != nil {
				e.t.Fatalf("Inventory of lake %d: %v", i, err)
			}
			var wantT []time.Time
			for _, r := range want {
				wantT = append(wantT, r.Time)
			}
			if !slices.EqualFunc(got, wantT, time.Time.Equal) {
				e.t.Fatalf("lake %d inventories %d slots, the data holds %d", i, len(got), len(wantT))
			}
		}
	}
	write(e.lake, series("A", at(0, 0), 50, 1)...)
	write(other, series("A", at(0, 25), 50, 2)...)
	write(other, series("B", at(1, 0), 10, 3)...)
	check(heal.Query{})
	check(heal.Query{Keys: []string{"A"}})
	if c, ok := other.(heal.Compactor); ok {
		if _, err := c.Compact(e.ctx, e.ds, heal.Query{}); err != nil {
			e.t.Fatalf("Compact: %v", err)
		}
	}
	write(e.lake, series("A", at(0, 70), 10, 4)...)
	check(heal.Query{})
	check(heal.Query{Window: heal.NewWindow(at(0, 30), at(1, 5))})
}

func samePartition(a, b heal.Partition) bool {
	return a.Dataset == b.Dataset && a.Key == b.Key && a.Start.Equal(b.Start) && a.Period == b.Period
}

func testConcurrentWrites(e *env) {
	const writers, batches = 8, 5
	m := model{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, writers*batches)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("K%02d", w)
			for b := 0; b < batches; b++ {
				rows := series(key, at(b, 10*w), 10, float64(w*100+b))
				if err := e.writeErr(e.lake, rows...); err != nil {
					errs <- err
					return
				}
				mu.Lock()
				m.apply(rows...)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		e.t.Fatalf("concurrent Write: %v", err)
	}
	e.checkScan(e.lake, heal.Query{}, m.rows(heal.Query{}))
}

func testScansDuringCompaction(e *env) {
	if _, ok := e.lake.(heal.Compactor); !ok {
		e.t.Skip("the lake is not a heal.Compactor")
	}
	// Another lake over the same storage, as another process would scan.
	other, err := e.h.MakeLake(e.ctx, e.mem)
	if err != nil {
		e.t.Fatal(err)
	}
	m := model{}
	for _, k := range []string{"A", "B"} {
		for d := 0; d < 2; d++ {
			rows := series(k, at(d, 0), 120, float64(d))
			m.apply(rows...)
			e.write(rows...)
		}
	}
	want := m.rows(heal.Query{})
	for round := 0; round < 4; round++ {
		// Store the same rows again in several files per partition, so
		// there is something to compact, without changing the data.
		for i := 0; i < 3; i++ {
			for _, k := range []string{"A", "B"} {
				for d := 0; d < 2; d++ {
					lo := 40 * i
					e.write(m.rows(heal.Query{Keys: []string{k}, Window: heal.NewWindow(at(d, lo), at(d, lo+40))})...)
				}
			}
		}
		stop := make(chan struct{})
		errs := make(chan error, 16)
		var wg sync.WaitGroup
		for s := 0; s < 3; s++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				lake := e.lake
				if s%2 == 1 {
					lake = other
				}
				for n := 0; ; n++ {
					select {
					case <-stop:
						if n > 0 {
							return
						}
					default:
					}
					got, _, err := ScanRows(e.ctx, lake, e.ds, heal.Query{})
					if err != nil {
						errs <- fmt.Errorf("scan during compaction: %w", err)
						return
					}
					if !slices.Equal(got, want) {
						errs <- fmt.Errorf("scan during compaction returned %d rows, want %d", len(got), len(want))
						return
					}
				}
			}()
		}
		_, err := e.lake.(heal.Compactor).Compact(e.ctx, e.ds, heal.Query{})
		close(stop)
		wg.Wait()
		close(errs)
		if err != nil {
			e.t.Fatalf("Compact: %v", err)
		}
		for err := range errs {
			e.t.Fatal(err)
		}
	}
	e.checkScan(e.lake, heal.Query{}, want)
}

func testCanceledContext(e *env) {
	e.write(series("A", at(0, 0), 10, 1)...)
	ctx, cancel := context.WithCancel(e.ctx)
	cancel()
	check := func(op string, err error) {
		e.t.Helper()
		if err == nil {
			e.t.Fatalf("%s with a canceled context succeeded", op)
		}
		if !errors.Is(err, context.Canceled) {
			e.t.Fatalf("%s with a canceled context: %v, want an error wrapping context.Canceled", op, err)
		}
	}
	start := time.Now()
	rec := Records(e.mem, e.ds, series("A", at(1, 0), 10, 1)...)
	check("Write", e.lake.Write(ctx, e.ds, rec))
	rec.Release()
	rr, err := e.lake.Scan(ctx, e.ds, heal.Query{})
	if err == nil {
		for rr.Next() {
		}
		err = rr.Err()
		rr.Release()
	}
	check("Scan", err)
	check("Inventory", e.lake.Inventory(ctx, e.ds, heal.Query{}, func(heal.PartitionInfo) error { return nil }))
	if c, ok := e.lake.(heal.Compactor); ok {
		_, err := c.Compact(ctx, e.ds, heal.Query{})
		check("Compact", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		e.t.Fatalf("canceled calls took %s", d)
	}
	e.checkScan(e.lake, heal.Query{}, series("A", at(0, 0), 10, 1))
}

func testMetaStore(e *env) {
	ms, ok := e.lake.(heal.MetaStore)
	if !ok {
		e.t.Skip("the lake is not a heal.MetaStore")
	}
	ctx := e.ctx
	if _, err := ms.GetMeta(ctx, "ledger/missing"); !errors.Is(err, heal.ErrNotFound) {
		e.t.Fatalf("GetMeta of a missing name: %v, want heal.ErrNotFound", err)
	}
	for _, n := range []string{"ledger/b", "ledger/a", "ledger/c/x", "ledgers", "other/z"} {
		if err := ms.PutMeta(ctx, n, []byte("v:"+n)); err != nil {
			e.t.Fatalf("PutMeta(%s): %v", n, err)
		}
	}
	if err := ms.PutMeta(ctx, "ledger/a", []byte("again")); !errors.Is(err, heal.ErrExist) {
		e.t.Fatalf("second PutMeta: %v, want heal.ErrExist", err)
	}
	if b, err := ms.GetMeta(ctx, "ledger/a"); err != nil || string(b) != "v:ledger/a" {
		e.t.Fatalf("GetMeta = %q, %v; want the first put's data", b, err)
	}
	names, err := ms.ListMeta(ctx, "ledger/")
	if err != nil || !slices.Equal(names, []string{"ledger/a", "ledger/b", "ledger/c/x"}) {
		e.t.Fatalf("ListMeta(ledger/) = %v, %v", names, err)
	}
	all, err := ms.ListMeta(ctx, "")
	if err != nil || !slices.IsSorted(all) || len(all) != 5 {
		e.t.Fatalf("ListMeta(\"\") = %v, %v; want 5 sorted names", all, err)
	}
	if err := ms.DeleteMeta(ctx, "ledger/b"); err != nil {
		e.t.Fatal(err)
	}
	if err := ms.DeleteMeta(ctx, "ledger/b"); err != nil {
		e.t.Fatalf("deleting a missing name: %v", err)
	}
	if _, err := ms.GetMeta(ctx, "ledger/b"); !errors.Is(err, heal.ErrNotFound) {
		e.t.Fatalf("GetMeta after DeleteMeta: %v", err)
	}
	// The ledger is not data.
	e.checkScan(e.lake, heal.Query{}, nil)

	// Create-only under contention: exactly one winner.
	const racers = 8
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins, exists := 0, 0
	for i := 0; i < racers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := ms.PutMeta(ctx, "race/x", []byte{byte(i)})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case errors.Is(err, heal.ErrExist):
				exists++
			default:
				e.t.Errorf("racing PutMeta: %v", err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 || exists != racers-1 {
		e.t.Fatalf("racing PutMeta: %d wins and %d ErrExist, want 1 and %d", wins, exists, racers-1)
	}
}
