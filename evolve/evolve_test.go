package evolve_test

import (
	"context"
	"errors"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/evolve"
	"github.com/selfheal/heal/healtest"
	"github.com/selfheal/heal/sink"
)

var (
	t0    = time.Date(2024, 3, 4, 10, 0, 0, 0, time.UTC) // v1 history: 10:00-11:00
	cut   = t0.Add(time.Hour)                            // v2 live from 11:00
	end   = cut.Add(time.Hour)
	tsT   = &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}
	tsSec = &arrow.TimestampType{Unit: arrow.Second, TimeZone: "UTC"}
)

func at(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }

func dataset(name string, version int, fields ...arrow.Field) *heal.Dataset {
	return &heal.Dataset{Name: name, Version: version, Key: "symbol", Time: "ts", Grain: time.Minute,
		Schema: arrow.NewSchema(append([]arrow.Field{{Name: "symbol", Type: arrow.BinaryTypes.String}, {Name: "ts", Type: tsT}}, fields...), nil)}
}

// v1.0: price. v1.1 (additive): volume int64, nullable. v2 (breaking):
// price renamed last, volume retyped float64. The conformed dataset keeps
// v2's names, with its time in seconds.
var (
	v10 = dataset("quotes", 1, arrow.Field{Name: "price", Type: arrow.PrimitiveTypes.Float64})
	v1  = dataset("quotes", 1, arrow.Field{Name: "price", Type: arrow.PrimitiveTypes.Float64},
		arrow.Field{Name: "volume", Type: arrow.PrimitiveTypes.Int64, Nullable: true})
	v2 = dataset("quotes_v2", 2, arrow.Field{Name: "last", Type: arrow.PrimitiveTypes.Float64},
		arrow.Field{Name: "volume", Type: arrow.PrimitiveTypes.Float64, Nullable: true})
	conformed = &heal.Dataset{Name: "quotes_conformed", Key: "symbol", Time: "ts", Grain: time.Minute,
		Schema: arrow.NewSchema([]arrow.Field{{Name: "symbol", Type: arrow.BinaryTypes.String}, {Name: "ts", Type: tsSec},
			{Name: "last", Type: arrow.PrimitiveTypes.Float64}, {Name: "volume", Type: arrow.PrimitiveTypes.Float64, Nullable: true}}, nil)}
)

func price(k string, t time.Time) float64 { return float64(k[0]) + float64(t.Hour()*60+t.Minute())/100 }

// record builds rows of ds for key at the given minutes: the first float
// column gets price, a volume column minute*10.
func record(mem memory.Allocator, ds *heal.Dataset, key string, minutes ...int) arrow.Record {
	b := array.NewRecordBuilder(mem, ds.Schema)
	defer b.Release()
	for _, m := range minutes {
		t := at(m)
		for i, f := range ds.Schema.Fields() {
			switch fb := b.Field(i).(type) {
			case *array.StringBuilder:
				fb.Append(key)
			case *array.TimestampBuilder:
				fb.Append(arrow.Timestamp(t.UnixMilli()))
			case *array.Float64Builder:
				if f.Name == "volume" {
					fb.Append(float64(m * 10))
				} else {
					fb.Append(price(key, t))
				}
			case *array.Int64Builder:
				fb.Append(int64(m * 10))
			}
		}
	}
	return b.NewRecord()
}

// source is the live v2 feed and its history: every slot of every key, in
// v2's schema, except the live polls it drops.
type source struct {
	mem  memory.Allocator
	drop map[string]map[int]bool
	mu   sync.Mutex
	hist map[string][]int // minutes asked for historically, per key
}

// One slot per request, so what is fetched is exactly what was missing.
func (s *source) Limits() heal.Limits { return heal.Limits{MaxKeys: 1, MaxWindow: time.Minute} }

func (s *source) Fetch(_ context.Context, req heal.Request) (arrow.Record, error) {
	k := req.Keys[0]
	var ms []int
	for t := req.Window.Start; t.Before(req.Window.End); t = t.Add(time.Minute) {
		m := int(t.Sub(t0) / time.Minute)
		if req.Live && s.drop[k][m] {
			continue
		}
		ms = append(ms, m)
	}
	if !req.Live {
		s.mu.Lock()
		s.hist[k] = append(s.hist[k], ms...)
		s.mu.Unlock()
	}
	return record(s.mem, v2, k, ms...), nil
}

func minutes(from, to int, except ...int) []int {
	var out []int
	for m := from; m < to; m++ {
		if !contains(except, m) {
			out = append(out, m)
		}
	}
	return out
}

func contains(ms []int, m int) bool {
	for _, x := range ms {
		if x == m {
			return true
		}
	}
	return false
}

// TestHealAcrossTheBoundary: a v1 history (written under two minors of
// v1) and a v2 live stream, with gaps on both sides of the boundary, are
// audited as one by the v2 engine, repaired into v2 where no major holds
// the slot, and conformed into one complete dataset.
func TestHealAcrossTheBoundary(t *testing.T) {
	ctx := context.Background()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	lake := sink.NewMemLake(&sink.Options{Allocator: mem})
	keys := []string{"A", "B"}
	// v1's holes: A 10:10 and 10:45, B 10:20. The first half hour was
	// written before volume existed.
	holes1 := map[string][]int{"A": {10, 45}, "B": {20}}
	for _, k := range keys {
		for _, part := range []struct {
			ds       *heal.Dataset
			from, to int
		}{{v10, 0, 30}, {v1, 30, 60}} {
			rec := record(mem, part.ds, k, minutes(part.from, part.to, holes1[k]...)...)
			err := lake.Write(ctx, part.ds, rec)
			rec.Release()
			if err != nil {
				t.Fatal(err)
			}
		}
	}

	vs, err := evolve.New(v1, v2)
	if err != nil {
		t.Fatal(err)
	}
	conform, err := vs.Conform(lake, conformed, &evolve.ConformOptions{
		Mappings:  []evolve.Mapping{{Rename: map[string]string{"last": "price"}}},
		Allocator: mem,
	})
	if err != nil {
		t.Fatal(err)
	}
	// v2's live holes: A 11:05, B 11:30 and 11:59 (its last).
	src := &source{mem: mem, drop: map[string]map[int]bool{"A": {65: true}, "B": {90: true, 119: true}}, hist: map[string][]int{}}
	clk := healtest.NewManualClock(cut)
	eng, err := heal.New(v2, src, vs.Lake(lake), &heal.Options{Keys: keys, Clock: clk, Allocator: mem,
		Transformers: []heal.Transformer{conform}, Retry: heal.RetryPolicy{Jitter: -1}})
	if err != nil {
		t.Fatal(err)
	}
	for m := 60; m < 120; m++ {
		clk.Set(at(m))
		if _, err := eng.Acquire(ctx, at(m)); err != nil {
			t.Fatal(err)
		}
	}
	clk.Set(end.Add(time.Minute))
	whole := heal.Window{Start: t0, End: end}

	// The v2 engine's audit counts v1's slots as present.
	a, err := eng.Audit(ctx, whole)
	if err != nil {
		t.Fatal(err)
	}
	wantGaps := map[string][]int{"A": {10, 45, 65}, "B": {20, 90, 119}}
	for _, ka := range a.Keys {
		if ka.Expected != 120 || ka.Present != 117 || ka.Missing != 3 {
			t.Errorf("audit before repair, %s: expected %d present %d missing %d; want 120 117 3", ka.Key, ka.Expected, ka.Present, ka.Missing)
		}
	}

	rep, err := eng.Heal(ctx, whole)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Repaired != 6 || rep.Missing != 6 {
		t.Errorf("heal: missing %d repaired %d, want 6 and 6", rep.Missing, rep.Repaired)
	}
	// Only what no major held was fetched, and it landed in v2.
	for _, k := range keys {
		got := append([]int(nil), src.hist[k]...)
		sort.Ints(got)
		if !reflect.DeepEqual(got, wantGaps[k]) {
			t.Errorf("%s: history fetched for minutes %v, want %v", k, got, wantGaps[k])
		}
	}
	rows, err := scan(ctx, lake, v2)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		var before []int
		for _, r := range rows[k] {
			if r.m < 60 {
				before = append(before, r.m)
			}
		}
		if want := holes1[k]; !reflect.DeepEqual(before, want) {
			t.Errorf("%s: v2 holds minutes %v of v1's hour, want only its holes %v", k, before, want)
		}
	}

	// The engine recorded v2's major, for tools that read the lake alone.
	if d, err := heal.LatestDescriptor(ctx, lake, "quotes_v2"); err != nil || d.Version != 2 {
		t.Errorf("descriptor of quotes_v2: %+v, %v", d, err)
	} else if ds, err := d.Dataset(); err != nil || ds.Major() != 2 {
		t.Errorf("dataset of the descriptor: %+v, %v", ds, err)
	}

	// The conformed dataset is whole: an audit of it finds nothing missing,
	// and each row comes from the major that held it.
	ceng, err := heal.New(conformed, nil, lake, &heal.Options{Keys: keys, Allocator: mem})
	if err != nil {
		t.Fatal(err)
	}
	ca, err := ceng.Audit(ctx, whole)
	if err != nil {
		t.Fatal(err)
	}
	for _, ka := range ca.Keys {
		if ka.Expected != 120 || ka.Present != 120 {
			t.Errorf("conformed %s: %d of %d slots, gaps %v", ka.Key, ka.Present, ka.Expected, ka.Gaps)
		}
	}
	crows, err := scan(ctx, lake, conformed)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if len(crows[k]) != 120 {
			t.Fatalf("conformed %s: %d rows", k, len(crows[k]))
		}
		for _, r := range crows[k] {
			var wantVol any = float64(r.m * 10)
			if r.m < 30 && !contains(holes1[k], r.m) {
				wantVol = nil // written by v1.0, before volume existed
			}
			if r.last != price(k, at(r.m)) || r.volume != wantVol {
				t.Errorf("conformed %s minute %d: last %g volume %v, want %g %v", k, r.m, r.last, r.volume, price(k, at(r.m)), wantVol)
			}
		}
	}
}

type row struct {
	m      int
	last   float64
	volume any
}

// scan reads a quotes-shaped dataset: minute, its first float column, volume.
func scan(ctx context.Context, lake heal.Lake, ds *heal.Dataset) (map[string][]row, error) {
	rd, err := lake.Scan(ctx, ds, heal.Query{})
	if err != nil {
		return nil, err
	}
	defer rd.Release()
	out := map[string][]row{}
	unit := ds.TimeUnit()
	for rd.Next() {
		rec := rd.Record()
		keys := rec.Column(ds.KeyIndex()).(*array.String)
		ts := rec.Column(ds.TimeIndex()).(*array.Timestamp)
		last := rec.Column(2).(*array.Float64)
		vol := rec.Column(3)
		for i := 0; i < int(rec.NumRows()); i++ {
			r := row{m: int(ts.Value(i).ToTime(unit).Sub(t0) / time.Minute), last: last.Value(i), volume: vol.GetOneForMarshal(i)}
			out[keys.Value(i)] = append(out[keys.Value(i)], r)
		}
	}
	return out, rd.Err()
}

func TestWriteRoutesByVersion(t *testing.T) {
	ctx := context.Background()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	lake := sink.NewMemLake(&sink.Options{Allocator: mem})
	vs, err := evolve.New(v1, v2)
	if err != nil {
		t.Fatal(err)
	}
	for _, ds := range []*heal.Dataset{v1, v2} {
		rec := record(mem, ds, "A", 1)
		err := vs.Write(ctx, lake, rec)
		rec.Release()
		if err != nil {
			t.Fatalf("write of a %s record: %v", ds.Name, err)
		}
		rows, err := scan(ctx, lake, ds)
		if err != nil || len(rows["A"]) != 1 {
			t.Errorf("%s after its write: %v, %v", ds.Name, rows, err)
		}
	}

	// bid instead of last, volume an int: no major has that schema.
	other := dataset("x", 0, arrow.Field{Name: "bid", Type: arrow.PrimitiveTypes.Float64}, arrow.Field{Name: "volume", Type: arrow.PrimitiveTypes.Int64})
	rec := record(mem, other, "A", 2)
	defer rec.Release()
	err = vs.Write(ctx, lake, rec)
	var ie *heal.InputError
	var me *evolve.MismatchError
	if !errors.As(err, &ie) || !errors.As(err, &me) || !errors.Is(err, heal.ErrSchemaMismatch) {
		t.Fatalf("write of another schema: %v", err)
	}
	if ie.Dataset != "quotes_v2" || ie.Field != "last" || !reflect.DeepEqual(me.Columns(), []string{"last", "volume", "bid", "price"}) {
		t.Errorf("error names %s/%s, columns %v", ie.Dataset, ie.Field, me.Columns())
	}
	for _, want := range []string{"v2 (quotes_v2): missing last; retyped volume (int64, want float64); unexpected bid", "v1 (quotes): missing price; unexpected bid"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	rows, _ := scan(ctx, lake, v1)
	rows2, _ := scan(ctx, lake, v2)
	if len(rows["A"]) != 1 || len(rows2["A"]) != 1 {
		t.Errorf("a refused write stored rows: v1 %v v2 %v", rows, rows2)
	}
}

func TestNewAndConformRefuse(t *testing.T) {
	lake := sink.NewMemLake(nil)
	hourly := dataset("quotes_h", 2, arrow.Field{Name: "last", Type: arrow.PrimitiveTypes.Float64})
	hourly.Grain = time.Hour
	for name, majors := range map[string][]*heal.Dataset{
		"out of order": {v2, v1},
		"same name":    {v1, dataset("quotes", 2)},
		"other grain":  {v1, hourly},
	} {
		if _, err := evolve.New(majors...); err == nil {
			t.Errorf("New accepted %s", name)
		}
	}
	vs, err := evolve.New(v1, v2)
	if err != nil {
		t.Fatal(err)
	}
	// Without the rename, v1 has no column for last, which cannot be null.
	if _, err := vs.Conform(lake, conformed, nil); err == nil || !strings.Contains(err.Error(), "no column last") {
		t.Errorf("Conform without the rename: %v", err)
	}
	if _, err := vs.Conform(lake, v2, nil); err == nil {
		t.Error("Conform into a major")
	}
}

// TestLakeInventoryUnion: each major's inventory holds the slots of all,
// while its rows and files, hence its duplicates, stay its own.
func TestLakeInventoryUnion(t *testing.T) {
	ctx := context.Background()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	lake := sink.NewMemLake(&sink.Options{Allocator: mem})
	vs, err := evolve.New(v1, v2)
	if err != nil {
		t.Fatal(err)
	}
	put := func(ds *heal.Dataset, key string, ms ...int) {
		rec := record(mem, ds, key, ms...)
		defer rec.Release()
		if err := lake.Write(ctx, ds, rec); err != nil {
			t.Fatal(err)
		}
	}
	put(v1, "A", 0, 1, 2)
	put(v2, "A", 2, 3)
	put(v2, "A", 3) // a duplicate of v2's own
	put(v1, "B", 7) // a key only v1 holds
	type got struct {
		key          string
		slots, files int
		dups         int64
		dataset      string
	}
	for _, tc := range []struct {
		ds   *heal.Dataset
		want []got
	}{
		{v2, []got{{"A", 4, 2, 1, "quotes_v2"}, {"B", 1, 0, 0, "quotes_v2"}}},
		{v1, []got{{"A", 4, 1, 0, "quotes"}, {"B", 1, 1, 0, "quotes"}}},
	} {
		var out []got
		if err := vs.Lake(lake).Inventory(ctx, tc.ds, heal.Query{Window: heal.Window{Start: t0, End: end}}, func(p heal.PartitionInfo) error {
			out = append(out, got{p.Partition.Key, p.Present.Count(), p.Files, p.Duplicates(), p.Partition.Dataset})
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(out, tc.want) {
			t.Errorf("inventory of %s: %+v, want %+v", tc.ds.Name, out, tc.want)
		}
	}
	if _, ok := vs.Lake(lake).(heal.Compactor); !ok {
		t.Error("the wrapped lake lost Compact")
	}
	// A lake without a MetaStore does not gain one an engine would call.
	bare := struct{ heal.Lake }{lake}
	if _, ok := vs.Lake(bare).(heal.MetaStore); ok {
		t.Error("the wrapper of a lake without MetaStore claims one")
	}
}

// TestWriteEarlierMinor: a producer still on v1.0 (no volume column)
// writes into v1, whose volume was added as nullable: the rows are stored
// with volume null. A record lacking a column that is not nullable is
// refused, naming it, and stores nothing.
func TestWriteEarlierMinor(t *testing.T) {
	ctx := context.Background()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	lake := sink.NewMemLake(&sink.Options{Allocator: mem})
	vs, err := evolve.New(v1, v2)
	if err != nil {
		t.Fatal(err)
	}
	rec := record(mem, v10, "A", 1, 2)
	err = vs.Write(ctx, lake, rec)
	rec.Release()
	if err != nil {
		t.Fatalf("write of a v1.0 record: %v", err)
	}
	rows, err := scan(ctx, lake, v1)
	if err != nil || len(rows["A"]) != 2 || rows["A"][0].volume != nil || rows["A"][0].last != price("A", at(1)) {
		t.Fatalf("v1 after a v1.0 write: %+v, %v; want 2 rows, price kept, volume null", rows, err)
	}

	noPrice := dataset("x", 0, arrow.Field{Name: "volume", Type: arrow.PrimitiveTypes.Int64, Nullable: true})
	rec = record(mem, noPrice, "B", 3)
	defer rec.Release()
	err = vs.Write(ctx, lake, rec)
	if !errors.Is(err, heal.ErrSchemaMismatch) || !strings.Contains(err.Error(), "missing price") {
		t.Fatalf("write without the non-nullable price: %v", err)
	}
	if rows, _ := scan(ctx, lake, v1); len(rows["B"]) != 0 {
		t.Fatalf("a refused write stored %v", rows["B"])
	}
}
